"""Closed-form and ODE-exact solutions used to verify the solvers (docs/model.md, "Closed forms").

* :func:`gaussian_moments` — the joint PDE with linear drift, constant diffusion, quadratic
  fitness and replicator selection keeps Gaussians Gaussian. With z = (θ, h), drift
  z' = M z + c, diffusion matrix 2𝔇 and F = −½ (z − z*)ᵀ Q (z − z*):

      dμ/dt = M μ + c − κ Σ Q (μ − z*),      dΣ/dt = M Σ + Σ Mᵀ + 2𝔇 − κ Σ Q Σ.

* :func:`reduced_gaussian` — the reduced replicator–mutator equation with quadratic effective
  fitness F̄ = −(g/2)(h − h*)²: v' = 2D − κ g v², m' = −κ g v (m − h*), solved in closed form.
* :func:`mehler_solution` — the same equation for non-Gaussian data, through the Mehler kernel
  of ∂_t u = D u_hh − (κg/2)(h − h*)² u (:func:`mehler_log_kernel`).
"""

from __future__ import annotations

from typing import Callable

import numpy as np
from scipy.integrate import solve_ivp


def gaussian_moments(M, c, Dmat, Q, zstar, kappa: float, mu0, Sigma0, times,
                     rtol: float = 1e-12, atol: float = 1e-14) -> tuple[np.ndarray, np.ndarray]:
    """Integrate the mean/covariance ODEs above; return μ(t) (nt, d) and Σ(t) (nt, d, d),
    by DOP853, or by Radau when the drift is stiff (max |M_ij| · t > 1e3)."""
    M = np.atleast_2d(np.asarray(M, float))
    d = M.shape[0]
    c = np.asarray(c, float).reshape(d)
    Dm = np.atleast_2d(np.asarray(Dmat, float))
    Q = np.atleast_2d(np.asarray(Q, float))
    zs = np.asarray(zstar, float).reshape(d)
    times = np.atleast_1d(np.asarray(times, float))

    def rhs(_t, y):
        mu = y[:d]
        S = y[d:].reshape(d, d)
        dmu = M @ mu + c - kappa * S @ Q @ (mu - zs)
        dS = M @ S + S @ M.T + 2 * Dm - kappa * S @ Q @ S
        return np.concatenate([dmu, (0.5 * (dS + dS.T)).ravel()])

    y0 = np.concatenate([np.asarray(mu0, float).reshape(d),
                         np.asarray(Sigma0, float).reshape(d * d)])
    if times.max() == 0:
        return np.tile(y0[:d], (times.size, 1)), np.tile(y0[d:].reshape(d, d), (times.size, 1, 1))
    # fast relaxation (|M| t >> 1, e.g. eps << 1) makes the moment equations stiff: an explicit
    # method would need ~|M| t steps, so an implicit one takes over
    stiff = float(np.abs(M).max()) * float(times.max()) > 1e3
    sol = solve_ivp(rhs, (0.0, float(times.max())), y0, method="Radau" if stiff else "DOP853",
                    t_eval=times, rtol=rtol, atol=atol)
    if not sol.success:
        raise RuntimeError(f"moment ODE failed: {sol.message}")
    Y = sol.y.T
    return Y[:, :d], Y[:, d:].reshape(-1, d, d)


def reduced_gaussian(t, m0: float, v0: float, g: float, hstar: float, kappa: float,
                     D: float) -> tuple[np.ndarray, np.ndarray]:
    """Mean m(t) and variance v(t) of the reduced replicator–mutator equation with
    F̄ = −(g/2)(h − h*)² and Gaussian data, in closed form.

    With v∞ = √(2D/(κg)) and r = κ g v∞:
        v(t) = v∞ (v₀ + v∞ tanh rt) / (v∞ + v₀ tanh rt)   (tanh/coth branches in one formula),
        m(t) − h* = (m₀ − h*) / (cosh rt + (v₀/v∞) sinh rt).
    Without mutation (D = 0): v = v₀/(1 + κ g v₀ t), m − h* = (m₀ − h*)/(1 + κ g v₀ t).
    """
    t = np.asarray(t, float)
    if D == 0:
        s = 1.0 + kappa * g * v0 * t
        return hstar + (m0 - hstar) / s, v0 / s
    vinf = np.sqrt(2 * D / (kappa * g))
    r = kappa * g * vinf
    th = np.tanh(r * t)
    v = vinf * (v0 + vinf * th) / (vinf + v0 * th)
    # cosh(rt) + (v0/vinf) sinh(rt), scaled by e^{-rt} to avoid overflow
    e = np.exp(-2 * r * t)
    denom_scaled = 0.5 * (1 + e) + (v0 / vinf) * 0.5 * (1 - e)
    m = hstar + (m0 - hstar) * np.exp(-r * t) / denom_scaled
    return m, v


# --------------------------------------------------------------------------------------------
# exact solution for quadratic F̄ (Mehler kernel)
# --------------------------------------------------------------------------------------------
def mehler_log_kernel(t: float, x: np.ndarray, y: np.ndarray, D: float, c: float) -> np.ndarray:
    """log K(t, x, y) of ∂_t u = D u_xx − c x² u on the line (c > 0, D > 0):

        K = √(λ / (2π sinh τ)) · exp(−λ [(x² + y²) cosh τ − 2 x y] / (2 sinh τ)),
        λ = √(c/D),  τ = 2 D λ t = 2√(cD) t.

    Derivation (checked by the tests): the imaginary-time harmonic oscillator; as c → 0 it
    tends to the heat kernel (4πDt)^{-1/2} e^{−(x−y)²/(4Dt)}, and the ground state e^{−λx²/2}
    is mapped to e^{−Dλt} e^{−λx²/2}. Written with coth and csch, and log sinh τ =
    τ + log(1 − e^{−2τ}) − log 2, so that no term overflows for large τ.
    """
    lam = np.sqrt(c / D)
    tau = 2.0 * np.sqrt(c * D) * t
    log_sinh = tau + np.log(-np.expm1(-2 * tau)) - np.log(2.0)
    coth = 1.0 / np.tanh(tau)
    csch = np.exp(-log_sinh)
    x = np.asarray(x, float)
    y = np.asarray(y, float)
    return (0.5 * (np.log(lam / (2 * np.pi)) - log_sinh)
            - 0.5 * lam * ((x * x + y * y) * coth - 2 * x * y * csch))


def mehler_solution(t: float, h: np.ndarray, rho0: Callable[[np.ndarray], np.ndarray],
                    box: tuple[float, float], *, g: float, hstar: float, kappa: float,
                    D: float, nodes: int = 4000) -> np.ndarray:
    """Exact ρ(t, h) of ∂_t ρ = κ(F̄ − ⟨F̄⟩)ρ + Dρ_hh on the line with F̄ = −(g/2)(h − h*)²,
    from the initial density ``rho0`` (a callable, supported in ``box``): ρ = u/∫u with
    u(t) = ∫ K(t, · − h*, y − h*) ρ0(y) dy (kernel of :func:`mehler_log_kernel`, c = κg/2),
    by composite Gauss–Legendre in y (log domain). The result is normalised on ``box``
    (by the same quadrature), matching a solution on the box whose density
    is negligible at its edges.
    """
    x, w = np.polynomial.legendre.leggauss(20)
    panels = max(1, nodes // 20)
    lo, hi = box
    width = (hi - lo) / panels
    mids = lo + (np.arange(panels) + 0.5) * width
    y = (mids[:, None] + 0.5 * width * x[None, :]).ravel()
    wy = np.tile(0.5 * width * w, panels)
    r0 = np.asarray(rho0(y), float)
    with np.errstate(divide="ignore"):
        logr0 = np.log(r0)
    h = np.asarray(h, float)
    if t == 0:
        return np.asarray(rho0(h), float) / (wy * r0).sum()
    c = 0.5 * kappa * g

    def logu(pts: np.ndarray) -> np.ndarray:
        lk = mehler_log_kernel(t, pts[:, None] - hstar, y[None, :] - hstar, D, c)
        a = lk + (np.log(wy) + logr0)[None, :]
        top = a.max(axis=1, keepdims=True)
        return top[:, 0] + np.log(np.exp(a - top).sum(axis=1))

    logu_nodes = logu(y)
    shift = logu_nodes.max()
    mass = (wy * np.exp(logu_nodes - shift)).sum()
    return np.exp(logu(h) - shift) / mass
