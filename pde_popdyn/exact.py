"""Closed-form and ODE-exact solutions used to verify the solvers (MODEL.md §4).

* :func:`gaussian_moments` — the joint PDE with linear drift, constant diffusion, quadratic
  fitness and replicator selection keeps Gaussians Gaussian. With z = (θ, h), drift
  z' = M z + c, diffusion matrix 2𝔇 and F = −½ (z − z*)ᵀ Q (z − z*):

      dμ/dt = M μ + c − κ Σ Q (μ − z*),      dΣ/dt = M Σ + Σ Mᵀ + 2𝔇 − κ Σ Q Σ.

* :func:`reduced_gaussian` — the reduced replicator–mutator equation with quadratic effective
  fitness F̄ = −(g/2)(h − h*)²: v' = 2D − κ g v², m' = −κ g v (m − h*), solved in closed form.
"""

from __future__ import annotations

import numpy as np
from scipy.integrate import solve_ivp


def gaussian_moments(M, c, Dmat, Q, zstar, kappa: float, mu0, Sigma0, times,
                     rtol: float = 1e-12, atol: float = 1e-14) -> tuple[np.ndarray, np.ndarray]:
    """Integrate the mean/covariance ODEs above; return μ(t) (nt, d) and Σ(t) (nt, d, d)."""
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
    sol = solve_ivp(rhs, (0.0, float(times.max())), y0, method="DOP853", t_eval=times,
                    rtol=rtol, atol=atol)
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
