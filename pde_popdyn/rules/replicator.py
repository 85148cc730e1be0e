"""Replicator selection (proportional imitation)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .._validate import positive_float
from ..slow.imitation import ImitationStep
from ..slow.selection import ReplicatorStep
from .base import SelectionRule, Setting, check_copy


@dataclass(frozen=True)
class Replicator(SelectionRule):
    """Replicator selection (proportional imitation) at rate κ.

    Agents: each ordered pair (i, j) fires at rate (κ/N)(F_j − F_i)⁺ and i copies j. The
    mean-field term is

        ∂_t f = … + κ (F − ⟨F⟩_f) f,    ⟨F⟩_f = ∫∫ F f dθ dh,

    whose sub-step is exact: f ← f e^{κτF} / ∫∫ f e^{κτF} (log domain). The equation
    linearises: f = u/∫u with ∂_t u = … + κ F u. As ε → 0 it becomes
    ∂_t ρ = κ (F̄ − ⟨F̄⟩_ρ) ρ with the effective fitness F̄(h) = ∫ F π_h dθ.

    Parameters
    ----------
    rate:
        κ ≥ 0 (0 switches selection off).
    copy:
        'both' (default): the copier takes (θ, h). 'h': it keeps its θ and takes h only; the
        mean-field term is then the kinetic gain–loss operator of proportional imitation
        (see :mod:`pde_popdyn.slow.imitation`), and the reduced equation is the same as for
        'both'.
    """

    rate: float = 1.0
    copy: str = "both"

    accepts_explore = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "rate", positive_float("Replicator rate", self.rate,
                                                        allow_zero=True))
        object.__setattr__(self, "copy", check_copy("Replicator", self.copy))

    @property
    def linear_rate(self) -> float | None:
        return self.rate if self.copy == "both" else None

    # -- grid --------------------------------------------------------------------------
    def grid_step(self, fitness, setting: Setting):
        if not self.active:
            return None
        if self.copy == "h" and setting.joint:
            return ImitationStep(fitness, self.rate, setting.grid)
        return ReplicatorStep(fitness, self.rate, 1.0)

    # -- particles -----------------------------------------------------------------------
    def check_particles(self, n: int, options: dict) -> None:
        if self.copy == "h" and options["replicator"] != "pairwise":
            raise ValueError("Replicator(copy='h') on agents needs replicator='pairwise' "
                             "(proportional imitation); resampling copies whole agents")

    def particle_step(self, sim, P, tau: float):
        if not self.active:
            return P
        if sim.o["replicator"] == "pairwise":
            return self._pairwise(sim, P, tau)
        return self._resample(sim, P, tau)

    def _resample(self, sim, P, tau: float):
        """Weights e^{κτ(F − max F)}, then resampling (or, with ``ess_threshold < 1``, the
        log-weights accumulate until the effective sample size drops below the threshold)."""
        kt = self.rate * tau
        thr = sim.o["ess_threshold"]
        if thr >= 1.0 and sim.logw is None:     # resample_exp checks the fitness itself
            F = sim.selection_fitness(P, check=False)
            sim.stats["resamples"] += 1
            return sim.resample_exp(P, F, kt)
        F = sim.selection_fitness(P)
        lw = np.multiply(F, kt)
        sim.logw = lw if sim.logw is None else sim.logw + lw
        if thr < 1.0:
            # the ESS fraction (Σw)²/(m Σw²) on a fixed stride subsample of m ≤ 16384 agents:
            # a cheap trigger; which steps resample does not bias the weighted measure
            sub = sim.logw[::max(1, sim.n // 16384)]
            w = np.exp(sub - sub.max())
            if w.sum() ** 2 >= thr * w.size * np.dot(w, w):
                return P
        return sim.flush_weights(P)

    def _pairwise(self, sim, P, tau: float):
        """Proportional imitation: per sub-step τ_s every agent draws a partner j uniformly
        and copies it with probability κτ_s(F_j − F_i)⁺ (τ split so that it is ≤ 1)."""
        F = sim.selection_fitness(P)
        spread = float(F.max() - F.min())
        nsub = max(1, int(np.ceil(self.rate * tau * spread)))
        sim.stats["pairwise_max_substeps"] = max(sim.stats["pairwise_max_substeps"], nsub)
        ts = tau / nsub
        for _ in range(nsub):
            j = sim.rng.integers(0, sim.n, sim.n)
            p = self.rate * ts * np.maximum(F[j] - F, 0.0)
            hit = np.flatnonzero(sim.rng.random(sim.n) < p)
            if hit.size:
                src = j[hit]
                P = sim.assign(P, P, hit, src, copy=self.copy, explore=False)
                F = F.copy()
                if self.copy == "both":
                    F[hit] = F[src]
                else:
                    F[hit] = sim.selection_fitness(P)[hit]
        return P

    # -- sharded particles ---------------------------------------------------------------
    def check_sharded(self, options: dict) -> None:
        if self.active and options["replicator"] != "resample":
            raise NotImplementedError("replicator='pairwise' pairs agents across the whole "
                                      "population and has no sharded form; use "
                                      "replicator='resample' with shards")

    def sharded_step(self, ctx, tau: float) -> None:
        """The shards' normalisers Σ e^{κτF} are combined and the N offspring allocated to
        the shards as one systematic resampling of the whole population; with
        ``ess_threshold < 1`` the log-weights accumulate on the shards until the global
        effective sample size drops below the threshold."""
        if not self.active:
            return
        parts = ctx.gather("shard_weights", self.rate * tau)
        if ctx.options["ess_threshold"] < 1.0:
            top = max(p[0] for p in parts)
            s1 = sum(p[1] * np.exp(p[0] - top) for p in parts)
            s2 = sum(p[2] * np.exp(2 * (p[0] - top)) for p in parts)
            if s1 * s1 >= ctx.options["ess_threshold"] * ctx.n * s2:
                return
        ctx.apply("shard_resample", per=ctx.systematic_plan([p[:2] for p in parts]))

    def sharded_flush(self, ctx) -> None:
        if self.active and ctx.options["ess_threshold"] < 1.0:
            parts = ctx.gather("shard_weights", 0.0)
            ctx.apply("shard_resample", per=ctx.systematic_plan([p[:2] for p in parts]))

    def shard_weights(self, shard, kt: float) -> tuple:
        """Shard side: log-weights ℓ = κτF (added to any pending ones); returns (max ℓ,
        Σ e^{ℓ − max ℓ}, Σ e^{2(ℓ − max ℓ)}) (the last only for adaptive resampling)."""
        sim = shard.sim
        pending = shard.scratch.get("logw")
        if pending is None and sim.o["ess_threshold"] >= 1.0:
            pre = shard.advanced_weights(kt)         # computed by the advance just before
            if pre is not None:
                top, total, shard.scratch["w"], shard.scratch["wfac"] = pre
                return top, total, 0.0
            F = sim.selection_fitness(shard.P, check=False)
            top, total, shard.scratch["w"] = shard.exp_weights(F, kt)
            return top, total, 0.0
        F = sim.selection_fitness(shard.P, check=False)
        lw = np.multiply(F, kt)
        if pending is not None:
            lw += pending
        shard.scratch["logw"] = lw
        top, total, w = shard.exp_weights(lw, 1.0)
        shard.scratch["w"] = w
        return top, total, float(np.dot(w, w))

    def shard_weights_ahead(self, shard, kt: float) -> float | None:
        """Shard side, before the advance that precedes :meth:`shard_weights`: kt when the
        advance may compute the weights e^{kt·F} itself (no pending log-weights)."""
        if shard.scratch.get("logw") is None and shard.sim.o["ess_threshold"] >= 1.0:
            return kt
        return None

    def shard_resample(self, shard, offset: float, scale: float, k_lo: int, k_hi: int):
        """Shard side: systematic resampling with this shard's share of the points."""
        w = shard.scratch.pop("w")
        shard.scratch.pop("logw", None)
        shard.resample_weights(w, offset, scale, k_lo, k_hi, shard.scratch.pop("wfac", None))

    # -- Price -------------------------------------------------------------------------
    def price_rate(self, f, fitness, setting: Setting) -> np.ndarray:
        """κ Cov_f(h, F)."""
        if not self.active:
            return np.zeros(setting.grid.ndim_h)
        total = f.sum()
        eF = (f * fitness).sum() / total
        return np.array([self.rate * ((f * fitness * x).sum() / total
                                      - eF * (f * x).sum() / total)
                         for x in setting.h_coords(f.ndim)])


__all__ = ["Replicator"]
