"""Results from snapshot files: :func:`load` rebuilds a Solution or Ensemble (and a preset
model) from what :func:`pde_popdyn.io.read` returns, and :func:`resume` continues a stored
run with the solver of its kind."""

from __future__ import annotations

import inspect
import os
from pathlib import Path
from typing import Any, Callable

from .io import SnapshotFileError, SnapshotRecord, open_dataset, read
from .io.files import reader
from .particles import _INFO_OPTION_KEYS, Ensemble, simulate_particles
from .presets import build
from .reduced import solve_reduced
from .solution import Solution
from .solve import solve

#: attributes copied into a loaded result's ``info``
_INFO_KEYS = ("scheme", "splitting", "dt", "save_every", "n_steps", "status", "kind", "seed",
              "preset", "pde_popdyn_version", "created", "run_seconds", "t_final")
ENGINES = (None, "xarray")


def rebuild_model(attrs: dict[str, Any]) -> Any:
    """The preset model a file was written from, or None (a user model, or unknown preset)."""
    preset = attrs.get("preset")
    if not isinstance(preset, dict) or "name" not in preset:
        return None
    try:
        return build(preset["name"], preset.get("params")).model()
    except (ValueError, TypeError):
        return None


def result_info(record: SnapshotRecord) -> dict[str, Any]:
    """The ``info`` of a loaded result: the run's settings, its status and provenance, the
    file read (``source``, ``closed_cleanly``) and all its root attributes (``file_attrs``)."""
    attrs = record.attrs
    old = attrs.get("info")  # format 1: extra settings kept in one JSON attribute
    info = dict(old) if isinstance(old, dict) else {}
    info.update({k: attrs[k] for k in _INFO_KEYS if k in attrs})
    if record.kind == "ensemble":
        info.update({k: v for k, v in attrs.items() if k in _INFO_OPTION_KEYS})
    info["source"] = str(record.path)
    info["closed_cleanly"] = record.closed_cleanly
    info["file_attrs"] = dict(attrs)
    return info


def load(path: str | os.PathLike, *, model: Any = None, engine: str | None = None) -> Any:
    """Read a snapshot file: a Solution (joint or reduced run) or an Ensemble (particles).

    ``.t`` and ``.f`` (or ``.theta``, ``.h``) reproduce the saved arrays exactly; an ensemble
    also has its per-agent fields (``ens.agent_fields["fitness"]``, shape (n_saved, N)) and
    its stored diagnostics. Model callables are not stored, so ``.model`` is ``model`` if
    given, else the rebuilt preset model when the run came from a preset, else None (then
    the diagnostics needing F are unavailable; the stored ones are in the file). A file whose
    writer was killed is read up to its last complete snapshot.

    ``engine="xarray"`` returns instead a lazy, dask-backed ``xarray.Dataset`` (one snapshot
    per chunk), for files larger than memory (needs ``pip install "pde_popdyn[interop]"``).

    Raises FileNotFoundError for a missing file and ValueError (SnapshotFileError) naming the
    file and the problem for anything that is not a readable pde_popdyn snapshot file.
    """
    if engine not in ENGINES:
        raise ValueError(f"engine={engine!r} is not known; use None (a Solution or Ensemble) "
                         f"or 'xarray' (a lazy xarray.Dataset)")
    if engine == "xarray":
        return open_dataset(path)
    record = read(path)
    if model is None:
        model = rebuild_model(record.attrs)
    info = result_info(record)
    if record.kind in ("joint", "reduced"):
        if "density" not in record.fields:
            raise SnapshotFileError(f"{record.path} holds no density (a {record.kind} file "
                                    f"must)")
        if record.fitness is not None:
            info["fitness"] = record.fitness
        return Solution(t=record.t, f=record.fields["density"], grid=record.grid, model=model,
                        info=info, kind=record.kind)
    if record.rng_states:
        info["rng_state"] = record.rng_states[-1]
    return Ensemble.from_snapshots(
        t=record.t, theta=record.fields.get("particle_theta"),
        h=record.fields.get("particle_h"), grid=record.grid, model=model,
        density=record.fields.get("density"), diagnostics=record.diagnostics, info=info,
        agent_fields=record.agent_fields, rng_states=record.rng_states)


def _accepts(fn: Callable, name: str) -> bool:
    try:
        return name in inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False


def resume(path: str | os.PathLike, t_final: float, *, model: Any = None,
           save_every: int | None = None, progress: bool | None = None) -> Any:
    """Continue the run stored in ``path`` up to ``t_final``, appending to the same file.

    The model is rebuilt from the stored preset (or given as ``model=`` for a user model; the
    equivalent is ``pp.solve(model, None, None, t_final, None, resume=path)``). The grid, Δt,
    scheme and splitting are the stored ones, so the result equals that of an uninterrupted
    run. Returns the whole run (stored and new snapshots) as from :func:`load`.
    """
    p = Path(path)
    with reader(p) as (_, attrs, _clean):
        pass
    if model is None:
        model = rebuild_model(attrs)
        if model is None:
            raise ValueError(f"{p} was written from a user-defined model, whose functions are "
                             f"not stored; pass model=... (the same model) to resume it")
    kind = attrs["kind"]
    solver = {"joint": solve, "reduced": solve_reduced, "ensemble": simulate_particles}[kind]
    if not _accepts(solver, "resume"):
        raise ValueError(f"resuming a {kind} file is not supported by this version of "
                         f"pde_popdyn")
    kw: dict[str, Any] = {"resume": p, "progress": progress}
    if save_every is not None:
        kw["save_every"] = save_every
    if kind == "ensemble":
        return solver(model, None, None, t_final, None, **kw)
    return solver(model, None, None, t_final, None, splitting=attrs.get("splitting", "strang"),
                  **({"scheme": attrs["scheme"]} if "scheme" in attrs else {}), **kw)
