"""The snapshot writer: appends each saved state of a run to its file as the run goes.

Crash safety. The file is written in HDF5's single-writer/multiple-reader (SWMR) mode, whose
metadata writes are ordered so that the file on disk is consistent at every moment, and each
snapshot is committed in two flushes: first the data, then its entry in ``time`` (whose fill
value is NaN). A snapshot therefore exists exactly when its time does, and a run killed at any
moment (even by SIGKILL) leaves every snapshot committed before it.

Cost. Each call copies the state and hands it to one background thread, which compresses it
with zlib (releasing the GIL, so it overlaps the solver's next steps when a core is free),
writes the chunk as HDF5's deflate filter would have (``write_direct_chunk``) and commits it.
At most :attr:`SnapshotWriter.max_pending` = 2 snapshots are in flight; ``close``/``finish``
wait for them.
"""

from __future__ import annotations

import os
import socket
import zlib
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from .._version import __version__
from ..grid import Grid
from .files import (LIBVER, check_writable, committed, now, reader, short_h5,
                    time_variables)
from .schema import (KINDS, NOT_A_VARIABLE, STATE_VARIABLES, TIME_CHUNK, Diagnostics,
                     JSON_ATTRIBUTES, SnapshotFileError, VariableSpec, check_agent_fields,
                     decode_attributes, dumps, encode_attributes, fitness_field,
                     header_attributes,
                     layout_variables, names_list, rng_width, static_variables)


class _Handles:
    """Cached low-level handles of the time-dependent datasets: appending through h5py's
    high-level indexing costs about a millisecond per dataset, which would dominate the cost
    of a snapshot's dozen small writes."""

    def __init__(self, h5file: h5py.File):
        self.ds = {name: h5file[name] for name in [*time_variables(h5file), "time"]}
        self.gzip = {name: (ds.compression == "gzip", ds.compression_opts or 1, ds.dtype)
                     for name, ds in self.ds.items()}
        self._one = h5py.h5s.create_simple((1,))

    def _extend(self, name: str, k: int):
        dsid = self.ds[name].id
        shape = dsid.shape
        dsid.set_extent((k + 1, *shape[1:]))
        return dsid

    def append_scalar(self, name: str, k: int, value: Any) -> None:
        dsid = self._extend(name, k)
        space = dsid.get_space()
        space.select_hyperslab((k,), (1,))
        dsid.write(self._one, space, np.array([value], dtype=self.gzip[name][2]))

    def append_block(self, name: str, k: int, arr: np.ndarray) -> None:
        gzip, level, dtype = self.gzip[name]
        dsid = self._extend(name, k)
        data = np.ascontiguousarray(arr, dtype=dtype)
        if gzip:
            # deflate here, where zlib releases the GIL, instead of inside HDF5; the chunk is
            # exactly what HDF5's deflate filter would have stored
            dsid.write_direct_chunk((k,) + (0,) * data.ndim, zlib.compress(data.tobytes(), level))
            return
        space = dsid.get_space()
        space.select_hyperslab((k,) + (0,) * data.ndim, (1, *data.shape))
        dsid.write(h5py.h5s.create_simple((1, *data.shape)), space, data[None])

    def append_text(self, name: str, k: int, text: str) -> None:
        """A string as a row of characters (format 2) or a fixed-length string (format 1)."""
        ds = self.ds[name]
        if ds.ndim == 1:
            self.append_scalar(name, k, np.bytes_(text))
            return
        width = ds.shape[1]
        row = np.frombuffer(text.encode().ljust(width, b"\0"), dtype="S1")
        self.append_block(name, k, row)


class SnapshotWriter:
    """Writes snapshots of a run to an HDF5 file as they are produced.

    Use as an ``observers`` callable ``writer(t, state)`` of :func:`~pde_popdyn.splitting.
    integrate`, then call :meth:`finish` (or :meth:`close` on failure). Each call copies the
    state and appends it along ``time``; the compression and the write run on a background
    thread (``background=True``) while the solver goes on, at most two snapshots behind, and
    every snapshot is committed (flushed) as soon as it is written. :meth:`close` waits for
    the pending ones.

    Parameters
    ----------
    path:
        The file to create. An existing file is an error unless ``overwrite=True``.
    kind:
        'joint' (state f of shape ``grid.shape``), 'reduced' (state of the h-shape, e.g.
        ``(n_h,)``) or 'ensemble' (agents' θ and h; see :meth:`write`).
    grid:
        The grid (required for 'joint' and 'reduced'; for 'ensemble' only for histograms).
    model:
        The model; stored as ``model.describe()`` and, for a preset model, ``model.preset``.
    attrs:
        Run settings to store as root attributes, e.g. scheme, splitting, dt, save_every
        (:func:`pde_popdyn.io.schema.run_attributes` picks them from a result's ``info``).
        ``scheme="spectral"`` (or a grid with ``nodes="spectral"``) marks the density as point
        values rather than cell averages.
    fitness:
        F on the grid (joint) or F̄ on the h-nodes (reduced) for the ``mean_fitness``
        diagnostic; for a joint run it defaults to ``model.fitness_on(grid)``.
    compression:
        'gzip' (level ``compression_opts``, default 1; readable by every HDF5 tool), 'lzf'
        (read by h5py and hence xarray/h5netcdf) or None.
    seed, rng:
        The seed and the ``numpy.random.Generator`` of a stochastic run; the generator's state
        at each call is stored with the snapshot.
    histogram:
        For 'ensemble' with a grid: also store the agents' histogram as ``density``.
    fsync:
        Also ``fsync`` after each snapshot (survives power loss, not only a killed process).
    background:
        Compress and write on a background thread (default); False writes synchronously.
    record_process:
        Store the writing machine's host name and process id (``writer_host``,
        ``writer_pid``), with which :func:`~pde_popdyn.io.repair` refuses to touch a file whose
        writer is still running. Off by default: a file says nothing about where it was made.
    """

    max_pending = 2  # snapshots handed over but not yet committed (what a kill can lose)

    def __init__(self, path: str | os.PathLike, *, kind: str = "joint", grid: Grid | None = None,
                 model: Any = None, attrs: dict[str, Any] | None = None,
                 fitness: np.ndarray | None = None, overwrite: bool = False,
                 compression: str | None = "gzip", compression_opts: int | None = None,
                 seed: Any = None, rng: np.random.Generator | None = None,
                 histogram: bool = False, fsync: bool = False, background: bool = True,
                 record_process: bool = False):
        if kind not in KINDS:
            raise ValueError(f"kind={kind!r} is not known; use one of {KINDS}")
        if kind in ("joint", "reduced") and not isinstance(grid, Grid):
            raise TypeError(f"a {kind} snapshot file needs grid=pp.Grid(...), got "
                            f"{type(grid).__name__}")
        if compression not in ("gzip", "lzf", None):
            raise ValueError(f"compression={compression!r} is not supported; use 'gzip' "
                             f"(portable), 'lzf' (fast) or None")
        if histogram and grid is None:
            raise ValueError("histogram=True needs grid=pp.Grid(...) to bin the agents on")
        attrs = dict(attrs or {})
        self.path = check_writable(path, overwrite)
        self.kind = kind
        self.grid = grid
        self.rng = rng
        self.histogram = bool(histogram)
        self.fsync = bool(fsync)
        self._scheme = attrs.get("scheme")
        self._compression = compression
        self._compression_opts = (compression_opts if compression_opts is not None else 1) \
            if compression == "gzip" else None
        self._fitness = fitness_field(kind, grid, model, fitness)
        self._init_state(background, skip_first=False)
        values = header_attributes(
            kind, grid, model, seed=seed,
            rng_state=rng.bit_generator.state if rng is not None else None, settings=attrs,
            created=now(), record_process=_process() if record_process else None)
        if self.path.exists():  # overwrite=True was checked above
            self.path.unlink()
        self._file = h5py.File(self.path, "w", libver=LIBVER)
        try:
            encoded, json_names = encode_attributes(values, JSON_ATTRIBUTES)
            for k, v in encoded.items():
                self._file.attrs[k] = v
            self._file.attrs["json_attributes"] = ",".join(sorted(json_names))
            for spec in static_variables(kind, grid, scheme=self._scheme,
                                         fitness=self._fitness if kind == "reduced" else None):
                self._make(spec)
            self._file.flush()
        except BaseException:
            self._file.close()
            raise

    def _init_state(self, background: bool, skip_first: bool) -> None:
        self._n = 0                      # committed snapshots (updated by the writing thread)
        self._skip_first = skip_first
        self._created = False
        self._layout: dict[str, tuple[int, ...]] | None = None  # per-snapshot shapes
        self._agent_dtypes: dict[str, np.dtype] = {}
        self._diag_names: list[str] | None = None
        self._rng_width: int | None = None
        self._pending: deque = deque()
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="pde_popdyn-io") \
            if background else None
        self._diag = Diagnostics(self.kind, self.grid if isinstance(self.grid, Grid) else None,
                                 self._fitness)

    # .. creating variables ...................................................................
    def _make(self, spec: VariableSpec) -> None:
        """Create one variable of the schema, with its attributes and dimension scales."""
        f = self._file
        if spec.dimension_only:
            ds = f.create_dataset(spec.name, data=spec.data)
            ds.make_scale(NOT_A_VARIABLE.decode() + f"{len(spec.data):10d}")
            return
        kw: dict[str, Any] = {}
        if spec.along_time:
            inner = tuple(self._inner(spec))
            if spec.compress:
                chunks = (1, *inner)
                if self._compression is not None:
                    kw = {"compression": self._compression}
                    if self._compression_opts is not None:
                        kw["compression_opts"] = self._compression_opts
            elif inner:  # rows of characters: about 4 kB per chunk
                chunks = (max(1, 4096 // int(np.prod(inner))), *inner)
            else:
                chunks = (TIME_CHUNK,)
            if np.dtype(spec.dtype).kind == "f":
                kw["fillvalue"] = np.nan
            ds = f.create_dataset(spec.name, shape=(0, *inner), maxshape=(None, *inner),
                                  chunks=chunks, dtype=spec.dtype, **kw)
        else:
            ds = f.create_dataset(spec.name, data=np.asarray(spec.data, dtype=spec.dtype))
        for k, v in spec.attrs.items():
            ds.attrs[k] = v
        if spec.scale:
            ds.make_scale(spec.name)
            return
        for i, dim in enumerate(spec.dims):
            ds.dims[i].attach_scale(f[dim])

    def _inner(self, spec: VariableSpec) -> list[int]:
        return [len(self._file[d]) for d in spec.dims[1:]]

    def _create(self, fields_: dict[str, np.ndarray], diag_names: list[str],
                agent_dtypes: dict[str, np.dtype], rng_width: int | None) -> None:
        """Create the time-dependent variables from the first snapshot, then enter SWMR mode
        (after which no new objects or attributes may be added)."""
        shapes = {k: v.shape for k, v in fields_.items()}
        for spec in layout_variables(self.kind, self.grid, shapes, scheme=self._scheme,
                                     diagnostics=diag_names, agent_fields=agent_dtypes,
                                     rng_width=rng_width):
            self._make(spec)
        self._file.attrs["diagnostics"] = ",".join(diag_names)
        if agent_dtypes:
            self._file.attrs["agent_fields"] = ",".join(agent_dtypes)
        self._created = True
        self._file.flush()
        self._file.swmr_mode = True

    # .. writing ..............................................................................
    @property
    def n_written(self) -> int:
        """Number of snapshots committed to the file."""
        return self._n

    def __call__(self, t: float, state: Any) -> None:
        """Observer protocol ``obs(t, f)``: append the state at time ``t``."""
        if self._skip_first:  # resuming: the first state is the file's last snapshot
            self._skip_first = False
            return
        self.write(t, state)

    def _fields(self, state: Any, theta: Any, h: Any, density: Any) -> dict[str, np.ndarray]:
        """The arrays of one snapshot, copied (the solver may reuse its buffers)."""
        if self.kind in ("joint", "reduced"):
            f = np.array(state if density is None else density, dtype=float)
            want = self._diag.state_shape
            if f.shape != want:
                raise ValueError(f"a {self.kind} snapshot must have shape {want}, got {f.shape}")
            return {"density": f}
        if state is not None:
            if isinstance(state, tuple) and len(state) == 2:
                theta, h = state
            else:
                theta, h = getattr(state, "theta"), getattr(state, "h")
        if theta is None or h is None:
            raise ValueError("an ensemble snapshot needs the agents' theta and h")
        theta, h = np.array(theta, dtype=float), np.array(h, dtype=float)
        if theta.shape[0] != h.shape[0] or theta.ndim > 2 or h.ndim > 2:
            raise ValueError(f"theta {theta.shape} and h {h.shape} must be (N,) or (N, d) "
                             f"arrays with the same N")
        out = {"particle_theta": theta, "particle_h": h}
        if density is not None:
            out["density"] = np.array(density, dtype=float)
        elif self.histogram:
            out["density"] = self._diag.histogram(theta, h)
        return out

    def write(self, t: float, state: Any = None, *, theta: Any = None, h: Any = None,
              density: Any = None, diagnostics: dict[str, float] | None = None,
              agent_fields: dict[str, Any] | None = None) -> None:
        """Append the snapshot at time ``t``.

        ``state`` is the density (joint/reduced) or an ensemble (``.theta``, ``.h``, or a
        tuple); ``theta``/``h``/``density`` may be given instead. ``diagnostics`` adds scalar
        time series; ``agent_fields`` (ensembles) adds per-agent arrays of shape (N,), floats
        or integers (e.g. ``{"fitness": F, "parent": idx}``), each stored as a (time, agent)
        variable. The names of both are fixed by the first snapshot. Bad input raises here;
        an error of the background write is raised by the next call or by :meth:`close`.
        """
        if self._file is None:
            raise ValueError(f"the snapshot writer for {self.path} is closed")
        t = float(t)
        if not np.isfinite(t):
            raise ValueError(f"snapshot time must be finite, got {t}")
        fields_ = self._fields(state, theta, h, density)
        if agent_fields and self.kind != "ensemble":
            raise ValueError(f"agent_fields are per-agent arrays of an ensemble; a {self.kind} "
                             f"file has no agents")
        extra = check_agent_fields(agent_fields, fields_["particle_h"].shape[0]) \
            if self.kind == "ensemble" else {}
        diag = self._diag(fields_)
        diag.update({k: float(v) for k, v in (diagnostics or {}).items()})
        rng_state = dumps(self.rng.bit_generator.state) if self.rng is not None else None
        layout = {k: v.shape for k, v in fields_.items()}
        dtypes = {k: v.dtype for k, v in extra.items()}
        if self._layout is None:  # the first snapshot fixes the layout
            self._layout, self._diag_names, self._agent_dtypes = layout, list(diag), dtypes
            if rng_state is not None:
                self._rng_width = rng_width(rng_state)
        else:
            if layout != self._layout:
                raise ValueError(f"snapshot arrays {layout} differ from the file's "
                                 f"{self._layout}")
            unknown = set(diag) - set(self._diag_names)
            if unknown:
                raise ValueError(f"diagnostics {sorted(unknown)} were not in the first "
                                 f"snapshot ({self._diag_names}); the set of diagnostics is "
                                 f"fixed when the file starts")
            if dtypes != self._agent_dtypes:
                raise ValueError(f"agent_fields {sorted(dtypes)} differ from those of the first "
                                 f"snapshot ({sorted(self._agent_dtypes)}); they are fixed "
                                 f"when the file starts")
        if rng_state is not None and self._rng_width is not None \
                and len(rng_state.encode()) > self._rng_width:
            raise ValueError(f"the generator state ({len(rng_state)} characters) does not fit "
                             f"the {self._rng_width} the file reserved at its first snapshot")
        job = (t, fields_, extra, diag, rng_state)
        if self._pool is None:
            self._commit(*job)
            return
        while self._pending and self._pending[0].done():
            self._pending.popleft().result()  # surfaces an error of the writing thread
        self._pending.append(self._pool.submit(self._commit, *job))
        while len(self._pending) > self.max_pending:
            self._pending.popleft().result()

    def _commit(self, t: float, fields_: dict[str, np.ndarray], extra: dict[str, np.ndarray],
                diag: dict[str, float], rng_state: str | None) -> None:
        """Write one snapshot and commit it: data, flush, then its time, flush."""
        f = self._file
        if not self._created:
            self._create(fields_, self._diag_names or [], self._agent_dtypes,
                         self._rng_width if rng_state is not None else None)
        if not hasattr(self, "_handles"):
            self._handles = _Handles(f)
        hd = self._handles
        k = self._n
        for name, arr in fields_.items():
            hd.append_block(name, k, arr)
        for name, arr in extra.items():
            hd.append_block(name, k, arr)
        for name in self._diag_names or []:
            hd.append_scalar(name, k, diag.get(name, np.nan))
        if rng_state is not None and "rng_state" in hd.ds:
            hd.append_text("rng_state", k, rng_state)
        f.flush()  # the data first ...
        hd.append_scalar("time", k, t)
        f.flush()  # ... then its time, which commits the snapshot
        if self.fsync:
            os.fsync(f.id.get_vfd_handle())
        self._n = k + 1

    # .. closing ..............................................................................
    def _drain(self) -> BaseException | None:
        """Wait for the pending writes; the first error, if any."""
        error = None
        while self._pending:
            try:
                self._pending.popleft().result()
            except BaseException as exc:  # noqa: BLE001 - reported by close()
                error = error or exc
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
        return error

    def _truncate(self) -> None:
        """Drop a partly written snapshot (a failure inside a write)."""
        f = self._file
        for name in [*time_variables(f), "time"]:
            if f[name].shape[0] != self._n:
                f[name].resize(self._n, axis=0)

    def close(self, status: str = "interrupted", **attrs: Any) -> None:
        """Wait for pending snapshots, then close the file recording ``status`` and ``attrs``
        (status "failed" if a write failed, whose error is then raised); idempotent."""
        if self._file is None:
            return
        error = self._drain()
        if error is not None:
            status = "failed"
        try:
            if self._created:
                self._truncate()
        finally:
            self._file.close()
            self._file = None
        with h5py.File(self.path, "r+", libver=LIBVER) as f:
            stamp = now()
            f.attrs["status"] = status
            f.attrs["closed"] = stamp
            f.attrs["history"] = f"{f.attrs['history']}\n{stamp}: {status}, " \
                                 f"{self._n} snapshots written"
            encoded, json_names = encode_attributes(attrs)
            for k, v in encoded.items():
                f.attrs[k] = v
            known = names_list(f.attrs["json_attributes"])
            f.attrs["json_attributes"] = ",".join(sorted(set(known) | set(json_names)))
        if error is not None:
            raise error

    def finish(self, **attrs: Any) -> None:
        """Close the file after a complete run (``status="complete"``)."""
        self.close(status="complete", **attrs)

    def __enter__(self) -> "SnapshotWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.finish()
        else:
            self.close(status="interrupted")

    # .. appending ............................................................................
    @classmethod
    def append(cls, path: str | os.PathLike, *, skip_first: bool = True,
               rng: np.random.Generator | None = None, fsync: bool = False,
               model: Any = None, fitness: np.ndarray | None = None,
               background: bool = True, record_process: bool = False) -> "SnapshotWriter":
        """Reopen a clean snapshot file to append snapshots (used by resuming).

        With ``skip_first`` the first observed state, which is the file's last snapshot that
        the resumed run starts from, is not written again. The file keeps its format version.
        """
        p = Path(path)
        with reader(p) as (_, attrs, clean):
            if not clean:
                raise SnapshotFileError(f"{p} was not closed by its writer; call "
                                        f"pp.io.repair({str(p)!r}) first")
        self = cls.__new__(cls)
        self.path = p
        self.kind = attrs["kind"]
        g = attrs.get("grid")
        self.grid = Grid.from_dict(g) if isinstance(g, dict) else None
        self.rng = rng
        self.fsync = fsync
        self._scheme = attrs.get("scheme")
        self._compression, self._compression_opts = None, None
        self._fitness = fitness_field(self.kind, self.grid, model, fitness) \
            if isinstance(self.grid, Grid) else None
        self._init_state(background, skip_first)
        try:
            self._file = h5py.File(p, "r+", libver=LIBVER)
        except OSError as exc:
            raise SnapshotFileError(f"{p} cannot be opened for appending "
                                    f"({short_h5(str(exc))})") from None
        f = self._file
        self._n = committed(f)
        self._created = "diagnostics" in f.attrs
        self.histogram = self.kind == "ensemble" and "density" in f
        if self._created:
            self._truncate()
            self._layout = {name: f[name].shape[1:] for name in time_variables(f)
                            if name in STATE_VARIABLES}
            self._diag_names = names_list(f.attrs["diagnostics"])
            self._agent_dtypes = {name: f[name].dtype
                                  for name in names_list(f.attrs.get("agent_fields"))}
            if "rng_state" in f:
                ds = f["rng_state"]
                self._rng_width = ds.shape[1] if ds.ndim == 2 else ds.dtype.itemsize
        a = decode_attributes(f.attrs)
        f.attrs["status"] = "running"
        for k, v in (_process() if record_process else {}).items():
            f.attrs[k] = v
        if not record_process:
            for k in ("writer_host", "writer_pid"):
                if k in f.attrs:
                    del f.attrs[k]
        f.attrs["history"] = f"{a.get('history', '')}\n{now()}: resumed by pde_popdyn " \
                             f"{__version__} after {self._n} snapshots"
        f.flush()
        if self._created:
            f.swmr_mode = True
        return self


def _process() -> dict[str, Any]:
    return {"writer_host": socket.gethostname(), "writer_pid": os.getpid()}
