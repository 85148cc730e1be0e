"""Uniformisation on a set of h-columns of a column generator (the compiled series of
:mod:`pde_popdyn._kernels` with the weights of :mod:`pde_popdyn.fast.uniformisation`), and the
weights of the integral Φ(τ) = ∫_0^τ e^{−λs} e^{sA} ds."""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from scipy.special import gammainc

from .._kernels import uniformised_series
from .uniformisation import poisson_weights


def phi_weights(c: np.ndarray, lam: float, tau: float, kmax: int) -> np.ndarray:
    """Weights v_n = ∫_0^τ e^{−λs} Poisson(n; cs) ds = (1/μ)(c/μ)ⁿ P[Poisson(μτ) ≥ n+1]."""
    mu = c + lam
    n = np.arange(kmax + 1)[:, None]
    with np.errstate(under="ignore"):
        return (np.exp(n * np.log(c / mu)) / mu) * gammainc(n + 1, mu * tau)


@lru_cache(maxsize=32)
def _poisson_weights(lam: float) -> np.ndarray:
    """:func:`poisson_weights` of one rate, kept (read-only): the fallbacks of the column
    propagators ask for the same few rates at every step."""
    w = poisson_weights(lam)
    w.setflags(write=False)
    return w


class Uniformised:
    """x ↦ Σ_n w_n Pⁿ x on a set of columns, P = I + (G − d̂)/c with one rate c for all of
    them (the largest), run by the compiled series of :mod:`pde_popdyn._kernels`."""

    def __init__(self, gen, cols: np.ndarray):
        self.c = float(gen.c[cols].max())
        entries = gen.stay_up_down(cols, np.full(cols.size, self.c))
        self.P = [np.ascontiguousarray(a.T if a.ndim == 2 else a) for a in entries]
        self.periodic = gen.periodic

    def weights(self, t: float, lam: float | None = None):
        """Poisson weights for E(t) and, with a loss rate λ, (weights / t, t) for Φ(t): the
        kernel drops weights below 1e-19, so they are scaled to sum to about one."""
        w = _poisson_weights(float(self.c * t))
        if lam is None:
            return w, None
        v = phi_weights(np.array([self.c]), lam, t, w.size - 1)[:, 0]
        return w, (v / t, t)

    def run(self, x: np.ndarray, w: np.ndarray, scale: float = 1.0) -> np.ndarray:
        x = np.ascontiguousarray(x, dtype=float)
        acc = w[0] * x
        uniformised_series(x, *self.P, 0.0, self.periodic, False, w, acc)
        return acc * scale


__all__ = ["Uniformised", "phi_weights"]
