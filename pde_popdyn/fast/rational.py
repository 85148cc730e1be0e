"""A rational approximation of exp on the half line (−∞, 0], for exp(τG)x by shifted solves.

For a matrix B whose spectrum is real and ≤ 0 (here B = τ(G − λ₀) with G a column generator
symmetrisable by its Gibbs state, λ₀ its top eigenvalue),

    exp(B) x ≈ r(B) x = r_∞ x + Σ_k Re[ γ_k (B − z_k)⁻¹ x ],

so that one application costs K complex tridiagonal solves per column, whatever the stiffness
of B: the cost of exp(τG) no longer grows with τ‖G‖ (uniformisation needs ~τ‖G‖ terms, dense
squaring a set-up of O(n³) per column). The error is bounded through the spectrum: in the
norm ‖x‖² = Σ x²/π in which G is self-adjoint, ‖r(B)x − exp(B)x‖ ≤ δ ‖x‖ with
δ = max_{s ≤ 0} |r(s) − e^s|, and ‖·‖₁ ≤ ‖·‖ since Σπ = 1. For a density near ρπ this is δ
times its mass; for one far in the tails of π the bound (and the error) can be large, so
callers test the bound on every input (:class:`~pde_popdyn.fast.columns.ColumnPropagator`).

r is the uniform best approximation of type (14, 14) with real coefficients (7 conjugate
pole pairs, so K = 7 solves for a real B), under the side condition r(0) = 1 (the top mode is
carried without error): the Carathéodory–Fejér approximation as a start, then a Remez
exchange in 34-digit arithmetic. Its equioscillation level is 1.85e-14; evaluated in double
precision the error is about 3e-14 (the sum of the terms' round-off). The coefficients below
were computed by ``tools/rational_exp.py`` of the source repository (which needs mpmath), and
:func:`exp_nodes` measures δ again on a sample of [−10¹², 0].
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from ._tridiag_kernels import RationalFactors, inverse_gibbs, rational_finish, rational_split_into

#: r(s) = R_INF + 2 Re Σ_k RESIDUES[k] / (s − POLES[k]), poles in the upper half plane
R_INF = 1.851759251130545e-14
POLES = (5.6337752601713733 + 1.1940690463439669j, 5.0999777480060207 + 3.5888240290270064j,
         4.0040023980039647 + 6.004831642235037j, 2.2804165166565089 + 8.461737973040222j,
         -0.19812595082473389 + 10.99126056190126j, -3.6926423619980517 + 13.656371871483268j,
         -8.8871404990434932 + 16.630982619902085j)
RESIDUES = (-28.173131123368233 - 103.23923533204102j, 47.434963752392406 + 46.131553698143705j,
            -23.749414453301405 - 5.8704470928069643j, 4.8584973165695091 - 1.3350998810111183j,
            -0.3803831075484484 + 0.33876638561846645j,
            0.0095399229725433559 - 0.017368487336996485j,
            -7.2307632200535965e-05 + 0.00014514554506401135j)


@lru_cache(maxsize=None)
def exp_nodes() -> tuple[np.ndarray, np.ndarray, float, float]:
    """(z_k, γ_k, r_∞, δ): r(s) = r_∞ + Σ_k Re[γ_k / (s − z_k)] approximates e^s on s ≤ 0
    to δ (measured)."""
    z = np.array(POLES)
    gamma = 2.0 * np.array(RESIDUES)
    s = -np.concatenate([np.linspace(0.0, 1.0, 401), np.linspace(1.0, 60.0, 4000),
                         np.logspace(0.0, 12.0, 6000)])
    delta = float(np.abs(rational_exp(s, z, gamma, R_INF) - np.exp(s)).max())
    return z, gamma, R_INF, delta


class RationalColumns:
    """E_j(kτ) = exp(kτG_j), k = 1, 2, on some h-columns of a
    :class:`~pde_popdyn.fast.columns.ColumnGenerator`, by r (shifted as the column propagator's
    ``apply``: the factor e^{kτ(d̂_j − D)} is ``shift``).

    The error of r is at most δ‖y‖ with ‖y‖² = Σy²/π (module docstring), which is large for
    content far out in the tails of π, even round-off (the h-mutation's transforms leave
    ~1e-16 of every column in every other). Errors are measured against the *output*: column
    j's output mass is g_j Σg_j with g_j = e^{kτλ₀,j} e^{kτ(d̂_j − D)} (strong selection can
    make it tiny), and s_j = max(g_j|Σg_j|, the mean of those over the columns). Each input
    column is split as g = y + z with y = min(g, Mπ) and M chosen so that g_j δ‖y‖ ≤ 1e-12 s_j
    (with d constant, the Gibbs part (Σg)π is taken out of g first and carried exactly:
    E π = π); y goes through r, and the tail excess z ≥ 0 is carried by the positive map
    z ↦ ½g_j(z + πΣz), whose error is at most 2e^{kτ(d̂_j − D)}Σz: allowed while that is
    ≤ 1e-13 s_j (the tail mass is recorded in ``tail_mass``). :meth:`apply` reports the
    columns that fail either test (data far from equilibrium, or metastable), which the
    caller advances otherwise. Negative entries within the error bound (round-off in the far
    tails) are set to zero and their mass returned; larger ones (signed inputs) are kept, so
    the map stays linear on them. A constant-d column whose mass is off its exact value by
    round-off is rescaled to it (E is column-stochastic there).
    """

    #: the per-input bound (relative to the column scale s) and the tail mass allowed
    TOL, TAIL_TOL = 1e-12, 1e-13

    def __init__(self, gen, tau: float, cols: np.ndarray, shift: np.ndarray, ncol_total: int):
        op = gen.op
        z, gamma, self.r_inf, self.delta = exp_nodes()
        top = gen.top()[cols]
        # exp(2τG) is applied at every step (its pivots are kept from the first), exp(τG) at
        # the two ends of each call of the stepper (pole by pole for the first two, so that a
        # run that calls it once does not store its pivots)
        self.factors = [RationalFactors(k * tau * op.up[:, cols], k * tau * op.down[:, cols],
                                        -k * tau * gen.out[:, cols],
                                        z[:, None] + k * tau * top[None, :], gamma,
                                        keep_after=2 if k == 1 else 0)
                        for k in (1, 2)]
        self.pi = np.ascontiguousarray(op.gibbs[:, cols], dtype=np.float64)
        self.ipi = inverse_gibbs(self.pi)
        self.flat = np.ascontiguousarray(gen.flat[cols], dtype=np.bool_)
        self.growth = [np.exp(k * tau * top) for k in (1, 2)]
        self.shift = [np.ascontiguousarray(shift ** k, dtype=np.float64) for k in (1, 2)]
        # per k: the output factor g·shift and the tail test's (tolerance, shift) rows
        self._gout = [np.ascontiguousarray(g * sh) for g, sh in zip(self.growth, self.shift)]
        self._tt = [np.stack([np.full(sh.size, self.TAIL_TOL), sh]) for sh in self.shift]
        self.ncol_total = ncol_total
        self.tail_mass = 0.0

    def apply(self, x: np.ndarray, k: int):
        """(E(kτ)x shifted, ok per column, clipped mass) for x (n, ncol) C-contiguous;
        columns with ok False hold garbage and must be recomputed by the caller."""
        g, sh = self.growth[k - 1], self.shift[k - 1]
        y, z, base, zm, ok, scale, out = rational_split_into(
            x, self.pi, self.ipi, self.flat, self._gout[k - 1], self.ncol_total, self.delta,
            self.TOL, self._tt[k - 1], self.r_inf)          # out = r_∞ y
        self.factors[k - 1].apply(y, out)
        out, clipped, tail = rational_finish(out, self.pi, z, base, zm, ok, self.flat, g, sh,
                                             scale, self.TOL)
        self.tail_mass += tail
        return out, ok, clipped


def rational_exp(s, z: np.ndarray, gamma: np.ndarray, r_inf: float):
    """r(s) for real s (scalar or array), for checks."""
    s = np.asarray(s, dtype=float)
    return r_inf + (gamma / (s[..., None] - z)).real.sum(axis=-1)


__all__ = ["RationalColumns", "exp_nodes", "rational_exp"]
