"""Spectral collocation of the fast operator 𝓛_ε: Chebyshev (bounded θ) and Fourier (periodic θ).

Per h-column, with Φ = L/T and c = m T/ε, the flux form is collocated,

    𝓛_ε f = ∂_θ( c [∂_θ f + f ∂_θ Φ] )   →   A = D · diag(c B) · (D + diag(D Φ)),

where D is the Chebyshev (Chebyshev–Gauss–Lobatto nodes) or Fourier (uniform periodic nodes)
differentiation matrix and B zeroes the flux at the two end nodes (zero flux; B = I when
periodic). What this guarantees:

* **Mass.** The Clenshaw–Curtis (or trapezoid) weights w satisfy wᵀ D g = g(θ_hi) − g(θ_lo)
  for the interpolant and the flux vanishes at the ends, so wᵀ A = 0; each step also restores
  every column's mass exactly.
* **Gibbs state.** The nodal Gibbs state e^{−Φ} is stationary up to the spectral error of
  D e^{−Φ} + e^{−Φ} D Φ, which falls exponentially with the number of nodes (tested), but
  not to round-off as with ``scheme="fv"``. (The symmetric form D diag(cπ) D diag(1/π), exact
  for π, multiplies round-off by e^{ΔΦ} and breaks down for potentials spanning tens of units.)
* **Positivity is not exact.** Collocation is not a monotone scheme: negative values of the
  size of the (spectrally small) discretisation error can appear where f is tiny. Use
  ``scheme="fv"`` where exact positivity matters.
* **Time.** The step is the exact e^{τA} (dense, per column, scaling and squaring), so it is
  asymptotic-preserving: as τ/ε → ∞ it tends to the projection onto the kernel of A.
"""

from __future__ import annotations

import numpy as np
import scipy.linalg as sla

from .blas import one_blas_thread


def barycentric_diff(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Differentiation matrix of the polynomial interpolant on nodes x with barycentric
    weights w; the diagonal is the negative row sum so that D·1 = 0 to round-off."""
    dx = x[:, None] - x[None, :]
    np.fill_diagonal(dx, 1.0)
    D = (w[None, :] / w[:, None]) / dx
    np.fill_diagonal(D, 0.0)
    np.fill_diagonal(D, -D.sum(axis=1))
    return D


def chebyshev_diff(n: int, low: float, high: float) -> np.ndarray:
    """D on the n increasing Chebyshev–Gauss–Lobatto points of [low, high]."""
    x = -np.cos(np.pi * np.arange(n) / (n - 1))
    w = (-1.0) ** np.arange(n)
    w[0] *= 0.5
    w[-1] *= 0.5
    return barycentric_diff(x, w) * (2.0 / (high - low))


def fourier_diff(n: int, length: float) -> np.ndarray:
    """Fourier spectral differentiation matrix on n uniform points of a period ``length``."""
    k = np.arange(n)
    diff = (k[:, None] - k[None, :]) % n
    h = 2 * np.pi / n
    with np.errstate(divide="ignore", invalid="ignore"):
        s = np.sin(diff * h / 2)
        if n % 2 == 0:
            D = 0.5 * (-1.0) ** diff * np.cos(diff * h / 2) / s
        else:
            D = 0.5 * (-1.0) ** diff / s
    np.fill_diagonal(D, 0.0)
    return D * (2 * np.pi / length)


class SpectralOperator:
    """Collocated 𝓛_ε on every h-column (see the module docstring)."""

    def __init__(self, phi: np.ndarray, coeff: np.ndarray, D: np.ndarray,
                 weights: np.ndarray, periodic: bool):
        self.phi = np.asarray(phi, dtype=float)
        self.weights = np.asarray(weights, dtype=float)
        self.periodic = periodic
        pi = np.exp(-(self.phi - self.phi.min(axis=0, keepdims=True)))
        self.gibbs = pi / (self.weights[:, None] * pi).sum(axis=0, keepdims=True)  # ∫ π dθ = 1
        n, nh = self.phi.shape
        B = np.ones(n)
        if not periodic:
            B[0] = B[-1] = 0.0
        # A_j = D diag(c_j B) (D + diag(D Φ_j)), stacked over columns: shape (n_h, n, n)
        dphi = (D @ self.phi).T                                       # (n_h, n)
        cb = (coeff[None, :] * B[:, None]).T                          # (n_h, n)
        inner = D[None, :, :] + dphi[:, :, None] * np.eye(n)[None, :, :]
        with one_blas_thread():
            self.A = np.matmul(D[None, :, :], cb[:, :, None] * inner)

    @classmethod
    def from_model(cls, model, grid) -> "SpectralOperator":
        L = model.loss_on(grid).reshape(grid.n_theta, -1)     # h-nodes flattened to columns
        T = model.temperature_on(grid.h_mesh()).reshape(-1)
        m = model.mobility_on(grid.h_mesh()).reshape(-1)
        ax = grid.theta_axis
        if ax.periodic:
            D = fourier_diff(ax.cells, ax.length)
        elif ax.nodes == "chebyshev":
            D = chebyshev_diff(ax.cells, ax.low, ax.high)
        else:
            raise ValueError("scheme='spectral' cannot serve this grid: a bounded theta-axis "
                             "needs Chebyshev nodes; build it with pp.Grid(..., "
                             "nodes='spectral'), or make theta periodic, or use scheme='fv'")
        return cls(L / T[None, :], m * T / model.eps, D, ax.weights, ax.periodic)

    def apply(self, f: np.ndarray) -> np.ndarray:
        return np.einsum("jil,lj->ij", self.A, f)

    def propagator(self, tau: float) -> "SpectralPropagator":
        return SpectralPropagator(self, tau)


class SpectralPropagator:
    """f ← e^{τA} f per column, with each column's mass Σ_i w_i f_i restored exactly."""

    def __init__(self, op: SpectralOperator, tau: float):
        self.op = op
        self.tau = float(tau)
        with one_blas_thread():
            self.E = sla.expm(self.tau * op.A)                       # (n_h, n, n)

    @property
    def summary(self) -> dict:
        n, nh = self.op.phi.shape
        return {"dense": nh, "work_per_cell": 2.0 * n}

    def __call__(self, f: np.ndarray) -> np.ndarray:
        if f.ndim > 2:
            return self(f.reshape(f.shape[0], -1)).reshape(f.shape)
        w = self.op.weights[:, None]
        g = np.einsum("jil,lj->ij", self.E, f)      # no BLAS call (einsum's default path)
        before = (w * f).sum(axis=0)
        after = (w * g).sum(axis=0)
        scale = np.divide(before, after, out=np.ones_like(before), where=after != 0)
        return g * scale


class SpectralColumnPropagator:
    """exp(kτ(A_j + diag d_j)) and Φ_j(kτ) = ∫_0^{kτ} e^{−λs} exp(sA_j) ds, k = 1, 2, for the
    collocated fast operator of every h-column (dense ``scipy.linalg.expm``, single-threaded
    BLAS). The interface of :class:`pde_popdyn.fast.columns.ColumnPropagator`: ``apply(f, k)``
    returns e^{kτ(d̂_j − D)} exp(kτ G_j) f_j (d̂_j = max d_j, D = max_j d̂_j) and
    ``integral(g, k)`` returns Φ_j(kτ) g_j (for d = 0). Where d is constant on a column the
    column's quadrature mass is restored after the step, as :class:`SpectralPropagator` does.
    """

    def __init__(self, op: SpectralOperator, tau: float, diag: np.ndarray | None = None,
                 lam: float | None = None):
        self.op, self.tau = op, float(tau)
        n, nh = op.phi.shape
        d = np.zeros((n, nh)) if diag is None else np.asarray(diag, dtype=float)
        dmax = d.max(axis=0)
        self.flat = ~((d - dmax) < 0).any(axis=0)
        self.shift = np.exp(np.minimum(self.tau * (dmax - dmax.max()), 0.0))
        G = op.A + (d - dmax).T[:, :, None] * np.eye(n)[None]
        self.lam = None if lam is None or lam <= 0 else float(lam)
        with one_blas_thread():
            if self.lam is None:
                E1 = sla.expm(self.tau * G)
                self.E = [E1, np.matmul(E1, E1)]
                self.Phi = None
            else:
                # exp(t [[A − λ, I], [0, 0]]) = [[e^{t(A−λ)}, Φ(t)], [0, I]]
                Z = np.zeros((nh, 2 * n, 2 * n))
                Z[:, :n, :n] = G - self.lam * np.eye(n)[None]
                Z[:, :n, n:] = np.eye(n)[None]
                X = sla.expm(self.tau * Z)
                E1, P1 = X[:, :n, :n] * np.exp(self.lam * self.tau), X[:, :n, n:]
                self.E = [E1, np.matmul(E1, E1)]
                self.Phi = [P1, P1 + np.exp(-self.lam * self.tau) * np.matmul(E1, P1)]

    def _restore(self, f: np.ndarray, g: np.ndarray) -> np.ndarray:
        w = self.op.weights[:, None]
        before, after = (w * f).sum(axis=0), (w * g).sum(axis=0)
        scale = np.divide(before, after, out=np.ones_like(before), where=after != 0)
        return np.where(self.flat, g * scale, g)

    def apply(self, f: np.ndarray, k: int = 1) -> np.ndarray:
        g = np.einsum("jil,lj->ij", self.E[k - 1], f)
        return self._restore(f, g) * self.shift ** k

    def integral(self, g: np.ndarray, k: int = 1) -> np.ndarray:
        return np.einsum("jil,lj->ij", self.Phi[k - 1], g)

    @property
    def summary(self) -> dict:
        n, nh = self.op.phi.shape
        return {"dense": nh, "work_per_cell": 2.0 * n}
