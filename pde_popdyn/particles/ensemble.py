"""The result of a particle run: saved positions of the agents and their moments over time."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..grid import Grid
from ..io import ensemble_record, to_dataset
from ..model import Model


@dataclass
class Ensemble:
    """Saved states of a particle run.

    ``t`` has shape (n_saved,), ``theta`` (n_saved, N) for θ ∈ R (or (n_saved, N, d)) and ``h``
    (n_saved, N). Diagnostics over time mirror :class:`pde_popdyn.Solution`: ``mean``,
    ``cov``, ``mean_theta``, ``var_theta``, ``mean_h``, ``var_h``, ``mean_fitness``,
    ``moments()``; ``histogram(grid)`` gives densities on a grid. ``info`` holds the settings,
    the seed and the timings; ``state`` holds what a continuation needs (the bit generator's
    final state and any fitness-window memory), see :meth:`continue_to`.
    """

    t: np.ndarray
    theta: np.ndarray
    h: np.ndarray
    model: Model | None = None
    grid: Grid | None = None
    info: dict[str, Any] = field(default_factory=dict)
    state: dict[str, Any] = field(default_factory=dict)
    _options: dict[str, Any] = field(default_factory=dict, repr=False)
    #: what a snapshot file stored beside the positions (:func:`pde_popdyn.load`): the scalar
    #: diagnostics written along time and the histogram densities on the grid, if any
    stored_diagnostics: dict[str, np.ndarray] = field(default_factory=dict, repr=False)
    stored_density: np.ndarray | None = field(default=None, repr=False)
    #: why the run ended: 't_final', 'tracker', 'guard' or 'interrupted'
    stop_reason: str = "t_final"
    #: moments (and histogram densities on the grid) recorded every ``summary_every`` steps:
    #: ``{"t": times, "mean_theta": …, "var_theta": …, "mean_h": …, "var_h": …,
    #: "cov_theta_h": …, "mean_fitness": …, "density": (n, n_θ, n_h)}``; empty if not asked
    summaries: dict[str, np.ndarray] = field(default_factory=dict, repr=False)
    #: per-agent values over time by name, shape (n_saved, N) each (e.g. "fitness", "parent"),
    #: and the generator's state after each snapshot, as stored in a snapshot file
    agent_fields: dict[str, np.ndarray] = field(default_factory=dict, repr=False)
    stored_rng_states: list | None = field(default=None, repr=False)

    # -- shapes --------------------------------------------------------------------------
    @property
    def n(self) -> int:
        """Number of agents N."""
        if self.h.shape[1] == 0 and self.info.get("n_agents"):
            return int(self.info["n_agents"])          # positions not gathered (sharded run)
        return int(self.h.shape[1])

    @property
    def d(self) -> int:
        """Dimension of θ."""
        return 1 if self.theta.ndim == 2 else int(self.theta.shape[2])

    def _theta3(self) -> np.ndarray:
        return self.theta[:, :, None] if self.theta.ndim == 2 else self.theta

    # -- moments -------------------------------------------------------------------------
    @property
    def mean(self) -> np.ndarray:
        """(E θ, E h) over time, shape (n_saved, d + 1)."""
        return np.concatenate([self._theta3().mean(axis=1), self.h.mean(axis=1)[:, None]], 1)

    @property
    def cov(self) -> np.ndarray:
        """Covariance of (θ, h) over time (normalised by N), shape (n_saved, d+1, d+1)."""
        z = np.concatenate([self._theta3(), self.h[:, :, None]], axis=2)
        z = z - z.mean(axis=1, keepdims=True)
        return np.einsum("sni,snj->sij", z, z) / z.shape[1]

    @property
    def mean_theta(self) -> np.ndarray:
        m = self._theta3().mean(axis=1)
        return m[:, 0] if self.d == 1 else m

    @property
    def var_theta(self) -> np.ndarray:
        v = self._theta3().var(axis=1)
        return v[:, 0] if self.d == 1 else v

    @property
    def mean_h(self) -> np.ndarray:
        return self.h.mean(axis=1)

    @property
    def var_h(self) -> np.ndarray:
        return self.h.var(axis=1)

    @property
    def fitness(self) -> np.ndarray:
        """Instantaneous fitness F(θ_i, h_i) of every agent, shape (n_saved, N)."""
        if self.model is None or self.model.fitness is None:
            raise ValueError("this ensemble's model has no fitness")
        return np.stack([np.broadcast_to(np.asarray(self.model.fitness(th, hh), dtype=float),
                                         (self.n,)) for th, hh in zip(self.theta, self.h)])

    @property
    def mean_fitness(self) -> np.ndarray:
        """⟨F⟩ over the agents, over time."""
        return self.fitness.mean(axis=1)

    def moments(self) -> dict[str, np.ndarray]:
        """Scalar diagnostics over time, with the same keys as ``Solution.moments()``."""
        out = {"mass": np.ones(len(self.t)), "mean_h": self.mean_h, "var_h": self.var_h}
        if self.d == 1:
            out.update(mean_theta=self.mean_theta, var_theta=self.var_theta,
                       cov_theta_h=self.cov[:, 0, 1])
        if self.model is not None and self.model.fitness is not None:
            out["mean_fitness"] = self.mean_fitness
        return out

    def standard_errors(self) -> dict[str, np.ndarray]:
        """Standard errors of the moments as if the agents were independent:
        sqrt(Var/N) for means and sqrt((μ₄ − Var²)/N) for variances."""
        out = {}
        for name, x in (("h", self.h), ("theta", self._theta3()[:, :, 0] if self.d == 1
                                        else None)):
            if x is None:
                continue
            c = x - x.mean(axis=1, keepdims=True)
            v = (c * c).mean(axis=1)
            m4 = (c ** 4).mean(axis=1)
            out[f"mean_{name}"] = np.sqrt(v / self.n)
            out[f"var_{name}"] = np.sqrt(np.maximum(m4 - v * v, 0.0) / self.n)
        return out

    def histogram(self, grid: Grid) -> np.ndarray:
        """Histogram densities on ``grid`` (θ ∈ R only), shape (n_saved, n_theta, n_h);
        mass outside the grid's box is dropped, so the mass is the fraction inside."""
        if self.d != 1:
            raise ValueError("histogram on a (θ, h) grid needs θ ∈ R (d = 1)")
        return np.stack([grid.histogram(th, hh) for th, hh in zip(self.theta, self.h)])

    def at(self, t: float) -> tuple[np.ndarray, np.ndarray]:
        """(θ, h) of the saved state nearest to time ``t``."""
        k = int(np.argmin(np.abs(self.t - t)))
        return self.theta[k], self.h[k]

    @classmethod
    def from_snapshots(cls, t: Any, theta: Any, h: Any, grid: Grid | None = None,
                       model: Model | None = None, density: Any = None,
                       diagnostics: dict | None = None, info: dict | None = None,
                       agent_fields: dict | None = None, rng_states: list | None = None
                       ) -> "Ensemble":
        """Rebuild an Ensemble from stored snapshots (as :func:`pde_popdyn.load` reads them):
        positions over time, and ``info["rng_state"]`` (the bit generator's state after the
        last snapshot) so that :meth:`continue_to` resumes the same random stream."""
        if theta is None or h is None:
            raise ValueError("these snapshots hold no particle positions (only histograms); "
                             "an Ensemble needs theta and h")
        info = dict(info or {})
        state: dict[str, Any] = {}
        rng_state = info.get("rng_state")
        if isinstance(rng_state, dict):
            state["rng"] = rng_state
        return cls(t=np.asarray(t, dtype=float), theta=np.asarray(theta, dtype=float),
                   h=np.asarray(h, dtype=float), model=model, grid=grid, info=info,
                   state=state,
                   stored_diagnostics={k: np.asarray(v) for k, v in (diagnostics or {}).items()},
                   stored_density=None if density is None else np.asarray(density),
                   agent_fields={k: np.asarray(v) for k, v in (agent_fields or {}).items()},
                   stored_rng_states=list(rng_states) if rng_states else None)

    def to_xarray(self):
        """This ensemble as an ``xarray.Dataset``, the one its snapshot file opens as (see
        :meth:`pde_popdyn.Solution.to_xarray`); needs ``pip install "pde_popdyn[interop]"``."""
        return to_dataset(ensemble_record(self))

    # -- continuation --------------------------------------------------------------------
    def continue_to(self, t_final: float, *, save_every: int | None = None,
                    summary_every: int | None = None, progress: bool | None = None,
                    join: bool = True) -> "Ensemble":
        """Continue the run from its final state to ``t_final`` with the stored settings and
        the stored bit-generator state, so that the result is bit for bit what an
        uninterrupted run (with a save at the current final time) would have produced.

        ``join=True`` returns the whole run (these snapshots followed by the new ones);
        ``join=False`` only the continuation (whose first snapshot is the current final state).
        Callables that cannot be stored (effective fitness, gradient) are reused from this
        Ensemble when it was made in this session; otherwise call
        :func:`pde_popdyn.simulate_particles` with ``init=ensemble`` and pass them again, or
        :func:`pde_popdyn.resume` on its snapshot file.
        """
        if self.model is None:
            raise ValueError("this ensemble has no model; call pp.simulate_particles(model, n, "
                             "init=ensemble, ...) instead")
        runner = self._options.get("runner") if self._options else None
        if runner is None:
            raise ValueError("this ensemble was not made by pp.simulate_particles in this "
                             "session; call pp.simulate_particles(model, n, init=ensemble, "
                             "...) or pp.resume(path, t_final) instead")
        opts = {k: v for k, v in self._options.items() if k != "runner"}
        opts["save_every"] = save_every if save_every is not None else \
            self.info.get("save_every")
        opts["summary_every"] = summary_every if summary_every is not None else \
            self.info.get("summary_every")
        opts["progress"] = progress
        cont = runner(self.model, self.n, self, t_final, float(self.info["dt"]), **opts)
        if not join:
            return cont
        summaries = cont.summaries
        if self.summaries and cont.summaries:
            summaries = {k: np.concatenate([self.summaries[k], cont.summaries[k][1:]])
                         for k in cont.summaries if k in self.summaries}
        rng_states = None                  # one per saved row, when both parts have them
        if self.stored_rng_states and cont.stored_rng_states:
            rng_states = list(self.stored_rng_states) + list(cont.stored_rng_states[1:])
        return Ensemble(t=np.concatenate([self.t, cont.t[1:]]),
                        theta=np.concatenate([self.theta, cont.theta[1:]]),
                        h=np.concatenate([self.h, cont.h[1:]]),
                        model=self.model, grid=self.grid,
                        info={**cont.info, "segments": self.info.get("segments", 1) + 1},
                        state=cont.state, _options=cont._options,
                        stop_reason=cont.stop_reason, summaries=summaries,
                        stored_rng_states=rng_states)

    def __repr__(self) -> str:
        return (f"Ensemble(N={self.n}, d={self.d}, n_saved={len(self.t)}, "
                f"t=[{self.t[0]:g}, {self.t[-1]:g}])")


__all__ = ["Ensemble"]
