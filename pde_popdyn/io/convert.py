"""Results in memory as records, and records as files.

:func:`solution_record` and :func:`ensemble_record` describe a finished result exactly as the
file of its run describes it: the same variables, the diagnostics computed by the writer's own
code, the same root attributes (those of :data:`~.schema.RUNTIME_ATTRIBUTES` carry the time of
the conversion). They work on any object with the attributes of a
:class:`~pde_popdyn.Solution` (``t``, ``f``, ``grid``, ``model``, ``info``, ``kind``) or of an
:class:`~pde_popdyn.Ensemble` (``t``, ``theta``, ``h``, ``grid``, ``model``, ``info``).
A result loaded from a file keeps that file's attributes (``info["file_attrs"]``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from .files import now
from .reader import SnapshotRecord
from .schema import (RESERVED_ATTRIBUTES, Diagnostics, closing_attributes, dumps,
                     fitness_field, header_attributes, run_attributes)
from .writer import SnapshotWriter


def _columns(rows: list[dict[str, float]], order: list[str]) -> dict[str, np.ndarray]:
    return {name: np.array([r.get(name, np.nan) for r in rows], dtype=float) for name in order}


def _attributes(kind: str, result: Any, t: np.ndarray, *, seed: Any = None,
                rng_state: Any = None) -> dict[str, Any]:
    """The root attributes of the file the run of ``result`` writes (or wrote)."""
    info = dict(getattr(result, "info", None) or {})
    stored = info.get("file_attrs")
    if isinstance(stored, dict):
        return dict(stored)
    created = now()
    a = header_attributes(kind, result.grid, result.model, seed=seed, rng_state=rng_state,
                          settings=run_attributes(kind, info), created=created)
    a.update(closing_attributes(t, info))
    a["status"] = "complete"
    a["closed"] = created
    a["history"] += f"\n{created}: complete, {len(t)} snapshots written"
    return a


def solution_record(sol: Any) -> SnapshotRecord:
    """A joint or reduced Solution as the record of the file its run writes."""
    kind = getattr(sol, "kind", "joint")
    t = np.asarray(sol.t, dtype=float)
    f = np.asarray(sol.f, dtype=float)
    info = dict(sol.info or {})
    fitness = fitness_field(kind, sol.grid, sol.model,
                            info.get("fitness") if kind == "reduced" else None)
    diag = Diagnostics(kind, sol.grid, fitness)
    rows = [diag({"density": fk}) for fk in f]
    attrs = _attributes(kind, sol, t)
    return SnapshotRecord(kind=kind, attrs=attrs, grid=sol.grid, t=t, fields={"density": f},
                          diagnostics=_columns(rows, list(rows[0]) if rows else []),
                          fitness=fitness if kind == "reduced" else None,
                          status=str(attrs.get("status", "complete")))


def ensemble_record(ens: Any) -> SnapshotRecord:
    """A particle Ensemble as the record of the file its run writes: positions, the stored
    histogram and extra diagnostics if it was loaded with them, its per-agent fields and
    per-snapshot generator states when it has them."""
    t = np.asarray(ens.t, dtype=float)
    fields = {"particle_theta": np.asarray(ens.theta, dtype=float),
              "particle_h": np.asarray(ens.h, dtype=float)}
    density = getattr(ens, "stored_density", None)
    if density is not None:
        fields["density"] = np.asarray(density, dtype=float)
    diag = Diagnostics("ensemble", ens.grid, None)
    rows = [diag({k: v[i] for k, v in fields.items()}) for i in range(len(t))]
    stored = dict(getattr(ens, "stored_diagnostics", None) or {})
    order = list(rows[0]) if rows else []
    order += [k for k in stored if k not in order]
    diagnostics = _columns(rows, order)
    diagnostics.update({k: np.asarray(v, dtype=float) for k, v in stored.items()})
    info = dict(ens.info or {})
    rng_states = getattr(ens, "stored_rng_states", None)
    attrs = _attributes("ensemble", ens, t, seed=info.get("seed"),
                        rng_state=info.get("rng_state_start"))
    return SnapshotRecord(kind="ensemble", attrs=attrs, grid=ens.grid, t=t, fields=fields,
                          diagnostics={k: diagnostics[k] for k in order},
                          agent_fields={k: np.asarray(v) for k, v in
                                        (getattr(ens, "agent_fields", None) or {}).items()},
                          rng_states=list(rng_states) if rng_states else None,
                          status=str(attrs.get("status", "complete")))


class _Replay:
    """Stands in for a run's generator: its state is the stored one of the current snapshot."""

    class _Bits:
        state: Any = None

    def __init__(self, states: list | None):
        self.states = states
        self.bit_generator = self._Bits()


def write_record(record: SnapshotRecord, path: str | os.PathLike, *, overwrite: bool = False,
                 compression: str | None = "gzip") -> Path:
    """Write a record as a snapshot file (the file its run would have written); returns the
    path. The run's settings are the record's non-reserved root attributes."""
    settings = {k: v for k, v in record.attrs.items() if k not in RESERVED_ATTRIBUTES}
    replay = _Replay(record.rng_states) if record.rng_states else None
    if replay is not None:
        replay.bit_generator.state = record.attrs.get("rng_state_initial")
    model = _Described(record.attrs)
    writer = SnapshotWriter(path, kind=record.kind, grid=record.grid, model=model,
                            attrs=settings, overwrite=overwrite, compression=compression,
                            fitness=record.fitness, seed=record.attrs.get("seed"), rng=replay)
    initial = record.attrs.get("rng_state_initial")
    if replay is None and initial is not None:  # a known start but no per-snapshot states
        writer._file.attrs["rng_state_initial"] = dumps(initial)
    try:
        for i, t in enumerate(record.t):
            if replay is not None:
                replay.bit_generator.state = record.rng_states[i]
            fields = {k: v[i] for k, v in record.fields.items()}
            # the record's diagnostics are written as they are (the writer would recompute the
            # same values, but not those it cannot know, such as ⟨F⟩ of a joint run)
            diagnostics = {k: v[i] for k, v in record.diagnostics.items()}
            if record.kind == "ensemble":
                writer.write(t, theta=fields["particle_theta"], h=fields["particle_h"],
                             density=fields.get("density"), diagnostics=diagnostics,
                             agent_fields={k: v[i] for k, v in record.agent_fields.items()})
            else:
                writer.write(t, fields["density"], diagnostics=diagnostics)
    except BaseException:
        writer.close(status="interrupted")
        raise
    writer.finish()
    return writer.path


class _Described:
    """A model known only by its stored description (and preset)."""

    def __init__(self, attrs: dict[str, Any]):
        self._description = attrs.get("model")
        self.preset = attrs.get("preset")
        self.fitness = None

    def describe(self) -> Any:
        return self._description


def write_solution(sol: Any, path: str | os.PathLike, *, overwrite: bool = False,
                   compression: str | None = "gzip") -> Path:
    """Write a finished Solution (joint or reduced) to a snapshot file; returns the path.

    The file is the one its run would have written with ``output=path`` (the same
    variables and attributes; the run's time-stamps are those of this call).
    """
    return write_record(solution_record(sol), path, overwrite=overwrite,
                        compression=compression)


def write_ensemble(ens: Any, path: str | os.PathLike, *, overwrite: bool = False,
                   compression: str | None = "gzip") -> Path:
    """Write a finished particle Ensemble to a snapshot file; returns the path."""
    return write_record(ensemble_record(ens), path, overwrite=overwrite,
                        compression=compression)
