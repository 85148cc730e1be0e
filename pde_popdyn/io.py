"""HDF5 snapshot files: written as a run goes, read back (docs/format.md).

File layout (``format = "pde_popdyn snapshots"``, ``format_version = 1``)
-------------------------------------------------------------------------
Coordinates are HDF5 dimension scales with ``long_name`` and ``units`` (netCDF-4 conventions,
so ``xarray.open_dataset(path, engine="h5netcdf")`` sees named dimensions):

* ``time`` (time): the saved times, extensible; ``theta`` (theta) and ``h`` (h): the grid's
  cell centres; ``agent`` (agent) and ``*_component`` for particle ensembles.

Variables, all extensible along ``time`` and chunked one snapshot per chunk, compressed:

* ``kind = "joint"``:    ``density`` (time, theta, h), the cell averages of f(t, θ, h);
* ``kind = "reduced"``:  ``density`` (time, h), the cell averages of ρ(t, h);
* ``kind = "ensemble"``: ``particle_theta`` (time, agent[, theta_component]) and
  ``particle_h`` (time, agent[, h_component]), the agents' positions, plus optionally
  ``density`` (time, theta, h), their histogram on the grid (cell averages, θ and h 1-D);
* diagnostics, 1-D along ``time``: ``mass``, ``mean_theta``, ``mean_h``, ``var_theta``,
  ``var_h``, ``cov_theta_h`` and ``mean_fitness`` (⟨F⟩, or ⟨F̄⟩ for a reduced run), those that
  apply; ``rng_state`` (time), the JSON state of the random generator after each snapshot.

Root attributes: ``format``, ``format_version``, ``kind``, ``status`` ("running",
"complete", "interrupted"), ``pde_popdyn_version``, ``created``, ``history``, ``grid``,
``model`` (``Model.describe()``; callables only by name), ``preset`` (``{"name", "params"}``
when the model came from a preset, so that it can be rebuilt), ``seed``, and the run's
settings such as ``scheme``, ``splitting``, ``dt``, ``save_every``. Structured values are JSON
strings; their names are listed in the attribute ``json_attributes``.

Crash safety
------------
The file is written in HDF5's single-writer/multiple-reader (SWMR) mode, whose metadata writes
are ordered so that the file on disk is consistent at every moment, and each snapshot is
committed in two flushes: first the data, then its entry in ``time`` (whose fill value is NaN).
A snapshot therefore exists exactly when its time does, and a run killed at any moment (even by
SIGKILL) leaves every snapshot committed before it. Such a file still carries HDF5's "open for
writing" flag: :func:`load` reads it anyway (as a SWMR reader, which also works while the run
is still going), :func:`resume` clears it, and :func:`repair` clears it for other programs. A
``KeyboardInterrupt`` or other exception closes the file cleanly with ``status="interrupted"``.

Cost
----
The writer copies each state and hands it to one background thread, which compresses it with
zlib (releasing the GIL, so it overlaps the solver's next steps when a core is free), writes
the chunk as HDF5's deflate filter would have (``write_direct_chunk``) and commits it. At most
``SnapshotWriter.max_pending`` = 2 snapshots are in flight, so a killed run loses at most the
two most recent ones it had handed over; ``close``/``finish`` wait for them. The diagnostics
are computed by :func:`density_moments` in a few passes over the array.

Hooking a solver in
-------------------
The writer is an ``observers`` callable of :func:`pde_popdyn.splitting.integrate`::

    writer = SnapshotWriter(output, kind="reduced", grid=grid, model=model,
                            overwrite=overwrite, attrs={"scheme": ..., "splitting": ...,
                            "dt": schedule.dt, "save_every": schedule.save_every})
    try:
        integrate(step, rho0, schedule, observers=[writer])
    except BaseException:
        writer.close(status="interrupted")
        raise
    writer.finish(run_seconds=...)

``writer(t, f)`` takes f of shape ``grid.shape`` (joint) or ``(n_h,)`` (reduced). For particles,
``SnapshotWriter(path, kind="ensemble", grid=grid or None, rng=generator, seed=seed,
histogram=True)`` and ``writer(t, ens)`` with ``ens`` having ``.theta`` and ``.h`` (arrays of
shape (N,) or (N, d)) or a tuple ``(theta, h)``; ``writer.write(t, theta=..., h=...,
diagnostics={...})`` adds further scalar diagnostics. The generator's state is stored with each
snapshot, so a resumed particle run continues the same random stream.

To resume, a solver calls :func:`prepare_resume`, which checks the file against the arguments
and returns the last state, the remaining :class:`~pde_popdyn.splitting.Schedule` (with exactly
the stored Δt) and a :meth:`ResumePlan.writer` that appends to the same file.
:func:`load` returns ``particles.Ensemble.from_snapshots(**data)`` for an ensemble file when that
class method exists, and an :class:`EnsembleRecord` otherwise.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import socket
import zlib
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np

from ._version import __version__
from .grid import Grid

FORMAT = "pde_popdyn snapshots"
FORMAT_VERSION = 1
KINDS = ("joint", "reduced", "ensemble")
# SWMR needs the v110 file format; capping it there keeps files readable by HDF5 ≥ 1.10
_LIBVER = ("v110", "v110")
_JSON_ATTRS = ("model", "preset", "grid", "seed", "info", "rng_state_initial")
_TIME_CHUNK = 512

_COORDS = {
    "time": ("slow time t", "1"),
    "theta": ("parameter θ (cell centre)", "1"),
    "h": ("hyperparameter h (cell centre)", "1"),
    "agent": ("agent index", "1"),
}
_DENSITY = {
    "joint": "joint density f(t, θ, h), cell averages",
    "reduced": "h-marginal density ρ(t, h), cell averages",
    "ensemble": "histogram of the agents on the grid, cell averages",
}
_DIAGNOSTICS = {
    "mass": "total mass of the density",
    "mean_theta": "population mean of θ",
    "mean_h": "population mean of h",
    "var_theta": "population variance of θ",
    "var_h": "population variance of h",
    "cov_theta_h": "population covariance of θ and h",
    "mean_fitness": "population mean fitness ⟨F⟩ (⟨F̄⟩ for a reduced run)",
}


class SnapshotFileError(ValueError):
    """A snapshot file that cannot be used: not HDF5, not ours, damaged, or inconsistent."""


class OutputExistsError(FileExistsError, ValueError):
    """The output file exists and ``overwrite`` was not given (both a FileExistsError and,
    like every argument error of the package, a ValueError)."""


# -- small helpers ---------------------------------------------------------------------------
def _json_default(o: Any) -> Any:
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, (set, tuple)):
        return list(o)
    return repr(o)


def _dumps(obj: Any) -> str:
    return json.dumps(obj, default=_json_default)


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def _version() -> str:
    return __version__


def _attr_value(v: Any) -> Any:
    """An attribute value HDF5 stores natively: str, int, float, bool; else JSON."""
    if isinstance(v, (str, bool, int, float, np.integer, np.floating, np.bool_)):
        return v
    return _dumps(v)


def _decode_attrs(attrs: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in attrs.items():
        if isinstance(v, bytes):
            v = v.decode()
        if isinstance(v, np.generic):
            v = v.item()
        out[k] = v
    json_names = set(str(out.get("json_attributes", "")).split(",")) - {""}
    for k in json_names:
        if k in out and isinstance(out[k], str):
            try:
                out[k] = json.loads(out[k])
            except json.JSONDecodeError:
                pass
    return out


def check_writable(path: str | os.PathLike, overwrite: bool = False) -> Path:
    """``path`` as a Path, after checking that writing it will not destroy a file by accident.

    Raises :class:`OutputExistsError` (a FileExistsError and a ValueError) if it exists and
    ``overwrite`` is false, and ValueError if it names a directory or its folder is missing.
    """
    p = Path(path)
    if p.is_dir():
        raise ValueError(f"output={str(p)!r} is a directory; give a file name such as "
                         f"{str(p / 'run.h5')!r}")
    if p.exists() and not overwrite:
        raise OutputExistsError(f"{p} already exists; pass overwrite=True (or --force on the "
                              f"command line) to replace it, or choose another file name")
    if not p.parent.exists():
        raise ValueError(f"output={str(p)!r}: the folder {str(p.parent)!r} does not exist")
    return p


def _h5():
    import h5py
    return h5py


def _short_h5(msg: str) -> str:
    """The useful part of an h5py/HDF5 error message, without the C call chain."""
    msg = msg.strip().splitlines()[0] if msg.strip() else msg
    if "(" in msg and msg.endswith(")"):
        inner = msg[msg.index("(") + 1:-1]
        return inner or msg
    return msg


# what h5py raises on a damaged file (a truncated one may open and fail only when read)
_H5_ERRORS = (OSError, RuntimeError, KeyError, TypeError, ValueError)


def _damaged(p: Path, exc: BaseException) -> SnapshotFileError:
    if isinstance(exc, SnapshotFileError):
        return exc
    return SnapshotFileError(f"{p} is damaged: reading it failed ({_short_h5(str(exc))}); it "
                             f"may be truncated or partly overwritten")


def _open_read(path: str | os.PathLike):
    """Open a snapshot file for reading, with clear errors; returns (h5py.File, clean)."""
    h5py = _h5()
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"{p}: no such snapshot file")
    if p.is_dir():
        raise SnapshotFileError(f"{p} is a directory, not a snapshot file")
    if p.stat().st_size == 0:
        raise SnapshotFileError(f"{p} is empty (0 bytes), not a snapshot file")
    if not h5py.is_hdf5(p):
        raise SnapshotFileError(f"{p} is not an HDF5 file (no HDF5 signature); pde_popdyn "
                                f"snapshot files are HDF5 files written by pp.solve(output=...)")
    try:
        return h5py.File(p, "r"), True
    except OSError as exc:
        first = str(exc)
    if "open for write" in first or "lock" in first:
        # a writer that was killed (or is still running) left the consistency flag set;
        # a SWMR reader can still read every committed snapshot
        try:
            return h5py.File(p, "r", swmr=True), False
        except OSError as exc:
            first = str(exc)
    raise SnapshotFileError(f"{p} is damaged and cannot be opened as HDF5 "
                            f"({_short_h5(first)}); it may be truncated or partly overwritten")


def _check_ours(h5file, p: Path) -> dict[str, Any]:
    attrs = _decode_attrs(h5file.attrs)
    if attrs.get("format") != FORMAT:
        names = ", ".join(sorted(h5file.keys())[:8]) or "none"
        raise SnapshotFileError(
            f"{p} is an HDF5 file but not a pde_popdyn snapshot file: its root attribute "
            f"'format' is {attrs.get('format')!r}, not {FORMAT!r} (top-level objects: {names}); "
            f"it was written by another program")
    if int(attrs.get("format_version", 0)) > FORMAT_VERSION:
        raise SnapshotFileError(f"{p} has format_version {attrs['format_version']}, newer than "
                                f"this pde_popdyn ({FORMAT_VERSION}); upgrade pde_popdyn")
    if attrs.get("kind") not in KINDS:
        raise SnapshotFileError(f"{p}: unknown kind {attrs.get('kind')!r} (expected one of "
                                f"{KINDS})")
    if "time" not in h5file:
        raise SnapshotFileError(f"{p} has no 'time' coordinate; the file is damaged")
    return attrs


def _committed(h5file) -> int:
    """Number of complete snapshots: the leading finite entries of ``time`` (see the module
    docstring: a snapshot's time is written last, and the time fill value is NaN)."""
    t = h5file["time"][:]
    bad = np.flatnonzero(~np.isfinite(t))
    return int(bad[0]) if bad.size else int(t.size)


def _time_variables(h5file) -> list[str]:
    """Names of the datasets whose first dimension is ``time`` (the coordinate excluded)."""
    out = []
    for name, ds in h5file.items():
        if name == "time" or not hasattr(ds, "dims") or ds.ndim == 0:
            continue
        d0 = ds.dims[0]
        if len(d0) and d0[0].name == "/time":
            out.append(name)
    return out


def _h_weights(grid: Grid) -> np.ndarray:
    w = getattr(grid, "h_weights", None)
    return np.asarray(w, float) if w is not None else np.full(grid.n_h, grid.dh)


def _grid_from(attrs: dict, p: Path) -> Grid | dict | None:
    g = attrs.get("grid")
    if g is None:
        return None
    try:
        return Grid.from_dict(g)
    except (TypeError, ValueError, KeyError):
        return g


# -- writing ---------------------------------------------------------------------------------
def _axes_of(grid: Any, kind: str) -> tuple:
    """The grid axes a density of this kind lives on (θ-axes then h-axes; h-axes only for a
    reduced run). Works with one axis of each kind (``theta_axis``/``h_axis``) or several."""
    if kind == "reduced":
        axes = getattr(grid, "h_axes", None)
        return tuple(axes) if axes else (grid.h_axis,)
    axes = getattr(grid, "axes", None)
    return tuple(axes) if axes else (grid.theta_axis, grid.h_axis)


def _coord_meta(name: str) -> tuple[str, str]:
    if name in _COORDS:
        return _COORDS[name]
    for stem, what in (("theta", "parameter θ"), ("h", "hyperparameter h")):
        if name.startswith(stem) and name[len(stem):].isdigit():
            return f"{what}, component {name[len(stem):]} (cell centre)", "1"
    return name.replace("_", " "), "1"


def density_moments(fw: np.ndarray, coords: list[np.ndarray], names: list[str]) -> dict:
    """Mass, means, variances and covariances of a density from ``fw`` = f · (cell weights)
    on axes with centres ``coords``: mean_x = ∫ x f / ∫ f, var_x, cov_x_y (centred sums, one
    pass per marginal). Names follow the axes: mean_theta, var_h, cov_theta_h, …"""
    nd = fw.ndim
    mass = float(fw.sum())
    out: dict[str, float] = {"mass": mass}
    mu = []
    for k in range(nd):
        mk = fw.sum(axis=tuple(i for i in range(nd) if i != k)) if nd > 1 else fw
        m = float(mk @ coords[k]) / mass
        mu.append(m)
        out[f"mean_{names[k]}"] = m
        out[f"var_{names[k]}"] = float(mk @ (coords[k] - m) ** 2) / mass
    for a in range(nd):
        for b in range(a + 1, nd):
            others = tuple(i for i in range(nd) if i not in (a, b))
            mab = fw.sum(axis=others) if others else fw
            out[f"cov_{names[a]}_{names[b]}"] = \
                float((coords[a] - mu[a]) @ mab @ (coords[b] - mu[b])) / mass
    return out


class _Handles:
    """Cached low-level handles of the time-dependent datasets: appending through h5py's
    high-level indexing costs about a millisecond per dataset, which would dominate the cost
    of a snapshot's dozen small writes."""

    def __init__(self, h5file):
        h5py = _h5()
        self._h5s = h5py.h5s
        self.ds = {name: h5file[name] for name in [*_time_variables(h5file), "time"]}
        self.gzip = {name: (ds.compression == "gzip", ds.compression_opts or 1, ds.dtype)
                     for name, ds in self.ds.items()}
        self._one = self._h5s.create_simple((1,))

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
        dsid.write(self._h5s.create_simple((1, *data.shape)), space, data[None])


class SnapshotWriter:
    """Writes snapshots of a run to an HDF5 file as they are produced (module docstring).

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
        Run settings to store as root attributes, e.g. scheme, splitting, dt, save_every.
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
    """

    max_pending = 2  # snapshots handed over but not yet committed (what a kill can lose)

    def __init__(self, path: str | os.PathLike, *, kind: str = "joint", grid: Grid | None = None,
                 model: Any = None, attrs: dict[str, Any] | None = None,
                 fitness: np.ndarray | None = None, overwrite: bool = False,
                 compression: str | None = "gzip", compression_opts: int | None = None,
                 seed: Any = None, rng: np.random.Generator | None = None,
                 histogram: bool = False, fsync: bool = False, background: bool = True):
        h5py = _h5()
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
        self.path = check_writable(path, overwrite)
        self.kind = kind
        self.grid = grid
        self.rng = rng
        self.histogram = bool(histogram)
        self.fsync = bool(fsync)
        self._compression = compression
        self._compression_opts = (compression_opts if compression_opts is not None else 1) \
            if compression == "gzip" else None
        self._fitness = self._fitness_field(kind, grid, model, fitness)
        self._init_state(background, skip_first=False)
        if self.path.exists():  # overwrite=True was checked above
            self.path.unlink()
        self._file = h5py.File(self.path, "w", libver=_LIBVER)
        try:
            self._write_header(model, attrs or {}, seed)
        except BaseException:
            self._file.close()
            raise

    def _init_state(self, background: bool, skip_first: bool) -> None:
        self._n = 0                      # committed snapshots (updated by the writing thread)
        self._skip_first = skip_first
        self._created = False
        self._layout: dict[str, tuple[int, ...]] | None = None  # per-snapshot shapes
        self._diag_names: list[str] | None = None
        self._pending: deque = deque()
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="pde_popdyn-io") \
            if background else None
        self._axes = _axes_of(self.grid, self.kind) if isinstance(self.grid, Grid) else ()
        if self._axes:
            self._names = [a.name for a in self._axes]
            self._coords = [np.asarray(a.centres, float) for a in self._axes]
            if self.kind == "reduced":
                self._weights = _h_weights(self.grid)
            else:
                self._weights = np.asarray(self.grid.weights, float)

    # .. construction .........................................................................
    @staticmethod
    def _fitness_field(kind: str, grid: Grid | None, model: Any,
                       fitness: np.ndarray | None) -> np.ndarray | None:
        if fitness is not None:
            arr = np.asarray(fitness, dtype=float)
            want = grid.shape if kind == "joint" else \
                tuple(np.shape(_h_weights(grid))) if kind == "reduced" else None
            if want is not None and arr.shape != want:
                raise ValueError(f"fitness has shape {arr.shape}; a {kind} run needs {want}")
            return arr
        if kind == "joint" and model is not None and getattr(model, "fitness", None) is not None:
            return model.fitness_on(grid)
        return None

    def _write_header(self, model: Any, attrs: dict[str, Any], seed: Any) -> None:
        f = self._file
        a = f.attrs
        a["format"] = FORMAT
        a["format_version"] = FORMAT_VERSION
        a["kind"] = self.kind
        a["title"] = f"pde_popdyn {self.kind} snapshots"
        a["Conventions"] = "CF-1.8"
        a["pde_popdyn_version"] = _version()
        a["created"] = _now()
        a["history"] = f"{_now()}: created by pde_popdyn {_version()}"
        a["status"] = "running"
        a["writer_host"] = socket.gethostname()
        a["writer_pid"] = os.getpid()
        structured = {
            "grid": self.grid.to_dict() if isinstance(self.grid, Grid) else self.grid,
            "model": model.describe() if hasattr(model, "describe") else None,
            "preset": getattr(model, "preset", None),
            "seed": seed,
            "rng_state_initial": self.rng.bit_generator.state if self.rng is not None else None,
        }
        json_names = list(structured)
        for k, v in attrs.items():
            if k in structured or k in ("format", "format_version", "kind", "status"):
                raise ValueError(f"attrs[{k!r}] is reserved by the snapshot format")
            if isinstance(v, (dict, list, tuple)) or v is None:
                json_names.append(k)
                a[k] = _dumps(v)
            else:
                a[k] = _attr_value(v)
        for k, v in structured.items():
            a[k] = _dumps(v)
        a["json_attributes"] = ",".join(json_names)
        t = f.create_dataset("time", shape=(0,), maxshape=(None,), chunks=(_TIME_CHUNK,),
                             dtype="f8", fillvalue=np.nan)
        self._coord(t, "time")
        axes = _axes_of(self.grid, "joint" if self.kind == "ensemble" else self.kind) \
            if isinstance(self.grid, Grid) else ()
        for axis in axes:
            self._coord(f.create_dataset(axis.name, data=np.asarray(axis.centres, float)),
                        axis.name)
        if self.kind == "reduced" and self._fitness is not None:
            # F̄ on the h-nodes that selection used, so that a loaded solution has its ⟨F̄⟩
            ds = f.create_dataset("effective_fitness", data=self._fitness)
            ds.attrs["long_name"] = "fitness on h used by selection (F̄ or F̄_α)"
            ds.attrs["units"] = "1"
            for i, axis in enumerate(axes):
                ds.dims[i].attach_scale(f[axis.name])
        f.flush()

    @staticmethod
    def _coord(ds, name: str) -> None:
        long_name, units = _coord_meta(name)
        ds.make_scale(name)
        ds.attrs["long_name"] = long_name
        ds.attrs["units"] = units
        if name == "time":
            ds.attrs["axis"] = "T"

    def _index_coord(self, name: str, n: int):
        if name in self._file:
            return self._file[name]
        ds = self._file.create_dataset(name, data=np.arange(n, dtype=np.int64))
        self._coord(ds, name)
        return ds

    def _variable(self, name: str, inner: tuple[int, ...], dims: list[str], dtype: Any,
                  long_name: str, compress: bool) -> None:
        f = self._file
        kw: dict[str, Any] = {}
        if compress and self._compression is not None:
            kw = {"compression": self._compression}
            if self._compression_opts is not None:
                kw["compression_opts"] = self._compression_opts
        chunks = (1, *inner) if inner else (_TIME_CHUNK,)
        fill = {"fillvalue": np.nan} if np.dtype(dtype).kind == "f" else {}
        ds = f.create_dataset(name, shape=(0, *inner), maxshape=(None, *inner), chunks=chunks,
                              dtype=dtype, **kw, **fill)
        ds.attrs["long_name"] = long_name
        ds.attrs["units"] = "1"
        ds.dims[0].attach_scale(f["time"])
        for axis, dim in enumerate(dims, start=1):
            ds.dims[axis].attach_scale(f[dim])

    def _create(self, fields_: dict[str, np.ndarray], diag_names: list[str],
                rng_width: int | None) -> None:
        """Create the time-dependent variables from the first snapshot, then enter SWMR mode
        (after which no new objects or attributes may be added)."""
        for name, arr in fields_.items():
            if name == "density":
                dims = [a.name for a in _axes_of(
                    self.grid, "joint" if self.kind == "ensemble" else self.kind)]
                self._variable(name, arr.shape, dims, "f8", _DENSITY[self.kind], True)
            else:  # particle_theta / particle_h: (agent[, component])
                axis = name.split("_", 1)[1]
                dims = [self._index_coord("agent", arr.shape[0]).name.lstrip("/")]
                if arr.ndim == 2:
                    comp = f"{axis}_component"
                    self._index_coord(comp, arr.shape[1])
                    dims.append(comp)
                self._variable(name, arr.shape, dims, arr.dtype,
                               f"agents' {'θ' if axis == 'theta' else 'h'}", True)
        for name in diag_names:
            self._variable(name, (), [], "f8", _DIAGNOSTICS.get(name, name.replace("_", " ")),
                           False)
        if rng_width is not None:
            self._variable("rng_state", (), [], f"S{rng_width}",
                           "JSON state of the random generator at this snapshot", False)
        self._file.attrs["diagnostics"] = ",".join(diag_names)
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
            want = tuple(np.shape(self._weights))
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
        theta, h = np.array(theta), np.array(h)
        if theta.shape[0] != h.shape[0] or theta.ndim > 2 or h.ndim > 2:
            raise ValueError(f"theta {theta.shape} and h {h.shape} must be (N,) or (N, d) "
                             f"arrays with the same N")
        out = {"particle_theta": theta, "particle_h": h}
        if density is not None:
            out["density"] = np.array(density, dtype=float)
        elif self.histogram:
            if theta.ndim != 1 or h.ndim != 1:
                raise ValueError("histograms on the grid need 1-D θ and h")
            g = self.grid
            counts, _, _ = np.histogram2d(theta, h, bins=[g.theta_edges, g.h_edges])
            out["density"] = counts / (theta.size * g.dtheta * g.dh)
        return out

    def _diagnostics(self, fields_: dict[str, np.ndarray]) -> dict[str, float]:
        if self.kind in ("joint", "reduced"):
            fw = fields_["density"] * self._weights
            d = density_moments(fw, self._coords, self._names)
            if self._fitness is not None:
                d["mean_fitness"] = float((fw * self._fitness).sum()) / d["mass"]
            return d
        th, h = fields_["particle_theta"], fields_["particle_h"]
        d = {}
        if th.ndim == 1:
            d["mean_theta"], d["var_theta"] = float(th.mean()), float(th.var())
        if h.ndim == 1:
            d["mean_h"], d["var_h"] = float(h.mean()), float(h.var())
        if th.ndim == 1 and h.ndim == 1:
            d["cov_theta_h"] = float(np.mean((th - th.mean()) * (h - h.mean())))
        if "density" in fields_ and self.grid is not None:
            d["mass"] = float(self.grid.mass(fields_["density"]))
        return d

    def write(self, t: float, state: Any = None, *, theta: Any = None, h: Any = None,
              density: Any = None, diagnostics: dict[str, float] | None = None) -> None:
        """Append the snapshot at time ``t``.

        ``state`` is the density (joint/reduced) or an ensemble (``.theta``, ``.h``, or a
        tuple); ``theta``/``h``/``density`` may be given instead. ``diagnostics`` adds scalar
        time series; the set of names is fixed by the first snapshot. Bad input raises here;
        an error of the background write is raised by the next call or by :meth:`close`.
        """
        if self._file is None:
            raise ValueError(f"the snapshot writer for {self.path} is closed")
        t = float(t)
        if not np.isfinite(t):
            raise ValueError(f"snapshot time must be finite, got {t}")
        fields_ = self._fields(state, theta, h, density)
        diag = self._diagnostics(fields_)
        diag.update({k: float(v) for k, v in (diagnostics or {}).items()})
        rng_state = _dumps(self.rng.bit_generator.state) if self.rng is not None else None
        layout = {k: v.shape for k, v in fields_.items()}
        rng_width = None
        if self._layout is None:  # the first snapshot fixes the layout
            self._layout, self._diag_names = layout, list(diag)
            if rng_state is not None:
                rng_width = max(256, 2 * len(rng_state))
        else:
            if layout != self._layout:
                raise ValueError(f"snapshot arrays {layout} differ from the file's "
                                 f"{self._layout}")
            unknown = set(diag) - set(self._diag_names)
            if unknown:
                raise ValueError(f"diagnostics {sorted(unknown)} were not in the first "
                                 f"snapshot ({self._diag_names}); the set of diagnostics is "
                                 f"fixed when the file starts")
        job = (t, fields_, diag, rng_state, rng_width)
        if self._pool is None:
            self._commit(*job)
            return
        while self._pending and self._pending[0].done():
            self._pending.popleft().result()  # surfaces an error of the writing thread
        self._pending.append(self._pool.submit(self._commit, *job))
        while len(self._pending) > self.max_pending:
            self._pending.popleft().result()

    def _commit(self, t: float, fields_: dict[str, np.ndarray], diag: dict[str, float],
                rng_state: str | None, rng_width: int | None) -> None:
        """Write one snapshot and commit it: data, flush, then its time, flush."""
        f = self._file
        if not self._created:
            self._create(fields_, self._diag_names or [], rng_width)
        if not hasattr(self, "_handles"):
            self._handles = _Handles(f)
        hd = self._handles
        k = self._n
        for name, arr in fields_.items():
            hd.append_block(name, k, arr)
        for name in self._diag_names or []:
            hd.append_scalar(name, k, diag.get(name, np.nan))
        if rng_state is not None and "rng_state" in f:
            hd.append_scalar("rng_state", k, np.bytes_(rng_state))
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
        for name in [*_time_variables(f), "time"]:
            if f[name].shape[0] != self._n:
                f[name].resize(self._n, axis=0)

    def close(self, status: str = "interrupted", **attrs: Any) -> None:
        """Wait for pending snapshots, then close the file recording ``status`` and ``attrs``
        (status "failed" if a write failed, whose error is then raised); idempotent."""
        if self._file is None:
            return
        h5py = _h5()
        error = self._drain()
        if error is not None:
            status = "failed"
        try:
            if self._created:
                self._truncate()
        finally:
            self._file.close()
            self._file = None
        with h5py.File(self.path, "r+", libver=_LIBVER) as f:
            f.attrs["status"] = status
            f.attrs["closed"] = _now()
            f.attrs["history"] = f"{f.attrs['history']}\n{_now()}: {status}, " \
                                 f"{self._n} snapshots written"
            json_names = [n for n in str(f.attrs["json_attributes"]).split(",") if n]
            for k, v in attrs.items():
                if isinstance(v, (dict, list, tuple)) or v is None:
                    json_names.append(k)
                    f.attrs[k] = _dumps(v)
                else:
                    f.attrs[k] = _attr_value(v)
            f.attrs["json_attributes"] = ",".join(dict.fromkeys(json_names))
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
               background: bool = True) -> "SnapshotWriter":
        """Reopen a clean snapshot file to append snapshots (used by resuming).

        With ``skip_first`` the first observed state, which is the file's last snapshot that
        the resumed run starts from, is not written again.
        """
        h5py = _h5()
        p = Path(path)
        with _reader(p) as (_, attrs, clean):
            if not clean:
                raise SnapshotFileError(f"{p} was not closed by its writer; call "
                                        f"pp.io.repair({str(p)!r}) first")
        self = cls.__new__(cls)
        self.path = p
        self.kind = attrs["kind"]
        self.grid = _grid_from(attrs, p)
        self.rng = rng
        self.fsync = fsync
        self._compression, self._compression_opts = None, None
        self._fitness = self._fitness_field(self.kind, self.grid, model, fitness) \
            if isinstance(self.grid, Grid) else None
        self._init_state(background, skip_first)
        try:
            self._file = h5py.File(p, "r+", libver=_LIBVER)
        except OSError as exc:
            raise SnapshotFileError(f"{p} cannot be opened for appending "
                                    f"({_short_h5(str(exc))})") from None
        f = self._file
        self._n = _committed(f)
        self._created = "diagnostics" in f.attrs
        self.histogram = self.kind == "ensemble" and "density" in f
        if self._created:
            self._truncate()
            self._layout = {name: f[name].shape[1:] for name in _time_variables(f)
                            if name in ("density", "particle_theta", "particle_h")}
            self._diag_names = [n for n in str(f.attrs["diagnostics"]).split(",") if n]
        f.attrs["status"] = "running"
        f.attrs["writer_host"] = socket.gethostname()
        f.attrs["writer_pid"] = os.getpid()
        f.attrs["history"] = f"{f.attrs['history']}\n{_now()}: resumed by pde_popdyn " \
                             f"{_version()} after {self._n} snapshots"
        f.flush()
        if self._created:
            f.swmr_mode = True
        return self


class _reader:
    """Context manager: open and check a snapshot file; yields (h5file, attrs, clean)."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.file = None

    def __enter__(self):
        self.file, clean = _open_read(self.path)
        try:
            attrs = _check_ours(self.file, self.path)
        except SnapshotFileError:
            self.file.close()
            raise
        except _H5_ERRORS as exc:
            self.file.close()
            raise _damaged(self.path, exc) from None
        except BaseException:
            self.file.close()
            raise
        return self.file, attrs, clean

    def __exit__(self, exc_type, exc, tb) -> None:
        self.file.close()


def write_solution(sol: Any, path: str | os.PathLike, *, overwrite: bool = False,
                   compression: str | None = "gzip") -> Path:
    """Write a finished Solution (joint or reduced) to a snapshot file; returns the path."""
    kind = getattr(sol, "kind", None) or ("joint" if np.ndim(sol.f) == 3 else "reduced")
    info = dict(getattr(sol, "info", {}) or {})
    settings = {k: info[k] for k in ("scheme", "splitting", "dt", "save_every", "n_steps")
                if k in info}
    fitness = info.get("fitness") if kind == "reduced" else None
    extra = {k: v for k, v in info.items() if k not in settings and k != "fitness"}
    settings["info"] = json.loads(_dumps(extra))
    writer = SnapshotWriter(path, kind=kind, grid=sol.grid, model=sol.model, attrs=settings,
                            overwrite=overwrite, compression=compression, fitness=fitness)
    try:
        for t, f in zip(sol.t, sol.f):
            writer(t, f)
    except BaseException:
        writer.close(status="interrupted")
        raise
    writer.finish()
    return writer.path


# -- reading ---------------------------------------------------------------------------------
@dataclass
class EnsembleRecord:
    """A particle ensemble read from a snapshot file (when ``particles.Ensemble`` offers no
    ``from_snapshots``): positions over time and the stored diagnostics."""

    t: np.ndarray
    theta: np.ndarray
    h: np.ndarray
    grid: Any = None
    model: Any = None
    density: np.ndarray | None = None
    diagnostics: dict[str, np.ndarray] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)


def _read(path: str | os.PathLike) -> tuple[dict[str, Any], dict[str, np.ndarray], bool]:
    """All committed snapshots: (attrs, arrays by name, clean)."""
    p = Path(path)
    with _reader(p) as (f, attrs, clean):
        try:
            n = _committed(f)
            data = {"time": f["time"][:n]}
            for name in _time_variables(f):
                data[name] = f[name][:n]
            if "effective_fitness" in f:
                data["effective_fitness"] = f["effective_fitness"][:]
        except _H5_ERRORS as exc:
            raise _damaged(p, exc) from None
    if "rng_state" in data:
        data["rng_state"] = np.array([s.decode() if isinstance(s, bytes) else s
                                      for s in data["rng_state"]], dtype=object)
    return attrs, data, clean


def _rebuild_model(attrs: dict[str, Any]) -> Any:
    preset = attrs.get("preset")
    if not isinstance(preset, dict) or "name" not in preset:
        return None
    from .presets import build
    try:
        return build(preset["name"], preset.get("params")).model()
    except (ValueError, TypeError):
        return None


def _info(attrs: dict[str, Any], p: Path, clean: bool) -> dict[str, Any]:
    info = dict(attrs.get("info") or {}) if isinstance(attrs.get("info"), dict) else {}
    for k in ("scheme", "splitting", "dt", "save_every", "n_steps", "status", "kind", "seed",
              "preset", "pde_popdyn_version", "created", "run_seconds"):
        if k in attrs:
            info[k] = attrs[k]
    info["source"] = str(p)
    info["closed_cleanly"] = clean
    return info


def _solution(kind: str, t, f, grid, model, info):
    from .solution import Solution
    kw = dict(t=t, f=f, grid=grid, model=model, info=info)
    if "kind" in {fl.name for fl in fields(Solution)}:
        kw["kind"] = kind
    return Solution(**kw)


def load(path: str | os.PathLike, *, model: Any = None) -> Any:
    """Read a snapshot file: a Solution (joint or reduced run) or an ensemble.

    ``.t`` and ``.f`` reproduce the saved arrays exactly. Model callables are not stored, so
    ``.model`` is ``model`` if given, else the rebuilt preset model when the run came from a
    preset, else None (then the diagnostics needing F are unavailable; the stored ones are in
    the file). A file whose writer was killed is read up to its last complete snapshot.

    Raises FileNotFoundError for a missing file and ValueError (SnapshotFileError) naming the
    file and the problem for anything that is not a readable pde_popdyn snapshot file.
    """
    p = Path(path)
    attrs, data, clean = _read(p)
    kind = attrs["kind"]
    if model is None:
        model = _rebuild_model(attrs)
    info = _info(attrs, p, clean)
    grid = _grid_from(attrs, p)
    if kind in ("joint", "reduced"):
        if "density" not in data:
            raise SnapshotFileError(f"{p} holds no density (a {kind} file must)")
        if "effective_fitness" in data:
            info["fitness"] = data["effective_fitness"]
        return _solution(kind, data["time"], data["density"], grid, model, info)
    diag = {k: v for k, v in data.items()
            if k not in ("time", "particle_theta", "particle_h", "density", "rng_state",
                         "effective_fitness")}
    if "rng_state" in data and len(data["rng_state"]):
        info["rng_state"] = json.loads(data["rng_state"][-1])
    payload = dict(t=data["time"], theta=data.get("particle_theta"), h=data.get("particle_h"),
                   grid=grid, model=model, density=data.get("density"), diagnostics=diag,
                   info=info)
    try:
        from .particles import Ensemble  # type: ignore[attr-defined]
    except ImportError:
        Ensemble = None
    maker = getattr(Ensemble, "from_snapshots", None)
    return maker(**payload) if maker is not None else EnsembleRecord(**payload)


def inspect(path: str | os.PathLike) -> dict[str, Any]:
    """A summary of a snapshot file (for ``pde-popdyn info``): attributes, variables with
    their dimensions, shapes and compression, the number of snapshots and the time span."""
    p = Path(path)
    with _reader(p) as (f, attrs, clean):
        try:
            n = _committed(f)
            t = f["time"][:n]
            variables = {}
            for name, ds in f.items():
                dims = tuple(ds.dims[i][0].name.lstrip("/") if len(ds.dims[i]) else "?"
                             for i in range(ds.ndim))
                shape = (n, *ds.shape[1:]) if name in _time_variables(f) else ds.shape
                variables[name] = {"dims": dims, "shape": shape, "dtype": str(ds.dtype),
                                   "compression": ds.compression, "chunks": ds.chunks}
            last = {name: float(f[name][n - 1]) for name in
                    str(attrs.get("diagnostics", "")).split(",") if name and n}
            first = {name: float(f[name][0]) for name in last}
        except _H5_ERRORS as exc:
            raise _damaged(p, exc) from None
    return {"path": str(p), "size_bytes": p.stat().st_size, "closed_cleanly": clean,
            "attrs": attrs, "n_snapshots": n, "t_first": float(t[0]) if n else None,
            "t_last": float(t[-1]) if n else None, "variables": variables,
            "first": first, "last": last}


def _writer_alive(attrs: dict[str, Any]) -> bool:
    pid, host = attrs.get("writer_pid"), attrs.get("writer_host")
    if host != socket.gethostname() or not isinstance(pid, int) or pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def repair(path: str | os.PathLike, *, force: bool = False) -> int:
    """Make a file whose writer was killed a clean HDF5 file again; returns its snapshot count.

    A killed SWMR writer leaves HDF5's "open for writing" flag set, so programs other than
    :func:`load` refuse the file. This rewrites it with its complete snapshots (the same
    variables, attributes and compression) and atomically replaces it; a clean file is left
    alone. Refuses while the recorded writer process is still alive unless ``force``.
    """
    h5py = _h5()
    p = Path(path)
    with _reader(p) as (_, attrs, clean):
        pass
    if clean:
        return int(inspect(p)["n_snapshots"])
    if _writer_alive(attrs) and not force:
        raise SnapshotFileError(f"{p} is still being written by process {attrs['writer_pid']} "
                                f"on this machine; wait for it, or pass force=True")
    tmp = p.with_name(p.name + ".repair-tmp")
    try:
        src, _ = _open_read(p)
        with src, h5py.File(tmp, "w", libver=_LIBVER) as dst:
            n = _committed(src)
            tvars = set(_time_variables(src))
            scales, attach = [], []
            for name, ds in src.items():
                data = ds[:n] if (name in tvars or name == "time") else ds[:]
                kw: dict[str, Any] = {}
                if ds.chunks is not None:
                    kw["chunks"] = ds.chunks
                    kw["maxshape"] = ds.maxshape
                if ds.compression:
                    kw["compression"] = ds.compression
                    kw["compression_opts"] = ds.compression_opts
                if ds.fillvalue is not None and ds.dtype.kind == "f":
                    kw["fillvalue"] = ds.fillvalue
                new = dst.create_dataset(name, data=data, **kw)
                for k, v in ds.attrs.items():
                    if k not in ("CLASS", "NAME", "REFERENCE_LIST", "DIMENSION_LIST"):
                        new.attrs[k] = v
                if ds.attrs.get("CLASS") == b"DIMENSION_SCALE":
                    scales.append(name)
                attach.append((name, [ds.dims[i][0].name.lstrip("/") if len(ds.dims[i])
                                      else None for i in range(ds.ndim)]))
            for name in scales:
                dst[name].make_scale(name)
            for name, dims in attach:
                if name in scales:
                    continue
                for i, d in enumerate(dims):
                    if d is not None:
                        dst[name].dims[i].attach_scale(dst[d])
            for k, v in src.attrs.items():
                dst.attrs[k] = v
            dst.attrs["status"] = "killed"
            dst.attrs["history"] = f"{src.attrs.get('history', '')}\n{_now()}: repaired " \
                                   f"after the writer was killed; {n} complete snapshots"
        os.replace(tmp, p)
    finally:
        if tmp.exists():
            tmp.unlink()
    return n


# -- what a resumed run reads ---------------------------------------------------------------
def read_for_resume(path: str | os.PathLike, kind: str) -> tuple[dict[str, Any], dict]:
    """The root attributes and every stored array of a ``kind`` file, repairing it first if its
    writer was killed; refuses a file of another kind or without snapshots."""
    p = Path(path)
    with _reader(p) as (_, attrs, clean):
        pass
    if attrs["kind"] != kind:
        raise SnapshotFileError(f"{p} holds a {attrs['kind']} run; it cannot be resumed as a "
                                f"{kind} run")
    if not clean:
        repair(p)
    attrs, data, _ = _read(p)
    if len(data["time"]) == 0:
        raise SnapshotFileError(f"{p} holds no snapshot to resume from")
    return attrs, data


def file_attrs(path: str | os.PathLike) -> dict[str, Any]:
    """The root attributes of a snapshot file (decoded), checking that it is one."""
    with _reader(Path(path)) as (_, attrs, _clean):
        return attrs


def grid_from_attrs(attrs: dict[str, Any], path: str | os.PathLike) -> Any:
    """The Grid stored in a file's attributes (None if it has none)."""
    return _grid_from(attrs, Path(path))


def model_mismatch(model: Any, stored: Any) -> list[str]:
    """The keys in which ``model.describe()`` differs from a stored description."""
    if not isinstance(stored, dict) or not hasattr(model, "describe"):
        return []
    now = json.loads(_dumps(model.describe()))
    return sorted(k for k in set(now) | set(stored) if now.get(k) != stored.get(k))
