"""Distances between a particle :class:`~pde_popdyn.particles.Ensemble` and a grid
:class:`~pde_popdyn.solution.Solution` at matching times (propagation of chaos: observables converge like N^{-1/2}).

For agents {(θ_i, h_i)} with empirical measure μ_N and a grid density f (cell averages):

* moment errors: the ensemble's mean and (co)variances of θ and h minus the density's.
  Midpoint-rule variances of cell averages are biased by O(Δ²): cell averages of a smooth
  density g are point values of g convolved with the box of width Δ, whose variance is
  larger by Δ²/12. ``sheppard="smooth"`` (default) subtracts Δ²/12, comparing with the smooth
  density the grid approximates (agents that evolve the true dynamics);
  ``sheppard="piecewise"`` adds Δ²/12, the variance of the piecewise-constant density itself
  (agents sampled from the cell averages, e.g. by ``simulate_particles(init=f0)``);
  ``sheppard="none"`` uses the raw midpoint values;
* ``w1_h``: the Wasserstein-1 distance of the h-marginals, ∫ |F_N(x) − F_ρ(x)| dx between the
  empirical CDF and the CDF of the piecewise-constant density ρ (linear within each cell),
  computed exactly;
* ``l1_h`` and ``l1_joint``: the L1 distance Σ_c |μ_N(c) − ∫_c f| between the histogram of the
  agents on the grid's cells and the cell masses of f (mass outside the box counts fully).

Standard errors of the ensemble's moments, as if the agents were independent
(sqrt(Var/N) for means, sqrt((μ₄ − Var²)/N) for variances), come along so that errors can be
judged in units of the statistical error.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .grid import Grid
from .particles import Ensemble
from .solution import Solution


def _cdf_w1(samples: np.ndarray, edges: np.ndarray, mass: np.ndarray) -> float:
    """Exact ∫ |F_N − G| dx for the empirical CDF F_N of ``samples`` and the CDF G of the
    piecewise-constant density with cell ``mass`` (summing to 1) on ``edges``."""
    x = np.sort(samples)
    n = x.size
    G_edges = np.concatenate([[0.0], np.cumsum(mass)])
    G_edges /= G_edges[-1]
    # all breakpoints; on each interval F_N is constant and G is linear
    pts = np.union1d(x, edges)
    FN = np.searchsorted(x, pts, side="right") / n
    G = np.interp(pts, edges, G_edges, left=0.0, right=1.0)
    a = FN[:-1] - G[:-1]                 # F_N − G at the left end (F_N is right-continuous)
    b = FN[:-1] - G[1:]                  # and its limit at the right end
    dx = np.diff(pts)
    same = a * b >= 0
    out = np.where(same, 0.5 * np.abs(a + b) * dx, 0.0)
    # a sign change inside the interval: two triangles
    cross = ~same
    ac, bc = a[cross], b[cross]
    out[cross] = 0.5 * dx[cross] * (ac * ac + bc * bc) / np.abs(ac - bc)
    return float(out.sum())


def _moments_1d(values: np.ndarray, weights: np.ndarray) -> tuple[float, float]:
    m = float((values * weights).sum())
    return m, float((values * values * weights).sum() - m * m)


SHEPPARD = {"smooth": -1.0, "piecewise": 1.0, "none": 0.0}


def compare(ensemble: Ensemble, solution: Solution, *, sheppard: str = "smooth",
            rtol_time: float = 1e-9) -> dict[str, np.ndarray]:
    """Distances between ``ensemble`` and ``solution`` at the times both have saved.

    ``solution`` may be joint (``.f`` of shape (n_saved, n_theta, n_h)) or reduced (``.f`` of
    shape (n_saved, n_h), on its grid's h-axis); for a reduced solution only the h-quantities
    are compared. Times match when they differ by at most ``rtol_time``·max(1, |t|).

    Returns
    -------
    dict of 1-D arrays along the matched times: ``t``; for q in (theta, h) ``mean_<q>`` and
    ``var_<q>`` (the ensemble's values), ``mean_<q>_pde``, ``var_<q>_pde``, the signed errors
    ``mean_<q>_error = ensemble − solution``, ``var_<q>_error``, and ``se_mean_<q>``,
    ``se_var_<q>``; ``cov_theta_h_error``; ``w1_h``; ``l1_h``; ``l1_joint``.
    """
    if not isinstance(ensemble, Ensemble):
        raise TypeError(f"ensemble must be a pp.Ensemble, got {type(ensemble).__name__}")
    if not isinstance(solution, Solution):
        raise TypeError(f"solution must be a pp.Solution, got {type(solution).__name__}")
    if sheppard not in SHEPPARD:
        raise ValueError(f"sheppard={sheppard!r} is not known; use 'smooth' (default), "
                         f"'piecewise' or 'none'")
    shep = SHEPPARD[sheppard] / 12.0
    grid: Grid = solution.grid
    f_all = np.asarray(solution.f)
    reduced = f_all.ndim == 2
    if not reduced and ensemble.d != 1:
        raise ValueError("a joint solution on a (θ, h) grid compares with θ ∈ R only (d = 1)")
    ts = np.asarray(solution.t, dtype=float)
    pairs: list[tuple[int, int]] = []
    for i, t in enumerate(ensemble.t):
        j = int(np.argmin(np.abs(ts - t)))
        if abs(ts[j] - t) <= rtol_time * max(1.0, abs(t)):
            pairs.append((i, j))
    if not pairs:
        raise ValueError(f"no saved time of the ensemble ({ensemble.t[0]:g}..{ensemble.t[-1]:g}, "
                         f"{len(ensemble.t)} saves) matches one of the solution "
                         f"({ts[0]:g}..{ts[-1]:g}, {len(ts)} saves); save both on a common "
                         f"schedule, e.g. the same dt and save_every")
    hw = grid.h_weights
    hc = grid.h
    hedges = grid.h_edges
    dh2 = (np.diff(hedges) ** 2)
    keys = ["t", "mean_h", "var_h", "mean_h_pde", "var_h_pde", "mean_h_error", "var_h_error",
            "se_mean_h", "se_var_h", "w1_h", "l1_h"]
    if not reduced:
        keys += ["mean_theta", "var_theta", "mean_theta_pde", "var_theta_pde",
                 "mean_theta_error", "var_theta_error", "se_mean_theta", "se_var_theta",
                 "cov_theta_h_error", "l1_joint"]
    out: dict[str, Any] = {k: [] for k in keys}
    n = ensemble.n
    for i, j in pairs:
        f = f_all[j]
        h = ensemble.h[i]
        if reduced:
            rho_mass = f * hw
        else:
            rho_mass = (f * grid.weights).sum(axis=0)
        total = rho_mass.sum()
        p_h = rho_mass / total
        mh, vh = _moments_1d(hc, p_h)
        vh += shep * float((p_h * dh2).sum())
        out["t"].append(ensemble.t[i])
        eh, evh = float(h.mean()), float(h.var())
        ch = h - eh
        out["mean_h"].append(eh)
        out["var_h"].append(evh)
        out["mean_h_pde"].append(mh)
        out["var_h_pde"].append(vh)
        out["mean_h_error"].append(eh - mh)
        out["var_h_error"].append(evh - vh)
        out["se_mean_h"].append(np.sqrt(evh / n))
        out["se_var_h"].append(np.sqrt(max(float((ch ** 4).mean()) - evh ** 2, 0.0) / n))
        out["w1_h"].append(_cdf_w1(h, hedges, p_h))
        counts_h = np.histogram(h, bins=hedges)[0] / n
        out["l1_h"].append(float(np.abs(counts_h - p_h).sum() + (1.0 - counts_h.sum())))
        if reduced:
            continue
        th = ensemble.theta[i]
        cell_mass = f * grid.weights / total
        p_t = cell_mass.sum(axis=1)
        tc = grid.theta
        mt, vt = _moments_1d(tc, p_t)
        vt += shep * float((p_t * np.diff(grid.theta_edges) ** 2).sum())
        cth = float((cell_mass * (tc[:, None] - mt) * (hc[None, :] - mh)).sum())
        et, evt = float(th.mean()), float(th.var())
        ct = th - et
        out["mean_theta"].append(et)
        out["var_theta"].append(evt)
        out["mean_theta_pde"].append(mt)
        out["var_theta_pde"].append(vt)
        out["mean_theta_error"].append(et - mt)
        out["var_theta_error"].append(evt - vt)
        out["se_mean_theta"].append(np.sqrt(evt / n))
        out["se_var_theta"].append(np.sqrt(max(float((ct ** 4).mean()) - evt ** 2, 0.0) / n))
        out["cov_theta_h_error"].append(float((ct * ch).mean()) - cth)
        counts = np.histogram2d(th, h, bins=[grid.theta_edges, hedges])[0] / n
        out["l1_joint"].append(float(np.abs(counts - cell_mass).sum() + (1.0 - counts.sum())))
    return {k: np.asarray(v, dtype=float) for k, v in out.items()}


def gaussian_scheme_moments(problem: Any, dt: float, n_steps: int, *,
                            splitting: str = "strang") -> tuple[np.ndarray, np.ndarray]:
    """The N → ∞ limit of :func:`pde_popdyn.simulate_particles` with the exact OU step on a
    :class:`~pde_popdyn.presets.GaussianProblem` (replicator resampling, diffusive mutation,
    no boundary), computed exactly: every sub-step maps Gaussians to Gaussians,

    * O(τ): θ ← c + (θ − c)e^{−x} + s ξ with c = a h + b, x = mKτ/ε, s² = (T/K)(1 − e^{−2x});
    * M(τ): Σ_hh += 2Dτ;
    * S(τ): precision Σ⁻¹ + κτQ, i.e. Σ ← (I + κτΣQ)⁻¹Σ, μ ← μ − κτ Σ Q (μ − z*),

    composed as the particle scheme composes them (Strang or Lie). Returns the mean (n_steps+1,
    2) and covariance (n_steps+1, 2, 2) of (θ, h) after each step: the time-discretisation
    error of the particle scheme, free of statistical error.
    """
    p = problem
    Q = np.asarray(p.Q, float)
    zs = np.asarray(p.zstar, float)
    mu = np.asarray(p.mean0, float).copy()
    S = np.asarray(p.cov0, float).copy()

    def ou(mu, S, tau):
        x = p.mobility * p.K * tau / p.eps
        e = np.exp(-x)
        A = np.array([[e, (1 - e) * p.a], [0.0, 1.0]])
        shift = np.array([(1 - e) * p.b, 0.0])
        return A @ mu + shift, A @ S @ A.T + np.diag([p.T / p.K * -np.expm1(-2 * x), 0.0])

    def mut(mu, S, tau):
        return mu, S + np.diag([0.0, 2 * p.D * tau])

    def sel(mu, S, tau):
        k = p.kappa * tau
        S2 = np.linalg.solve(np.eye(2) + k * S @ Q, S)
        S2 = 0.5 * (S2 + S2.T)
        return mu - k * S2 @ Q @ (mu - zs), S2

    mus, Ss = [mu.copy()], [S.copy()]
    for _ in range(n_steps):
        if splitting == "strang":
            for f, tau in ((sel, dt / 2), (mut, dt / 2), (ou, dt), (mut, dt / 2), (sel, dt / 2)):
                mu, S = f(mu, S, tau)
        else:
            for f in (ou, mut, sel):
                mu, S = f(mu, S, dt)
        mus.append(mu.copy())
        Ss.append(S.copy())
    return np.asarray(mus), np.asarray(Ss)
