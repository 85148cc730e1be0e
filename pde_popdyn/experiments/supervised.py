"""Supervised population-based training of numpy MLPs, against the reduced equation.

**The agents.** N perceptrons with one hidden layer (tanh) and a softmax output, trained on a
dataset that scikit-learn ships (``"digits"``: 8×8 images of handwritten digits, 10 classes;
``"breast_cancer"``: 30 features, 2 classes), standardised on the training split. Agent i has
parameters θ_i = (W₁, b₁, W₂, b₂) and one hyperparameter, h_i = log₁₀ of its weight decay λ_i.
Its training loss and fitness are

    L(θ, h) = CE_train(θ) + (10^h / 2)(|W₁|² + |W₂|²),      F(θ) = −CE_val(θ),

CE the mean cross-entropy on the training split and on a held-out validation split. Each agent
takes plain minibatch SGD steps θ ← θ − η (∇CE_batch(θ) + 10^h W) (batch drawn independently
per agent, with replacement). The whole population is one set of stacked arrays: one batched
matrix product per layer and pass for all agents, no loop over agents.

**PBT truncation, as practised.** Every ``interval`` SGD steps (the ready time) the agents are
ranked on their fitness G, the mean of −CE_val over their last ``window`` evaluations (made
every ``eval_every`` steps; by default the evaluations of one interval). The ⌈qN⌉ lowest each
copy θ and h of an agent drawn uniformly among the ⌈qN⌉ highest; the copied h is explored,
h ← clip(h + σξ, box), ξ ~ N(0, 1), and the copier's fitness memory is cleared. Several
independent populations (seeds) run as one batch; selection acts within each.

**Against the continuum.** When θ relaxes to its stationary law π_h within a ready interval,
ρ(t, h) follows the reduced PBT generation map driven by the effective fitness F̄(h)
(:mod:`pde_popdyn.experiments.continuum`). Here F̄ is estimated independently of any PBT
population, from agents trained at fixed h, averaged over time after a burn-in and over seeds
(:func:`fixed_h_runs`, :func:`estimate_fitness`); :func:`inherited_fitness` measures how far
the PBT agents' fitness departs from it. The relaxation of the weights under weight decay
takes about 1/(η λ) SGD steps, which sets how long a ready interval must be for the limit to
apply.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np

from .._validate import _short, positive_float

DATASETS = ("digits", "breast_cancer")


# --------------------------------------------------------------------------------------------
# data
# --------------------------------------------------------------------------------------------
class Dataset(NamedTuple):
    """Standardised features (float32) and integer labels of a training/validation split."""

    X_train: np.ndarray
    y_train: np.ndarray
    X_val: np.ndarray
    y_val: np.ndarray
    n_classes: int
    name: str


def load_dataset(name: str = "digits", n_train: int = 300, n_val: int | None = 600, *,
                 seed: int = 0, dtype: Any = np.float32) -> Dataset:
    """A random training/validation split of a scikit-learn dataset, standardised with the
    training split's mean and standard deviation (constant features are left at zero).

    ``n_val=None`` keeps every remaining sample for validation. Needs scikit-learn
    (``pip install pde_popdyn[examples]``).
    """
    if name not in DATASETS:
        raise ValueError(f"dataset={name!r} is not known; use one of {DATASETS}")
    try:
        from sklearn import datasets as skd
    except ImportError as exc:  # pragma: no cover - scikit-learn is in the test extra
        raise ImportError("the supervised experiment needs scikit-learn: "
                          "pip install pde_popdyn[examples]") from exc
    X, y = getattr(skd, f"load_{name}")(return_X_y=True)
    n_train = _count("n_train", n_train, 2)
    rest = y.size - n_train
    n_val = rest if n_val is None else _count("n_val", n_val, 1)
    if n_train + n_val > y.size:
        raise ValueError(f"n_train + n_val = {n_train + n_val} exceeds the {y.size} samples of "
                         f"{name!r}; lower n_train or n_val (n_val=None takes the rest)")
    idx = np.random.default_rng(seed).permutation(y.size)
    tr, va = idx[:n_train], idx[n_train:n_train + n_val]
    mu, sd = X[tr].mean(0), X[tr].std(0)
    sd = np.where(sd > 0, sd, 1.0)
    Z = ((X - mu) / sd).astype(dtype)
    return Dataset(Z[tr], y[tr].astype(np.int64), Z[va], y[va].astype(np.int64),
                   int(y.max()) + 1, name)


def _count(name: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an integer, got {_short(value)}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return int(value)


# --------------------------------------------------------------------------------------------
# a population of MLPs with stacked weights
# --------------------------------------------------------------------------------------------
@dataclass
class MLPPopulation:
    """N one-hidden-layer tanh perceptrons with softmax outputs, weights stacked on axis 0:
    ``W1`` (N, d, H), ``b1`` (N, H), ``W2`` (N, H, C), ``b2`` (N, C)."""

    W1: np.ndarray
    b1: np.ndarray
    W2: np.ndarray
    b2: np.ndarray

    @classmethod
    def init(cls, n: int, n_in: int, n_hidden: int, n_out: int, rng: np.random.Generator,
             dtype: Any = np.float32) -> "MLPPopulation":
        """Glorot-normal weights (variance 2/(fan_in + fan_out)), zero biases."""
        s1 = math.sqrt(2.0 / (n_in + n_hidden))
        s2 = math.sqrt(2.0 / (n_hidden + n_out))
        return cls((s1 * rng.standard_normal((n, n_in, n_hidden))).astype(dtype),
                   np.zeros((n, n_hidden), dtype),
                   (s2 * rng.standard_normal((n, n_hidden, n_out))).astype(dtype),
                   np.zeros((n, n_out), dtype))

    @property
    def n(self) -> int:
        return self.W1.shape[0]

    def arrays(self) -> tuple[np.ndarray, ...]:
        return self.W1, self.b1, self.W2, self.b2

    def take(self, dst: np.ndarray, src: np.ndarray) -> None:
        """Agents ``dst`` receive the parameters of agents ``src`` (in place)."""
        for a in self.arrays():
            a[dst] = a[src]

    def flat(self) -> np.ndarray:
        """Every agent's parameters as one vector, shape (N, n_params)."""
        return np.concatenate([a.reshape(self.n, -1) for a in self.arrays()], axis=1)

    def sgd(self, data: Dataset, lr: np.ndarray, decay: np.ndarray, n_steps: int, batch: int,
            rng: np.random.Generator) -> None:
        """``n_steps`` minibatch SGD steps of every agent on CE_train + (λ/2)|W|², per-agent
        learning rates ``lr`` and weight decays ``decay`` (shape (N,))."""
        X, y = data.X_train, data.y_train
        dt = self.W1.dtype
        lr = np.asarray(lr, dt).reshape(-1, 1, 1)
        shrink = (1.0 - lr * np.asarray(decay, dt).reshape(-1, 1, 1)).astype(dt)
        scale = (lr / batch).astype(dt)
        rows = np.arange(self.n)[:, None]
        for _ in range(n_steps):
            idx = rng.integers(0, y.size, (self.n, batch))
            Xb = X[idx]                                          # (N, B, d)
            A = np.tanh(Xb @ self.W1 + self.b1[:, None, :])       # (N, B, H)
            Z = A @ self.W2 + self.b2[:, None, :]                 # (N, B, C)
            Z -= Z.max(axis=2, keepdims=True)
            P = np.exp(Z)
            P /= P.sum(axis=2, keepdims=True)
            P[rows, np.arange(batch)[None, :], y[idx]] -= 1.0     # ∂CE/∂Z × B
            dA = (P @ self.W2.transpose(0, 2, 1)) * (1.0 - A * A)
            # weight decay as a multiplicative shrink, then the gradient step
            self.W2 *= shrink
            self.W2 -= scale * (A.transpose(0, 2, 1) @ P)
            self.b2 -= scale[:, :, 0] * P.sum(axis=1)
            self.W1 *= shrink
            self.W1 -= scale * (Xb.transpose(0, 2, 1) @ dA)
            self.b1 -= scale[:, :, 0] * dA.sum(axis=1)

    def evaluate(self, X: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Mean cross-entropy and accuracy of every agent on (X, y), shape (N,) each. The
        first layer is one matrix product for all agents (X is shared)."""
        n, d, H = self.W1.shape
        A = (X @ self.W1.transpose(1, 0, 2).reshape(d, n * H)).reshape(len(y), n, H)
        A = np.tanh(A.transpose(1, 0, 2) + self.b1[:, None, :])  # (N, V, H)
        Z = (A @ self.W2 + self.b2[:, None, :]).astype(np.float64)
        top = Z.max(axis=2, keepdims=True)
        logz = top[..., 0] + np.log(np.exp(Z - top).sum(axis=2))
        picked = np.take_along_axis(Z, np.broadcast_to(y[None, :, None], (n, len(y), 1)),
                                    axis=2)[..., 0]
        ce = (logz - picked).mean(axis=1)
        acc = (Z.argmax(axis=2) == y[None, :]).mean(axis=1)
        return ce, acc


# --------------------------------------------------------------------------------------------
# the experiment's settings
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Setup:
    """Settings shared by the fixed-h runs and the PBT runs.

    h = log₁₀ weight decay on ``box``; ``lr`` and ``batch`` are every agent's SGD step size and
    minibatch size; ``interval`` SGD steps between ready times; fitness evaluated every
    ``eval_every`` steps and averaged over the last ``window`` evaluations (default: those of
    one interval); truncation ``fraction`` q; explore standard deviation ``explore_std`` in
    h (the reference code's 0.1 on [−1, 1] is 0.05 × the box length).
    """

    dataset: str = "digits"
    n_train: int = 200
    n_val: int | None = 600
    hidden: int = 32
    lr: float = 0.3
    batch: int = 16
    box: tuple[float, float] = (-5.0, 0.0)
    interval: int = 1000
    eval_every: int = 250
    window: int | None = None
    fraction: float = 0.2
    explore_std: float = 0.25
    data_seed: int = 0

    def __post_init__(self) -> None:
        if self.dataset not in DATASETS:
            raise ValueError(f"dataset={self.dataset!r} is not known; use one of {DATASETS}")
        for name in ("hidden", "batch", "interval", "eval_every"):
            _count(name, getattr(self, name), 1)
        positive_float("lr", self.lr)
        positive_float("explore_std", self.explore_std)
        if not 0 < positive_float("fraction", self.fraction) <= 0.5:
            raise ValueError(f"fraction must be in (0, 0.5] (the bottom and top sets must not "
                             f"overlap), got {self.fraction!r}")
        try:
            lo, hi = (float(v) for v in self.box)
        except (TypeError, ValueError):
            raise ValueError(f"box must be (low, high), the range of h = log10 weight decay, "
                             f"got {_short(self.box)}") from None
        if not (np.isfinite(lo) and np.isfinite(hi) and lo < hi):
            raise ValueError(f"box must be (low, high) with low < high, got {self.box!r}")
        object.__setattr__(self, "box", (lo, hi))
        if self.interval % self.eval_every:
            raise ValueError(f"interval={self.interval} must be a multiple of eval_every="
                             f"{self.eval_every} (the ready time falls on an evaluation)")
        w = self.interval // self.eval_every if self.window is None else \
            _count("window", self.window, 1)
        object.__setattr__(self, "window", w)

    @property
    def evals_per_interval(self) -> int:
        return self.interval // self.eval_every

    def data(self) -> Dataset:
        return load_dataset(self.dataset, self.n_train, self.n_val, seed=self.data_seed)

    def describe(self) -> dict:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


def _population(setup: Setup, data: Dataset, n: int, rng: np.random.Generator
                ) -> MLPPopulation:
    return MLPPopulation.init(n, data.X_train.shape[1], setup.hidden, data.n_classes, rng)


# --------------------------------------------------------------------------------------------
# the effective fitness, estimated from fixed-h runs
# --------------------------------------------------------------------------------------------
@dataclass
class FixedHRuns:
    """Fitness trajectories of agents trained at fixed h (no selection): ``fitness`` and
    ``accuracy`` of shape (n_h, n_seeds, n_eval), evaluated after ``steps`` SGD steps."""

    h: np.ndarray
    steps: np.ndarray
    fitness: np.ndarray
    accuracy: np.ndarray
    setup: Setup
    seconds: float = 0.0


def fixed_h_runs(setup: Setup, h_values: Any, n_seeds: int, n_steps: int, *,
                 seed: int = 0, data: Dataset | None = None) -> FixedHRuns:
    """Train ``n_seeds`` independently initialised agents at each h of ``h_values`` for
    ``n_steps`` SGD steps (one batched population, no selection), recording the fitness
    −CE_val every ``setup.eval_every`` steps."""
    import time

    h = np.asarray(h_values, dtype=float).ravel()
    if h.size < 2 or not np.all(np.isfinite(h)):
        raise ValueError(f"h_values must hold at least 2 finite values, got {_short(h_values)}")
    n_seeds = _count("n_seeds", n_seeds, 2)
    n_steps = _count("n_steps", n_steps, setup.eval_every)
    data = setup.data() if data is None else data
    t0 = time.perf_counter()
    rng = np.random.default_rng(seed)
    hh = np.repeat(h, n_seeds)
    pop = _population(setup, data, hh.size, rng)
    lr, decay = np.full(hh.size, setup.lr), 10.0 ** hh
    n_eval = n_steps // setup.eval_every
    F = np.empty((n_eval, hh.size))
    acc = np.empty((n_eval, hh.size))
    for k in range(n_eval):
        pop.sgd(data, lr, decay, setup.eval_every, setup.batch, rng)
        ce, acc[k] = pop.evaluate(data.X_val, data.y_val)
        F[k] = -ce
    shape = (h.size, n_seeds, n_eval)
    return FixedHRuns(h, setup.eval_every * np.arange(1, n_eval + 1),
                      F.T.reshape(shape), acc.T.reshape(shape), setup,
                      time.perf_counter() - t0)


@dataclass
class FitnessEstimate:
    """F̄(h) at the fixed h-values: ``fbar`` (mean over seeds of each run's time average
    after the burn-in) with ``stderr`` (seed-to-seed standard deviation / √n_seeds);
    ``seed_means`` (n_h, n_seeds); ``windowed`` (n_h, n_samples): the agents' ranking fitness
    G (the mean of ``window`` consecutive evaluations) after the burn-in, pooled over seeds;
    ``blocks`` (n_h, n_seeds, n_blocks): G in consecutive windows from the start, ending at
    ``block_steps``, which shows how F̄ moves as the networks keep training."""

    h: np.ndarray
    fbar: np.ndarray
    stderr: np.ndarray
    seed_means: np.ndarray
    windowed: np.ndarray
    blocks: np.ndarray
    block_steps: np.ndarray
    burn_in: int

    @property
    def by_time(self) -> np.ndarray:
        """F̄(h, t): the mean over seeds of G in each window, shape (n_blocks, n_h)."""
        return self.blocks.mean(axis=1).T

    @property
    def windowed_std(self) -> np.ndarray:
        """Standard deviation of the ranking fitness G at each h (across seeds and time)."""
        return self.windowed.std(axis=1, ddof=1)


def estimate_fitness(runs: FixedHRuns, burn_in: int, *, window: int | None = None
                     ) -> FitnessEstimate:
    """F̄(h) from fixed-h runs: each run's fitness averaged over the evaluations after
    ``burn_in`` SGD steps, then averaged over seeds (see :class:`FitnessEstimate`)."""
    w = runs.setup.window if window is None else _count("window", window, 1)
    after = runs.steps > burn_in
    if after.sum() < w:
        raise ValueError(f"burn_in={burn_in} leaves {int(after.sum())} evaluations of the "
                         f"fixed-h runs, fewer than one window of {w}; lower burn_in or run "
                         f"longer")
    F = runs.fitness
    seed_means = F[:, :, after].mean(axis=2)
    n_seeds = F.shape[1]
    tail = F[:, :, after]
    nb = tail.shape[2] // w
    blocks = tail[:, :, :nb * w].reshape(F.shape[0], n_seeds, nb, w).mean(axis=3)
    nall = F.shape[2] // w
    all_blocks = F[:, :, :nall * w].reshape(F.shape[0], n_seeds, nall, w).mean(axis=3)
    return FitnessEstimate(runs.h, seed_means.mean(axis=1),
                           seed_means.std(axis=1, ddof=1) / math.sqrt(n_seeds), seed_means,
                           blocks.reshape(F.shape[0], -1), all_blocks,
                           runs.steps[w - 1::w][:nall], int(burn_in))



# --------------------------------------------------------------------------------------------
# PBT on the agents
# --------------------------------------------------------------------------------------------
@dataclass
class PBTRecord:
    """A PBT run of ``n_seeds`` independent populations of N agents.

    ``h`` (n_seeds, G + 1, N): every agent's h at the start and just after each generation;
    ``fitness`` (n_seeds, G, N): the ranking fitness at each ready time (before selection);
    ``val_loss``, ``accuracy`` (n_seeds, G, N): CE_val and accuracy at each ready time;
    ``parent`` (n_seeds, G, N): the agent whose θ and h each agent holds after generation k
    (itself when it was not replaced); ``steps`` (G + 1,): SGD steps at which ``h`` is taken.
    """

    h: np.ndarray
    fitness: np.ndarray
    val_loss: np.ndarray
    accuracy: np.ndarray
    parent: np.ndarray
    steps: np.ndarray
    setup: Setup
    params: np.ndarray | None = None
    seconds: float = 0.0
    info: dict = field(default_factory=dict)

    @property
    def mean_h(self) -> np.ndarray:
        """E[h] of each population over the generations, shape (n_seeds, G + 1)."""
        return self.h.mean(axis=2)

    @property
    def var_h(self) -> np.ndarray:
        """Var[h] (normalised by N) of each population, shape (n_seeds, G + 1)."""
        return self.h.var(axis=2)


def run_pbt(setup: Setup, n_agents: int, n_generations: int, n_seeds: int, *,
            h0: Any = None, seed: int = 0, data: Dataset | None = None,
            keep_params: bool = False) -> PBTRecord:
    """PBT truncation with ``n_seeds`` independent populations of ``n_agents`` MLPs, trained
    together as one batch (the module docstring states the rule).

    ``h0``: initial hyperparameters, an array of shape (n_seeds, n_agents) or (n_agents,)
    (the same for every seed); default log-uniform weight decay, h ~ U(box), drawn per seed.
    ``keep_params``: also return the final parameter vectors (for a PCA of the population).
    """
    import time

    n = _count("n_agents", n_agents, 2)
    G = _count("n_generations", n_generations, 1)
    S = _count("n_seeds", n_seeds, 1)
    k = math.ceil(setup.fraction * n)
    if 2 * k > n:
        raise ValueError(f"fraction={setup.fraction} with n_agents={n} gives bottom and top "
                         f"sets of ceil(qN) = {k} agents that overlap; use more agents")
    data = setup.data() if data is None else data
    rng = np.random.default_rng(seed)
    lo, hi = setup.box
    if h0 is None:
        h = rng.uniform(lo, hi, (S, n))
    else:
        try:
            h = np.broadcast_to(np.asarray(h0, dtype=float), (S, n)).copy()
        except ValueError:
            raise ValueError(f"h0 must have shape (n_seeds, n_agents) = ({S}, {n}) or "
                             f"(n_agents,) = ({n},), got {np.shape(h0)}") from None
        if not np.all((h >= lo) & (h <= hi)):
            raise ValueError(f"h0 must lie in the box {setup.box}, got values in "
                             f"[{h.min():.4g}, {h.max():.4g}]")
    h = h.ravel()
    t0 = time.perf_counter()
    pop = _population(setup, data, S * n, rng)
    lr = np.full(S * n, setup.lr)
    offsets = (np.arange(S) * n)[:, None]
    memory = np.full((setup.window, S * n), np.nan)
    n_mem = 0
    hist_h = [h.reshape(S, n).copy()]
    fit, loss, acc, parent = [], [], [], []
    for _ in range(G):
        for _ in range(setup.evals_per_interval):
            pop.sgd(data, lr, 10.0 ** h, setup.eval_every, setup.batch, rng)
            ce, a = pop.evaluate(data.X_val, data.y_val)
            memory[n_mem % setup.window] = -ce
            n_mem += 1
        F = np.nanmean(memory, axis=0).reshape(S, n)
        fit.append(F)
        loss.append(ce.reshape(S, n))
        acc.append(a.reshape(S, n))
        # exploit: within each population the ceil(qN) lowest copy a uniform top agent
        order = np.argsort(F, axis=1, kind="stable")
        donors = np.take_along_axis(order[:, -k:], rng.integers(0, k, (S, k)), axis=1)
        dst, src = (order[:, :k] + offsets).ravel(), (donors + offsets).ravel()
        pop.take(dst, src)
        # explore: a clipped Gaussian jump of the copied h; the copier's memory is cleared
        h[dst] = np.clip(h[src] + setup.explore_std * rng.standard_normal(dst.size), lo, hi)
        memory[:, dst] = np.nan
        par = np.tile(np.arange(n), (S, 1))
        np.put_along_axis(par, order[:, :k], donors, axis=1)
        parent.append(par)
        hist_h.append(h.reshape(S, n).copy())
    return PBTRecord(np.stack(hist_h, axis=1), np.stack(fit, axis=1),
                     np.stack(loss, axis=1), np.stack(acc, axis=1), np.stack(parent, axis=1),
                     setup.interval * np.arange(G + 1), setup,
                     pop.flat().reshape(S, n, -1) if keep_params else None,
                     time.perf_counter() - t0,
                     {"n_agents": n, "n_generations": G, "n_seeds": S, "copied": k,
                      "seed": seed})


def inherited_fitness(rec: PBTRecord, est: FitnessEstimate) -> dict:
    """How much fitter PBT agents are than fixed-h agents at the same h and training time.

    At every ready time after the first, the residual r_i = G_i − F̄(h_i, t) of each agent
    (F̄(·, t) from the fixed-h runs' window ending at that time, interpolated in h) is grouped
    by what the agent did at the previous generation: kept its own θ, or copied a donor and
    jumped down (h below the donor's) or up. In the ε → 0 limit all three means vanish: a
    copied θ relaxes to π_h at once. Returns, per group, the mean residual, its standard
    error (agents as independent) and the count."""
    from .continuum import on_grid

    G = rec.info["n_generations"]
    n = rec.info["n_agents"]
    rows = np.searchsorted(est.block_steps, rec.setup.interval * np.arange(1, G + 1))
    if rows.max() >= est.block_steps.size or \
            not np.array_equal(est.block_steps[rows], rec.setup.interval * np.arange(1, G + 1)):
        raise ValueError("the fixed-h runs' fitness windows do not end at the PBT ready "
                         "times; use the same eval_every and a window of one interval")
    groups: dict[str, list] = {"kept": [], "down": [], "up": []}
    for k in range(1, G):
        h = rec.h[:, k]
        par = rec.parent[:, k - 1]
        copied = par != np.arange(n)[None, :]
        jump = h - np.take_along_axis(rec.h[:, k - 1], par, axis=1)
        res = rec.fitness[:, k] - on_grid(est.by_time[rows[k]], est.h, h)
        groups["kept"].append(res[~copied])
        groups["down"].append(res[copied & (jump < 0)])
        groups["up"].append(res[copied & (jump > 0)])
    out = {}
    for key, parts in groups.items():
        r = np.concatenate(parts) if parts else np.zeros(0)
        out[key] = {"mean": float(r.mean()) if r.size else float("nan"),
                    "stderr": float(r.std(ddof=1) / math.sqrt(r.size)) if r.size > 1
                    else float("nan"), "count": int(r.size)}
    return out


__all__ = ["Dataset", "load_dataset", "MLPPopulation", "Setup", "FixedHRuns", "fixed_h_runs",
           "FitnessEstimate", "estimate_fitness", "PBTRecord", "run_pbt", "inherited_fitness",
           "DATASETS"]
