"""Uniformisation: e^{τG} of a Markov generator as a Poisson mixture of powers of a stochastic
matrix, the one helper behind every exact step of the package.

For a generator G (non-negative off-diagonal entries, zero column sums) and c ≥ max_i(−G_ii),
P = I + G/c is non-negative and column-stochastic, and

    e^{τG} = Σ_{n≥0} Poisson(n; cτ) Pⁿ.

Every term is non-negative, so a truncated sum is a positive operator whatever τ is, and the
truncation error in any column is the Poisson tail beyond the last term. This module fixes the
single truncation rule used everywhere (the fast θ-step of every finite-volume operator, the
dense set-up of intermediate-stiffness steps and the unsplit integrator): the series stops at
the first K with P(Poisson(cτ) > K) < 10⁻¹⁷, below double-precision round-off, and the kept
weights are renormalised so that mass is conserved exactly. Weights are computed in the log
domain, so cτ of many thousands neither over- nor underflows.
"""

from __future__ import annotations

import numpy as np
from scipy.special import gammaln, pdtrc

#: a Poisson tail this small cannot change a double-precision sum
POISSON_TAIL = 1e-17
#: a single weight this small cannot change the accumulated sum (skipping it saves a pass)
NEGLIGIBLE_WEIGHT = 1e-19


def poisson_terms(lam):
    """The truncation rule: the smallest K with P(Poisson(λ) > K) < :data:`POISSON_TAIL`.

    Vectorised over ``lam`` (found by bisection on the regularised incomplete gamma function,
    so it costs O(log λ) evaluations, not O(λ)); an int for a scalar ``lam``.
    """
    lam_arr = np.asarray(lam, dtype=float)
    lo = np.zeros(lam_arr.shape)
    hi = np.ceil(lam_arr + 12.0 * np.sqrt(lam_arr) + 40.0)     # always satisfies the rule
    while np.any(hi > lo):
        mid = np.floor(0.5 * (lo + hi))
        ok = pdtrc(mid, lam_arr) < POISSON_TAIL
        hi = np.where(ok, mid, hi)
        lo = np.where(ok, lo, mid + 1)
    k = hi.astype(np.int64)
    return int(k) if k.ndim == 0 else k


def poisson_weights(lam) -> np.ndarray:
    """Normalised Poisson(n; λ) weights for n = 0..K, K from :func:`poisson_terms`.

    ``lam`` is a scalar (returns shape (K+1,)) or an array of rates, one per column (returns
    shape (K+1, n_columns), each column normalised, K the largest of the columns' K).
    Computed in the log domain.
    """
    scalar = np.ndim(lam) == 0
    lam = np.atleast_1d(np.asarray(lam, dtype=float))
    if lam.size == 0:
        return np.ones((1, 0))
    kmax = int(np.max(poisson_terms(lam)))
    n = np.arange(kmax + 1)[:, None]
    lw = n * np.log(np.maximum(lam, 1e-300))[None, :] - lam[None, :] - gammaln(n + 1)
    w = np.exp(lw - lw.max(axis=0, keepdims=True))
    w /= w.sum(axis=0, keepdims=True)
    return w[:, 0] if scalar else w


__all__ = ["POISSON_TAIL", "NEGLIGIBLE_WEIGHT", "poisson_weights", "poisson_terms"]
