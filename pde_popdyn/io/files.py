"""Opening snapshot files safely: clear errors for missing, foreign, damaged or unfinished
files, and the few facts every reader needs (how many snapshots are committed, which
variables run along time)."""

from __future__ import annotations

import datetime as _dt
import os
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from .schema import (FORMAT, FORMAT_VERSION, KINDS, NOT_A_VARIABLE, SnapshotFileError,
                     decode_attributes)

# SWMR needs the v110 file format; capping it there keeps files readable by HDF5 ≥ 1.10
LIBVER = ("v110", "v110")
# what h5py raises on a damaged file (a truncated one may open and fail only when read)
H5_ERRORS = (OSError, RuntimeError, KeyError, TypeError, ValueError)
# HDF5's own attributes of dimension scales, which a copy must not carry over
SCALE_ATTRIBUTES = ("CLASS", "NAME", "REFERENCE_LIST", "DIMENSION_LIST", "_Netcdf4Dimid")


class OutputExistsError(FileExistsError, ValueError):
    """The output file exists and ``overwrite`` was not given (both a FileExistsError and,
    like every argument error of the package, a ValueError)."""


def now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def check_writable(path: str | os.PathLike, overwrite: bool = False) -> Path:
    """``path`` as a Path, after checking that writing it will not destroy a file by accident.

    Raises :class:`OutputExistsError` (a FileExistsError and a ValueError) if it exists and
    ``overwrite`` is false, and ValueError if it names a directory or its folder is missing.
    """
    from .._validate import flag
    overwrite = flag("overwrite", overwrite)
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


def short_h5(msg: str) -> str:
    """The useful part of an h5py/HDF5 error message, without the C call chain."""
    msg = msg.strip().splitlines()[0] if msg.strip() else msg
    if "(" in msg and msg.endswith(")"):
        inner = msg[msg.index("(") + 1:-1]
        return inner or msg
    return msg


def damaged(p: Path, exc: BaseException) -> SnapshotFileError:
    if isinstance(exc, SnapshotFileError):
        return exc
    return SnapshotFileError(f"{p} is damaged: reading it failed ({short_h5(str(exc))}); it "
                             f"may be truncated or partly overwritten")


def open_read(path: str | os.PathLike) -> tuple[h5py.File, bool]:
    """Open a snapshot file for reading, with clear errors; returns (h5py.File, clean).

    A file whose writer was killed (or is still running) still carries HDF5's "open for
    writing" flag; it is opened as a single-writer/multiple-reader (SWMR) reader, which sees
    every committed snapshot, and ``clean`` is False.
    """
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
        try:
            return h5py.File(p, "r", swmr=True), False
        except OSError as exc:
            first = str(exc)
    raise SnapshotFileError(f"{p} is damaged and cannot be opened as HDF5 "
                            f"({short_h5(first)}); it may be truncated or partly overwritten")


def check_ours(h5file: h5py.File, p: Path) -> dict[str, Any]:
    """The decoded root attributes, after checking that this is a snapshot file we can read."""
    attrs = decode_attributes(h5file.attrs)
    if attrs.get("format") != FORMAT:
        names = ", ".join(sorted(h5file.keys())[:8]) or "none"
        raise SnapshotFileError(
            f"{p} is an HDF5 file but not a pde_popdyn snapshot file: its root attribute "
            f"'format' is {attrs.get('format')!r}, not {FORMAT!r} (top-level objects: {names}); "
            f"it was written by another program")
    if int(attrs.get("format_version", 0)) > FORMAT_VERSION:
        raise SnapshotFileError(f"{p} has format_version {attrs['format_version']}, newer than "
                                f"this pde_popdyn reads ({FORMAT_VERSION}); upgrade pde_popdyn")
    if attrs.get("kind") not in KINDS:
        raise SnapshotFileError(f"{p}: unknown kind {attrs.get('kind')!r} (expected one of "
                                f"{KINDS})")
    if "time" not in h5file:
        raise SnapshotFileError(f"{p} has no 'time' coordinate; the file is damaged")
    return attrs


def committed(h5file: h5py.File) -> int:
    """Number of complete snapshots: the leading finite entries of ``time`` (a snapshot's time
    is written last, and the time fill value is NaN)."""
    t = h5file["time"][:]
    bad = np.flatnonzero(~np.isfinite(t))
    return int(bad[0]) if bad.size else int(t.size)


def dimension_only(ds: h5py.Dataset) -> bool:
    """Whether a dataset is a netCDF dimension without a coordinate variable."""
    name = ds.attrs.get("NAME", b"")
    return isinstance(name, bytes) and name.startswith(NOT_A_VARIABLE)


def dims_of(ds: h5py.Dataset) -> tuple[str, ...]:
    """The dimension names of a dataset (a coordinate variable is its own dimension)."""
    if ds.is_scale:
        return (ds.name.lstrip("/"),)
    return tuple(ds.dims[i][0].name.lstrip("/") if len(ds.dims[i]) else f"phony_dim_{i}"
                 for i in range(ds.ndim))


def time_variables(h5file: h5py.File) -> list[str]:
    """Names of the datasets whose first dimension is ``time`` (the coordinate excluded)."""
    out = []
    for name, ds in h5file.items():
        if name == "time" or not isinstance(ds, h5py.Dataset) or ds.ndim == 0 or ds.is_scale:
            continue
        d0 = ds.dims[0]
        if len(d0) and d0[0].name == "/time":
            out.append(name)
    return out


class reader:
    """Context manager: open and check a snapshot file; yields (h5file, attrs, clean)."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.file: h5py.File | None = None

    def __enter__(self) -> tuple[h5py.File, dict[str, Any], bool]:
        self.file, clean = open_read(self.path)
        try:
            attrs = check_ours(self.file, self.path)
        except SnapshotFileError:
            self.file.close()
            raise
        except H5_ERRORS as exc:
            self.file.close()
            raise damaged(self.path, exc) from None
        except BaseException:
            self.file.close()
            raise
        return self.file, attrs, clean

    def __exit__(self, exc_type, exc, tb) -> None:
        self.file.close()
