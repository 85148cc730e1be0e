"""Can the mean-field PDE stand in for a population of N agents? A finite-N check.

The joint equation is the N → ∞ limit of the agents (propagation of chaos): for independent
agents the population's moments scatter around the PDE's by O(N^{-1/2}) and are biased by
O(1/N). Selection breaks the independence: agents copy each other, so after a while the
population descends from fewer and fewer of its initial agents. When a few lineages take
over, the population behaves like a sample of far fewer than N agents, its moments scatter
far more than sqrt(Var/N), and the PDE, whose continuum of lineages never runs out, moves
ahead of it. :func:`mean_field_check` measures this at the user's N.

What it computes, for a model, a grid, an initial density f₀ and N:

* the PDE f(t) by :func:`pde_popdyn.solve` with the same Δt as the agents (the agents' scheme
  is a particle version of the same time-discrete scheme, so their difference is the finite-N
  effect, not the time step), and, as checks of the PDE itself, the same run at Δt/2 and on a
  grid with half the cells per axis;
* ``seeds`` independent runs of :func:`pde_popdyn.simulate_particles` with N agents drawn
  from f₀; for each saved time the bias of the expected moments m ∈ {E h, Var h},
  ``bias = mean over runs of m_N − m_PDE``, its standard error, and the *spread*, the
  standard deviation of m_N from run to run (how far one population scatters around its
  own expectation);
* effective population sizes: the **variance effective size**
  ``ne_variance = Var_f(h) / spread(E h)²``, the number of independent agents whose mean would
  scatter as much (N for independent agents); and from the genealogy, with the founder of
  every agent tracked through the copies, the probability F(t) that two agents drawn without
  replacement descend from the same initial agent, the **effective number of ancestors**
  1/F(t), and for the jump rules the **coalescent effective size**
  ``ne_coalescent = c t / (−log(1 − F))``: in the neutral version of the rule (all fitnesses
  equal) two agents come to share a parent at rate c/N (c = 2λ for Boltzmann jumps, 2λq for
  truncation, 3q/τ for PBT), so 1 − F = e^{−ct/N} and ne_coalescent = N; selection that
  concentrates the copies on a few agents makes it smaller;
* a verdict from the worst ratio |bias|/spread over the saved times t > 0 and both moments
  (the bias less the PDE's estimated grid error, which the agents do not share):
  ``"trust"`` (≤ 1: the PDE is off by less than one run's own scatter), ``"caution"``
  (≤ 3), ``"do not trust"`` (> 3); with reasons (lineage takeover, a PDE time-step or grid
  error larger than the spread).

How founders are tracked (public API only): agent i starts with
h̃_i = (h_i − c) + P·i, with c the centre of the h-box and P = 16 × (the folding period of the
box), and every model callable sees h = fold(c + h̃ − P·round(h̃/P)), the box's reflecting (or
periodic) rule applied to the offset. Copies carry h̃, so round(h̃/P) is the founder; mutation
moves the offset only. The agents then run on R in h (no box: the fold plays the box), which is
the reflecting rule in law for symmetric mutation (and the periodic rule exactly). Not possible
with clipped boundaries, multiplicative or (on a reflecting axis) asymmetric
:class:`~pde_popdyn.Perturb`, :class:`~pde_popdyn.PriorResample`, the
``"estimated"`` fitness mode, a periodic θ or several h-axes: then the genealogy is skipped
(``lineage_note`` says why) and the rest is computed as usual.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ._validate import density_array, positive_float
from .grid import Grid
from .model import Model
from .particles import simulate_particles
from .particles.options import _check_int, _resolve_effective, sample_density
from .solution import Solution
from .solve import solve

VERDICTS = ("trust", "caution", "do not trust")
#: |bias|/spread up to which the verdict is "trust", then "caution"
TRUST, CAUTION = 1.0, 3.0
#: fewer effective ancestors than this at the last save is reported as lineage takeover
FEW_ANCESTORS = 10.0
QUANTITIES = ("mean_h", "var_h")


def neutral_coalescence(rule: Any) -> float | None:
    """c such that, were the rule neutral (all fitnesses equal), two agents would come to share
    a parent at rate c/N. Read off the rule's public fields: a rule copying at rate λ (each
    agent jumps at rate λ; with a ``fraction`` q only the bottom q does) gives c = 2λ (2λq),
    either agent of the pair copying the other; a rule with generations every ``interval`` τ
    replacing the bottom q by copies of the top q gives c = 3q/τ (a generation also joins two
    bottom agents that pick the same donor); the replicator (``linear_rate``), whose resampling
    has no neutral copy rate, gives None."""
    if rule is None or rule.linear_rate is not None:
        return None
    q = getattr(rule, "fraction", None)
    if rule.interval is not None:
        return None if q is None else 3.0 * float(q) / float(rule.interval)
    return 2.0 * float(rule.rate) * (1.0 if q is None else float(q))


# -- founder labels carried in h ----------------------------------------------------------------
class Lineage:
    """Founder labels carried by h through the copies (module docstring).

    ``encode(h)`` gives agent i (1-based) the value (h_i − c) + P·i; ``real(h)`` the
    hyperparameter the model sees, folded into the box [lo, hi] (reflecting, or periodic);
    ``labels(h)`` the founder of every agent; ``offset(h)`` the distance of the unfolded
    hyperparameter from c, which must stay well inside ±P/2 for the labels to be exact.
    """

    def __init__(self, lo: float, hi: float, periodic: bool = False, factor: int = 16):
        self.lo, self.hi, self.periodic = float(lo), float(hi), bool(periodic)
        self.length = self.hi - self.lo
        self.centre = 0.5 * (self.lo + self.hi)
        self.period = factor * (self.length if periodic else 2.0 * self.length)

    def encode(self, h: np.ndarray) -> np.ndarray:
        h = np.asarray(h, dtype=float)
        return (h - self.centre) + self.period * np.arange(1, h.size + 1)

    def labels(self, h: np.ndarray) -> np.ndarray:
        return np.rint(np.asarray(h) / self.period).astype(np.int64)

    def offset(self, h: np.ndarray) -> np.ndarray:
        h = np.asarray(h, dtype=float)
        return h - self.period * np.rint(h / self.period)

    def real(self, h: Any) -> Any:
        x = self.offset(h) + self.centre - self.lo
        if self.periodic:
            return self.lo + np.mod(x, self.length)
        y = np.mod(x, 2.0 * self.length)
        return self.lo + self.length - np.abs(self.length - y)

    def wrap(self, model: Model) -> Model:
        """The same model with every callable seeing ``real(h)`` instead of the label-carrying h."""
        real = self.real

        def joint(fn):
            return None if fn is None else (lambda theta, h: fn(theta, real(h)))

        def of_h(v):
            return (lambda h: v(real(h))) if callable(v) else v

        quad = None
        if model.quadratic is not None:
            quad = (of_h(model.quadratic[0]), of_h(model.quadratic[1]))
        return Model(joint(model.loss), joint(model.fitness), temperature=of_h(model.temperature),
                     eps=model.eps, selection=model.selection, mutation=model.mutation,
                     mobility=of_h(model.mobility), name=model.name,
                     loss_grad=joint(model.loss_grad), quadratic=quad)


def lineage_support(model: Model, grid: Grid, options: dict) -> str | None:
    """None if founders can be tracked for this run (module docstring), else the reason."""
    if grid.ndim_h != 1 or grid.ndim_theta != 1:
        return "founders are tracked for one θ- and one h-axis only"
    if "theta" in grid.periodic:
        return "founders are not tracked with a periodic θ-axis"
    if options.get("boundary") == "clip":
        return "founders are not tracked with boundary='clip' (a clip is not a fold)"
    if options.get("h_box") is not None:
        return "founders are tracked with the grid's h-box; do not pass h_box="
    if options.get("fitness_mode") == "estimated":
        return "founders are not tracked with fitness_mode='estimated' (it regresses on h)"
    # the label rides on h only if every move of h is a shift: diffusion, Gaussian jumps and
    # additive (log-scale) perturbations, without clipping and without redraws from a prior;
    # folding afterwards is the reflecting rule in law only for symmetric shifts
    periodic = "h" in grid.periodic
    for m in model.mutations:
        factors = getattr(m, "factors", None)
        symmetric = factors is None or periodic or np.allclose(
            np.sort(np.log(factors)), np.sort(-np.log(factors)))
        if getattr(m, "boundary", None) == "clip" or getattr(m, "scale", "log") != "log" \
                or hasattr(m, "prior") or not symmetric:
            return (f"founders are not tracked with the explore rule {m!r} (tracked: "
                    f"diffusion, Gaussian jumps and symmetric additive perturbations, "
                    f"without clipping)")
    return None


# -- replicated particle runs ---------------------------------------------------------------
def sample_initial(grid: Grid, f0: np.ndarray, n: int, rng: np.random.Generator
                   ) -> tuple[np.ndarray, np.ndarray]:
    """n agents drawn from the piecewise-constant density with cell averages ``f0``: a cell
    with probability ∝ its mass, then a point uniformly inside it (the particle solver's own
    sampler)."""
    return sample_density(grid, f0, n, rng)


@dataclass
class Replicas:
    """Moments of h (and θ) of independent runs, shape (runs, saves), and the genealogy:
    ``pair_identity`` (the probability that two agents share a founder) and ``founders``
    (how many founders still have descendants), or None with ``lineage_note`` saying why."""

    t: np.ndarray
    mean_h: np.ndarray
    var_h: np.ndarray
    mean_theta: np.ndarray
    var_theta: np.ndarray
    m4_h: np.ndarray
    pair_identity: np.ndarray | None
    founders: np.ndarray | None
    lineage_note: str | None
    seconds: float


def run_replicas(model: Model, n: int, grid: Grid, f0: np.ndarray, t_final: float, dt: float,
                 *, seeds: int, seed: int = 0, save_every: int | None = None,
                 lineage: bool = True, **options: Any) -> Replicas:
    """``seeds`` independent particle runs of N agents from f₀ (each with its own initial draw
    and noise), with founders tracked when ``lineage`` and possible (module docstring).
    ``options`` go to :func:`pde_popdyn.simulate_particles`."""
    import time

    note = lineage_support(model, grid, options) if lineage else "lineage=False"
    tracker = None
    if note is None:
        tracker = Lineage(grid.h_edges[0], grid.h_edges[-1], "h" in grid.periodic)
        run_model = tracker.wrap(model)
        if options.get("fitness_mode") == "effective":
            fbar, _ = _resolve_effective(model, options.get("effective_fitness"), grid)
            options = {**options, "effective_fitness": lambda h: fbar(tracker.real(h))}
    out: dict[str, list] = {k: [] for k in ("mean_h", "var_h", "mean_theta", "var_theta",
                                            "m4_h", "pair", "founders")}
    t0 = time.perf_counter()
    t = None
    for k in range(seeds):
        rng = np.random.default_rng([int(seed), k])
        theta, h = sample_initial(grid, f0, n, rng)
        run_seed = int(rng.integers(2 ** 31))
        if tracker is None:
            ens = simulate_particles(model, n, (theta, h), t_final, dt, seed=run_seed,
                                     save_every=save_every, grid=grid, progress=False,
                                     **options)
            hs = ens.h
        else:
            ens = simulate_particles(run_model, n, (theta, tracker.encode(h)), t_final, dt,
                                     seed=run_seed, save_every=save_every, progress=False,
                                     **options)
            if np.abs(tracker.offset(ens.h)).max() > 0.25 * tracker.period:
                note = ("the hyperparameters wandered too far for exact founder labels; "
                        "genealogy skipped")
            labels = tracker.labels(ens.h)
            hs = tracker.real(ens.h)
            counts = [np.bincount(row, minlength=n + 1) for row in labels]
            out["pair"].append([float((c * (c - 1.0)).sum() / (n * (n - 1.0))) if n > 1
                                else 1.0 for c in counts])
            out["founders"].append([int((c > 0).sum()) for c in counts])
        t = ens.t
        th = ens.theta if ens.theta.ndim == 2 else ens.theta[..., 0]
        mh = hs.mean(axis=1)
        out["mean_h"].append(mh)
        out["var_h"].append(hs.var(axis=1))
        out["m4_h"].append(((hs - mh[:, None]) ** 4).mean(axis=1))
        out["mean_theta"].append(th.mean(axis=1))
        out["var_theta"].append(th.var(axis=1))
    tracked = note is None
    return Replicas(t=np.asarray(t), mean_h=np.array(out["mean_h"]),
                    var_h=np.array(out["var_h"]), mean_theta=np.array(out["mean_theta"]),
                    var_theta=np.array(out["var_theta"]), m4_h=np.array(out["m4_h"]),
                    pair_identity=np.array(out["pair"]) if tracked else None,
                    founders=np.array(out["founders"]) if tracked else None,
                    lineage_note=note, seconds=time.perf_counter() - t0)


def pde_moments(solution: Solution) -> dict[str, np.ndarray]:
    """E h and Var h of a joint solution along its saves. The variance is that of the
    piecewise-constant density the agents are drawn from (midpoint variance plus
    Σ p_c Δh_c²/12), so the two agree at t = 0 (``sheppard="piecewise"`` of
    :func:`pde_popdyn.compare`)."""
    grid = solution.grid
    f = np.asarray(solution.f)
    p = (f * grid.weights[None]).sum(axis=1)
    p = p / p.sum(axis=1, keepdims=True)
    hc, dh2 = grid.h, np.diff(grid.h_edges) ** 2
    m = p @ hc
    v = p @ (hc * hc) - m * m + p @ dh2 / 12.0
    return {"mean_h": m, "var_h": v}


def _coarse(grid: Grid, f0: np.ndarray) -> tuple[Grid, np.ndarray] | None:
    """The grid with half the cells per axis and f₀'s cell masses summed in pairs, or None
    when the cells are not uniform or not even in number."""
    if grid.nodes != "cells" or grid.shape[0] % 2 or grid.shape[1] % 2 \
            or grid.ndim_theta != 1 or grid.ndim_h != 1:
        return None
    te, he = grid.theta_edges, grid.h_edges
    coarse = Grid(theta=(te[0], te[-1], grid.shape[0] // 2), h=(he[0], he[-1], grid.shape[1] // 2),
                  periodic=grid.periodic)
    mass = f0 * grid.weights
    mass = mass.reshape(grid.shape[0] // 2, 2, grid.shape[1] // 2, 2).sum(axis=(1, 3))
    return coarse, mass / coarse.weights


# -- the report ------------------------------------------------------------------------------
@dataclass
class MeanFieldCheck:
    """What :func:`mean_field_check` found. Arrays run along the saved times ``t``; the
    dictionaries are keyed by ``"mean_h"`` (E h) and ``"var_h"`` (Var h).

    ``pde``: the PDE's moments; ``agents``: their mean over the runs; ``bias`` = agents − pde,
    with ``bias_stderr``; ``spread``: the run-to-run standard deviation of one population's
    moment; ``iid_stderr``: sqrt(Var/N) (resp. sqrt((μ₄ − Var²)/N)) of independent agents;
    ``ne_variance``, ``ancestors`` and ``ne_coalescent``: effective sizes (module docstring;
    None where not computed); ``pde_dt_error``: the PDE at Δt/2 minus the PDE;
    ``pde_grid_error``: the estimated error of the PDE on the grid, (f_grid − f_coarse)/3 for
    the second-order scheme (each None if not computed); ``ratio``: max over the two moments
    of |bias| (less the estimated grid error, when known) over the spread; ``worst``: its
    maximum over t > 0; ``ratio_iid``, ``worst_iid``: the same in units of ``iid_stderr``;
    ``verdict`` and ``reasons``.
    """

    n: int
    seeds: int
    t: np.ndarray
    pde: dict
    agents: dict
    bias: dict
    bias_stderr: dict
    spread: dict
    iid_stderr: dict
    ne_variance: np.ndarray
    ancestors: np.ndarray | None
    ne_coalescent: np.ndarray | None
    pde_dt_error: dict | None
    pde_grid_error: dict | None
    ratio: np.ndarray
    worst: float
    ratio_iid: np.ndarray
    worst_iid: float
    verdict: str
    reasons: list = field(default_factory=list)
    lineage_note: str | None = None
    seconds: float = 0.0

    @property
    def trusted(self) -> bool:
        """True when the verdict is "trust"."""
        return self.verdict == "trust"

    def to_dict(self) -> dict:
        """Plain lists and numbers (JSON-able)."""
        def conv(v):
            if isinstance(v, dict):
                return {k: conv(x) for k, x in v.items()}
            if isinstance(v, np.ndarray):
                return v.tolist()
            return v
        return {k: conv(getattr(self, k)) for k in self.__dataclass_fields__}

    def __str__(self) -> str:
        k = len(self.t) - 1
        lines = [f"mean-field check: N = {self.n}, {self.seeds} runs, t = {self.t[-1]:g}: "
                 f"{self.verdict.upper()} (worst |bias|/spread = {self.worst:.2f})"]
        for q, name in (("mean_h", "E[h]  "), ("var_h", "Var[h]")):
            lines.append(f"  {name} PDE {self.pde[q][k]:+.4f}  agents {self.agents[q][k]:+.4f}"
                         f"  bias {self.bias[q][k]:+.4f} ± {self.bias_stderr[q][k]:.4f}"
                         f"  spread of one run {self.spread[q][k]:.4f}"
                         f" ({self.spread[q][k] / max(self.iid_stderr[q][k], 1e-300):.1f}×"
                         f" the independent-agent error)")
        sizes = [f"variance effective size {self.ne_variance[k]:.3g}"]
        if self.ancestors is not None:
            sizes.append(f"effective number of ancestors {self.ancestors[k]:.3g}")
        if self.ne_coalescent is not None:
            sizes.append(f"coalescent effective size {self.ne_coalescent[k]:.3g}")
        lines.append("  " + ", ".join(sizes) + f" (N = {self.n})")
        lines += [f"  - {r}" for r in self.reasons]
        if self.lineage_note:
            lines.append(f"  (genealogy: {self.lineage_note})")
        return "\n".join(lines)


def assess(n: int, t: np.ndarray, pde: dict, reps: Replicas, rate: float | None,
           pde_dt: dict | None = None, pde_grid: dict | None = None) -> MeanFieldCheck:
    """The report from the PDE's moments and the replicated runs (see :class:`MeanFieldCheck`)."""
    seeds = reps.mean_h.shape[0]
    agents = {q: getattr(reps, q).mean(axis=0) for q in QUANTITIES}
    spread = {q: getattr(reps, q).std(axis=0, ddof=1) for q in QUANTITIES}
    bias = {q: agents[q] - pde[q] for q in QUANTITIES}
    stderr = {q: spread[q] / np.sqrt(seeds) for q in QUANTITIES}
    var = np.maximum(pde["var_h"], 0.0)
    m4 = reps.m4_h.mean(axis=0)
    iid = {"mean_h": np.sqrt(var / n),
           "var_h": np.sqrt(np.maximum(m4 - agents["var_h"] ** 2, 0.0) / n)}
    # the part of the bias that the PDE's own grid error cannot explain
    excess = {q: np.abs(bias[q]) if pde_grid is None else
              np.maximum(np.abs(bias[q]) - np.abs(pde_grid[q]), 0.0) for q in QUANTITIES}
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.nanmax(np.stack([excess[q] / spread[q] for q in QUANTITIES]), axis=0)
        ratio_iid = np.nanmax(np.stack([excess[q] / iid[q] for q in QUANTITIES]), axis=0)
        ne_var = var / spread["mean_h"] ** 2
    later = t > t[0] if (t > t[0]).any() else np.ones(t.shape, bool)
    worst = float(np.nanmax(ratio[later]))
    worst_iid = float(np.nanmax(ratio_iid[later]))
    ancestors = ne_coal = None
    if reps.pair_identity is not None:
        F = reps.pair_identity.mean(axis=0)
        with np.errstate(divide="ignore", invalid="ignore"):
            ancestors = np.where(F > 0, 1.0 / F, np.inf)
            if rate is not None:
                loss = -np.log1p(-np.minimum(F, 1.0 - 1e-15))
                ne_coal = np.where(F > 0, rate * (t - t[0]) / loss, np.inf)
    verdict = VERDICTS[0] if worst <= TRUST else VERDICTS[1] if worst <= CAUTION else VERDICTS[2]
    k = len(t) - 1
    reasons = [f"the PDE is off by up to {worst:.2f} times the scatter of one run of N = {n} "
               f"agents (E h: bias {bias['mean_h'][k]:+.3g}, spread {spread['mean_h'][k]:.3g} "
               f"at t = {t[k]:g})"]
    if ancestors is not None and ancestors[k] < FEW_ANCESTORS:
        reasons.append(f"lineage takeover: by t = {t[k]:g} the population descends from about "
                       f"{ancestors[k]:.1f} of its {n} initial agents (effective number of "
                       f"ancestors), so it behaves like a much smaller sample than N")
    for label, err in (("time step (Δt against Δt/2)", pde_dt),
                       ("grid (estimated from half the cells)", pde_grid)):
        if err is None:
            continue
        e = max(float(np.nanmax(np.abs(err[q]) / spread[q])) for q in QUANTITIES)
        if e > 1.0:
            reasons.append(f"the PDE's own {label} error reaches {e:.1f} times the spread: "
                           f"refine it before reading the bias")
    return MeanFieldCheck(
        n=n, seeds=seeds, t=t, pde=pde, agents=agents, bias=bias, bias_stderr=stderr,
        spread=spread, iid_stderr=iid, ne_variance=ne_var, ancestors=ancestors,
        ne_coalescent=ne_coal, pde_dt_error=pde_dt, pde_grid_error=pde_grid, ratio=ratio,
        worst=worst, ratio_iid=ratio_iid, worst_iid=worst_iid, verdict=verdict,
        reasons=reasons, lineage_note=reps.lineage_note, seconds=reps.seconds)


def mean_field_check(model: Model, n: int, grid: Grid, init: Any, t_final: float, dt: float,
                     *, seeds: int = 16, seed: int = 0, save_every: int | None = None,
                     lineage: bool = True, check_dt: bool = True, check_grid: bool = True,
                     solution: Solution | None = None, **particle_options: Any
                     ) -> MeanFieldCheck:
    """Is the joint PDE a good stand-in for a population of ``n`` agents of ``model``?

    Runs the PDE ∂_t f = 𝓛_ε f + 𝓢[f] + 𝓜[f] (:func:`pde_popdyn.solve`) and ``seeds``
    independent particle populations of N agents (:func:`pde_popdyn.simulate_particles`, the
    same Δt), from the initial density ``init``, and reports the bias and the run-to-run
    spread of E h and Var h against the PDE, effective population sizes (variance, and from the
    genealogy of the copies) and a verdict (module :mod:`pde_popdyn.finite_n`). Cost: ``seeds``
    runs of N agents plus about three PDE runs; at N ≤ 10³ the PDE dominates.

    Parameters
    ----------
    model:
        A :class:`pde_popdyn.Model` with a selection rule (any rule).
    n:
        The population size N ≥ 2 to check.
    grid:
        A :class:`pde_popdyn.Grid` with one θ- and one h-axis; the PDE runs on it and its
        h-box is the agents' box.
    init:
        Initial density f₀ on ``grid`` (cell averages); the agents are drawn from it.
    t_final, dt:
        Horizon and time step (both solvers).
    seeds:
        Number of independent particle runs (≥ 4; the bias is resolved to spread/√seeds).
    seed:
        Seed of the whole check (the runs use independent streams derived from it).
    save_every:
        Steps between saves (default: about 10 saves).
    lineage:
        Track founders through the copies (the genealogy; skipped where impossible).
    check_dt, check_grid:
        Also solve the PDE at Δt/2 and on a grid with half the cells per axis, and report the
        differences as its own discretisation errors.
    solution:
        A joint :class:`pde_popdyn.Solution` already computed with this ``dt`` and saves;
        the PDE is then not solved again (nor checked).
    particle_options:
        Passed on to :func:`pde_popdyn.simulate_particles` (e.g. ``fitness_mode``,
        ``jump_order``, ``window``).

    Returns
    -------
    MeanFieldCheck
        ``str(report)`` is a short text report; ``report.verdict`` is "trust", "caution" or
        "do not trust"; ``report.to_dict()`` gives every number.

    Notes
    -----
    Assumes that the agents' N → ∞ limit is the PDE solved here (the same rule, fitness and
    mutation; for ``fitness_mode`` other than "instantaneous" pass the matching ``solution``)
    and that the seeds are enough to resolve the bias (its standard error is reported). The
    verdict is about the moments of h at the saved times, not about every observable.
    """
    if not isinstance(model, Model):
        raise TypeError(f"model must be a pp.Model, got {type(model).__name__}")
    if not model.selection_active:
        raise ValueError("mean_field_check needs a model with an active selection rule: "
                         "without selection the agents are independent and the PDE holds at "
                         "the Monte-Carlo rate")
    n = _check_int("n", n, 2)
    seeds = _check_int("seeds", seeds, 4)
    seed = _check_int("seed", seed, 0)
    if not isinstance(grid, Grid):
        raise TypeError(f"grid must be a pp.Grid, got {type(grid).__name__}")
    if grid.ndim_theta != 1 or grid.ndim_h != 1:
        raise ValueError(f"mean_field_check needs a grid with one θ- and one h-axis, got "
                         f"{grid.ndim_theta} and {grid.ndim_h}")
    f0 = density_array("init", init, grid.shape)
    t_final = positive_float("t_final", t_final)
    dt = positive_float("dt", dt)
    if dt > t_final:
        raise ValueError(f"dt={dt} is larger than t_final={t_final}")
    n_steps = int(round(t_final / dt))
    if save_every is None:
        save_every = max(1, n_steps // 10)
    save_every = _check_int("save_every", save_every, 1)
    for bad in ("seed", "grid", "init", "progress", "save_every", "output", "resume"):
        if bad in particle_options:
            raise TypeError(f"mean_field_check sets {bad!r} of the particle runs itself; "
                            f"remove it from the keyword arguments")
    pde_dt = pde_grid = half = coarse = None
    if solution is None:
        solution = solve(model, grid, f0, t_final, dt, save_every=save_every, progress=False)
        if check_dt:
            half = solve(model, grid, f0, t_final, 0.5 * dt, save_every=2 * save_every,
                         progress=False)
        if check_grid:
            coarse = _coarse(grid, f0)
    elif not isinstance(solution, Solution):
        raise TypeError(f"solution must be a pp.Solution, got {type(solution).__name__}")
    pde = pde_moments(solution)
    reps = run_replicas(model, n, grid, f0, t_final, dt, seeds=seeds, seed=seed,
                        save_every=save_every, lineage=lineage, **particle_options)
    t = reps.t
    if len(solution.t) != len(t) or np.abs(np.asarray(solution.t) - t).max() > 1e-9 * max(1, t[-1]):
        raise ValueError(f"the PDE's saved times ({len(solution.t)}) differ from the agents' "
                         f"({len(t)}); give a solution saved with the same dt and save_every")
    if half is not None:
        ph = pde_moments(half)
        pde_dt = {q: np.interp(t, half.t, ph[q]) - pde[q] for q in QUANTITIES}
    if coarse is not None:
        cg, cf = coarse
        sc = solve(model, cg, cf, t_final, dt, save_every=save_every, progress=False)
        pc = pde_moments(sc)
        pde_grid = {q: (pde[q] - pc[q]) / 3.0 for q in QUANTITIES}
    return assess(n, t, pde, reps, neutral_coalescence(model.selection), pde_dt, pde_grid)


__all__ = ["mean_field_check", "MeanFieldCheck", "Lineage", "lineage_support", "run_replicas",
           "Replicas", "pde_moments", "neutral_coalescence", "assess", "sample_initial"]
