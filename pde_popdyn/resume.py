"""Continuing a run stored in a snapshot file: the checks and the plan a solver follows.

A solver given ``resume=path`` calls :func:`prepare_resume`, which checks the file against
its arguments and returns a :class:`ResumePlan`: the stored states, the remaining
:class:`~pde_popdyn.splitting.Schedule` (with exactly the stored Δt, so that the continuation
repeats the arithmetic of an uninterrupted run) and a writer appending to the same file.
:func:`pde_popdyn.resume` is the entry point that rebuilds the model and calls the solver.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .io import SnapshotFileError, SnapshotWriter, read, repair
from .io.schema import dumps
from .splitting import Schedule


@dataclass
class ResumePlan:
    """Everything a solver needs to continue the run stored in ``path`` (see
    :func:`prepare_resume`)."""

    path: Path
    kind: str
    attrs: dict[str, Any]
    grid: Any
    t: np.ndarray                 # the stored times
    states: dict[str, np.ndarray]  # stored arrays by name (density or particle_theta/_h)
    schedule: Schedule            # from the last time, with the stored dt
    splitting: str | None
    scheme: str | None
    rng_state: dict | None = None

    @property
    def last(self) -> np.ndarray:
        """The last stored density (joint/reduced)."""
        return self.states["density"][-1]

    def writer(self, *, model: Any = None, rng: np.random.Generator | None = None,
               fitness: np.ndarray | None = None) -> SnapshotWriter:
        """A writer appending to the file; it skips the first (already stored) state."""
        return SnapshotWriter.append(self.path, skip_first=True, rng=rng, model=model,
                                     fitness=fitness)


def model_mismatch(model: Any, stored: Any) -> list[str]:
    """The keys in which ``model.describe()`` differs from a stored description."""
    if not isinstance(stored, dict) or not hasattr(model, "describe"):
        return []
    now = json.loads(dumps(model.describe()))
    return sorted(k for k in set(now) | set(stored) if now.get(k) != stored.get(k))


def prepare_resume(path: str | os.PathLike, *, kind: str, model: Any = None,
                   grid: Any = None, t_final: float, dt: float | None = None,
                   splitting: str | None = None, scheme: str | None = None,
                   save_every: int | None = None) -> ResumePlan:
    """Check that the run in ``path`` can be continued to ``t_final`` with these arguments.

    The continuation uses exactly the stored Δt and a whole number of steps, so that it
    repeats the arithmetic of an uninterrupted run. Arguments left as None are taken from the
    file; given ones must agree with it. A file whose writer was killed is repaired first.
    """
    p = Path(path)
    record = read(p)
    if record.kind != kind:
        raise SnapshotFileError(f"{p} holds a {record.kind} run; it cannot be resumed as a "
                                f"{kind} run")
    if not record.closed_cleanly:
        repair(p)
        record = read(p)
    attrs = record.attrs
    if len(record.t) == 0:
        raise SnapshotFileError(f"{p} holds no snapshot to resume from")
    stored_grid = record.grid
    if grid is not None and stored_grid is not None and grid != stored_grid:
        raise ValueError(f"grid={grid!r} differs from the grid of {p} ({stored_grid!r}); pass "
                         f"grid=None to use the file's")
    for name, given in (("splitting", splitting), ("scheme", scheme)):
        if given is not None and attrs.get(name) is not None and given != attrs[name]:
            raise ValueError(f"{name}={given!r} differs from the {name} of {p} "
                             f"({attrs[name]!r}); resume with {name}={attrs[name]!r}")
    if model is not None:
        diff = model_mismatch(model, attrs.get("model"))
        if diff:
            raise ValueError(f"the model differs from the one stored in {p} in {diff}; resume "
                             f"with the same model, or start a new file from "
                             f"pp.load({str(p)!r}).f[-1]")
    stored_dt = attrs.get("dt")
    if stored_dt is None:
        raise SnapshotFileError(f"{p} does not record its time step 'dt'; it cannot be resumed")
    stored_dt = float(stored_dt)
    if dt is not None and abs(float(dt) - stored_dt) > 1e-12 * stored_dt:
        raise ValueError(f"dt={dt!r} differs from the time step of {p} ({stored_dt!r}); a "
                         f"resumed run keeps the stored step: pass dt=None")
    t_last = float(record.t[-1])
    span = float(t_final) - t_last
    if not np.isfinite(span) or span < -1e-9 * stored_dt:
        raise ValueError(f"t_final={t_final!r} is before the last time {t_last!r} stored in "
                         f"{p}; give a later t_final")
    n = max(int(round(span / stored_dt)), 0)
    if abs(n * stored_dt - span) > 1e-6 * stored_dt:
        lo, hi = t_last + np.floor(span / stored_dt) * stored_dt, \
            t_last + np.ceil(span / stored_dt) * stored_dt
        raise ValueError(f"t_final={t_final!r} is not a whole number of stored steps "
                         f"dt={stored_dt!r} after t={t_last!r}; use t_final={lo:.12g} or "
                         f"{hi:.12g}")
    save = save_every if save_every is not None else int(attrs.get("save_every", 1))
    schedule = Schedule(t0=t_last, dt=stored_dt, n_steps=n, save_every=int(save))
    return ResumePlan(path=p, kind=kind, attrs=attrs, grid=stored_grid, t=record.t,
                      states=dict(record.fields), schedule=schedule,
                      splitting=attrs.get("splitting"), scheme=attrs.get("scheme"),
                      rng_state=record.rng_states[-1] if record.rng_states else None)
