"""Snapshot files and records as ``xarray.Dataset`` objects (xarray is optional:
``pip install "pde_popdyn[interop]"``).

:func:`to_dataset` builds, in memory, the variables of :mod:`.schema` with the attributes the
writer gives them and decodes them as xarray decodes a file, so that
``to_dataset(solution_record(sol))`` (what ``sol.to_xarray()`` returns) is the Dataset that
``xarray.open_dataset(path, engine="h5netcdf")`` gives for the file of the same run, up to the
attributes of :data:`~.schema.RUNTIME_ATTRIBUTES`. :func:`open_dataset` opens a file lazily
(dask arrays, one snapshot per chunk).
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import Any

import numpy as np

from .files import committed, reader
from .reader import SnapshotRecord
from .schema import (FORMAT_VERSION, JSON_ATTRIBUTES, dumps, encode_attributes,
                     layout_variables, rng_width, static_variables)

INSTALL = 'pip install "pde_popdyn[interop]"'


def _xarray():
    # an optional dependency, imported on first use: importing pde_popdyn stays fast and
    # works without it
    try:
        import xarray
    except ImportError as exc:
        raise ImportError(f"converting results to xarray needs the optional packages xarray "
                          f"and h5netcdf; install them with: {INSTALL}") from exc
    return xarray


def _chars(states: list[dict]) -> np.ndarray:
    """Generator states as the file's rows of characters (time, rng_chars)."""
    texts = [dumps(s).encode() for s in states]
    width = rng_width(texts[0].decode())
    rows = np.array([s.ljust(width, b"\0") for s in texts], dtype=f"S{width}")
    return rows.view("S1").reshape(len(texts), width)


def to_dataset(record: SnapshotRecord) -> Any:
    """The ``xarray.Dataset`` of a record: the variables and attributes of its snapshot file,
    decoded by ``xarray.decode_cf`` as ``xarray.open_dataset`` decodes the file."""
    xr = _xarray()
    scheme = record.attrs.get("scheme")
    shapes = {k: v.shape[1:] for k, v in record.fields.items()}
    specs = static_variables(record.kind, record.grid, scheme=scheme,
                             fitness=record.fitness if record.kind == "reduced" else None)
    if len(record.t):
        specs += layout_variables(
            record.kind, record.grid, shapes, scheme=scheme,
            diagnostics=list(record.diagnostics),
            agent_fields={k: np.asarray(v).dtype for k, v in record.agent_fields.items()},
            rng_width=rng_width(dumps(record.rng_states[0])) if record.rng_states else None)
    series = {"time": record.t, **record.fields, **record.agent_fields, **record.diagnostics}
    if record.rng_states:
        series["rng_state"] = _chars(record.rng_states)
    variables = {}
    for spec in specs:
        if spec.dimension_only:
            continue
        data = spec.data if spec.data is not None else series[spec.name]
        variables[spec.name] = xr.Variable(spec.dims, np.asarray(data, dtype=spec.dtype),
                                           attrs=dict(spec.attrs))
    values = dict(record.attrs)
    values["format_version"] = FORMAT_VERSION
    values.pop("json_attributes", None)
    if len(record.t):
        values["diagnostics"] = ",".join(record.diagnostics)
        if record.agent_fields:
            values["agent_fields"] = ",".join(record.agent_fields)
    attrs, json_names = encode_attributes(values, JSON_ATTRIBUTES)
    attrs["json_attributes"] = ",".join(sorted(json_names))
    return xr.decode_cf(xr.Dataset(variables, attrs=attrs))


def open_dataset(path: str | os.PathLike, *, chunks: Any = None) -> Any:
    """Open a snapshot file as a lazy, dask-backed ``xarray.Dataset``. ``chunks`` is as for
    ``xarray.open_dataset``; the default is the file's own chunks: one snapshot per chunk for
    the states (``density``, the agents' positions and fields), 512 times for the 1-D
    diagnostics. Only committed snapshots are shown, so a file whose writer was killed or
    still runs opens too."""
    xr = _xarray()
    if importlib.util.find_spec("dask") is None:
        raise ImportError(f"lazy reading needs the optional package dask; install it with: "
                          f"{INSTALL}")
    p = Path(path)
    with reader(p) as (f, _, clean):  # the clear errors of the package for bad files
        n = committed(f)
    kw: dict[str, Any] = {} if clean else {"driver_kwds": {"swmr": True}}
    ds = xr.open_dataset(p, engine="h5netcdf", chunks={} if chunks is None else chunks,
                         **kw)
    return ds.isel(time=slice(0, n)) if ds.sizes["time"] != n else ds
