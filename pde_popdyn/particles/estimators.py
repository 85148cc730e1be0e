"""Estimators over a population: the effective fitness by kernel regression.

Selection on the *estimated* effective fitness (``fitness_mode="estimated"``) ranks agents by
a Nadaraya–Watson regression of their instantaneous fitness on their hyperparameters, an
estimate of F̄(h) = E_{π_h}[F] that needs no knowledge of the loss.
"""

from __future__ import annotations

import numpy as np

from .._validate import positive_float


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


__all__ = ["silverman_bandwidth", "kernel_regression"]
