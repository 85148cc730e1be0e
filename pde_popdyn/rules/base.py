"""What every selection and mutation rule provides: the faces the solvers ask for.

A rule is a small frozen dataclass holding its parameters. It knows each of its faces:

* **on the grid**: the sub-step ``step(f, τ) -> f`` it contributes to the joint equation (and,
  applied to ρ(h), to the reduced one), or, for a rule acting at discrete times (PBT), the
  map applied at those times;
* **reduced (ε → 0)**: which fitness on the h-grid the reduced equation selects on (F̄, F̄_α,
  or the law of F under ρπ_h) and its step on ρ;
* **on agents**: its step on a population of particles;
* **in the mean-h (Price) identity**: its contribution to d/dt E[h].

The solvers never branch on a rule's type: they call these methods. Adding a rule is one new
class (plus its tests). The equations of each rule are stated in its class docstring and in
the package documentation (docs/model.md).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar

import numpy as np

from .._validate import positive_float
from ..grid import Grid
from ..slow.clip import ClipLedger

SubStep = Callable[[np.ndarray, float], np.ndarray]
COPY_MODES = ("both", "h")

#: every rule class by name, for rebuilding rules from stored descriptions and config files
REGISTRY: dict[str, type] = {}


def check_copy(rule: str, copy: Any) -> str:
    if copy not in COPY_MODES:
        raise ValueError(f"{rule} copy={copy!r} is not known; use copy='both' (copy θ and h, "
                         f"as PBT does) or copy='h' (copy the hyperparameters only)")
    return copy


def check_fraction(rule: str, fraction: Any) -> float:
    """A ranking rule's fraction q ∈ (0, 0.5] (the bottom and top sets must not overlap)."""
    q = positive_float(f"{rule} fraction", fraction)
    if q > 0.5:
        raise ValueError(f"{rule} fraction must be in (0, 0.5], got {q}: the bottom and top "
                         f"fractions may not overlap")
    return q


def global_sets(F: np.ndarray, vb: float, tb: int, vt: float, tt: int
                ) -> tuple[np.ndarray, np.ndarray]:
    """One shard's part of the global bottom and top sets of a sharded ranking: given the
    order statistics (value v, this shard's count of ties t) of the bottom rank and of rank
    N − k, return (mask of the agents in the bottom set, indices of those in the top set)."""
    bottom = F < vb
    bottom[np.flatnonzero(F == vb)[:tb]] = True
    low = F < vt
    low[np.flatnonzero(F == vt)[:tt]] = True
    return bottom, np.flatnonzero(~low)


def give_from_top(shard, count: int, source: str = "P") -> tuple[np.ndarray, np.ndarray]:
    """Shard side of a ranking step: ``count`` donors drawn uniformly (with replacement) from
    the shard's part of the global top set (``scratch["top"]``), from population ``source``."""
    top = shard.scratch["top"]
    return shard.take(top[shard.rng.integers(0, top.size, count)] if count else
                      np.zeros(0, np.int64), source)


def deal_top_donors(ctx, k: int, mark: str, give: str, take: str, give_args: tuple = (),
                    receive_args: tuple = ()) -> None:
    """A sharded ranking step (client side): find the global bottom and top ``k`` by exact
    order statistics of the shards' stored fitness ``F``, let each shard mark its part
    (``mark`` returns (takers, top agents)), allocate the donors to the shards by a multinomial
    draw on their shares of the top set, and deal them to the takers (``give``/``take``)."""
    n = ctx.n
    (vb, tb), (vt, tt) = ctx.order_statistics("F", [k, n - k])
    marks = ctx.gather(mark, vb, vt, per=[(tb[s], tt[s]) for s in range(ctx.shards)])
    takes = [m[0] for m in marks]
    tops = np.array([m[1] for m in marks], dtype=float)
    counts = ctx.rng.multinomial(sum(takes), tops / tops.sum())
    ctx.exchange(give, list(counts), take, takes, give_args=give_args,
                 receive_args=receive_args)


@dataclass
class Setting:
    """Where a rule's grid face acts: arrays whose last ``h_ndim`` axes are the h-axes of
    ``grid`` (the θ-axes before them for the joint equation; none for the reduced one).

    ``spectral`` selects continuum eigenvalues for mutation and explore kernels; ``explore``
    is the kernel K applied to the mass of each copy (None: no perturbation); ``ledger``
    records the mass removed by clipping; ``averages`` gives Gibbs averages (F̄, F̄_α) on the
    h-grid to rules that rank on them (a :class:`~pde_popdyn.gibbs.GibbsAverages`).
    """

    grid: Grid
    h_ndim: int
    joint: bool = True
    spectral: bool = False
    explore: Callable[[np.ndarray], np.ndarray] | None = None
    ledger: ClipLedger = field(default_factory=ClipLedger)
    averages: Any = None

    def h_coords(self, ndim: int) -> list[np.ndarray]:
        """Each h-coordinate shaped to broadcast against a state of ``ndim`` axes."""
        out = []
        for k, ax in enumerate(self.grid.h_axes):
            shape = [1] * ndim
            shape[ndim - self.h_ndim + k] = ax.cells
            out.append(ax.centres.reshape(shape))
        return out

    def mean_h(self, f: np.ndarray) -> np.ndarray:
        """E[h] under the masses f (one entry per h-axis)."""
        total = f.sum()
        return np.array([(f * x).sum() / total for x in self.h_coords(f.ndim)])


class Rule:
    """Base of all rules: a description for files and messages, and the class registry."""

    kind: ClassVar[str] = "rule"

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if not cls.__name__.startswith("_"):
            REGISTRY[cls.__name__] = cls

    def describe(self) -> dict:
        """A JSON-able description ``{"rule": name, **parameters}`` (callables by name)."""
        out: dict[str, Any] = {"rule": type(self).__name__}
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if callable(v):
                v = getattr(v, "__name__", repr(v))
            elif isinstance(v, np.ndarray):
                v = v.tolist()
            elif isinstance(v, tuple):
                v = list(v)
            out[f.name] = v
        return out


def rule_from_dict(d: dict | None):
    """Rebuild a rule from :meth:`Rule.describe` output (also accepts the first version's
    ``{"rule": ...}``/``{"kind": ...}`` descriptions)."""
    if d is None:
        return None
    d = dict(d)
    name = d.pop("rule", None) or d.pop("kind", None)
    cls = REGISTRY.get(name)
    if cls is None:
        raise ValueError(f"unknown rule {name!r}; known rules: {sorted(REGISTRY)}")
    names = {f.name for f in dataclasses.fields(cls)}
    return cls(**{k: (tuple(v) if isinstance(v, list) else v) for k, v in d.items()
                  if k in names})


class SelectionRule(Rule):
    """A selection ("exploit") rule. Subclasses set ``rate`` and ``copy`` fields."""

    kind: ClassVar[str] = "selection"
    #: copies carry the explore kernel K (jump, truncation and PBT rules do; the replicator
    #: has no copy events in its mean-field form)
    accepts_explore: ClassVar[bool] = True

    @property
    def active(self) -> bool:
        """False when the rule does nothing (rate 0)."""
        return getattr(self, "rate", 1.0) > 0

    @property
    def interval(self) -> float | None:
        """Time between generations for rules acting at discrete times; None if continuous."""
        return None

    @property
    def linear_rate(self) -> float | None:
        """κ if the rule is the replicator, whose equation linearises (f = u/∫u with
        ∂_t u = κ F u); None for nonlinear rules."""
        return None

    # -- the grid faces ------------------------------------------------------------------
    def grid_step(self, fitness: np.ndarray, setting: Setting) -> SubStep | None:
        """The sub-step of this rule's term of the equation (continuous rules)."""
        return None

    def jump_form(self, fitness: np.ndarray, setting: Setting) -> tuple | None:
        """``(λ, M)`` if the rule's term has the jump form λ(M[f] − f) with M positive and
        mass-preserving (the integrator of :mod:`pde_popdyn.ap` then folds the fast dynamics
        into the jump step); None otherwise."""
        return None

    def generation_map(self, fitness: np.ndarray, setting: Setting
                       ) -> Callable[[np.ndarray], np.ndarray] | None:
        """The map applied at each generation time (rules with an ``interval``)."""
        return None

    # -- the reduced face ----------------------------------------------------------------
    def reduced_fitness(self, ctx) -> np.ndarray:
        """The fitness on the h-grid that the reduced equation selects on (default F̄)."""
        return ctx.effective_fitness(None)

    @property
    def reduced_fitness_name(self) -> str:
        """What :meth:`reduced_fitness` returns, for records and plots."""
        return "F̄"

    def reduced_rule(self) -> "SelectionRule":
        """The rule acting on ρ(h) as ε → 0: a copied θ relaxes to π_h at once, so copying
        (θ, h) or h only gives the same reduced equation."""
        if getattr(self, "copy", "both") == "h":
            return dataclasses.replace(self, copy="both")
        return self

    def reduced_step(self, ctx) -> SubStep | None:
        """The sub-step on ρ of the reduced equation."""
        return self.reduced_rule().grid_step(self.reduced_fitness(ctx), ctx.setting)

    def reduced_generation_map(self, ctx) -> Callable[[np.ndarray], np.ndarray] | None:
        """The generation map on ρ (rules with an ``interval``)."""
        return None

    # -- the particle face ---------------------------------------------------------------
    def check_particles(self, n: int, options: dict) -> None:
        """Raise if this rule cannot run on ``n`` agents with these simulator options."""

    def particle_step(self, sim, P, tau: float):
        """Selection on a population over τ (continuous rules); returns the new population."""
        return P

    def particle_generation(self, sim, P):
        """The generation map on a population (rules with an ``interval``)."""
        return P

    # -- the sharded particle face --------------------------------------------------------
    # A sharded run (simulate_particles(..., shards=S)) keeps the agents on the workers. The
    # client-side methods below get a ShardContext ``ctx`` (pde_popdyn.particles.shardctx):
    # ``ctx.gather(name, *args, per=...)`` runs this rule's shard-side method
    # ``name(shard, *args)`` on every shard and returns the results (``ctx.apply`` queues it
    # for the next round trip), and ``ctx.systematic_plan``, ``ctx.order_statistics`` and
    # ``ctx.exchange`` combine what the shards report (normalisers, quantiles, donor pools).
    # A shard-side method sees ``shard.sim`` (the shard's Simulator: selection_fitness,
    # assign, explore, rng, n), ``shard.P`` (which it may replace), ``shard.rng`` and
    # ``shard.scratch`` (a dict kept between the calls of one step).
    def check_sharded(self, options: dict) -> None:
        """Raise if this rule cannot run on a sharded population with these options."""
        raise NotImplementedError(f"{type(self).__name__} has no sharded particle face; run "
                                  f"it without shards")

    def sharded_step(self, ctx, tau: float) -> None:
        """Selection over τ on a sharded population (continuous rules; client side)."""
        raise NotImplementedError(f"{type(self).__name__} has no sharded particle face")

    def sharded_flush(self, ctx) -> None:
        """Apply any selection still pending (e.g. accumulated weights) before a save."""

    def sharded_generation(self, ctx) -> None:
        """The generation map on a sharded population (rules with an ``interval``). A
        ranking rule finds its global quantiles with ``ctx.order_statistics`` over the
        fitness each shard stored in its scratch, and moves its donors with
        ``ctx.exchange`` (as :class:`~pde_popdyn.rules.jump.Truncation`'s sharded face
        does)."""
        raise NotImplementedError(f"{type(self).__name__} has no sharded particle face")

    # -- the Price identity --------------------------------------------------------------
    def price_rate(self, f: np.ndarray, fitness: np.ndarray, setting: Setting) -> np.ndarray:
        """This rule's contribution to d/dt E[h] at the state f (masses), per h-axis."""
        return np.zeros(setting.grid.ndim_h)


class MutationRule(Rule):
    """A mutation ("explore") rule: continuous in time (diffusion) or a kernel at copies."""

    kind: ClassVar[str] = "mutation"
    #: True: acts over time (a sub-step); False: perturbs each copied h (an explore kernel)
    continuous: ClassVar[bool] = False

    @property
    def diffusion_coefficient(self) -> float:
        """D of a diffusive mutation D Δ_h (0 for kernels at copies)."""
        return 0.0

    def grid_step(self, setting: Setting) -> SubStep | None:
        """The sub-step of a continuous mutation."""
        return None

    def kernel(self, setting: Setting) -> Callable[[np.ndarray], np.ndarray] | None:
        """The explore kernel K on the h-grid (mutation at copies)."""
        return None

    @property
    def particle_brownian(self) -> float | None:
        """D if this continuous mutation moves each agent's h by √(2Dτ)ξ over τ (then the
        boundary rule), so that a compiled step may draw that move itself; None otherwise."""
        return None

    def particle_mutate(self, h: np.ndarray, tau: float, rng: np.random.Generator,
                        box, boundary: str) -> np.ndarray:
        """Move the agents' h over τ (continuous mutation), in place."""
        return h

    def particle_explore(self, h: np.ndarray, rng: np.random.Generator, box,
                         boundary: str) -> np.ndarray:
        """The perturbed copies of h (mutation at copies); returns a new array."""
        return h

    def boundary_rate(self, rho: np.ndarray, grid: Grid, spectral: bool) -> np.ndarray:
        """This mutation's contribution to d/dt E[h] (the boundary flux of diffusion), per
        saved state ρ (rows), for one h-axis."""
        return np.zeros(rho.shape[0])


__all__ = ["SelectionRule", "MutationRule", "Rule", "Setting", "REGISTRY", "rule_from_dict",
           "check_copy", "COPY_MODES", "SubStep"]
