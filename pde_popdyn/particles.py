"""The N-agent system whose N → ∞ limit is the mean-field PDE (MODEL.md §1, §5).

Agent i carries parameters θ_i ∈ R^d and a hyperparameter h_i in the box [h_lo, h_hi] (or R).
One time step Δt of :func:`simulate_particles` composes three sub-steps:

* **O, the fast step** over τ of dθ = −(m(h)/ε) ∇_θ L(θ,h) dt + sqrt(2 m(h) T(h)/ε) dW with h
  frozen (``fast=``):

  - ``"ou"``: the exact Ornstein–Uhlenbeck transition when the model declares
    ``quadratic=(K, c)``, i.e. L = ½K(h)|θ − c(h)|² + g(h). With x = m K τ/ε,

        θ ← c + (θ − c) e^{−x} + sqrt( (T/K)(1 − e^{−2x}) ) ξ,   ξ ~ N(0, I).

    It is exact for every τ/ε: as τ/ε → ∞ it draws θ from π_h = N(c, T/K) (asymptotic-
    preserving, no stability limit).
  - ``"euler"``: Euler–Maruyama with ``substeps`` inner steps of length s = m τ/(ε·substeps):
    θ ← θ − s ∇_θ L + sqrt(2 T s) ξ. The gradient is, in this order of preference, the
    ``gradient=`` argument, ``Model(loss_grad=...)``, or K(θ − c) of a quadratic declaration.
    ``gradient="central"`` uses central differences of the loss, ∂_k L ≈ [L(θ + δe_k) −
    L(θ − δe_k)]/(2δ) with δ = 6·10⁻⁶ max(1, |θ_k|) (error ~ δ² |∂³L| + 10⁻¹⁶|L|/δ, about
    10⁻¹⁰ relative for smooth losses; 2d loss evaluations per step). ``gradient=callable``
    is called as ``gradient(theta, h, rng)`` and may be stochastic (a minibatch gradient), so
    that real networks can be agents; with ``noise=False`` no Langevin noise is added (plain
    SGD, whose noise is the minibatch noise).
  - ``"mala"``: the Euler–Maruyama proposal y = θ − s∇L(θ) + sqrt(2Ts) ξ accepted with
    probability min(1, e^{−(L(y)−L(θ))/T} q(θ|y)/q(y|θ)), q(y|θ) ∝ e^{−|y−θ+s∇L(θ)|²/(4Ts)}:
    a Metropolis-adjusted Langevin step that leaves π_h exactly invariant for every s. Keep
    s|∇L| moderate (``substeps``): where the gradient grows superlinearly a too-long step
    overshoots so far that every proposal is rejected and agents stay stuck (MALA is not
    geometrically ergodic there); ``info["mala_acceptance"]`` reports the acceptance rate.

* **M, diffusive mutation** (``Diffusion(D)``) over τ: h ← h + sqrt(2Dτ) ξ.
* **S, selection** over τ with the model's rule, on the fitness values chosen by
  ``fitness_mode`` (see :func:`simulate_particles`). ``GaussianJump(σ_m)`` mutation adds
  σ_m ξ to the copied h at each copy event.

After every change of h the boundary rule maps it back into the box: ``"reflecting"``
(folding, the particle version of the Neumann condition), ``"periodic"`` (wrapping) or
``"clip"`` (which puts atoms on the edges).

Splitting (``splitting=``): Strang, S(Δt/2) M(Δt/2) O(Δt) M(Δt/2) S(Δt/2), the composition
:func:`pde_popdyn.solve` uses, so that the mean-field limit of the particle scheme is the grid
solver's time-discrete scheme; second order in Δt for fixed ε. (As Δt/ε → ∞ the order drops
to one: a selection step of length τ on the instantaneous fitness of agents at Gibbs
equilibrium weights h by E_{π_h} e^{κτF} = e^{κτ F̄_{κτ}}, and F̄_{κτ} − F̄ = O(κτ) — the
same for the grid solver.) For the replicator the two half selection steps of consecutive
time steps are merged into one S(Δt) (exact: the weights multiply) except at saved times, so
a run interrupted at a saved time and continued is bit-for-bit the uninterrupted run.
Lie: O(Δt) M(Δt) S(Δt), first order.

Selection schemes, each vectorised over agents (no Python loop over agents):

* ``Replicator(κ)``, ``replicator="resample"``: weights w_i = e^{κτ(F_i − max F)}, then
  systematic (default) or multinomial resampling of N agents (copying θ and h). The
  weighted empirical measure is exactly f e^{κτF}/⟨e^{κτF}⟩, the exact replicator step, and
  resampling is unbiased. With ``ess_threshold < 1`` the log-weights are accumulated over
  steps and the population is resampled only when the effective sample size
  (Σw)²/(m Σw²), computed on a fixed stride subsample of m ≤ 16384 agents, drops below
  ``ess_threshold`` (and always before a state is saved, so saved populations are
  unweighted). Same mean-field limit, fewer resampling events: at N = 10⁵ the spread of E h
  over seeds is about half that of resampling at every step, and the step is about twice as
  fast (benchmarks/study_particles.py, study_throughput.py); the default (1) keeps the
  literal agent system, in which selection copies agents at every step.
* ``Replicator(κ)``, ``replicator="pairwise"``: proportional imitation. Ordered pairs (i, j)
  fire at rate (κ/N)(F_j − F_i)^+ and i copies j. Per sub-step of length τ_s, every agent i
  draws one j uniformly from the N agents and copies it with probability κτ_s(F_j − F_i)^+,
  all agents updating simultaneously from the pre-sub-step state; so agent i copies at rate
  (κ/N)Σ_j (F_j − F_i)^+ and the mean-field limit is ∂_t f = κ (F − ⟨F⟩) f + O(τ_s). The
  step τ is split into n_s = ⌈κτ(F_max − F_min)⌉ sub-steps, so that every probability is
  ≤ 1; the fitness values are carried along with the copies inside a step. Its mean-field map
  is the Euler step f + κτ_s(F − ⟨F⟩)f, so this scheme is first order in Δt (the resampling
  scheme is exact in Δt), and it is noisier: each copy is a single random pairing.
* ``BoltzmannJump(λ, α, copy)``: each agent jumps with probability 1 − e^{−λτ} and copies a
  donor drawn with probability ∝ e^{αF_j}; ``copy="h"`` keeps the jumper's θ. With
  ``jump_order=2`` (default) the step is the particle version of the exponential midpoint
  rule of the PDE: a half-step population P_½ is formed first, then the jumpers take their
  donors from P_½ (f ← e^{−λτ} f + (1 − e^{−λτ}) M[f_½]); ``jump_order=1`` takes them from
  the population at the start of the step.
* ``Truncation(λ, q, copy)``: the ⌊qN⌋ agents of lowest fitness each copy, with probability
  1 − e^{−λτ}, a uniformly chosen agent among the ⌊qN⌋ fittest (ties broken arbitrarily);
  the same ``jump_order`` option applies.
"""

from __future__ import annotations

import numbers
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from ._validate import _short, density_array, positive_float
from .grid import Grid
from .io import ensemble_record, to_dataset
from .model import BoltzmannJump, Diffusion, GaussianJump, Model, Replicator, Truncation

FAST_METHODS = ("auto", "ou", "euler", "mala")
FITNESS_MODES = ("instantaneous", "window", "effective", "estimated")
WINDOW_KINDS = ("exponential", "running")
REPLICATOR_SCHEMES = ("resample", "pairwise")
RESAMPLING = ("systematic", "multinomial")
BOUNDARIES = ("reflecting", "periodic", "clip")
SPLITTINGS = ("strang", "lie")
_MAX_SNAPSHOT_BYTES = 4e9
_FD_REL_STEP = 6e-6


# ---------------------------------------------------------------------------------------------
# the result
# ---------------------------------------------------------------------------------------------
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
    #: per-agent values over time by name, shape (n_saved, N) each (e.g. "fitness", "parent"),
    #: and the generator's state after each snapshot, as stored in a snapshot file
    agent_fields: dict[str, np.ndarray] = field(default_factory=dict, repr=False)
    stored_rng_states: list | None = field(default=None, repr=False)

    # -- shapes --------------------------------------------------------------------------
    @property
    def n(self) -> int:
        """Number of agents N."""
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
        out = np.empty((len(self.t), *grid.shape))
        for k in range(len(self.t)):
            c, _, _ = np.histogram2d(self.theta[k], self.h[k],
                                     bins=[grid.theta_edges, grid.h_edges])
            out[k] = c / self.n / grid.weights
        return out

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
                    progress: bool | None = None, join: bool = True) -> "Ensemble":
        """Continue the run from its final state to ``t_final`` with the stored settings and
        the stored bit-generator state, so that the result is bit for bit what an
        uninterrupted run (with a save at the current final time) would have produced.

        ``join=True`` returns the whole run (these snapshots followed by the new ones);
        ``join=False`` only the continuation (whose first snapshot is the current final state).
        Callables that cannot be stored (effective fitness, gradient) are reused from this
        Ensemble when it was made in this session; otherwise call :func:`simulate_particles`
        with ``init=ensemble`` and pass them again.
        """
        if self.model is None:
            raise ValueError("this ensemble has no model; call pp.simulate_particles(model, n, "
                             "init=ensemble, ...) instead")
        opts = dict(self._options) if self._options else _options_from_info(self.info)
        opts["save_every"] = save_every if save_every is not None else \
            self.info.get("save_every")
        opts["progress"] = progress
        dt = float(self.info["dt"])
        cont = simulate_particles(self.model, self.n, self, t_final, dt, **opts)
        if not join:
            return cont
        return Ensemble(t=np.concatenate([self.t, cont.t[1:]]),
                        theta=np.concatenate([self.theta, cont.theta[1:]]),
                        h=np.concatenate([self.h, cont.h[1:]]),
                        model=self.model, grid=self.grid,
                        info={**cont.info, "segments": self.info.get("segments", 1) + 1},
                        state=cont.state, _options=cont._options)

    def __repr__(self) -> str:
        return (f"Ensemble(N={self.n}, d={self.d}, n_saved={len(self.t)}, "
                f"t=[{self.t[0]:g}, {self.t[-1]:g}])")


_INFO_OPTION_KEYS = ("fitness_mode", "window", "window_kind", "replicator", "resampling",
                     "boundary", "h_box", "fast", "substeps", "splitting", "ess_threshold",
                     "jump_order", "bandwidth", "noise")


def _options_from_info(info: dict) -> dict:
    opts = {k: info[k] for k in _INFO_OPTION_KEYS if k in info}
    if opts.get("h_box") is not None:
        opts["h_box"] = tuple(opts["h_box"])
    if info.get("gradient") == "central":
        opts["gradient"] = "central"
    return opts


# ---------------------------------------------------------------------------------------------
# helpers (public ones are documented)
# ---------------------------------------------------------------------------------------------
def silverman_bandwidth(x: np.ndarray) -> float:
    """Silverman's rule of thumb b = 0.9 min(σ̂, IQR/1.34) N^{−1/5} (σ̂ if the IQR is 0)."""
    x = np.asarray(x, dtype=float).ravel()
    n = x.size
    sd = float(x.std())
    q75, q25 = np.percentile(x, [75.0, 25.0])
    iqr = float(q75 - q25) / 1.34
    spread = min(sd, iqr) if iqr > 0 else sd
    return 0.9 * spread * n ** (-0.2)


def kernel_regression(h: np.ndarray, F: np.ndarray, at: np.ndarray | None = None, *,
                      bandwidth: float | None = None, method: str = "auto",
                      bins_per_bandwidth: int = 16, weights: np.ndarray | None = None
                      ) -> np.ndarray:
    """Nadaraya–Watson estimate of E[F | h] from pairs {(h_j, F_j)} (with optional agent
    weights w_j, else w_j = 1):

        F̂(x) = Σ_j w_j K_b(x − h_j) F_j / Σ_j w_j K_b(x − h_j),   K_b Gaussian of width b,

    with Silverman's bandwidth (:func:`silverman_bandwidth`) unless ``bandwidth`` is given.
    ``at`` defaults to ``h`` itself. ``method="direct"`` sums over all pairs (O(N·M) work, in
    blocks); ``method="binned"`` linearly bins (h_j, F_j) onto a uniform mesh of spacing
    b/``bins_per_bandwidth``, convolves both sums with the kernel (truncated at 7b, relative
    weight e^{−24.5} ≈ 2·10⁻¹¹) and interpolates linearly, which is O(N + M) and differs
    from the direct sum by O((spacing/b)²) relative to the variation of F̂. ``"auto"`` bins
    when N·M > 10⁶. Points outside [min h, max h] get the value at the nearer end.
    """
    h = np.asarray(h, dtype=float).ravel()
    F = np.asarray(F, dtype=float).ravel()
    if h.shape != F.shape or h.size == 0:
        raise ValueError(f"h and F must be non-empty and of equal length, got {h.size} and "
                         f"{F.size}")
    wt = np.ones(h.size) if weights is None else np.asarray(weights, dtype=float).ravel()
    if wt.shape != h.shape:
        raise ValueError(f"weights must have one entry per point, got {wt.size} for {h.size}")
    x = h if at is None else np.asarray(at, dtype=float)
    shape = x.shape
    x = x.ravel()
    lo, hi = float(h.min()), float(h.max())
    b = silverman_bandwidth(h) if bandwidth is None else positive_float("bandwidth",
                                                                        bandwidth)
    if hi == lo or b == 0.0:
        return np.full(shape, np.average(F, weights=wt))
    x = np.clip(x, lo, hi)
    if method == "auto":
        method = "direct" if h.size * x.size <= 10**6 else "binned"
    if method == "direct":
        out = np.empty(x.size)
        block = max(1, 2**22 // max(h.size, 1))
        for s in range(0, x.size, block):
            z = (x[s:s + block, None] - h[None, :]) / b
            k = np.exp(-0.5 * z * z)
            out[s:s + block] = (k @ (wt * F)) / (k @ wt)
        return out.reshape(shape)
    if method != "binned":
        raise ValueError(f"method={method!r} is not known; use 'auto', 'direct' or 'binned'")
    delta = b / bins_per_bandwidth
    m = int(np.ceil((hi - lo) / delta)) + 1
    if m > 2**20:  # extremely spread data with a tiny bandwidth: coarsen the mesh
        m = 2**20
        delta = (hi - lo) / (m - 1)
    pos = (h - lo) / delta
    i0 = np.minimum(pos.astype(np.int64), m - 2) if m > 1 else np.zeros(h.size, np.int64)
    frac = pos - i0
    a0, a1 = (1.0 - frac) * wt, frac * wt
    s0 = np.bincount(i0, weights=a0, minlength=m) + np.bincount(i0 + 1, weights=a1,
                                                                minlength=m)[:m]
    s1 = np.bincount(i0, weights=a0 * F, minlength=m) + np.bincount(i0 + 1, weights=a1 * F,
                                                                    minlength=m)[:m]
    half = int(np.ceil(7.0 * b / delta))
    u = np.arange(-half, half + 1) * (delta / b)
    ker = np.exp(-0.5 * u * u)
    c0 = np.convolve(s0, ker, mode="same") if m > 1 else s0
    c1 = np.convolve(s1, ker, mode="same") if m > 1 else s1
    # where all kernel mass is tiny the ratio is ill-conditioned; those mesh points lie
    # between data only if a gap exceeds ~7b, and there F̂ is not defined by the data anyway
    with np.errstate(divide="ignore", invalid="ignore"):
        g = c1 / c0
    bad = ~np.isfinite(g) | (c0 <= 1e-300)
    if bad.any():
        good = np.flatnonzero(~bad)
        g[bad] = np.interp(np.flatnonzero(bad), good, g[good])
    px = (x - lo) / delta
    j0 = np.minimum(px.astype(np.int64), max(m - 2, 0))
    fr = px - j0
    j1 = np.minimum(j0 + 1, m - 1)
    return (g[j0] * (1.0 - fr) + g[j1] * fr).reshape(shape)


def apply_boundary(h: np.ndarray, lo: float, hi: float, kind: str) -> np.ndarray:
    """Map h into [lo, hi] in place: ``"reflecting"`` folds (h ↦ lo + L − |L − (h − lo) mod 2L|,
    any number of reflections), ``"periodic"`` wraps (lo + (h − lo) mod L), ``"clip"`` clips.
    Only the agents outside the box are touched."""
    if h.size == 0 or (h.min() >= lo and h.max() <= hi):
        return h
    out = (h < lo) | (h > hi)
    if not out.any():
        return h
    x = h[out]
    length = hi - lo
    if kind == "reflecting":
        y = np.mod(x - lo, 2.0 * length)
        x = lo + length - np.abs(length - y)
    elif kind == "periodic":
        x = lo + np.mod(x - lo, length)
    else:
        x = np.clip(x, lo, hi)
    h[out] = x
    return h


def systematic_counts(w: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """Offspring numbers of systematic resampling: n points k + U, k = 0..n−1, U uniform on
    (0, 1], placed on the cumulative weights scaled to [0, n]; agent i receives the points in
    its interval, N_i − N_{i−1} with N_i = #{k : k + U < n C_i/C_N} = ⌊n C_i/C_N + 1 − U⌋.
    E counts_i = n w_i/Σw and |counts_i − n w_i/Σw| < 1."""
    c = np.cumsum(w)
    c *= n / c[-1]
    c[-1] = n                       # exact, so that the counts sum to n whatever the rounding
    c += rng.random()               # 1 − U with U uniform on (0, 1]
    k = c.astype(np.int64)          # floor, the values being ≥ 0
    counts = np.empty_like(k)
    counts[0] = k[0]
    np.subtract(k[1:], k[:-1], out=counts[1:])
    return counts


def sample_density(grid: Grid, f: Any, n: int, rng: np.random.Generator
                   ) -> tuple[np.ndarray, np.ndarray]:
    """Draw n independent agents (θ_i, h_i) exactly from the piecewise-constant density whose
    cell averages are ``f``: a cell is chosen with probability ∝ f·weights, then a point
    uniformly inside it (on Chebyshev θ-nodes the 'cells' are the dual cells between the
    midpoints of the nodes)."""
    f = density_array("init", f, grid.shape)
    p = (f * grid.weights).ravel()
    c = np.cumsum(p)
    cell = np.searchsorted(c, rng.random(n) * c[-1], side="right")
    np.minimum(cell, p.size - 1, out=cell)
    it, ih = np.divmod(cell, grid.shape[1])
    te, he = grid.theta_edges, grid.h_edges
    theta = te[it] + (te[it + 1] - te[it]) * rng.random(n)
    h = he[ih] + (he[ih + 1] - he[ih]) * rng.random(n)
    return theta, h


# ---------------------------------------------------------------------------------------------
# validation
# ---------------------------------------------------------------------------------------------
def _check_choice(name: str, value: Any, choices: tuple) -> str:
    if value not in choices:
        raise ValueError(f"{name}={value!r} is not known; use one of {choices}")
    return value


def _check_int(name: str, value: Any, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, (numbers.Integral, np.integer)):
        raise TypeError(f"{name} must be an integer, got {_short(value)} of type "
                        f"{type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return int(value)


def _check_positive_field(name: str, out: Any, n: int) -> None:
    arr = np.asarray(out, dtype=float)
    if arr.ndim and arr.shape != (n,):
        raise ValueError(f"{name}(h) returned shape {arr.shape}; for particles it is called "
                         f"with h of shape ({n},) and must return shape ({n},)")
    if not np.all(np.isfinite(arr)) or np.any(arr <= 0):
        raise ValueError(f"{name}(h) must be finite and > 0 at every agent; min is "
                         f"{np.nanmin(arr):.3g}")


# ---------------------------------------------------------------------------------------------
# the simulator
# ---------------------------------------------------------------------------------------------
class _Population:
    """θ (N,) or (N, d), h (N,), plus per-agent fitness-window memory (carried with copies)."""

    __slots__ = ("theta", "h", "wavg", "wbuf", "wsum")

    def __init__(self, theta, h, wavg=None, wbuf=None, wsum=None):
        self.theta, self.h, self.wavg, self.wbuf, self.wsum = theta, h, wavg, wbuf, wsum

    def repeat(self, counts: np.ndarray) -> "_Population":
        r = (lambda a, ax=0: None if a is None else np.repeat(a, counts, axis=ax))
        return _Population(r(self.theta), r(self.h), r(self.wavg), r(self.wbuf, 1),
                           r(self.wsum))

    def take(self, idx: np.ndarray) -> "_Population":
        t = (lambda a, ax=0: None if a is None else np.take(a, idx, axis=ax))
        return _Population(t(self.theta), t(self.h), t(self.wavg), t(self.wbuf, 1),
                           t(self.wsum))

    def copy(self) -> "_Population":
        c = (lambda a: None if a is None else a.copy())
        return _Population(c(self.theta), c(self.h), c(self.wavg), c(self.wbuf), c(self.wsum))


class _Simulator:
    def __init__(self, model: Model, n: int, rng: np.random.Generator, opts: dict):
        self.model = model
        self.n = n
        self.rng = rng
        self.o = opts
        self.sel = model.selection if (model.selection is not None
                                       and model.selection.rate > 0) else None
        self.mut = model.mutation
        self.stats = {"resamples": 0, "selection_steps": 0, "copies": 0,
                      "pairwise_max_substeps": 0, "mala_accepted": 0, "mala_proposed": 0,
                      "last_bandwidth": None}
        self.logw: np.ndarray | None = None
        self._ou_cache: dict[float, tuple[float, float]] = {}
        self._buf: dict[tuple, np.ndarray] = {}

    # -- fields of h ---------------------------------------------------------------------
    def _field(self, value: Any, h: np.ndarray):
        if callable(value):
            return np.asarray(value(h), dtype=float)
        v = np.asarray(value, dtype=float)
        return float(v) if v.ndim == 0 else v

    @staticmethod
    def _col(v, theta):
        """Broadcast a per-agent value against θ of shape (N,) or (N, d)."""
        if np.ndim(v) == 0 or theta.ndim == 1:
            return v
        return v[:, None]

    # -- fast step -----------------------------------------------------------------------
    def fast(self, P: _Population, tau: float) -> None:
        m = self.model
        method = self.o["fast"]
        if method == "ou":
            K, c = m.quadratic
            Kv, cv = self._field(K, P.h), self._field(c, P.h)
            mob, T = self._field(m.mobility, P.h), self._field(m.temperature, P.h)
            if np.ndim(Kv) == 0 and np.ndim(mob) == 0 and np.ndim(T) == 0:
                key = tau
                if key not in self._ou_cache:
                    x = mob * Kv * tau / m.eps
                    self._ou_cache[key] = (float(np.exp(-x)),
                                           float(np.sqrt(T / Kv * -np.expm1(-2 * x))))
                a, s = self._ou_cache[key]
            else:
                x = mob * Kv * (tau / m.eps)
                a = np.exp(-x)
                s = np.sqrt(T / Kv * -np.expm1(-2 * x))
                a, s = self._col(a, P.theta), self._col(s, P.theta)
            cv = self._col(cv, P.theta) if np.ndim(cv) == 1 and P.theta.ndim == 2 \
                and np.shape(cv)[0] == self.n else cv
            xi = self._normals(P.theta.shape)
            th = P.theta
            th -= cv                # θ ← c + (θ − c) e^{−x} + sqrt((T/K)(1 − e^{−2x})) ξ
            th *= a
            th += cv
            xi *= s
            th += xi
        else:
            nsub = self.o["substeps"]
            mob, T = self._field(m.mobility, P.h), self._field(m.temperature, P.h)
            s = self._col(mob * (tau / (m.eps * nsub)), P.theta)
            Tc = self._col(T, P.theta)
            noise_scale = np.sqrt(2.0 * Tc * s)
            # an unstable explicit step overflows: let it, and report it below by name
            with np.errstate(over="ignore", invalid="ignore"):
                if method == "euler":
                    for _ in range(nsub):
                        g = self.grad(P.theta, P.h)
                        P.theta -= s * g
                        if self.o["noise"]:
                            P.theta += noise_scale * self.rng.standard_normal(P.theta.shape)
                else:
                    self._mala(P, s, Tc, noise_scale, nsub)
        if self.o["theta_box"] is not None:
            lo, hi = self.o["theta_box"]
            apply_boundary(P.theta, lo, hi, "periodic")
        if method != "ou" and not np.isfinite(P.theta).all():
            raise FloatingPointError(
                f"θ became non-finite in the fast step (method {method!r}, step "
                f"m·Δt/ε/substeps = {np.max(mob) * tau / (m.eps * self.o['substeps']):.3g}); "
                f"the explicit step is unstable for this loss: increase substeps=, use "
                f"fast='mala', or declare Model(quadratic=...) for the exact OU step")

    def _mala(self, P, s, Tc, noise_scale, nsub) -> None:
        loss = self.model.loss
        th, hh = P.theta, P.h
        L = np.asarray(loss(th, hh), dtype=float)
        g = self.grad(th, hh)
        dsum = (lambda a: a if a.ndim == 1 else a.sum(axis=1))
        Tv = Tc if np.ndim(Tc) == 0 or th.ndim == 1 else Tc[:, 0]
        sv = s if np.ndim(s) == 0 or th.ndim == 1 else s[:, 0]
        for _ in range(nsub):
            xi = self.rng.standard_normal(th.shape)
            y = th - s * g + noise_scale * xi
            Ly = np.asarray(loss(y, hh), dtype=float)
            gy = self.grad(y, hh)
            back = th - y + s * gy
            log_alpha = -(Ly - L) / Tv - dsum(back * back) / (4.0 * Tv * sv) \
                + 0.5 * dsum(xi * xi)
            acc = np.log(self.rng.random(self.n)) < log_alpha
            self.stats["mala_accepted"] += int(acc.sum())
            self.stats["mala_proposed"] += self.n
            th[acc] = y[acc]
            L[acc] = Ly[acc]
            g[acc] = gy[acc]

    def grad(self, theta: np.ndarray, h: np.ndarray) -> np.ndarray:
        src = self.o["grad_source"]
        if src == "user":
            g = self.o["gradient"](theta, h, self.rng)
        elif src == "model":
            g = self.model.loss_grad(theta, h)
        elif src == "quadratic":
            K, c = self.model.quadratic
            Kv, cv = self._field(K, h), self._field(c, h)
            cv = self._col(cv, theta) if np.ndim(cv) == 1 and theta.ndim == 2 \
                and np.shape(cv)[0] == self.n else cv
            g = self._col(Kv, theta) * (theta - cv)
        else:
            g = _central_gradient(self.model.loss, theta, h)
        g = np.asarray(g, dtype=float)
        if g.shape != theta.shape:
            raise ValueError(f"the gradient returned shape {g.shape}, but θ has shape "
                             f"{theta.shape}; it must return ∂L/∂θ with θ's shape")
        return g

    # -- fitness -------------------------------------------------------------------------
    def inst_fitness(self, P: _Population) -> np.ndarray:
        F = np.asarray(self.model.fitness(P.theta, P.h), dtype=float)
        if F.shape != (self.n,):
            try:
                F = np.broadcast_to(F, (self.n,)).copy()
            except ValueError:
                raise ValueError(f"fitness returned shape {F.shape}; for particles it is called "
                                 f"with θ of shape {P.theta.shape} and h of shape "
                                 f"({self.n},) and must return shape ({self.n},)") from None
        return F

    def init_window(self, P: _Population) -> None:
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

    def update_window(self, P: _Population, tau: float) -> None:
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

    def reset_window(self, P: _Population, idx: np.ndarray) -> None:
        """Agents that took new hyperparameters with their own θ start a fresh memory."""
        if self.o["fitness_mode"] != "window" or idx.size == 0:
            return
        F = np.asarray(self.model.fitness(P.theta[idx], P.h[idx]), dtype=float)
        if P.wavg is not None:
            P.wavg[idx] = F
        else:
            P.wbuf[:, idx] = F[None, :]
            P.wsum[idx] = F * P.wbuf.shape[0]

    def selection_fitness(self, P: _Population) -> np.ndarray:
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

    # -- selection -----------------------------------------------------------------------
    def select(self, P: _Population, tau: float, force_resample: bool) -> _Population:
        sel = self.sel
        if sel is None:
            return P
        self.stats["selection_steps"] += 1
        if isinstance(sel, Replicator):
            if self.o["replicator"] == "pairwise":
                return self._pairwise(P, tau)
            return self._resample(P, tau, force_resample)
        if self.o["jump_order"] == 2:
            p_half = -np.expm1(-0.5 * sel.rate * tau)
            P_half = self._jump(P, P, p_half)
            return self._jump(P, P_half, -np.expm1(-sel.rate * tau))
        return self._jump(P, P, -np.expm1(-sel.rate * tau))

    def flush_weights(self, P: _Population) -> _Population:
        """Resample away accumulated weights (adaptive replicator) before a state is saved."""
        if self.logw is None:
            return P
        return self._do_resample(P)

    def _do_resample(self, P: _Population) -> _Population:
        lw = self.logw
        self.logw = None
        w = np.exp(lw - lw.max())
        self.stats["resamples"] += 1
        return self._resample_with(P, w)

    def _resample_with(self, P: _Population, w: np.ndarray) -> _Population:
        if self.o["resampling"] == "systematic":
            return P.repeat(systematic_counts(w, self.n, self.rng))
        c = np.cumsum(w)
        idx = np.searchsorted(c, self.rng.random(self.n) * c[-1], side="right")
        np.minimum(idx, self.n - 1, out=idx)
        return P.take(idx)

    def _resample(self, P: _Population, tau: float, force: bool) -> _Population:
        F = self.selection_fitness(P)
        kt = self.sel.rate * tau
        if self.o["ess_threshold"] >= 1.0 and self.logw is None:
            w = np.subtract(F, F.max())          # e^{κτ(F − max F)}, in [0, 1]
            w *= kt
            np.exp(w, out=w)
            self.stats["resamples"] += 1
            return self._resample_with(P, w)
        lw = np.multiply(F, kt)                  # log-weights add up; shifted when used
        if self.logw is None:
            self.logw = lw
        else:
            self.logw += lw
        thr = self.o["ess_threshold"]
        if thr < 1.0 and not force:
            # the ESS fraction (Σw)²/(m Σw²), on a fixed stride subsample of m ≤ 16384 agents
            # (all of them for small N): a cheap trigger; which steps resample does not bias
            # the weighted empirical measure
            sub = self.logw[::max(1, self.n // 16384)]
            w = np.exp(sub - sub.max())
            if w.sum() ** 2 >= thr * w.size * np.dot(w, w):
                return P
        return self._do_resample(P)

    def _pairwise(self, P: _Population, tau: float) -> _Population:
        F = self.selection_fitness(P)
        kappa = self.sel.rate
        spread = float(F.max() - F.min())
        nsub = max(1, int(np.ceil(kappa * tau * spread)))
        self.stats["pairwise_max_substeps"] = max(self.stats["pairwise_max_substeps"], nsub)
        ts = tau / nsub
        for _ in range(nsub):
            j = self.rng.integers(0, self.n, self.n)
            gain = F[j] - F
            p = kappa * ts * np.maximum(gain, 0.0)
            hit = np.flatnonzero(self.rng.random(self.n) < p)
            if hit.size:
                src = j[hit]
                P = self._assign(P, P, hit, src, copy="both", mutate=False)
                F = F.copy()
                F[hit] = F[src]
        return P

    def _jump(self, target: _Population, donors: _Population, prob: float) -> _Population:
        """Each agent of ``target`` jumps with probability ``prob`` and takes the state of the
        selection map M applied to ``donors`` (see the module docstring)."""
        sel = self.sel
        jumpers = np.flatnonzero(self.rng.random(self.n) < prob)
        F = self.selection_fitness(donors)
        if isinstance(sel, BoltzmannJump):
            if jumpers.size == 0:
                return target
            w = np.exp(sel.pressure * (F - F.max()))
            c = np.cumsum(w)
            src = np.searchsorted(c, self.rng.random(jumpers.size) * c[-1], side="right")
            np.minimum(src, self.n - 1, out=src)
            return self._assign(target, donors, jumpers, src, copy=sel.copy, mutate=True)
        # truncation: M[donors] = donors with its bottom ⌊qN⌋ replaced by copies of its top
        k = self.o["n_trunc"]
        part = np.argpartition(F, (k - 1, self.n - k))
        bottom, top = part[:k], part[self.n - k:]
        is_bottom = np.zeros(self.n, dtype=bool)
        is_bottom[bottom] = True
        if jumpers.size == 0:
            return target
        jb = jumpers[is_bottom[jumpers]]          # jumpers that M replaces by a top copy
        jn = jumpers[~is_bottom[jumpers]]         # jumpers that M leaves as donors' agent
        src = top[self.rng.integers(0, k, jb.size)]
        out = self._assign(target, donors, jb, src, copy=sel.copy, mutate=True)
        if jn.size and donors is not target:
            out = self._assign(out, donors, jn, jn, copy="both", mutate=False, fresh=False)
        return out

    def _assign(self, target: _Population, donors: _Population, dst: np.ndarray,
                src: np.ndarray, *, copy: str, mutate: bool, fresh: bool = True
                ) -> _Population:
        """target[dst] ← donors[src] (θ too if copy == 'both'), with GaussianJump mutation of
        the copied h; returns a new population (target is not modified)."""
        out = target.copy()
        self.stats["copies"] += int(dst.size)
        if copy == "both":
            out.theta[dst] = donors.theta[src]
            if out.wavg is not None:
                out.wavg[dst] = donors.wavg[src]
            if out.wbuf is not None:
                out.wbuf[:, dst] = donors.wbuf[:, src]
                out.wsum[dst] = donors.wsum[src]
        hn = donors.h[src]
        if mutate and isinstance(self.mut, GaussianJump):
            hn = hn + self.mut.std * self.rng.standard_normal(hn.size)
            if self.o["h_box"] is not None:
                apply_boundary(hn, *self.o["h_box"], self.o["boundary"])
        out.h[dst] = hn
        if copy == "h" and fresh:
            self.reset_window(out, dst)
        return out

    # -- mutation ------------------------------------------------------------------------
    def _normals(self, shape: tuple) -> np.ndarray:
        """Standard normals in a reused buffer (valid until the next call)."""
        buf = self._buf.get(shape)
        if buf is None:
            buf = self._buf[shape] = np.empty(shape)
        return self.rng.standard_normal(out=buf)

    def mutate(self, P: _Population, tau: float) -> None:
        if not isinstance(self.mut, Diffusion) or self.mut.coefficient == 0:
            return
        xi = self._normals((self.n,))
        xi *= np.sqrt(2.0 * self.mut.coefficient * tau)
        P.h += xi
        if self.o["h_box"] is not None:
            apply_boundary(P.h, *self.o["h_box"], self.o["boundary"])


def _central_gradient(loss: Callable, theta: np.ndarray, h: np.ndarray) -> np.ndarray:
    """∂_k L by central differences with δ = 6·10⁻⁶ max(1, |θ_k|) (documented fallback)."""
    g = np.empty_like(theta)
    cols = [None] if theta.ndim == 1 else range(theta.shape[1])
    for k in cols:
        sl = (slice(None),) if k is None else (slice(None), k)
        x = theta[sl]
        d = _FD_REL_STEP * np.maximum(1.0, np.abs(x))
        tp, tm = theta.copy(), theta.copy()
        tp[sl] = x + d
        tm[sl] = x - d
        step = tp[sl] - tm[sl]               # the representable 2δ
        g[sl] = (np.asarray(loss(tp, h), float) - np.asarray(loss(tm, h), float)) / step
    return g


def _check_declarations(model: Model, theta: np.ndarray, h: np.ndarray, grad_source: str,
                        rng_state: np.random.Generator | None = None) -> None:
    """Check a quadratic declaration and a model loss_grad against the loss, on ≤ 16 agents."""
    k = min(16, h.size)
    th, hh = theta[:k].copy(), h[:k].copy()
    shift = 0.25 * np.linspace(-1.0, 1.0, k).reshape((k,) + (1,) * (th.ndim - 1))
    if model.quadratic is not None:
        K, c = model.quadratic
        Kv = np.asarray(K(hh) if callable(K) else K, float)
        cv = np.asarray(c(hh) if callable(c) else c, float)
        if Kv.ndim == 1 and th.ndim == 2:
            Kv = Kv[:, None]
        if cv.ndim == 1 and th.ndim == 2 and cv.shape[0] == k:
            cv = cv[:, None]

        def q(x):
            r = 0.5 * Kv * (x - cv) ** 2
            return r if x.ndim == 1 else r.sum(axis=1)
        lhs = np.asarray(model.loss(th + shift, hh), float) - np.asarray(model.loss(th, hh),
                                                                         float)
        rhs = q(th + shift) - q(th)
        if not np.allclose(lhs, rhs, rtol=1e-6, atol=1e-9 * (1 + np.abs(rhs).max())):
            i = int(np.argmax(np.abs(lhs - rhs)))
            raise ValueError(f"Model(quadratic=(K, center)) disagrees with the loss: at θ="
                             f"{np.ravel(th[i])[0]:.4g}, h={hh[i]:.4g} the loss changes by "
                             f"{lhs[i]:.6g} but ½K|θ−c|² by {rhs[i]:.6g}; fix the declaration "
                             f"(L must be ½K(h)|θ − c(h)|² + g(h)) or drop it")
    if grad_source == "model":
        g = np.asarray(model.loss_grad(th, hh), float)
        if g.shape != th.shape:
            raise ValueError(f"loss_grad returned shape {g.shape} for θ of shape {th.shape}; "
                             f"it must return ∂L/∂θ with θ's shape")
        fd = _central_gradient(model.loss, th, hh)
        if not np.allclose(g, fd, rtol=1e-4, atol=1e-6 * (1 + np.abs(fd).max())):
            i = np.unravel_index(int(np.argmax(np.abs(g - fd))), g.shape)
            raise ValueError(f"Model(loss_grad=...) disagrees with central differences of "
                             f"the loss: {g[i]:.6g} against {fd[i]:.6g} at agent {i[0]}; "
                             f"check its sign and scale (or pass check=False)")


def _resolve_effective(model: Model, effective_fitness: Any, grid: Grid | None
                       ) -> tuple[Callable, str]:
    if effective_fitness is not None:
        if not callable(effective_fitness):
            raise TypeError(f"effective_fitness must be a callable F̄(h), got "
                            f"{_short(effective_fitness)}")
        return effective_fitness, getattr(effective_fitness, "__name__", "callable")
    if grid is None:
        raise ValueError("fitness_mode='effective' needs effective_fitness=callable F̄(h), or "
                         "grid= so that F̄ can be computed by quadrature on the grid's θ-box")
    try:
        from .gibbs import effective_fitness as gibbs_fbar
    except ImportError:  # pragma: no cover - the module is being written alongside
        raise ValueError("fitness_mode='effective' needs effective_fitness=callable F̄(h); "
                         "pde_popdyn.gibbs is not available to compute it") from None
    values = np.asarray(gibbs_fbar(model, grid), dtype=float)
    nodes = grid.h

    def fbar(h: np.ndarray) -> np.ndarray:
        return np.interp(h, nodes, values)
    return fbar, "gibbs.effective_fitness(quadrature) on the grid's h-nodes, linear interp."


# ---------------------------------------------------------------------------------------------
# entry point
# ---------------------------------------------------------------------------------------------
def simulate_particles(model: Model, n: int, init: Any, t_final: float, dt: float, *,
                       seed: int | np.random.Generator | None = None,
                       save_every: int | None = None,
                       fitness_mode: str = "instantaneous", window: float | None = None,
                       window_kind: str = "exponential",
                       effective_fitness: Callable | None = None,
                       bandwidth: float | None = None,
                       grid: Grid | None = None, progress: bool | None = None,
                       replicator: str = "resample", resampling: str = "systematic",
                       ess_threshold: float = 1.0, jump_order: int = 2,
                       boundary: str | None = None, h_box: tuple | None = None,
                       fast: str = "auto", substeps: int = 1,
                       gradient: str | Callable | None = None, noise: bool = True,
                       splitting: str = "strang", check: bool = True) -> Ensemble:
    """Simulate N agents of ``model`` from ``init`` up to ``t_final`` (module docstring:
    the equations each sub-step solves and the selection schemes).

    Parameters
    ----------
    model:
        A :class:`pde_popdyn.Model`. Its callables are called per agent, with θ of shape (N,)
        (or (N, d)) and h of shape (N,); ``loss``/``fitness`` return shape (N,),
        ``loss_grad`` θ's shape; ``temperature``/``mobility``/``quadratic`` callables get h.
    n:
        Number of agents N ≥ 1.
    init:
        A density on ``grid`` (array of ``grid.shape``), sampled exactly from its cell
        averages; a tuple ``(theta, h)`` of arrays with N rows; or an :class:`Ensemble`, whose
        final state is continued from its final time (with its stored bit-generator state
        unless ``seed`` is given: bit for bit what the uninterrupted run gives when the
        continuation starts at one of its saved times with the same ``dt``).
    t_final, dt:
        Final time (absolute; ≥ the start time) and time step; the step is shortened slightly
        so that a whole number of steps reaches ``t_final``.
    seed:
        An int (or a numpy Generator) for ``np.random.default_rng``; None draws fresh entropy,
        which is stored in ``info["seed"]`` so the run can be repeated.
    save_every:
        Save every this many steps (first and last states always); default ~100 snapshots.
    fitness_mode:
        What selection sees: ``"instantaneous"`` F(θ_i, h_i); ``"window"`` a time average of
        it over ``window`` (``window_kind="exponential"``: F̃ ← e^{−Δt/w} F̃ + (1 − e^{−Δt/w})
        F each step; ``"running"``: the mean of the last round(w/Δt) values; copies carry the
        donor's memory, agents that take only h start afresh); ``"effective"`` F̄(h_i) from the
        callable ``effective_fitness`` or, if not given, from
        ``pde_popdyn.gibbs.effective_fitness`` by quadrature on ``grid`` (interpolated
        linearly between the h-nodes); ``"estimated"`` the Nadaraya–Watson regression of
        {(h_j, F_j)} over the population (:func:`kernel_regression`, Silverman's bandwidth
        unless ``bandwidth`` is given; binned, O(N)).
    grid:
        Optional :class:`Grid`: for a density ``init``, for the h-box (its h-edges) and its
        periodicity, for ``fitness_mode="effective"`` by quadrature, and stored with the
        result. A periodic θ-axis makes θ wrap into the θ-box (d = 1).
    replicator, resampling, ess_threshold:
        Replicator scheme ``"resample"`` (weights e^{κΔtF} then ``"systematic"`` or
        ``"multinomial"`` resampling; adaptive when ``ess_threshold`` < 1) or ``"pairwise"``.
    jump_order:
        2 (exponential midpoint, default, as the PDE's jump step) or 1, for BoltzmannJump and
        Truncation.
    boundary, h_box:
        ``"reflecting"`` (default), ``"periodic"`` (default if the grid's h-axis is periodic)
        or ``"clip"``, on the box ``h_box=(lo, hi)`` or, if not given, the grid's h-range.
        Without a box h lives on R.
    fast, substeps, gradient, noise:
        The fast step: ``"auto"`` (``"ou"`` if the model declares ``quadratic=``, else
        ``"euler"``), ``"ou"``, ``"euler"`` or ``"mala"``; ``substeps`` inner steps per Δt;
        ``gradient`` None (the model's), ``"central"`` or ``callable(theta, h, rng)``;
        ``noise=False`` drops the Langevin noise.
    splitting:
        ``"strang"`` (default, order 2) or ``"lie"`` (order 1).
    check:
        Check ``quadratic=`` and ``loss_grad`` against the loss on a few agents first.

    Returns
    -------
    Ensemble
        ``.t`` (n_saved,), ``.theta`` (n_saved, N) or (n_saved, N, d), ``.h`` (n_saved, N).
    """
    # -- validate the arguments ----------------------------------------------------------------
    if not isinstance(model, Model):
        raise TypeError(f"model must be a pp.Model, got {type(model).__name__}")
    if isinstance(n, bool) or not isinstance(n, (numbers.Integral, np.integer)):
        raise TypeError(f"n must be a positive integer number of agents, got {_short(n)}")
    if n < 1:
        raise ValueError(f"n must be >= 1 agent, got {n}")
    n = int(n)
    dt = positive_float("dt", dt)
    t_final = positive_float("t_final", t_final, allow_zero=True)
    if grid is not None and not isinstance(grid, Grid):
        raise TypeError(f"grid must be a pp.Grid or None, got {type(grid).__name__}")
    if save_every is not None:
        save_every = _check_int("save_every", save_every)
    _check_choice("fitness_mode", fitness_mode, FITNESS_MODES)
    _check_choice("window_kind", window_kind, WINDOW_KINDS)
    _check_choice("replicator", replicator, REPLICATOR_SCHEMES)
    _check_choice("resampling", resampling, RESAMPLING)
    _check_choice("fast", fast, FAST_METHODS)
    _check_choice("splitting", splitting, SPLITTINGS)
    substeps = _check_int("substeps", substeps)
    jump_order = _check_int("jump_order", jump_order)
    if jump_order not in (1, 2):
        raise ValueError(f"jump_order must be 1 or 2, got {jump_order}")
    ess_threshold = positive_float("ess_threshold", ess_threshold)
    if ess_threshold > 1:
        raise ValueError(f"ess_threshold must be in (0, 1], got {ess_threshold}; 1 resamples "
                         f"at every step, 0.5 when the effective sample size halves")
    if bandwidth is not None:
        bandwidth = positive_float("bandwidth", bandwidth)
    if fitness_mode == "window":
        if window is None:
            raise ValueError("fitness_mode='window' needs window=<averaging time > 0>")
        window = positive_float("window", window)
    sel = model.selection if (model.selection is not None and model.selection.rate > 0) \
        else None
    if fitness_mode != "instantaneous" and sel is None:
        raise ValueError(f"fitness_mode={fitness_mode!r} only matters for selection, and the "
                         f"model has none")

    # -- the h-box and the boundary rule -------------------------------------------------------
    box = None
    if h_box is not None:
        try:
            lo, hi = (float(v) for v in h_box)
        except (TypeError, ValueError):
            raise TypeError(f"h_box must be a pair (low, high), got {_short(h_box)}") from None
        if not (np.isfinite(lo) and np.isfinite(hi) and hi > lo):
            raise ValueError(f"h_box=(low, high) needs finite low < high, got {h_box!r}")
        box = (lo, hi)
    elif grid is not None:
        box = (float(grid.h_edges[0]), float(grid.h_edges[-1]))
    if boundary is None:
        boundary = "periodic" if (grid is not None and "h" in grid.periodic) else "reflecting"
    _check_choice("boundary", boundary, BOUNDARIES)
    if boundary != "reflecting" and box is None:
        raise ValueError(f"boundary={boundary!r} needs a box: give h_box=(low, high) or grid=")

    # -- the random generator and the initial state --------------------------------------------
    t0 = 0.0
    resume_state = None
    if isinstance(init, Ensemble):
        if init.n != n:
            raise ValueError(f"init is an Ensemble of {init.n} agents but n={n}; pass "
                             f"n={init.n}")
        t0 = float(init.t[-1])
        if seed is None:
            if "rng" not in init.state:
                raise ValueError("this Ensemble has no stored generator state; pass seed=")
            rng = np.random.Generator(getattr(np.random, init.state["rng"]["bit_generator"])())
            rng.bit_generator.state = init.state["rng"]
            seed_info = init.info.get("seed")
        else:
            rng, seed_info = _make_rng(seed)
        resume_state = init.state
        theta = np.array(init.theta[-1], dtype=float)
        h = np.array(init.h[-1], dtype=float)
    else:
        rng, seed_info = _make_rng(seed)
        if isinstance(init, tuple):
            if len(init) != 2:
                raise ValueError(f"init as a tuple must be (theta, h), got {len(init)} items")
            theta = np.array(init[0], dtype=float)
            h = np.array(init[1], dtype=float)
            if theta.ndim not in (1, 2) or theta.shape[0] != n or h.shape != (n,):
                raise ValueError(f"init=(theta, h) must have theta of shape ({n},) or ({n}, d) "
                                 f"and h of shape ({n},) for n={n}, got {theta.shape} and "
                                 f"{h.shape}")
            if not (np.all(np.isfinite(theta)) and np.all(np.isfinite(h))):
                raise ValueError("init=(theta, h) contains NaN or inf")
        elif isinstance(init, np.ndarray) or isinstance(init, list):
            if grid is None:
                raise ValueError("init is a density array, so grid= is needed to sample it; "
                                 "or pass init=(theta, h) arrays")
            theta, h = sample_density(grid, init, n, rng)
        else:
            raise TypeError(f"init must be a density array on grid, a tuple (theta, h) or an "
                            f"Ensemble, got {type(init).__name__}")
    if t_final < t0:
        raise ValueError(f"t_final={t_final} is before the start time {t0}")
    if box is not None:
        apply_boundary(h, *box, boundary)
    theta_box = None
    if grid is not None and "theta" in grid.periodic:
        if theta.ndim != 1:
            raise ValueError("a periodic θ-axis needs θ ∈ R (d = 1)")
        theta_box = (float(grid.theta_edges[0]), float(grid.theta_edges[-1]))

    # -- the fast step and its gradient --------------------------------------------------------
    if fast == "auto":
        fast = "ou" if model.quadratic is not None else "euler"
    if fast == "ou" and model.quadratic is None:
        raise ValueError("fast='ou' needs a quadratic loss declared with "
                         "pp.Model(..., quadratic=(K, center)); use fast='euler' or 'mala'")
    grad_source = None
    if fast in ("euler", "mala"):
        if gradient is None:
            if model.loss_grad is not None:
                grad_source = "model"
            elif model.quadratic is not None:
                grad_source = "quadratic"
            else:
                raise ValueError(
                    f"fast={fast!r} needs ∇_θL, but the model has no loss_grad and its loss "
                    f"is not declared quadratic; give pp.Model(..., loss_grad=...), or "
                    f"simulate_particles(..., gradient='central') for central differences, "
                    f"or gradient=callable(theta, h, rng) for a (stochastic) gradient")
        elif gradient == "central":
            grad_source = "central"
        elif callable(gradient):
            grad_source = "user"
            if fast == "mala":
                raise ValueError("fast='mala' needs the exact gradient and loss; a user "
                                 "gradient callable may be stochastic, use fast='euler'")
        else:
            raise ValueError(f"gradient={gradient!r} is not known; use None, 'central' or a "
                             f"callable gradient(theta, h, rng)")
        if fast == "mala" and not noise:
            raise ValueError("fast='mala' is a Metropolis-adjusted Langevin step and needs its "
                             "noise; noise=False is for plain (stochastic) gradient descent "
                             "with fast='euler'")
    if check:
        _check_declarations(model, theta, h, grad_source if fast != "ou" else None)
    for name in ("temperature", "mobility"):
        value = getattr(model, name)
        if callable(value):
            _check_positive_field(name, value(h), n)

    # -- fitness mode --------------------------------------------------------------------------
    fbar, fbar_desc = None, None
    if fitness_mode == "effective":
        fbar, fbar_desc = _resolve_effective(model, effective_fitness, grid)
        test = np.asarray(fbar(h[:8]), dtype=float)
        if test.shape != h[:8].shape or not np.all(np.isfinite(test)):
            raise ValueError(f"effective_fitness(h) must return finite values of h's shape; "
                             f"got {test!r} for h of shape {h[:8].shape}")
    n_trunc = None
    if isinstance(sel, Truncation):
        n_trunc = int(np.floor(sel.fraction * n))
        if n_trunc < 1:
            raise ValueError(f"Truncation(fraction={sel.fraction}) selects floor(q·n) = 0 of "
                             f"n={n} agents; use more agents or a larger fraction")

    # -- the schedule and memory -------------------------------------------------------------
    span = t_final - t0
    n_steps = 0
    if span > 0:
        prev_dt = float(init.info.get("dt", dt)) if isinstance(init, Ensemble) else None
        if prev_dt is not None and abs(prev_dt - dt) <= 1e-12 * dt and \
                abs(span / prev_dt - round(span / prev_dt)) < 1e-9 and round(span / prev_dt):
            dt, n_steps = prev_dt, int(round(span / prev_dt))   # keep the exact stored step
        else:
            n_steps = max(int(np.ceil(span / dt * (1 - 1e-12))), 1)
            dt = span / n_steps
    if save_every is None:
        save_every = max(1, n_steps // 100)
    saves = sorted(set(range(0, n_steps + 1, save_every)) | {n_steps})
    d = 1 if theta.ndim == 1 else theta.shape[1]
    nbytes = len(saves) * n * (d + 1) * 8
    if nbytes > _MAX_SNAPSHOT_BYTES:
        raise ValueError(f"saving {len(saves)} snapshots of {n} agents needs "
                         f"{nbytes / 1e9:.1f} GB; pass a larger save_every= (e.g. "
                         f"{n_steps}) to keep only a few states")
    window_len = max(1, int(round(window / dt))) if fitness_mode == "window" else None
    if window_len is not None and window_kind == "running" and window_len * n * 8 > 2e9:
        raise ValueError(f"the running window keeps {window_len} values per agent "
                         f"({window_len * n * 8 / 1e9:.1f} GB); use window_kind='exponential'")

    opts = dict(fast=fast, substeps=substeps, grad_source=grad_source,
                gradient=gradient if callable(gradient) else None, noise=bool(noise),
                fitness_mode=fitness_mode, window=window, window_kind=window_kind,
                window_len=window_len, fbar=fbar, bandwidth=bandwidth, replicator=replicator,
                resampling=resampling, ess_threshold=ess_threshold, jump_order=jump_order,
                boundary=boundary, h_box=box, theta_box=theta_box, n_trunc=n_trunc)
    sim = _Simulator(model, n, rng, opts)
    P = _Population(theta, h)
    rng_state_start = rng.bit_generator.state
    if fitness_mode == "window":
        st = resume_state or {}
        if "window_avg" in st and window_kind == "exponential":
            P.wavg = np.array(st["window_avg"], dtype=float)
            sim.wpos = 0
        elif "window_buf" in st and window_kind == "running":
            P.wbuf = np.array(st["window_buf"], dtype=float)
            P.wsum = np.array(st["window_sum"], dtype=float)
            sim.wpos = int(st.get("window_pos", 0))
        else:
            sim.init_window(P)

    # -- the time loop ---------------------------------------------------------------------------
    from tqdm.auto import tqdm

    ts, thetas, hs = [], [], []

    def save(k: int) -> None:
        if not (np.isfinite(P.theta).all() and np.isfinite(P.h).all()):
            raise FloatingPointError(f"agents became non-finite by step {k}; reduce dt or "
                                     f"use a stabler fast step")
        ts.append(t0 + k * dt)
        thetas.append(P.theta.copy())
        hs.append(P.h.copy())

    save_set = set(saves)
    strang = splitting == "strang"
    # S(Δt/2)S(Δt/2) = S(Δt) exactly for the replicator (weights multiply), so consecutive
    # half steps are merged; the jump rules' steps are not a semigroup, so they stay apart and
    # the mean-field limit is exactly the grid solver's Strang scheme
    merge = sel is None or isinstance(sel, Replicator)
    t_start = time.perf_counter()
    save(0)
    if n_steps and strang:
        P = sim.select(P, 0.5 * dt, force_resample=False)
    disable = None if progress is None else not progress
    with tqdm(total=n_steps, disable=disable, desc="particles", unit="step",
              leave=False) as bar:
        for k in range(1, n_steps + 1):
            if strang:
                sim.mutate(P, 0.5 * dt)
                sim.fast(P, dt)
                sim.mutate(P, 0.5 * dt)
                if fitness_mode == "window":
                    sim.update_window(P, dt)
                if k in save_set or not merge:
                    P = sim.select(P, 0.5 * dt, force_resample=k in save_set)
                    if k in save_set:
                        P = sim.flush_weights(P)
                        save(k)
                    if k < n_steps:
                        P = sim.select(P, 0.5 * dt, force_resample=False)
                else:
                    P = sim.select(P, dt, force_resample=False)
            else:
                sim.fast(P, dt)
                sim.mutate(P, dt)
                if fitness_mode == "window":
                    sim.update_window(P, dt)
                P = sim.select(P, dt, force_resample=k in save_set)
                if k in save_set:
                    P = sim.flush_weights(P)
                    save(k)
            bar.update(1)
    run_seconds = time.perf_counter() - t_start

    theta_arr = np.stack(thetas)
    info = {
        "seed": seed_info, "bit_generator": type(rng.bit_generator).__name__,
        "rng_state_start": rng_state_start, "t0": t0, "dt": dt, "n_steps": n_steps,
        "save_every": save_every, "n_agents": n, "d": d, "splitting": splitting,
        "fast": fast, "substeps": substeps,
        "gradient": {"model": "model.loss_grad", "quadratic": "quadratic declaration",
                     "central": "central", "user": "user callable"}.get(grad_source, None),
        "noise": bool(noise), "fitness_mode": fitness_mode, "window": window,
        "window_kind": window_kind, "effective_fitness": fbar_desc, "bandwidth": bandwidth,
        "replicator": replicator, "resampling": resampling, "ess_threshold": ess_threshold,
        "jump_order": jump_order, "boundary": boundary,
        "h_box": None if box is None else list(box),
        "selection": None if sel is None else type(sel).__name__,
        "run_seconds": run_seconds,
        "agent_steps_per_second": n * n_steps / run_seconds if run_seconds > 0 else None,
        "resamples": sim.stats["resamples"], "copies": sim.stats["copies"],
        "pairwise_max_substeps": sim.stats["pairwise_max_substeps"],
        "mala_acceptance": (sim.stats["mala_accepted"] / sim.stats["mala_proposed"]
                            if sim.stats["mala_proposed"] else None),
        "last_bandwidth": sim.stats["last_bandwidth"],
    }
    state: dict[str, Any] = {"rng": rng.bit_generator.state}
    if P.wavg is not None:
        state["window_avg"] = P.wavg.copy()
    if P.wbuf is not None:
        state.update(window_buf=P.wbuf.copy(), window_sum=P.wsum.copy(),
                     window_pos=sim.wpos)
    options = dict(seed=None, fitness_mode=fitness_mode, window=window,
                   window_kind=window_kind, effective_fitness=effective_fitness,
                   bandwidth=bandwidth, grid=grid, replicator=replicator,
                   resampling=resampling, ess_threshold=ess_threshold, jump_order=jump_order,
                   boundary=boundary, h_box=h_box, fast=fast, substeps=substeps,
                   gradient=gradient, noise=noise, splitting=splitting, check=False)
    return Ensemble(t=np.asarray(ts), theta=theta_arr, h=np.stack(hs), model=model,
                    grid=grid, info=info, state=state, _options=options)


def _make_rng(seed: Any) -> tuple[np.random.Generator, Any]:
    if isinstance(seed, np.random.Generator):
        return seed, None
    if seed is None:
        ss = np.random.SeedSequence()
        return np.random.default_rng(ss), ss.entropy
    if isinstance(seed, bool) or not isinstance(seed, (numbers.Integral, np.integer)) \
            or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, a numpy Generator or None, "
                         f"got {_short(seed)}")
    return np.random.default_rng(int(seed)), int(seed)
