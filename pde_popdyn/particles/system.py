"""The particle system as the run loop advances it: one time step of the N-agent model.

One time step Δt composes three sub-steps:

* O, the fast step over τ (:mod:`pde_popdyn.particles.fast`);
* M, continuous mutation over τ (each continuous mutation rule's particle face, e.g.
  h ← h + √(2Dτ) ξ for diffusion);
* S, selection over τ: the selection rule's particle face (:mod:`pde_popdyn.rules`), on the
  fitness values chosen by ``fitness_mode``; copies are perturbed by the explore rules'
  particle faces.

After every change of h the boundary rule maps it back into the box: ``"reflecting"``,
``"periodic"`` or ``"clip"``.

Splitting: Strang, S(Δt/2) M(Δt/2) O(Δt) M(Δt/2) S(Δt/2), the composition the grid solver
uses, so that the mean-field limit of the particle scheme is the grid solver's time-discrete
scheme; Lie: O(Δt) M(Δt) S(Δt). For the replicator the two half selection steps of
consecutive time steps are merged into one S(Δt) (exact: the weights multiply) except where a
state is saved (:meth:`Simulator.settle`), so a run continued from a saved state is bit for
bit the uninterrupted run. Rules acting at discrete times (PBT) apply their generation map at
the generation times.
"""

from __future__ import annotations

import numpy as np

from ..model import Model
from ..slow.agents import systematic_counts, weighted_choice
from .estimators import kernel_regression, silverman_bandwidth
from .fast import FastStep
from .population import Population


class Simulator:
    """The N-agent system (module docstring). The selection rule's particle face uses
    :meth:`selection_fitness`, :meth:`resample`, :meth:`flush_weights` and :meth:`assign`,
    and the attributes ``rng``, ``n``, ``o`` (options), ``stats`` and ``logw`` (pending
    log-weights of adaptive resampling)."""

    def __init__(self, model: Model, n: int, rng: np.random.Generator, opts: dict):
        self.model = model
        self.n = n
        self.rng = rng
        self.o = opts
        self.sel = model.selection if model.selection_active else None
        self.continuous = [m for m in model.mutations if m.continuous]
        self.explorers = [m for m in model.mutations if not m.continuous]
        self.stats = {"resamples": 0, "selection_steps": 0, "copies": 0,
                      "pairwise_max_substeps": 0, "mala_accepted": 0, "mala_proposed": 0,
                      "last_bandwidth": None, "generations": 0}
        self.logw: np.ndarray | None = None
        self.wpos = 0
        self.fast = FastStep(model, n, rng, opts, self.stats)
        self.strang = opts["splitting"] == "strang"
        # S(Δt/2)S(Δt/2) = S(Δt) exactly for the replicator (weights multiply), so consecutive
        # half steps are merged; the jump rules' steps are not a semigroup, so they stay apart
        self.merge = self.sel is None or self.sel.linear_rate is not None
        self.owed = 0.0

    # -- the system protocol of the run loop ---------------------------------------------
    @property
    def has_events(self) -> bool:
        return self.sel is not None and self.sel.interval is not None

    def _continuous_selection(self) -> bool:
        return self.sel is not None and self.sel.interval is None

    def step(self, P: Population, dt: float) -> Population:
        sel = self._continuous_selection()
        if self.strang:
            tau = self.owed + 0.5 * dt
            self.owed = 0.0
            if sel:
                P = self.select(P, tau)
            self.mutate(P, 0.5 * dt)
            self.fast(P, dt)
            self.mutate(P, 0.5 * dt)
            if self.o["fitness_mode"] == "window":
                self.update_window(P, dt)
            if sel:
                if self.merge:
                    self.owed = 0.5 * dt
                else:
                    P = self.select(P, 0.5 * dt)
            return P
        self.fast(P, dt)
        self.mutate(P, dt)
        if self.o["fitness_mode"] == "window":
            self.update_window(P, dt)
        if sel:
            P = self.select(P, dt)
        return P

    def settle(self, P: Population) -> Population:
        """Apply the owed half selection step and resample pending weights (before a state is
        saved or the run stops), so that saved populations are unweighted."""
        if self.owed:
            P = self.select(P, self.owed)
            self.owed = 0.0
        return self.flush_weights(P)

    def event(self, P: Population) -> Population:
        self.stats["generations"] += 1
        return self.sel.particle_generation(self, P)

    def snapshot(self, P: Population) -> tuple[np.ndarray, np.ndarray, dict]:
        """Copies of θ and h, and the generator's state at this save."""
        if not (np.isfinite(P.theta).all() and np.isfinite(P.h).all()):
            raise FloatingPointError("agents became non-finite; reduce dt or use a stabler "
                                     "fast step")
        return P.theta.copy(), P.h.copy(), self.rng.bit_generator.state

    # -- sub-steps -----------------------------------------------------------------------
    def select(self, P: Population, tau: float) -> Population:
        self.stats["selection_steps"] += 1
        return self.sel.particle_step(self, P, tau)

    def mutate(self, P: Population, tau: float) -> None:
        for m in self.continuous:
            m.particle_mutate(P.h, tau, self.rng, self.o["h_box"], self.o["boundary"])

    # -- fitness -------------------------------------------------------------------------
    def inst_fitness(self, P: Population) -> np.ndarray:
        F = np.asarray(self.model.fitness(P.theta, P.h), dtype=float)
        if F.shape != (self.n,):
            try:
                F = np.broadcast_to(F, (self.n,)).copy()
            except ValueError:
                raise ValueError(f"fitness returned shape {F.shape}; for particles it is called "
                                 f"with θ of shape {P.theta.shape} and h of shape "
                                 f"({self.n},) and must return shape ({self.n},)") from None
        return F

    def init_window(self, P: Population) -> None:
        if self.o["fitness_mode"] != "window":
            return
        F = self.inst_fitness(P)
        if self.o["window_kind"] == "exponential":
            P.wavg = F
        else:
            k = self.o["window_len"]
            P.wbuf = np.repeat(F[None, :], k, axis=0)
            P.wsum = F * k
        self.wpos = 0

    def update_window(self, P: Population, tau: float) -> None:
        """Advance the fitness memory by τ with the current instantaneous fitness:
        exponential: F̃ ← e^{−τ/w} F̃ + (1 − e^{−τ/w}) F; running: the mean of the last
        k = round(w/Δt) values."""
        F = self.inst_fitness(P)
        if self.o["window_kind"] == "exponential":
            a = np.exp(-tau / self.o["window"])
            P.wavg *= a
            P.wavg += (1.0 - a) * F
        else:
            row = self.wpos % P.wbuf.shape[0]
            P.wsum += F - P.wbuf[row]
            P.wbuf[row] = F
            self.wpos += 1
            if row == P.wbuf.shape[0] - 1:       # once per window: no drift of the running sum
                P.wsum = P.wbuf.sum(axis=0)

    def reset_window(self, P: Population, idx: np.ndarray) -> None:
        """Agents that took new hyperparameters with their own θ start a fresh memory."""
        if self.o["fitness_mode"] != "window" or idx.size == 0:
            return
        F = np.asarray(self.model.fitness(P.theta[idx], P.h[idx]), dtype=float)
        if P.wavg is not None:
            P.wavg[idx] = F
        else:
            P.wbuf[:, idx] = F[None, :]
            P.wsum[idx] = F * P.wbuf.shape[0]

    def selection_fitness(self, P: Population) -> np.ndarray:
        mode = self.o["fitness_mode"]
        if mode == "instantaneous":
            F = self.inst_fitness(P)
        elif mode == "window":
            F = P.wavg.copy() if P.wavg is not None else P.wsum / P.wbuf.shape[0]
        elif mode == "effective":
            F = np.asarray(self.o["fbar"](P.h), dtype=float)
        else:
            Fi = self.inst_fitness(P)
            b = self.o["bandwidth"]
            bw = silverman_bandwidth(P.h) if b is None else b
            self.stats["last_bandwidth"] = bw
            wts = None if self.logw is None else np.exp(self.logw - self.logw.max())
            F = kernel_regression(P.h, Fi, bandwidth=bw if bw > 0 else None, weights=wts)
        top = F.max() if F.size else 0.0
        if not np.isfinite(top):
            raise FloatingPointError(f"the selection fitness is not finite (max {top}); "
                                     f"check the fitness function at the agents' states")
        return F

    # -- what selection rules use ---------------------------------------------------------
    def flush_weights(self, P: Population) -> Population:
        """Resample away accumulated log-weights (adaptive replicator), if any."""
        if self.logw is None:
            return P
        lw = self.logw
        self.logw = None
        self.stats["resamples"] += 1
        return self.resample(P, np.exp(lw - lw.max()))

    def resample(self, P: Population, w: np.ndarray) -> Population:
        """N agents drawn with probability ∝ w: systematic (O(N), no sorting) or multinomial."""
        if self.o["resampling"] == "systematic":
            return P.repeat(systematic_counts(w, self.n, self.rng))
        return P.take(weighted_choice(w, self.n, self.rng))

    def explore(self, h: np.ndarray) -> np.ndarray:
        """The copied hyperparameters perturbed by the model's explore rules."""
        for m in self.explorers:
            h = m.particle_explore(h, self.rng, self.o["h_box"], self.o["boundary"])
        return h

    def assign(self, target: Population, donors: Population, dst: np.ndarray,
               src: np.ndarray, *, copy: str, explore: bool, memory: str | None = None
               ) -> Population:
        """target[dst] ← donors[src] (θ too if copy == 'both'), the copied h perturbed by the
        explore rules if ``explore``; returns a new population (target is not modified).

        ``memory`` (windowed fitness only): 'inherit' copies the donor's fitness memory,
        'reset' starts a fresh one from the copier's new state; default: inherit when θ is
        copied, reset when only h is."""
        out = target.copy()
        self.stats["copies"] += int(dst.size)
        if memory is None:
            memory = "inherit" if copy == "both" else "reset"
        if copy == "both":
            out.theta[dst] = donors.theta[src]
        if memory == "inherit":
            if out.wavg is not None:
                out.wavg[dst] = donors.wavg[src]
            if out.wbuf is not None:
                out.wbuf[:, dst] = donors.wbuf[:, src]
                out.wsum[dst] = donors.wsum[src]
        hn = donors.h[src]
        out.h[dst] = self.explore(hn) if explore and self.explorers else hn
        if memory == "reset":
            self.reset_window(out, dst)
        return out


__all__ = ["Simulator"]
