"""Population-based training (PBT) of real agents: ranking, exploit, explore, fitness memory
and genealogy, independent of what the agents are (DQN agents, supervised MLPs, ...).

The generation map, applied once per generation to N agents with hyperparameters h_i and
fitness G_i (the score used for ranking):

* **Rank** the agents by G (an agent without any score ranks lowest; ties are broken at
  random).
* **Exploit**: the n_q = ⌈qN⌉ lowest-ranked agents each copy an agent drawn uniformly (with
  replacement) among the n_q highest-ranked: the copier takes the donor's network weights and
  hyperparameters. Its fitness memory (and, for the population, e.g. its replay buffer) is
  cleared, or, with ``memory="inherit"``, replaced by a copy of the donor's.
* **Explore**: each copier's hyperparameters are perturbed in the unit coordinates of
  :class:`HyperSpace`: u = map(h) ∈ [−1, 1]^m (log10 for log-scaled axes, affine for the
  others), u ← clip(u + σ ξ, −1, 1) with ξ ~ N(0, I), h ← map⁻¹(u), integers rounded.

The fitness is the mean of the last k scores of an agent (:class:`FitnessWindow`), e.g. the
returns of its last k episodes; k = 1 is the instantaneous fitness, larger k averages out the
noise of single evaluations.

A population plugs in through duck typing: it needs ``copy_agents(dst, src)`` (weights) and
``set_hyperparameters(**columns)`` (one keyword per hyperparameter name; or pass ``set_h`` to
:meth:`PBT.step`), and optionally ``clear_memory(idx)`` / ``copy_memory(dst, src)`` (replay
buffers and the like).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np


@dataclass(frozen=True)
class Hyperparameter:
    """One hyperparameter axis of a PBT search space.

    Parameters
    ----------
    name:
        Its name (also the keyword used with ``set_hyperparameters``).
    low, high:
        The box [low, high] (low > 0 for ``scale="log10"``).
    scale:
        'log10' (explore in log10 h, e.g. a learning rate) or 'linear'.
    integer:
        Round to integers after exploring (e.g. a batch size).
    prior:
        The initial distribution: 'uniform' in the axis' scale (log-uniform for 'log10'), or a
        sequence of values drawn uniformly.
    """

    name: str
    low: float
    high: float
    scale: str = "linear"
    integer: bool = False
    prior: Any = "uniform"

    def __post_init__(self):
        if not (np.isfinite(self.low) and np.isfinite(self.high) and self.high > self.low):
            raise ValueError(f"hyperparameter {self.name!r}: need finite low < high, got "
                             f"[{self.low}, {self.high}]")
        if self.scale not in ("log10", "linear"):
            raise ValueError(f"hyperparameter {self.name!r}: scale={self.scale!r}; use "
                             f"'log10' or 'linear'")
        if self.scale == "log10" and self.low <= 0:
            raise ValueError(f"hyperparameter {self.name!r}: a log10 axis needs low > 0, got "
                             f"{self.low}")
        if not isinstance(self.prior, str):
            vals = np.asarray(self.prior, float)
            if vals.ndim != 1 or vals.size == 0 or vals.min() < self.low \
                    or vals.max() > self.high:
                raise ValueError(f"hyperparameter {self.name!r}: prior values {self.prior!r}"
                                 f" must be a non-empty list inside [{self.low}, {self.high}]")
        elif self.prior != "uniform":
            raise ValueError(f"hyperparameter {self.name!r}: prior={self.prior!r}; use "
                             f"'uniform' or a list of values")

    def _fwd(self, x):
        return np.log10(x) if self.scale == "log10" else np.asarray(x, float)

    def _inv(self, y):
        return 10.0 ** y if self.scale == "log10" else y

    def to_unit(self, x: np.ndarray) -> np.ndarray:
        """Map values to [−1, 1] (affinely in log10 x or in x)."""
        a, b = self._fwd(self.low), self._fwd(self.high)
        return 2.0 * (self._fwd(x) - a) / (b - a) - 1.0

    def from_unit(self, u: np.ndarray) -> np.ndarray:
        """The inverse of :meth:`to_unit` (then rounded for an integer axis)."""
        a, b = self._fwd(self.low), self._fwd(self.high)
        x = self._inv(a + (np.asarray(u, float) + 1.0) * 0.5 * (b - a))
        x = np.clip(x, self.low, self.high)  # the log/exp round trip may step past an edge
        return np.round(x) if self.integer else x

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """n draws from the prior."""
        if not isinstance(self.prior, str):
            return rng.choice(np.asarray(self.prior, float), n)
        return self.from_unit(rng.uniform(-1.0, 1.0, n))


@dataclass(frozen=True)
class HyperSpace:
    """The box of hyperparameters h = (h_1, …, h_m) that PBT explores (rows of (N, m))."""

    axes: tuple[Hyperparameter, ...]

    def __post_init__(self):
        axes = tuple(self.axes)
        if not axes or not all(isinstance(a, Hyperparameter) for a in axes):
            raise TypeError("HyperSpace needs a non-empty sequence of Hyperparameter")
        names = [a.name for a in axes]
        if len(set(names)) != len(names):
            raise ValueError(f"hyperparameter names must be distinct, got {names}")
        object.__setattr__(self, "axes", axes)

    @property
    def names(self) -> list[str]:
        return [a.name for a in self.axes]

    @property
    def dim(self) -> int:
        return len(self.axes)

    def _check(self, h) -> np.ndarray:
        h = np.asarray(h, float)
        if h.ndim != 2 or h.shape[1] != self.dim:
            raise ValueError(f"h has shape {h.shape}; this space needs (N, {self.dim}) with "
                             f"columns {self.names}")
        return h

    def to_unit(self, h) -> np.ndarray:
        h = self._check(h)
        return np.stack([a.to_unit(h[:, j]) for j, a in enumerate(self.axes)], axis=1)

    def from_unit(self, u) -> np.ndarray:
        u = np.asarray(u, float)
        return np.stack([a.from_unit(u[:, j]) for j, a in enumerate(self.axes)], axis=1)

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """(n, m) draws from the priors, axis by axis."""
        return np.stack([a.sample(rng, n) for a in self.axes], axis=1)

    def explore(self, h, rng: np.random.Generator, sigma: float = 0.1) -> np.ndarray:
        """u ← clip(map(h) + σ ξ, −1, 1), h ← map⁻¹(u) (integers rounded)."""
        u = self.to_unit(h)
        u = np.clip(u + sigma * rng.standard_normal(u.shape), -1.0, 1.0)
        return self.from_unit(u)

    def columns(self, h) -> dict[str, np.ndarray]:
        h = self._check(h)
        return {a.name: h[:, j] for j, a in enumerate(self.axes)}


class FitnessWindow:
    """The last ``k_max`` scores of each agent, as a ring buffer (N, k_max).

    ``mean(k)`` is the mean of an agent's last min(k, count) scores, NaN for an agent with no
    score since its memory was last cleared.
    """

    def __init__(self, n: int, k_max: int):
        if k_max < 1:
            raise ValueError(f"k_max={k_max!r} must be >= 1")
        self.n, self.k_max = int(n), int(k_max)
        self.buf = np.full((self.n, self.k_max), np.nan)
        self.count = np.zeros(self.n, dtype=np.int64)

    def push(self, values, mask=None) -> None:
        """Append a score for every agent (``values`` (N,)), or for those where ``mask``."""
        values = np.broadcast_to(np.asarray(values, float), (self.n,))
        rows = np.arange(self.n) if mask is None else np.flatnonzero(mask)
        self.buf[rows, self.count[rows] % self.k_max] = values[rows]
        self.count[rows] += 1

    def last(self, k: int) -> np.ndarray:
        """(N, k) the last k scores, most recent last, NaN where fewer exist."""
        if not 1 <= k <= self.k_max:
            raise ValueError(f"k={k!r} must lie in [1, {self.k_max}] (the window's k_max)")
        j = self.count[:, None] - k + np.arange(k)[None, :]
        out = self.buf[np.arange(self.n)[:, None], j % self.k_max]
        out[j < 0] = np.nan
        return out

    def mean(self, k: int) -> np.ndarray:
        """Mean of each agent's last min(k, count) scores (NaN with no score)."""
        last = self.last(k)
        n = np.sum(~np.isnan(last), axis=1)
        with np.errstate(invalid="ignore"):
            return np.where(n > 0, np.nansum(last, axis=1) / np.maximum(n, 1), np.nan)

    def clear(self, idx) -> None:
        self.buf[idx] = np.nan
        self.count[idx] = 0

    def copy(self, dst, src) -> None:
        self.buf[dst] = self.buf[src]
        self.count[dst] = self.count[src]


def n_truncated(n: int, fraction: float) -> int:
    """n_q = ⌈qN⌉, checked so that the bottom and top sets do not overlap."""
    if not 0.0 < fraction <= 0.5:
        raise ValueError(f"fraction={fraction!r} must lie in (0, 0.5]")
    nq = math.ceil(fraction * n - 1e-9)
    if 2 * nq > n:
        raise ValueError(f"fraction={fraction} of n={n} agents gives bottom and top sets of "
                         f"{nq} agents each, which overlap; use fraction <= {n // 2 / n}")
    return nq


def rank_agents(fitness, rng: np.random.Generator) -> np.ndarray:
    """Agent indices from lowest to highest fitness; NaN ranks lowest; ties at random."""
    f = np.asarray(fitness, float)
    key = np.where(np.isnan(f), -np.inf, f)
    perm = rng.permutation(f.size)
    return perm[np.argsort(key[perm], kind="stable")]


def truncation(fitness, fraction: float, rng: np.random.Generator):
    """The exploit step's choice: ``(bottom, donors)``, the ⌈qN⌉ lowest-ranked agents and,
    for each, a donor drawn uniformly among the ⌈qN⌉ highest-ranked."""
    order = rank_agents(fitness, rng)
    nq = n_truncated(order.size, fraction)
    bottom, top = order[:nq], order[-nq:]
    donors = top[rng.integers(0, nq, nq)]
    return bottom, donors


@dataclass
class ExploitRecord:
    """What one generation map did: who copied whom, and the new hyperparameters."""

    bottom: np.ndarray
    donors: np.ndarray
    parent: np.ndarray          # (N,): the agent each agent descends from (itself if kept)
    h_before: np.ndarray
    h_after: np.ndarray


@dataclass
class PBT:
    """The PBT generation map on a population (module docstring).

    Parameters
    ----------
    space:
        The :class:`HyperSpace` explored.
    fraction:
        q, the truncated fraction (⌈qN⌉ agents at each end).
    sigma:
        Explore noise in unit coordinates.
    memory:
        'reset' (the reference: copiers forget their fitness history and their
        population-side memory such as replay buffers) or 'inherit' (copy the donor's).
    rng:
        ``numpy.random.Generator`` for ranking ties, donors and the explore noise.
    """

    space: HyperSpace
    fraction: float = 0.2
    sigma: float = 0.1
    memory: str = "reset"
    rng: np.random.Generator = field(default_factory=np.random.default_rng)
    genealogy: list = field(default_factory=list)

    def __post_init__(self):
        if self.memory not in ("reset", "inherit"):
            raise ValueError(f"memory={self.memory!r}: use 'reset' or 'inherit'")
        if not self.sigma >= 0:
            raise ValueError(f"sigma={self.sigma!r} must be >= 0")
        if not 0.0 < self.fraction <= 0.5:
            raise ValueError(f"fraction={self.fraction!r} must lie in (0, 0.5]")

    def step(self, population, h, fitness, window: FitnessWindow | None = None,
             set_h=None) -> ExploitRecord:
        """Apply one generation map: rank on ``fitness``, copy, perturb, and hand the new
        hyperparameters to the population. Returns the :class:`ExploitRecord` (also appended
        to :attr:`genealogy` as the parent array)."""
        h = self.space._check(h)
        n = h.shape[0]
        fitness = np.asarray(fitness, float)
        if fitness.shape != (n,):
            raise ValueError(f"fitness has shape {fitness.shape}; need ({n},), one per agent")
        bottom, donors = truncation(fitness, self.fraction, self.rng)
        new_h = h.copy()
        new_h[bottom] = self.space.explore(h[donors], self.rng, self.sigma)
        population.copy_agents(bottom, donors)
        if self.memory == "reset":
            if window is not None:
                window.clear(bottom)
            if hasattr(population, "clear_memory"):
                population.clear_memory(bottom)
        else:
            if window is not None:
                window.copy(bottom, donors)
            if hasattr(population, "copy_memory"):
                population.copy_memory(bottom, donors)
        cols = self.space.columns(new_h)
        (set_h or population.set_hyperparameters)(**cols)
        parent = np.arange(n)
        parent[bottom] = donors
        self.genealogy.append(parent)
        return ExploitRecord(bottom, donors, parent, h, new_h)


# -- genealogy -----------------------------------------------------------------------------
def roots(parents: Sequence[np.ndarray]) -> np.ndarray:
    """(G+1, N): the generation-0 ancestor of each agent at each generation, from the parent
    arrays of generations 1…G (parents[g−1][i] = the agent of generation g−1 that agent i of
    generation g descends from)."""
    parents = [np.asarray(p) for p in parents]
    n = parents[0].size if parents else 0
    out = [np.arange(n)]
    for p in parents:
        out.append(out[-1][p])
    return np.array(out)


def surviving_lineages(parents: Sequence[np.ndarray]) -> np.ndarray:
    """Number of distinct generation-0 ancestors alive at each generation (G+1,)."""
    r = roots(parents)
    return np.array([np.unique(row).size for row in r])
