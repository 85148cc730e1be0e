"""The reduced PBT generation map on ρ(h), and an idealised finite population under the same
rule, for comparing real-network PBT runs with the continuum.

**The map.** As the fast time scale separates (θ relaxes to its stationary law π_h within a
ready interval), a PBT generation with truncation fraction q, copying θ and h, acts on the
density ρ of the hyperparameter as

    ρ ← ρ·(1 − χ_B) + K_σ (ρ·χ_T),

χ_B, χ_T the indicators of the cells holding the bottom and the top mass q when ranked by the
effective fitness F̄(h) (cells straddling a quantile are split so that each set holds mass q
exactly), K_σ the explore kernel (a Gaussian jump of std σ, clipped to the box). Ranking on
the agents' noisy fitness G instead, with G | h ~ N(F̄(h), s(h)²), gives

    ρ ← ρ·(1 − P_h(G < a)) + K_σ (ρ·P_h(G > b)),

a, b the lower and upper q-quantiles of G under the mixture ∫ρ(h) P_h dh. Both maps keep the
mass exactly and ρ ≥ 0. Because θ is at π_h after every copy in this limit, copying θ as well
as h leaves the map on ρ unchanged.

**The idealised population** (:func:`surrogate_pbt`) applies the same rule to N agents whose
fitness at a ready time is F̄(h_i) (or F̄(h_i) + s(h_i)ξ_i), with no networks at all: its
departure from the map is the finite-N effect alone, so a real population that follows the
surrogate but not the map differs from the continuum by finite N, and one that follows
neither differs by what the networks add (fitness that drifts as they keep training,
inherited weights, relaxation slower than the ready interval).
"""

from __future__ import annotations

import math
from typing import Any, Callable, NamedTuple

import numpy as np

from .._validate import positive_float
from ..model import Model
from ..reduced import solve_reduced
from ..rules import PBT, GaussianJump
from ..slow.explore import MatrixKernel, gaussian_clip_matrix
from ..slow.selection import TruncationMap

RANK_ON = ("effective", "instantaneous")


def on_grid(values: Any, h_values: Any, centres: Any) -> np.ndarray:
    """Shape-preserving (PCHIP) interpolation of ``values`` given at ``h_values`` (increasing)
    to ``centres``, along the last axis; constant beyond the end points."""
    from scipy.interpolate import PchipInterpolator

    hv = np.asarray(h_values, dtype=float)
    x = np.clip(np.asarray(centres, dtype=float), hv[0], hv[-1])
    return PchipInterpolator(hv, np.asarray(values, dtype=float), axis=-1)(x)


class Prediction(NamedTuple):
    """ρ at the ready times: ``t`` (k·interval), ``rho`` (densities on the grid's h-cells, one
    row per generation), ``mean`` and ``var`` of h (last axis: one entry per h-axis)."""

    t: np.ndarray
    rho: np.ndarray
    mean: np.ndarray
    var: np.ndarray


def predict(fbar_on_grid: Any, grid: Any, rho0: Any, interval: float, n_generations: int, *,
            fraction: float = 0.2, explore_std: float = 0.1, rank_on: str = "effective",
            fitness_std: Any = None) -> Prediction:
    """Iterate the reduced PBT generation map (module docstring) ``n_generations`` times from
    ρ₀ on the h-cells of ``grid`` (a :class:`pde_popdyn.Grid`; its θ-axes are not used).

    Parameters
    ----------
    fbar_on_grid:
        F̄ on the h-cells, shape ``grid.h_shape``, or one row per generation, shape
        ``(n_generations,) + grid.h_shape``, to follow an F̄ that drifts as networks train.
    rho0:
        Initial density on the h-cells (non-negative, positive mass; normalised here).
    interval:
        Time between generations (only sets ``Prediction.t``).
    fraction:
        Truncation fraction q ∈ (0, 0.5].
    explore_std:
        σ of the clipped Gaussian explore jump.
    rank_on:
        ``"effective"``: rank the cells by F̄. ``"instantaneous"``: rank the agents' fitness
        G ~ N(F̄(h), s(h)²), with s = ``fitness_std`` (same shapes as ``fbar_on_grid``).

    With a stationary F̄ and ``rank_on="effective"`` this is
    :func:`pde_popdyn.solve_reduced` of a model with ``PBT(interval, fraction, copy="both",
    rank_on="effective")`` and ``GaussianJump(explore_std, boundary="clip")`` given
    ``fitness=F̄`` (that is what runs); an F̄ that changes per generation, or ranking on the
    law of a noisy fitness, apply the same truncation map and kernel generation by
    generation.
    """
    if rank_on not in RANK_ON:
        raise ValueError(f"rank_on={rank_on!r} is not known; use one of {RANK_ON}")
    if not hasattr(grid, "h_axes"):
        raise TypeError(f"grid must be a pp.Grid (its h-axes carry ρ), got "
                        f"{type(grid).__name__}")
    G = _generations(n_generations)
    shape = tuple(grid.h_shape)
    fbar = _per_generation("fbar_on_grid", fbar_on_grid, shape, G)
    if rank_on == "instantaneous":
        if fitness_std is None:
            raise ValueError("rank_on='instantaneous' needs fitness_std, the standard "
                             "deviation of the agents' fitness at each h, on the grid")
        std = _per_generation("fitness_std", fitness_std, shape, G)
        if np.any(std < 0):
            raise ValueError("fitness_std must be >= 0")
    q = _fraction(fraction)
    sigma = positive_float("explore_std", explore_std)
    kernel = MatrixKernel([gaussian_clip_matrix(ax.centres, ax.edges, sigma)
                           for ax in grid.h_axes])
    w = np.asarray(grid.h_weights, dtype=float).reshape(shape)
    rho = np.asarray(rho0, dtype=float)
    if rho.shape != shape or not np.all(np.isfinite(rho)) or np.any(rho < 0) or \
            (rho * w).sum() <= 0:
        raise ValueError(f"rho0 must be a finite non-negative density on the grid's h-cells, "
                         f"shape {shape}, with positive mass; got shape {rho.shape}")
    m = rho * w / (rho * w).sum()
    if rank_on == "effective" and np.ndim(fbar_on_grid) == len(shape):
        model = Model(loss=lambda th, h: 0.0 * th, fitness=lambda th, h: 0.0 * th,
                      selection=PBT(float(interval), q, copy="both", rank_on="effective"),
                      mutation=GaussianJump(sigma, boundary="clip"))
        sol = solve_reduced(model, grid, rho, G * float(interval), float(interval),
                            fitness=fbar[0], progress=False)
        M = sol.f[np.searchsorted(sol.t, float(interval) * np.arange(G + 1) - 1e-9)] * w
        return _prediction(grid, M, w, interval, G)
    masses = [m]
    for g in range(G):
        if rank_on == "effective":
            m = TruncationMap(fbar[g], q, "both", kernel, h_ndim=len(shape))(m)
        else:
            m = _ranked_on_law(m, fbar[g], std[g], q, kernel)
        masses.append(m)
    return _prediction(grid, np.stack(masses), w, interval, G)


def _prediction(grid, M: np.ndarray, w: np.ndarray, interval: float, G: int) -> Prediction:
    """Moments of the masses M (one row per ready time) and the densities."""
    coords = np.meshgrid(*[ax.centres for ax in grid.h_axes], indexing="ij")
    axes = tuple(range(1, M.ndim))
    M = M / M.sum(axis=axes, keepdims=True)
    mean = np.stack([(M * c).sum(axis=axes) for c in coords], axis=-1)
    var = np.stack([(M * c ** 2).sum(axis=axes) for c in coords], axis=-1) - mean ** 2
    return Prediction(float(interval) * np.arange(G + 1), M / w, mean, np.maximum(var, 0.0))


def _generations(n: Any) -> int:
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"n_generations must be an integer >= 1, got {n!r}")
    return int(n)


def _fraction(q: Any) -> float:
    q = positive_float("fraction", q)
    if q > 0.5:
        raise ValueError(f"fraction must be in (0, 0.5] (the bottom and top sets must not "
                         f"overlap), got {q}")
    return q


def _per_generation(name: str, value: Any, shape: tuple, G: int) -> np.ndarray:
    a = np.asarray(value, dtype=float)
    if a.shape == shape:
        a = np.broadcast_to(a, (G,) + shape)
    if a.shape != (G,) + shape or not np.all(np.isfinite(a)):
        raise ValueError(f"{name} must be finite, of shape {shape} (the grid's h-cells) or "
                         f"{(G,) + shape} (one row per generation), got shape {a.shape}")
    return a


def _ranked_on_law(m: np.ndarray, mean: np.ndarray, std: np.ndarray, q: float,
                   kernel: Callable) -> np.ndarray:
    """ρ ← ρ(1 − P_h(G < a)) + K(ρ P_h(G > b)), G | h ~ N(mean, std²), a and b the lower and
    upper q-quantiles of G under the mixture with weights m."""
    from scipy.optimize import brentq
    from scipy.special import ndtr

    scale = 1.0 + float(np.abs(mean).max())
    s = np.maximum(std, 1e-12 * scale)
    total = m.sum()
    live = m > 0
    lo = float((mean - 40 * s)[live].min())
    hi = float((mean + 40 * s)[live].max())
    tol = 1e-14 * scale
    a = brentq(lambda x: (m * ndtr((x - mean) / s)).sum() - q * total, lo, hi, xtol=tol)
    b = brentq(lambda x: (m * ndtr((mean - x) / s)).sum() - q * total, lo, hi, xtol=tol)
    loss = m * ndtr((a - mean) / s)
    gain = kernel(m * ndtr((mean - b) / s))
    # the root is found to round-off; rescaling the gain makes the mass exact
    return m - loss + gain * (loss.sum() / gain.sum())


def surrogate_pbt(fbar: Callable[[np.ndarray], np.ndarray], h0: Any, n_generations: int,
                  box: tuple[float, float], *, fraction: float = 0.2,
                  explore_std: float = 0.1, fitness_std: Callable | None = None,
                  seed: int | None = 0) -> np.ndarray:
    """PBT truncation on idealised agents: ``h0`` of shape (n_populations, N); at each ready
    time agent i has fitness ``fbar(h_i)`` (plus ``fitness_std(h_i)·ξ_i`` if given); the
    ⌈qN⌉ lowest take the h of a uniformly chosen agent among the ⌈qN⌉ highest, jumped by
    σξ and clipped to ``box``. Vectorised over populations; returns h of shape
    (n_populations, n_generations + 1, N)."""
    G = _generations(n_generations)
    q = _fraction(fraction)
    sigma = positive_float("explore_std", explore_std)
    h = np.array(h0, dtype=float, ndmin=2)
    S, n = h.shape
    k = math.ceil(q * n)
    if 2 * k > n:
        raise ValueError(f"fraction={q} with N={n} agents gives overlapping bottom and top "
                         f"sets of ceil(qN) = {k}; use more agents")
    lo, hi = float(box[0]), float(box[1])
    rng = np.random.default_rng(seed)
    rows = np.arange(S)[:, None]
    out = [h.copy()]
    for _ in range(G):
        F = np.asarray(fbar(h), dtype=float)
        if fitness_std is not None:
            F = F + np.asarray(fitness_std(h), dtype=float) * rng.standard_normal(h.shape)
        # random tie-breaking: equal fitness (flat F̄) must not favour low agent indices
        order = np.lexsort((rng.random(h.shape), F), axis=-1)
        donors = np.take_along_axis(order[:, -k:], rng.integers(0, k, (S, k)), axis=1)
        bottom = order[:, :k]
        h[rows, bottom] = np.clip(h[rows, donors] + sigma * rng.standard_normal((S, k)),
                                  lo, hi)
        out.append(h.copy())
    return np.stack(out, axis=1)


__all__ = ["RANK_ON", "on_grid", "Prediction", "predict", "surrogate_pbt"]
