"""Results from snapshot files: :func:`load` rebuilds a Solution or Ensemble (and a preset
model) from what :func:`pde_popdyn.io.read` returns, or opens the file lazily with xarray."""

from __future__ import annotations

import os
from typing import Any

from .io import SnapshotFileError, SnapshotRecord, open_dataset, read
from .particles import Ensemble
from .presets import model_from_attrs
from .solution import Solution

#: attributes copied into a loaded result's ``info``
_INFO_KEYS = ("scheme", "splitting", "dt", "save_every", "n_steps", "status", "kind", "seed",
              "preset", "pde_popdyn_version", "created", "run_seconds", "t_final")
ENGINES = (None, "xarray")


def result_info(record: SnapshotRecord) -> dict[str, Any]:
    """The ``info`` of a loaded result: the run's settings, its status and provenance, the
    file read (``source``, ``closed_cleanly``) and all its root attributes (``file_attrs``)."""
    attrs = record.attrs
    old = attrs.get("info")  # format 1: extra settings kept in one JSON attribute
    info = dict(old) if isinstance(old, dict) else {}
    info.update({k: attrs[k] for k in _INFO_KEYS if k in attrs})
    if record.kind == "ensemble" and isinstance(attrs.get("options"), dict):
        info.update(attrs["options"])
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
        model = model_from_attrs(record.attrs)
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


__all__ = ["load", "result_info", "ENGINES"]
