"""Reading a snapshot file into a plain record (no solver, model or result class involved).

:func:`read` returns a :class:`SnapshotRecord`; :func:`pde_popdyn.load` turns it into a
:class:`~pde_popdyn.Solution` or :class:`~pde_popdyn.Ensemble`.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..grid import Grid
from .files import H5_ERRORS, committed, damaged, reader, time_variables
from .schema import STATE_VARIABLES, names_list


@dataclass
class SnapshotRecord:
    """The content of a snapshot file (or of a result in memory, see :func:`to_dataset`).

    Attributes
    ----------
    kind:
        'joint', 'reduced' or 'ensemble'.
    attrs:
        The root attributes, JSON ones decoded (run settings, model description, status, …).
    grid:
        The :class:`~pde_popdyn.Grid` (a plain dict if it could not be rebuilt; None for an
        ensemble without grid).
    t:
        The committed snapshot times, shape (n,).
    fields:
        The state along time: ``"density"`` (n, *shape) for joint/reduced runs and ensemble
        histograms; ``"particle_theta"`` (n, N[, d]) and ``"particle_h"`` (n, N[, m]).
    diagnostics:
        Scalar time series by name, shape (n,) each (``mass``, ``mean_h``, …).
    agent_fields:
        Per-agent time series by name, shape (n, N) each (ensembles).
    rng_states:
        The generator's state after each snapshot (JSON-decoded dicts), or None.
    fitness:
        F̄ on the h-nodes that a reduced run's selection used, or None.
    status:
        'running', 'complete', 'interrupted', 'failed' or 'killed'.
    closed_cleanly:
        False for a file whose writer was killed or is still writing.
    format_version:
        The file's format version (1 or 2).
    path:
        The file read (None for a record built in memory).
    """

    kind: str
    attrs: dict[str, Any]
    grid: Any
    t: np.ndarray
    fields: dict[str, np.ndarray] = field(default_factory=dict)
    diagnostics: dict[str, np.ndarray] = field(default_factory=dict)
    agent_fields: dict[str, np.ndarray] = field(default_factory=dict)
    rng_states: list[dict] | None = None
    fitness: np.ndarray | None = None
    status: str = "complete"
    closed_cleanly: bool = True
    format_version: int = 2
    path: Path | None = None


@dataclass
class EnsembleRecord:
    """A particle ensemble as plain arrays: positions over time and the stored diagnostics."""

    t: np.ndarray
    theta: np.ndarray
    h: np.ndarray
    grid: Any = None
    model: Any = None
    density: np.ndarray | None = None
    diagnostics: dict[str, np.ndarray] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)
    agent_fields: dict[str, np.ndarray] = field(default_factory=dict)


def grid_from(attrs: dict[str, Any]) -> Grid | dict | None:
    """The stored grid as a Grid (as a dict if this version cannot rebuild it)."""
    g = attrs.get("grid")
    if g is None:
        return None
    try:
        return Grid.from_dict(g)
    except (TypeError, ValueError, KeyError):
        return g


def _text(values: np.ndarray) -> list[str]:
    """Strings stored as rows of characters (format 2) or fixed-length strings (format 1)."""
    if values.ndim == 2:
        values = values.view(f"S{values.shape[1]}")[:, 0]
    return [v.decode() if isinstance(v, bytes) else str(v) for v in values]


def read(path: str | os.PathLike) -> SnapshotRecord:
    """Every committed snapshot of a file, as a :class:`SnapshotRecord`.

    A file whose writer was killed (or is still running) is read up to its last complete
    snapshot. Raises FileNotFoundError for a missing file and ValueError
    (:class:`SnapshotFileError`) naming the file and the problem for anything that is not a
    readable pde_popdyn snapshot file.
    """
    p = Path(path)
    with reader(p) as (f, attrs, clean):
        try:
            n = committed(f)
            t = f["time"][:n]
            data = {name: f[name][:n] for name in time_variables(f)}
            fitness = f["effective_fitness"][:] if "effective_fitness" in f else None
        except H5_ERRORS as exc:
            raise damaged(p, exc) from None
    agents = set(names_list(attrs.get("agent_fields")))
    record = SnapshotRecord(kind=attrs["kind"], attrs=attrs, grid=grid_from(attrs), t=t,
                            fitness=fitness, status=str(attrs.get("status", "unknown")),
                            closed_cleanly=clean,
                            format_version=int(attrs.get("format_version", 1)), path=p)
    for name, values in data.items():
        if name in STATE_VARIABLES:
            record.fields[name] = values
        elif name in agents:
            record.agent_fields[name] = values
        elif name == "rng_state":
            record.rng_states = [json.loads(s) for s in _text(values)]
        else:
            record.diagnostics[name] = values
    order = [k for k in names_list(attrs.get("diagnostics")) if k in record.diagnostics]
    record.diagnostics = {k: record.diagnostics[k]
                          for k in order + [k for k in record.diagnostics if k not in order]}
    return record


def read_attributes(path: str | os.PathLike) -> dict[str, Any]:
    """The root attributes of a snapshot file (decoded), checking that it is one; no data is
    read."""
    with reader(Path(path)) as (_, attrs, _clean):
        return attrs
