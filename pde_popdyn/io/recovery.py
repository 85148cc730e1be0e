"""Making a file whose writer was killed an ordinary HDF5 file again."""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Any

import h5py

from .files import (LIBVER, SCALE_ATTRIBUTES, committed, dims_of, now, open_read, reader,
                    time_variables)
from .schema import SnapshotFileError


def _writer_alive(attrs: dict[str, Any]) -> bool:
    """Whether the process recorded as the writer (``record_process=True``) still runs."""
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
    :func:`pde_popdyn.load` refuse the file. This rewrites it with its complete snapshots (the
    same variables, attributes and compression) and atomically replaces it; a clean file is
    left alone. When the file records its writer's process (``record_process=True``), it
    refuses while that process is still alive unless ``force``; otherwise repair a file only
    once its writer is gone.
    """
    p = Path(path)
    with reader(p) as (f, attrs, clean):
        n = committed(f)
    if clean:
        return n
    if _writer_alive(attrs) and not force:
        raise SnapshotFileError(f"{p} is still being written by process {attrs['writer_pid']} "
                                f"on this machine; wait for it, or pass force=True")
    tmp = p.with_name(p.name + ".repair-tmp")
    try:
        src, _ = open_read(p)
        with src, h5py.File(tmp, "w", libver=LIBVER) as dst:
            n = committed(src)
            tvars = set(time_variables(src))
            scales, attach = {}, []
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
                    if k not in SCALE_ATTRIBUTES:
                        new.attrs[k] = v
                if ds.is_scale:
                    label = ds.attrs.get("NAME", name.encode())
                    scales[name] = label.decode() if isinstance(label, bytes) else str(label)
                else:
                    attach.append((name, dims_of(ds)))
            for name, label in scales.items():
                dst[name].make_scale(label)
            for name, dims in attach:
                for i, d in enumerate(dims):
                    if d in scales:
                        dst[name].dims[i].attach_scale(dst[d])
            for k, v in src.attrs.items():
                dst.attrs[k] = v
            dst.attrs["status"] = "killed"
            dst.attrs["history"] = f"{src.attrs.get('history', '')}\n{now()}: repaired " \
                                   f"after the writer was killed; {n} complete snapshots"
        os.replace(tmp, p)
    finally:
        if tmp.exists():
            tmp.unlink()
    return n
