"""Recording a population run generation by generation in the package's snapshot format.

A run writes two HDF5 files:

* ``<name>.h5``, ``kind="ensemble"``: per generation the agents' flattened parameter vectors
  θ (``particle_theta``, dims (time, agent, theta_component)), their hyperparameters h
  (``particle_h``, (time, agent, h_component), in the order of the run's HyperSpace), scalar
  diagnostics, and per-agent fields (fitness, return, parent, ...);
* ``<name>.rho_lr.h5``, ``kind="reduced"``: the agents' histogram of log10(learning rate) on
  a uniform grid, ρ(t, h) as cell averages (mass 1), which opens like the ρ of any reduced run
  and is what the reduced equation predicts.

Per-agent fields go through :func:`write_agents`, the single place that knows how the
snapshot writer takes them; a writer without that keyword gets them in a sidecar file
``<name>.agents.npz`` (arrays (time, agent) by field name, and ``time``).
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

import numpy as np

from ..grid import Grid
from ..io import SnapshotWriter
from .pbt import HyperSpace


def _takes_agent_fields(writer) -> bool:
    try:
        return "agent_fields" in inspect.signature(writer.write).parameters
    except (TypeError, ValueError):
        return False


def write_agents(writer: SnapshotWriter, t: float, theta, h, *, diagnostics: dict,
                 agent_fields: dict, sidecar: dict | None) -> None:
    """Append one snapshot with per-agent fields (the writer's ``agent_fields=`` when it
    has it, else the fields go to ``sidecar``: a dict of lists, written at the end)."""
    if _takes_agent_fields(writer):
        writer.write(t, theta=theta, h=h, diagnostics=diagnostics, agent_fields=agent_fields)
        return
    writer.write(t, theta=theta, h=h, diagnostics=diagnostics)
    if sidecar is not None:
        sidecar.setdefault("time", []).append(float(t))
        for k, v in agent_fields.items():
            sidecar.setdefault(k, []).append(np.asarray(v))


def lr_grid(lr_bins: tuple[float, float, int]) -> Grid:
    """The grid of the learning-rate histograms: h = log10 η on ``lr_bins`` = (low, high,
    cells); the θ-axis is a placeholder that a reduced density does not use."""
    lo, hi, cells = lr_bins
    return Grid(theta=(-1.0, 1.0, 3), h=(float(lo), float(hi), int(cells)))


def histogram(x, edges) -> np.ndarray:
    """Cell averages of the empirical density of ``x`` on ``edges`` (mass 1 over the cells;
    values outside go to the end cells, where clipped hyperparameters sit)."""
    x = np.clip(np.asarray(x, float), edges[0], edges[-1])
    counts, _ = np.histogram(x, bins=edges)
    return counts / (x.size * np.diff(edges))


class Recorder:
    """Writes a population run: the ensemble file, the ρ(t, log10 η) file and, when the
    writer cannot take per-agent fields, their sidecar (module docstring)."""

    def __init__(self, path, space: HyperSpace, *, lr_bins=(-5.0, -2.0, 30),
                 lr_axis: str = "lr", overwrite: bool = False, seed: Any = None,
                 attrs: dict | None = None):
        self.path = Path(path)
        self.space = space
        self.lr_col = space.names.index(lr_axis)
        self.grid = lr_grid(lr_bins)
        stem = self.path.with_suffix("")
        self.rho_path = Path(f"{stem}.rho_lr.h5")
        self.sidecar_path = Path(f"{stem}.agents.npz")
        attrs = {**(attrs or {}), "h_components": space.names}
        self.writer = SnapshotWriter(self.path, kind="ensemble", attrs=attrs,
                                     overwrite=overwrite, seed=seed)
        try:
            self.rho_writer = SnapshotWriter(
                self.rho_path, kind="reduced", grid=self.grid, overwrite=overwrite, seed=seed,
                attrs={**attrs, "density_of": f"log10({lr_axis}) of the agents",
                       "ensemble_file": self.path.name})
        except BaseException:
            self.writer.close("interrupted")
            raise
        self._sidecar: dict | None = None if _takes_agent_fields(self.writer) else {}
        if self._sidecar is None and self.sidecar_path.exists() and overwrite:
            self.sidecar_path.unlink()

    def write(self, t: float, theta, h, agent_fields: dict, diagnostics: dict) -> None:
        h = np.asarray(h, float)
        loglr = np.log10(h[:, self.lr_col])
        rho = histogram(loglr, self.grid.h_axis.edges)
        diag = {"mean_log10_lr": float(loglr.mean()), "var_log10_lr": float(loglr.var()),
                **{k: float(v) for k, v in diagnostics.items()}}
        write_agents(self.writer, t, theta, h, diagnostics=diag, agent_fields=agent_fields,
                     sidecar=self._sidecar)
        self.rho_writer.write(t, rho)

    def _flush_sidecar(self) -> None:
        if self._sidecar:
            np.savez(self.sidecar_path, **{k: np.asarray(v) for k, v in
                                           self._sidecar.items()})

    def finish(self, **attrs) -> None:
        self._flush_sidecar()
        self.writer.finish(**attrs)
        self.rho_writer.finish(**attrs)

    def close(self, status: str = "interrupted") -> None:
        self._flush_sidecar()
        self.writer.close(status)
        self.rho_writer.close(status)


def read_agent_fields(path) -> dict[str, np.ndarray]:
    """The per-agent fields of a recorded run, (time, agent) arrays by name: from the
    sidecar when there is one, else from the ensemble file's (time, agent) variables."""
    path = Path(path)
    side = Path(f"{path.with_suffix('')}.agents.npz")
    if side.exists():
        with np.load(side) as z:
            return {k: z[k] for k in z.files}
    import h5py
    out: dict[str, np.ndarray] = {}
    with h5py.File(path, "r", swmr=True) as f:
        n = int(np.sum(np.isfinite(f["time"][:])))
        out["time"] = f["time"][:n]
        for name, ds in f.items():
            if name in ("particle_theta", "particle_h", "time", "agent") or \
                    not hasattr(ds, "shape") or len(ds.shape) != 2:
                continue
            dims = [d.label for d in ds.dims]
            if dims and dims[-1] == "agent" or ds.shape[1] == f["agent"].shape[0]:
                out[name.removeprefix("agent_")] = ds[:n]
    return out
