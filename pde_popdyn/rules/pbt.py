"""Population-Based Training as practised: a generation map applied every ready interval."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .._validate import positive_float
from ..slow.agents import bottom_and_top
from ..slow.selection import TruncationMap
from .base import (SelectionRule, Setting, check_copy, check_fraction, deal_top_donors,
                   give_from_top, global_sets)

RANK_ON = ("instantaneous", "effective")
MEMORY = ("reset", "inherit")


@dataclass(frozen=True)
class PBT(SelectionRule):
    """Population-Based Training: every agent trains for a ready interval τ, then the
    population is ranked once and the generation map is applied (exploit, then explore).

    Generations happen at t = τ, 2τ, …; between them only the fast dynamics (and a continuous
    mutation, if the model has one) act. Ranking on a fitness G (``rank_on``), let a and b be
    the lower and upper q-quantiles of G under f, B = {G < a} the bottom and T = {G > b} the
    top set, each of mass exactly q (cells tied with a quantile are split so). With K the
    explore kernel (the model's explore rules: :class:`~pde_popdyn.GaussianJump`,
    :class:`~pde_popdyn.Perturb`, :class:`~pde_popdyn.PriorResample`; the identity without):

    * ``copy="both"`` (exploit copies the donor's weights and hyperparameters)::

          P_q f = f 1_{B^c} + K *_h (f 1_T)

    * ``copy="h"`` (the copier keeps its θ)::

          P_q f = f 1_{B^c} + (1/q) (∫ f 1_B dh)(θ) · (K *_h ∫ f 1_T dθ)(h)

    Mass stays exactly 1 and f ≥ 0. As ε → 0 (θ Gibbs-distributed at every ready time) the
    reduced map on ρ(h) ranks on the law of F under ρ(h)π_h(θ) (``rank_on="instantaneous"``)::

        ρ ← ρ · (1 − π_h(F < a)) + K * (ρ · π_h(F > b)),   a, b the mixture quantiles,

    or, with ``rank_on="effective"``, on F̄(h) = ∫ F π_h dθ (a fitness averaged long enough to
    average out θ): the same map with the indicators of {F̄ < a} and {F̄ > b}. The two limits
    differ.

    Agents (as the reference PBT code runs it): rank, the ⌈qN⌉ lowest are replaced, each
    copying a donor drawn uniformly among the ⌈qN⌉ highest, copy (θ, h) or h only, explore,
    then training resumes. With a fitness memory (``simulate_particles(fitness_mode="window",
    ...)``) the copier's memory is reset after exploit (``memory="reset"``, as the reference
    code does: default) or inherited from the donor (``memory="inherit"``). The grid solvers
    have no memory: they rank on the instantaneous F or on F̄, the limits of a window short
    against, or long against, the fast time scale.

    Parameters
    ----------
    interval:
        τ > 0, the ready interval (model time between generations).
    fraction:
        q ∈ (0, 0.5]: the bottom and the top fraction.
    copy:
        'both' (default) or 'h'.
    rank_on:
        'instantaneous' (default: the fitness F(θ, h) of each agent's current state) or
        'effective' (F̄(h)). On agents, the simulator's ``fitness_mode`` decides what is
        ranked; ``rank_on`` applies to the grid solvers.
    memory:
        'reset' (default) or 'inherit': the copier's fitness memory after exploit (agents with
        windowed fitness only).
    """

    interval: float = 1.0
    fraction: float = 0.2
    copy: str = "both"
    rank_on: str = "instantaneous"
    memory: str = "reset"

    def __post_init__(self) -> None:
        object.__setattr__(self, "interval", positive_float("PBT interval", self.interval))
        object.__setattr__(self, "fraction", check_fraction("PBT", self.fraction))
        object.__setattr__(self, "copy", check_copy("PBT", self.copy))
        if self.rank_on not in RANK_ON:
            raise ValueError(f"PBT rank_on={self.rank_on!r} is not known; use 'instantaneous' "
                             f"(F of each agent's state) or 'effective' (F̄(h))")
        if self.memory not in MEMORY:
            raise ValueError(f"PBT memory={self.memory!r} is not known; use 'reset' (the "
                             f"reference PBT code) or 'inherit'")

    @property
    def rate(self) -> float:
        """The mass moved per unit time, q/τ (for comparison with continuous truncation)."""
        return self.fraction / self.interval

    # -- grid faces ----------------------------------------------------------------------
    def generation_map(self, fitness, setting: Setting):
        """P_q on the joint grid, ranking on F or on F̄(h) (constant along θ)."""
        G = fitness
        if self.rank_on == "effective":
            G = np.broadcast_to(setting.averages.effective_fitness(None), np.shape(fitness))
        return TruncationMap(G, self.fraction, self.copy, setting.explore,
                             h_ndim=setting.h_ndim, ledger=setting.ledger)

    def reduced_fitness(self, ctx) -> np.ndarray:
        return ctx.effective_fitness(None)

    def reduced_generation_map(self, ctx):
        setting = ctx.setting
        if self.rank_on == "effective":
            return TruncationMap(ctx.effective_fitness(None), self.fraction, "both",
                                 setting.explore, h_ndim=setting.h_ndim, ledger=setting.ledger)
        return _LiftedMap(ctx, TruncationMap(ctx.joint_fitness, self.fraction, "both",
                                             setting.explore, h_ndim=setting.h_ndim,
                                             ledger=setting.ledger))

    # -- particles -----------------------------------------------------------------------
    def n_selected(self, n: int) -> int:
        """⌈qN⌉, the size of the bottom and of the top set (the reference code's rule)."""
        return int(math.ceil(self.fraction * n - 1e-12))

    def check_particles(self, n: int, options: dict) -> None:
        if 2 * self.n_selected(n) > n:
            raise ValueError(f"PBT(fraction={self.fraction}) with n={n} agents makes bottom "
                             f"and top sets of ⌈qN⌉ = {self.n_selected(n)} that overlap; use "
                             f"more agents or a smaller fraction")

    def particle_generation(self, sim, P):
        """Rank on the simulator's selection fitness; the ⌈qN⌉ lowest each copy a uniformly
        chosen agent among the ⌈qN⌉ highest, then explore."""
        k = self.n_selected(sim.n)
        bottom, top = bottom_and_top(sim.selection_fitness(P), k)
        src = top[sim.rng.integers(0, k, k)]
        return sim.assign(P, P, bottom, src, copy=self.copy, explore=True, memory=self.memory)

    # sharded: the generation over all shards. The bottom and top ⌈qN⌉ of the whole population
    # come from exact order statistics of the selection fitness across the shards (ties broken
    # by shard, then index, as on one process by a stable sort); each bottom agent's donor is
    # uniform on the global top set: its shard by a multinomial draw on the shards' shares of
    # the top set, then an agent uniformly within that shard.
    def check_sharded(self, options: dict) -> None:
        pass

    def sharded_generation(self, ctx) -> None:
        ctx.apply("shard_pbt_fitness")
        deal_top_donors(ctx, self.n_selected(ctx.n), "shard_pbt_mark", "shard_pbt_give",
                        "shard_pbt_take")

    def shard_pbt_fitness(self, shard) -> None:
        """Shard side: the selection fitness of the shard's agents, kept for the ranking."""
        shard.scratch["F"] = shard.sim.selection_fitness(shard.P)

    def shard_pbt_mark(self, shard, vb: float, vt: float, tb: int, tt: int):
        """Shard side: its agents in the global bottom set (the ⌈qN⌉ smallest F) and in the
        global top set (not among the N − ⌈qN⌉ smallest); returns their numbers."""
        bottom, shard.scratch["top"] = global_sets(shard.scratch["F"], vb, tb, vt, tt)
        shard.scratch["bottom"] = np.flatnonzero(bottom)
        return len(shard.scratch["bottom"]), len(shard.scratch["top"])

    def shard_pbt_give(self, shard, count: int):
        """Shard side: ``count`` donors drawn uniformly (with replacement) from its top set."""
        return give_from_top(shard, count)

    def shard_pbt_take(self, shard, theta, h) -> None:
        """Shard side: its bottom agents copy the donors dealt to them, then explore."""
        bottom = shard.scratch["bottom"]
        if bottom.size:
            shard.P = shard.sim.assign(shard.P, shard.population(theta, h), bottom,
                                       np.arange(bottom.size), copy=self.copy, explore=True,
                                       memory=self.memory)

    # -- Price -------------------------------------------------------------------------
    def generation_shift(self, f: np.ndarray, fitness: np.ndarray, setting: Setting
                         ) -> np.ndarray:
        """E_{P f}[h] − E_f[h]: the jump of the mean at a generation (per h-axis)."""
        mf = self.generation_map(fitness, setting)(f)
        return setting.mean_h(mf) - setting.mean_h(f)


class _LiftedMap:
    """The reduced PBT map ranking on the law of F under ρ π_h: lift ρ to ρ π_h on the joint
    grid, apply the joint map (copy both), integrate θ out."""

    def __init__(self, ctx, mapping):
        self.ctx = ctx
        self.mapping = mapping
        self.w = ctx.grid.h_weights

    def __call__(self, rho: np.ndarray) -> np.ndarray:
        f = self.ctx.lift(rho * self.w)
        return self.ctx.project(self.mapping(f)) / self.w


__all__ = ["PBT"]
