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

Engines: ``"fused"`` runs the M and O sub-steps as one compiled pass and resamples in place
(:mod:`pde_popdyn.particles.fused`, which says what it covers); ``"numpy"`` runs each
sub-step with numpy and the ``Generator``'s normals, and covers every configuration. The
selection rules run their particle faces under both.

Saved states are written into buffers reserved for the run (:meth:`Simulator.reserve_saves`),
and the working state lives in the last one, so the final state is kept without a copy.
"""

from __future__ import annotations

import numpy as np

from ..model import Model
from ..slow.agents import systematic_counts, weighted_choice
from .estimators import kernel_regression, silverman_bandwidth
from .fast import FastStep
from .fused import (FusedStep, histogram_counts, moment_sums, moments_from_sums,
                    resample_exp, resample_in_place)
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
        self.fused = FusedStep(model, opts, rng, self.stats) \
            if opts.get("engine") == "fused" else None
        self.strang = opts["splitting"] == "strang"
        self._F: tuple | None = None            # (θ, h, F) kept from the last fused step
        self._saves: tuple | None = None        # (θ rows, h rows), see reserve_saves
        self._live: tuple | None = None
        self.n_saved = 0
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
            self.move(P, dt)
            if self.o["fitness_mode"] == "window":
                self.update_window(P, dt)
            if sel:
                if self.merge:
                    self.owed = 0.5 * dt
                else:
                    P = self.select(P, 0.5 * dt)
            return P
        self.move(P, dt)
        if self.o["fitness_mode"] == "window":
            self.update_window(P, dt)
        if sel:
            P = self.select(P, dt)
        return P

    def move(self, P: Population, dt: float) -> None:
        """The mutation and fast sub-steps of one step, in place: M(Δt/2) O(Δt) M(Δt/2)
        (Strang) or O(Δt) M(Δt) (Lie). The fused engine also evaluates the instantaneous
        fitness of the advanced agents, chunk by chunk while they are in the cache, when the
        next selection step will ask for it (:meth:`inst_fitness` returns it until the agents
        change)."""
        self.forget_fitness()
        if self.fused is not None:
            want = self._continuous_selection() and \
                self.o["fitness_mode"] in ("instantaneous", "estimated")
            F = self.fused(P, dt, self.strang, self._chunk_fitness if want else None)
            if F is not None:
                F.flags.writeable = False
                self._F = (P.theta, P.h, F)
        elif self.strang:
            self.mutate(P, 0.5 * dt)
            self.fast(P, dt)
            self.mutate(P, 0.5 * dt)
        else:
            self.fast(P, dt)
            self.mutate(P, dt)

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

    def reserve_saves(self, rows: int, P: Population) -> Population:
        """Reserve ``rows`` saved states (θ and h) and move the working state into the last
        one; returns the population, now living there."""
        th = np.empty((rows,) + P.theta.shape)
        hh = np.empty((rows,) + P.h.shape)
        th[-1] = P.theta
        hh[-1] = P.h
        self._saves = (th, hh)
        P.theta, P.h = th[-1], hh[-1]
        self._live = (P.theta, P.h)
        self.n_saved = 0
        return P

    def saved(self) -> tuple[np.ndarray, np.ndarray] | None:
        """The saved states so far, (θ, h) with one row per saved time."""
        if self._saves is None:
            return None
        return self._saves[0][:self.n_saved], self._saves[1][:self.n_saved]

    def snapshot(self, P: Population) -> tuple[np.ndarray, np.ndarray, dict]:
        """θ and h at this save (a row of the reserved buffers, or copies past them) and the
        generator's state at this save."""
        if not (np.isfinite(P.theta).all() and np.isfinite(P.h).all()):
            raise FloatingPointError("agents became non-finite; reduce dt or use a stabler "
                                     "fast step")
        if self._saves is None or self.n_saved >= self._saves[0].shape[0]:
            return P.theta.copy(), P.h.copy(), self.rng.bit_generator.state
        j = self.n_saved
        th, hh = self._saves[0][j], self._saves[1][j]
        last = j == self._saves[0].shape[0] - 1
        if not (last and self._live is not None and P.theta is self._live[0]
                and P.h is self._live[1]):
            th[...] = P.theta                      # the final state is already in place
            hh[...] = P.h
        self.n_saved += 1
        return th, hh, self.rng.bit_generator.state

    def summary_sums(self, P: Population, grid=None) -> tuple:
        """(sums, counts, log_scale): weighted sums for the moments of (θ₁, h) and ⟨F⟩
        (:func:`~pde_popdyn.particles.fused.moment_sums`) and, with a grid, the weighted
        counts in its cells, of the population as a saved state would have it: weighted by
        any selection still pending (the owed half step of a merged replicator, accumulated
        log-weights) instead of resampled. The weights are e^{ℓ_i − log_scale}; the sums of
        several shards add up once brought to a common scale (:func:`combine_summaries`)."""
        lw = None
        if self.owed and self.merge and self.sel is not None:
            lw = self.sel.linear_rate * self.owed * self.selection_fitness(P)
        if self.logw is not None:
            lw = self.logw if lw is None else lw + self.logw
        scale = 0.0 if lw is None else float(lw.max())
        w = None if lw is None else np.exp(lw - scale)
        F = self.inst_fitness(P) if self.model.fitness is not None else None
        sums = moment_sums(P, F, w)
        counts = None
        if grid is not None and P.theta.ndim == 1:
            counts = histogram_counts(grid, P.theta, P.h, w)
        return sums, counts, scale

    # -- sub-steps -----------------------------------------------------------------------
    def select(self, P: Population, tau: float) -> Population:
        self.stats["selection_steps"] += 1
        return self.sel.particle_step(self, P, tau)

    def mutate(self, P: Population, tau: float) -> None:
        for m in self.continuous:
            m.particle_mutate(P.h, tau, self.rng, self.o["h_box"], self.o["boundary"])

    # -- fitness -------------------------------------------------------------------------
    def forget_fitness(self) -> None:
        """Drop the fitness kept from the last fused step (the agents changed)."""
        self._F = None

    def _chunk_fitness(self, theta: np.ndarray, h: np.ndarray) -> np.ndarray:
        F = np.asarray(self.model.fitness(theta, h), dtype=float)
        if F.shape != h.shape:
            try:
                F = np.broadcast_to(F, h.shape)
            except ValueError:
                raise ValueError(f"fitness returned shape {F.shape}; for particles it is called "
                                 f"with θ of shape {theta.shape} and h of shape {h.shape} and "
                                 f"must return shape {h.shape}") from None
        return F

    def inst_fitness(self, P: Population) -> np.ndarray:
        """F(θ_i, h_i) of every agent (read-only when it is the one the fused step kept)."""
        kept = getattr(self, "_F", None)
        if kept is not None and kept[0] is P.theta and kept[1] is P.h:
            return kept[2]
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

    def selection_fitness(self, P: Population, check: bool = True) -> np.ndarray:
        """The fitness selection sees (``fitness_mode``), one value per agent; ``check``
        raises if it is not finite (:meth:`resample_exp` checks its weights itself)."""
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
        if check:
            _check_finite(F.max() if F.size else 0.0)
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
        """N agents drawn with probability ∝ w: systematic (O(N), no sorting; in place under
        the fused engine) or multinomial."""
        self.forget_fitness()
        if self.o["resampling"] == "systematic":
            if self._in_place(P):
                buf = self._weights_buffer()
                buf[...] = w
                return resample_in_place(P, buf, self.rng.random(), self.n)
            return P.repeat(systematic_counts(w, self.n, self.rng))
        return P.take(weighted_choice(w, self.n, self.rng))

    def resample_exp(self, P: Population, F: np.ndarray, kt: float) -> Population:
        """Resample with weights e^{kt(F − max F)}; raises if F is not finite."""
        if self._in_place(P) and self.o["resampling"] == "systematic":
            w = self._weights_buffer()
            self.forget_fitness()
            return resample_exp(P, F, w, kt, self.rng.random(), self.n)
        top = F.max()
        _check_finite(top)
        w = np.subtract(F, top)
        w *= kt
        np.exp(w, out=w)
        return self.resample(P, w)

    def _in_place(self, P: Population) -> bool:
        return self.fused is not None and P.wavg is None and P.wbuf is None \
            and P.h.shape[0] == self.n

    def _weights_buffer(self) -> np.ndarray:
        """A weights array owned by the simulator (the in-place resampler overwrites it with
        the offspring numbers), reused from step to step."""
        if getattr(self, "_wbuf", None) is None or self._wbuf.shape[0] != self.n:
            self._wbuf = np.empty(self.n)
        return self._wbuf

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
        self.forget_fitness()
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


def _check_finite(top: float) -> None:
    if not np.isfinite(top):
        raise FloatingPointError(f"the selection fitness is not finite (max {top}); check the "
                                 f"fitness function at the agents' states")


def combine_summaries(parts: list, grid=None, with_fitness: bool = True) -> dict:
    """Moments (and histogram densities on ``grid``) from the :meth:`Simulator.summary_sums`
    of one or several shards."""
    top = max(p[2] for p in parts)
    sums = sum(p[0] * np.exp(p[2] - top) for p in parts)
    out = moments_from_sums(sums, with_fitness)
    if grid is not None and parts[0][1] is not None:
        counts = sum(p[1] * np.exp(p[2] - top) for p in parts)
        out["density"] = counts / sums[0] / grid.weights
    return out


__all__ = ["Simulator", "combine_summaries"]
