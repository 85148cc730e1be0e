"""Entry point :func:`resume`: continue any snapshot file (joint, reduced or particles)."""

from __future__ import annotations

import os
from typing import Any

from . import io
from .particles import simulate_particles
from .presets import model_from_attrs
from .reduced import solve_reduced
from .solve import solve


def resume(path: str | os.PathLike, t_final: float, *, model: Any = None,
           save_every: int | None = None, progress: bool | None = None,
           trackers: Any = None) -> Any:
    """Continue the run stored in ``path`` up to ``t_final``, appending to the same file.

    Works for joint, reduced and particle files, and for the checkpoint directory of a
    sharded particle run (continued with one local process per shard; to use a dask client,
    call ``simulate_particles(model, None, None, t_final, None, resume=path, client=C)``).
    The model is rebuilt from the stored preset, or given as ``model=`` (the same model) for
    a user model; the grid, Δt, scheme, splitting and (for particles) the random generator's
    state are the stored ones, so the result equals that of an uninterrupted run (particles:
    bit for bit when the file's last snapshot was a saved time of that run). A run that was interrupted (Ctrl-C, or killed: the file is
    repaired first) continues from its last snapshot. Returns the whole run, stored and new
    snapshots, as :func:`pde_popdyn.load` would.
    """
    if os.path.isdir(path):                 # a sharded particle run's checkpoint directory
        from .particles.sharded import read_manifest
        attrs = read_manifest(path)
        model = model if model is not None else model_from_attrs(attrs)
        if model is None:
            raise ValueError(f"{path} was written from a user-defined model, whose functions "
                             f"are not stored; pass model=... (the same model) to resume it")
        return simulate_particles(model, None, None, t_final, None, resume=path,
                                  progress=progress, save_every=save_every)
    attrs = io.read_attributes(path)
    if model is None:
        model = model_from_attrs(attrs)
        if model is None:
            raise ValueError(f"{path} was written from a user-defined model, whose functions "
                             f"are not stored; pass model=... (the same model) to resume it")
    kind = attrs["kind"]
    kw: dict[str, Any] = {"resume": path, "progress": progress, "save_every": save_every,
                          "trackers": trackers}
    if kind == "joint":
        return solve(model, None, None, t_final, None, **kw)
    if kind == "reduced":
        return solve_reduced(model, None, None, t_final, None, **kw)
    return simulate_particles(model, None, None, t_final, None, **kw)


__all__ = ["resume"]
