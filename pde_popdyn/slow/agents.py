"""Agent-level kernels of the slow part: boundary rules for h and O(N) resampling.

These are the particle counterparts of the grid kernels in this package: the boundary rule
that keeps h in its box after a move, and the offspring numbers of systematic resampling.
"""

from __future__ import annotations

import numpy as np

BOUNDARIES = ("reflecting", "periodic", "clip")


def apply_boundary(h: np.ndarray, lo: float, hi: float, kind: str) -> np.ndarray:
    """Map h into [lo, hi] in place: ``"reflecting"`` folds (h ↦ lo + L − |L − (h − lo) mod 2L|,
    any number of reflections), ``"periodic"`` wraps (lo + (h − lo) mod L), ``"clip"`` clips.
    Only the agents outside the box are touched."""
    if h.size == 0 or (h.min() >= lo and h.max() <= hi):
        return h
    out = (h < lo) | (h > hi)
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
    E counts_i = n w_i/Σw and |counts_i − n w_i/Σw| < 1. O(N), no sorting."""
    c = np.cumsum(w)
    c *= n / c[-1]
    c[-1] = n                       # exact, so that the counts sum to n whatever the rounding
    c += rng.random()               # 1 − U with U uniform on (0, 1]
    k = c.astype(np.int64)          # floor, the values being ≥ 0
    counts = np.empty_like(k)
    counts[0] = k[0]
    np.subtract(k[1:], k[:-1], out=counts[1:])
    return counts


def weighted_choice(w: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    """``size`` indices drawn independently with probability ∝ w (inverse CDF)."""
    c = np.cumsum(w)
    idx = np.searchsorted(c, rng.random(size) * c[-1], side="right")
    return np.minimum(idx, w.size - 1, out=idx)


def bottom_and_top(F: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices of the k lowest and the k highest values of F (ties broken arbitrarily), by
    one partial sort, O(N)."""
    n = F.size
    part = np.argpartition(F, (k - 1, n - k))
    return part[:k], part[n - k:]


__all__ = ["BOUNDARIES", "apply_boundary", "systematic_counts", "weighted_choice",
           "bottom_and_top"]
