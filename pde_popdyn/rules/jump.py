"""Jump selection rules: Boltzmann (genetic-algorithm / BGK) jumps and truncation."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .._validate import positive_float
from ..slow.agents import bottom_and_top, weighted_choice
from ..slow.selection import BoltzmannMap, JumpStep, TruncationMap
from .base import (SelectionRule, Setting, check_copy, check_fraction, deal_top_donors,
                   give_from_top, global_sets)

JUMP_ORDERS = (1, 2)


class _JumpRule(SelectionRule):
    """A rule of the form ∂_t f = λ (M[f] − f): at rate λ an agent is replaced by a draw from
    the selection map M (which includes the explore kernel K at the copies).

    Grid: the exponential midpoint rule of :class:`~pde_popdyn.slow.selection.JumpStep`
    (positive, mass-exact, second order). Agents: each agent jumps with probability
    1 − e^{−λτ}; with ``jump_order=2`` (the simulator's default) the jumpers take their new
    state from a half-step population, the particle version of the same midpoint rule.
    """

    def mapping(self, fitness: np.ndarray, setting: Setting):
        raise NotImplementedError

    def grid_step(self, fitness, setting: Setting):
        if not self.active:
            return None
        return JumpStep(self.mapping(fitness, setting), self.rate)

    def jump_form(self, fitness, setting: Setting):
        return (self.rate, self.mapping(fitness, setting)) if self.active else None

    def particle_step(self, sim, P, tau: float):
        if not self.active:
            return P
        if sim.o["jump_order"] == 2:
            P_half = self._jump(sim, P, P, -np.expm1(-0.5 * self.rate * tau))
            return self._jump(sim, P, P_half, -np.expm1(-self.rate * tau))
        return self._jump(sim, P, P, -np.expm1(-self.rate * tau))

    def _jump(self, sim, target, donors, prob: float):
        """Each agent of ``target`` jumps with probability ``prob`` and takes its state from
        the selection map applied to ``donors``."""
        jumpers = np.flatnonzero(sim.rng.random(sim.n) < prob)
        F = sim.selection_fitness(donors)
        return self.particle_map(sim, target, donors, jumpers, F)

    def particle_map(self, sim, target, donors, jumpers, F):
        raise NotImplementedError

    # -- sharded particles: the same midpoint rule, with the donors drawn across shards ---------
    def check_sharded(self, options: dict) -> None:
        pass

    def sharded_step(self, ctx, tau: float) -> None:
        if not self.active:
            return
        ctx.apply("shard_jump_begin")
        if ctx.options["jump_order"] == 2:
            self._sharded_jump(ctx, "target", "target", -np.expm1(-0.5 * self.rate * tau),
                               "half")
            self._sharded_jump(ctx, "target", "half", -np.expm1(-self.rate * tau), "P")
        else:
            self._sharded_jump(ctx, "target", "target", -np.expm1(-self.rate * tau), "P")

    def _sharded_jump(self, ctx, target: str, donors: str, prob: float, out: str) -> None:
        """One jump over the shards: each agent of ``target`` jumps with probability
        ``prob`` and takes its state from the selection map applied to ``donors``."""
        stats = ctx.gather("shard_jump_prepare", target, donors, float(prob))
        self.sharded_map(ctx, stats, target, donors, out)

    def sharded_map(self, ctx, stats: list, target: str, donors: str, out: str) -> None:
        raise NotImplementedError

    def shard_jump_begin(self, shard) -> None:
        shard.scratch["target"] = shard.P.copy()

    def shard_jump_prepare(self, shard, target: str, donors: str, prob: float):
        T = shard.scratch[target]
        shard.scratch["jumpers"] = np.flatnonzero(shard.rng.random(T.h.shape[0]) < prob)
        shard.scratch["F"] = shard.sim.selection_fitness(shard.scratch[donors])
        return self.shard_summary(shard)

    def shard_summary(self, shard):
        return len(shard.scratch["jumpers"])

    def _store(self, shard, out: str, pop) -> None:
        if out == "P":
            shard.P = pop
        else:
            shard.scratch[out] = pop

    def price_rate(self, f, fitness, setting: Setting) -> np.ndarray:
        """λ (E_{M[f]}[h] − E_f[h])."""
        if not self.active:
            return np.zeros(setting.grid.ndim_h)
        mf = self.mapping(fitness, setting)(f)
        return self.rate * (setting.mean_h(mf) - setting.mean_h(f))


@dataclass(frozen=True)
class BoltzmannJump(_JumpRule):
    """Boltzmann (genetic-algorithm / BGK) jump selection at rate λ with pressure α.

    At rate λ an agent copies a donor chosen with probability ∝ ω = e^{αF}. With K the explore
    kernel applied at each copy (the identity without one):

    * ``copy="both"``: ∂_t f = 𝓛_ε f + λ ( K *_h (ω f) / ⟨ω⟩_f − f ),
    * ``copy="h"``:    ∂_t f = 𝓛_ε f + λ ( f^θ(θ) · K *_h (∫ ω f dθ) / ⟨ω⟩_f − f ),
      with f^θ = ∫ f dh.

    As ε → 0: ∂_t ρ = λ ( K * (W ρ)/⟨W⟩_ρ − ρ ) with W(h) = E_{π_h} e^{αF} = e^{α F̄_α(h)}, the
    same for both copy modes.
    """

    rate: float = 1.0
    pressure: float = 1.0
    copy: str = "both"

    def __post_init__(self) -> None:
        object.__setattr__(self, "rate", positive_float("BoltzmannJump rate", self.rate,
                                                        allow_zero=True))
        object.__setattr__(self, "pressure", positive_float("BoltzmannJump pressure",
                                                            self.pressure))
        object.__setattr__(self, "copy", check_copy("BoltzmannJump", self.copy))

    def mapping(self, fitness, setting: Setting):
        return BoltzmannMap(fitness, self.pressure, self.copy, setting.explore,
                            h_ndim=setting.h_ndim)

    def reduced_fitness(self, ctx) -> np.ndarray:
        """F̄_α = α⁻¹ log E_{π_h} e^{αF}."""
        return ctx.effective_fitness(self.pressure)

    @property
    def reduced_fitness_name(self) -> str:
        return f"F̄_α (α={self.pressure:g})"

    def particle_map(self, sim, target, donors, jumpers, F):
        if jumpers.size == 0:
            return target
        w = np.exp(self.pressure * (F - F.max()))
        src = weighted_choice(w, jumpers.size, sim.rng)
        return sim.assign(target, donors, jumpers, src, copy=self.copy, explore=True)

    # sharded: donors are allocated to the shards by a multinomial draw on their weights
    # Σ e^{αF}, drawn there ∝ e^{αF}, shuffled by the client and dealt to the jumpers
    def shard_summary(self, shard):
        F = shard.scratch["F"]
        top = float(F.max()) if F.size else -np.inf
        w = np.exp(self.pressure * (F - top)) if F.size else F
        shard.scratch["w"] = w                  # the donor weights, for shard_give
        return len(shard.scratch["jumpers"]), top, float(w.sum()) if F.size else 0.0

    def sharded_map(self, ctx, stats, target, donors, out) -> None:
        jumps = [s[0] for s in stats]
        tops = np.array([s[1] for s in stats])
        ref = tops[np.isfinite(tops)].max()
        a = np.array([s[2] * np.exp(self.pressure * (s[1] - ref)) if np.isfinite(s[1]) else 0.0
                      for s in stats])
        counts = ctx.rng.multinomial(sum(jumps), a / a.sum())
        ctx.exchange("shard_give", list(counts), "shard_take", jumps, give_args=(donors,),
                     receive_args=(target, out))

    def shard_give(self, shard, donors: str, count: int):
        w = shard.scratch.pop("w")
        src = weighted_choice(w, count, shard.rng) if count else np.zeros(0, np.int64)
        return shard.take(src, donors)

    def shard_take(self, shard, target: str, out: str, theta, h) -> None:
        jumpers = shard.scratch["jumpers"]
        res = shard.scratch[target]
        if jumpers.size:
            res = shard.sim.assign(res, shard.population(theta, h), jumpers,
                                   np.arange(jumpers.size), copy=self.copy, explore=True)
        self._store(shard, out, res)


@dataclass(frozen=True)
class Truncation(_JumpRule):
    """Continuous-time truncation selection at rate λ with fraction q.

    At rate λ the agents in the bottom fraction q of fitness copy a uniformly chosen agent of
    the top fraction q:

        ∂_t f = λ ( K *_h ( f 1{F ≥ φ_{1−q}[f]} ) − f 1{F ≤ φ_q[f]} ),

    φ_q the q-quantile of F under f (cells straddling a quantile are split so that each set
    holds exactly mass q); with ``copy="h"`` the copied hyperparameters are attached to the
    copier's own θ. As ε → 0 the reduced rule ranks on F̄ (the limit of selection on the
    effective fitness). For PBT's discrete generations see :class:`pde_popdyn.PBT`.
    On agents, the ⌊qN⌋ lowest copy from the ⌊qN⌋ highest.
    """

    rate: float = 1.0
    fraction: float = 0.2
    copy: str = "both"

    def __post_init__(self) -> None:
        object.__setattr__(self, "rate", positive_float("Truncation rate", self.rate,
                                                        allow_zero=True))
        object.__setattr__(self, "fraction", check_fraction("Truncation", self.fraction))
        object.__setattr__(self, "copy", check_copy("Truncation", self.copy))

    def mapping(self, fitness, setting: Setting):
        return TruncationMap(fitness, self.fraction, self.copy, setting.explore,
                             h_ndim=setting.h_ndim, ledger=setting.ledger)

    def check_particles(self, n: int, options: dict) -> None:
        if int(np.floor(self.fraction * n)) < 1:
            raise ValueError(f"Truncation(fraction={self.fraction}) selects floor(q·n) = 0 of "
                             f"n={n} agents; use more agents or a larger fraction")

    def particle_map(self, sim, target, donors, jumpers, F):
        # M[donors] = donors with its bottom ⌊qN⌋ replaced by copies of its top ⌊qN⌋
        n = sim.n
        k = int(np.floor(self.fraction * n))
        bottom, top = bottom_and_top(F, k)
        is_bottom = np.zeros(n, dtype=bool)
        is_bottom[bottom] = True
        if jumpers.size == 0:
            return target
        jb = jumpers[is_bottom[jumpers]]          # jumpers that M replaces by a top copy
        jn = jumpers[~is_bottom[jumpers]]         # jumpers that M leaves as the donors' agent
        src = top[sim.rng.integers(0, k, jb.size)]
        out = sim.assign(target, donors, jb, src, copy=self.copy, explore=True)
        if jn.size and donors is not target:
            out = sim.assign(out, donors, jn, jn, copy="both", explore=False, memory="inherit")
        return out

    # sharded: the bottom and top ⌊qN⌋ of the whole population by exact order statistics of
    # F over the shards (ties broken by shard, then index); each bottom jumper's donor is
    # drawn uniformly from the global top set (its shard by a multinomial draw on the shards'
    # shares of the top set)
    def sharded_map(self, ctx, stats, target, donors, out) -> None:
        deal_top_donors(ctx, int(np.floor(self.fraction * ctx.n)), "shard_mark", "shard_give",
                        "shard_take", give_args=(donors,), receive_args=(target, donors, out))

    def shard_mark(self, shard, vb: float, vt: float, tb: int, tt: int):
        """Shard side: which agents are in the global bottom set (the k smallest F) and in
        the top set (not among the N − k smallest); returns (bottom jumpers, top agents)."""
        bottom, shard.scratch["top"] = global_sets(shard.scratch["F"], vb, tb, vt, tt)
        jumpers = shard.scratch["jumpers"]
        shard.scratch["jb"] = jumpers[bottom[jumpers]]
        shard.scratch["jn"] = jumpers[~bottom[jumpers]]
        return len(shard.scratch["jb"]), len(shard.scratch["top"])

    def shard_give(self, shard, donors: str, count: int):
        return give_from_top(shard, count, donors)

    def shard_take(self, shard, target: str, donors: str, out: str, theta, h) -> None:
        jb, jn = shard.scratch["jb"], shard.scratch["jn"]
        res = shard.scratch[target]
        if jb.size:
            res = shard.sim.assign(res, shard.population(theta, h), jb, np.arange(jb.size),
                                   copy=self.copy, explore=True)
        if jn.size and donors != target:
            res = shard.sim.assign(res, shard.scratch[donors], jn, jn, copy="both",
                                   explore=False, memory="inherit")
        self._store(shard, out, res)


__all__ = ["BoltzmannJump", "Truncation"]
