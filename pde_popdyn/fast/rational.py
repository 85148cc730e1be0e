"""A rational approximation of exp on the half line (−∞, 0], for exp(τG)x by shifted solves.

For a matrix B whose spectrum is real and ≤ 0 (here B = τ(G − λ₀) with G a column generator
symmetrisable by its Gibbs state, λ₀ its top eigenvalue),

    exp(B) x ≈ r(B) x = Σ_k Re[ γ_k (B − z_k)⁻¹ x ],

so that one application costs K complex tridiagonal solves per column, whatever the stiffness
of B: the cost of exp(τG) no longer grows with τ‖G‖ (uniformisation needs ~τ‖G‖ terms, dense
squaring a set-up of O(n³) per column). The error is bounded through the spectrum: in the
norm ‖x‖² = Σ x²/π in which G is self-adjoint, ‖r(B)x − exp(B)x‖ ≤ δ ‖x‖ with
δ = max_{s ≤ 0} |r(s) − e^s|, and ‖·‖₁ ≤ ‖·‖ since Σπ = 1. For a density near ρπ this is δ
times its mass; for one far in the tails of π the bound (and the error) can be large, so
callers test the bound on every input (:class:`~pde_popdyn.fast.columns.ColumnPropagator`).

The nodes come from the Cauchy integral e^B = (2πi)⁻¹ ∮ e^z (z − B)⁻¹ dz on the hyperbola
z(u) = μ(1 + sin(iu − α)), which encloses (−∞, 0] and runs to −∞ in both directions, by the
trapezoidal rule u_k = kh, k = −M … M. Its symmetry z(−u) = conj z(u) halves the solves for
real B: K = M + 1 nodes (one of them real). The three parameters (μ, α, h) were fitted for
M = 12 by minimising the maximal error over a sample of [−10⁸, 0]; the residues are then
scaled so that r(0) = 1 exactly (the top mode is carried without error), and δ is measured
on the same sample.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

#: (μ, α, h, M) of the hyperbolic contour (see the module docstring)
_HYPERBOLA = (33.145110222214186, 1.0321364695974427, 0.10755509049289053, 12)


@lru_cache(maxsize=None)
def exp_nodes() -> tuple[np.ndarray, np.ndarray, float]:
    """(z_k, γ_k, δ): r(s) = Σ_k Re[γ_k / (s − z_k)] approximates e^s on s ≤ 0 to δ."""
    mu, alpha, h, M = _HYPERBOLA
    u = np.arange(M + 1) * h
    z = mu * (1.0 + np.sin(1j * u - alpha))
    w = np.exp(z) * 1j * mu * np.cos(1j * u - alpha) * h / (2.0 * np.pi)
    # e^s ≈ (w₀/i)(z₀ − s)⁻¹ + 2 Σ_{k≥1} Im[w_k (z_k − s)⁻¹], rewritten as Re[γ_k (s − z_k)⁻¹]
    gamma = np.concatenate([[-(w[0] / 1j).real + 0j], 2j * w[1:]])
    gamma = gamma / rational_exp(0.0, z, gamma)
    s = -np.concatenate([np.linspace(0.0, 1.0, 400), np.logspace(0.0, 10.0, 4000)])
    delta = float(np.abs(rational_exp(s, z, gamma) - np.exp(s)).max())
    return z, gamma, delta


def rational_exp(s, z: np.ndarray, gamma: np.ndarray):
    """r(s) for real s (scalar or array), for checks."""
    s = np.asarray(s, dtype=float)
    return (gamma / (s[..., None] - z)).real.sum(axis=-1)


__all__ = ["exp_nodes", "rational_exp"]
