"""A summary of a snapshot file, for ``pde-popdyn info`` and quick looks."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from .files import H5_ERRORS, committed, damaged, dimension_only, dims_of, reader, time_variables
from .schema import names_list


def inspect(path: str | os.PathLike) -> dict[str, Any]:
    """A summary of a snapshot file: attributes, dimensions with their sizes, variables with
    their dimensions, shapes, dtypes and compression, the number of committed snapshots, the
    time span, and the first and last value of each diagnostic."""
    p = Path(path)
    with reader(p) as (f, attrs, clean):
        try:
            n = committed(f)
            t = f["time"][:n]
            along = set(time_variables(f))
            variables, dimensions = {}, {"time": n}
            for name, ds in f.items():
                if ds.is_scale and name != "time":
                    dimensions[name] = len(ds)
                if dimension_only(ds):
                    continue
                shape = (n, *ds.shape[1:]) if name in along or name == "time" else ds.shape
                variables[name] = {"dims": dims_of(ds), "shape": tuple(shape),
                                   "dtype": str(ds.dtype), "compression": ds.compression,
                                   "chunks": ds.chunks}
            last = {name: float(f[name][n - 1]) for name in names_list(attrs.get("diagnostics"))
                    if n}
            first = {name: float(f[name][0]) for name in last}
        except H5_ERRORS as exc:
            raise damaged(p, exc) from None
    return {"path": str(p), "size_bytes": p.stat().st_size, "closed_cleanly": clean,
            "attrs": attrs, "n_snapshots": n, "t_first": float(t[0]) if n else None,
            "t_last": float(t[-1]) if n else None, "dimensions": dimensions,
            "variables": variables, "first": first, "last": last}
