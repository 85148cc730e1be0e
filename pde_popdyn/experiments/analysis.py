"""Analyses of population runs: selection noise, hyperparameter densities, PCA of the
parameter vectors, the effective fitness F̄(h) from fixed-h agents, and the comparison of
the agents' ρ(t, h) with a prediction of the reduced equation.

They take plain arrays (or a :class:`~.cartpole.CartPolePBTResult`), so a supervised PBT can
use them too.
"""

from __future__ import annotations

import math
from typing import Callable

import numpy as np
from scipy import stats

from .pbt import n_truncated


# -- selection noise -------------------------------------------------------------------------
def reversal_fraction(bottom, fit_other, fraction: float) -> float:
    """Fraction of the overwritten agents ``bottom`` that a ranking on ``fit_other`` would
    certainly have kept: their ``fit_other`` is strictly above the ⌈qN⌉-th lowest value of
    ``fit_other`` (NaN lowest). Agents tied with that value count as not reversed, so ties
    (common when returns hit the episode cap) never inflate it; with ``fit_other`` the
    fitness that chose ``bottom`` it is exactly 0."""
    f = np.asarray(fit_other, float)
    key = np.where(np.isnan(f), -np.inf, f)
    nq = n_truncated(f.size, fraction)
    bound = np.partition(key, nq - 1)[nq - 1]
    bottom = np.asarray(bottom, dtype=np.int64)
    if bottom.size == 0:
        return float("nan")
    return float(np.mean(key[bottom] > bound))


def spearman(x, y) -> float:
    """Spearman rank correlation over the pairs where both are finite (NaN if < 3)."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    ok = np.isfinite(x) & np.isfinite(y)
    if ok.sum() < 3 or np.ptp(x[ok]) == 0 or np.ptp(y[ok]) == 0:
        return float("nan")
    return float(stats.spearmanr(x[ok], y[ok]).statistic)


def selection_noise(res) -> dict:
    """How noisy the ranking of a PBT run was, generation by generation (g = 1…G−1).

    * ``rank_corr_next``: Spearman correlation between the fitness that ranked the agents
      after generation g and their mean return over generation g+1, among the agents that
      were *not* overwritten (their network and h carried over unchanged): how well the
      fitness predicts what the agent does next.
    * ``reversed_by[k']``: fraction of the overwritten agents that a window of k' episodes
      (the same histories) would certainly have kept (:func:`reversal_fraction`).
    * ``ties``: fraction of agents sharing their fitness value with another agent (returns
      are capped at the episode length, so good agents tie).
    """
    G = res.returns.shape[0] - 1
    q = res.config.fraction
    out: dict = {"generation": [], "rank_corr_next": [], "ties": [],
                 "reversed_by": {k: [] for k in res.fitness_k}}
    for g in range(1, G):
        bottom = res.bottom[g - 1] if g - 1 < len(res.bottom) else np.array([], int)
        keep = np.setdiff1d(np.arange(res.returns.shape[1]), bottom)
        out["generation"].append(g)
        out["rank_corr_next"].append(spearman(res.fitness[g][keep], res.returns[g + 1][keep]))
        f = res.fitness[g]
        _, counts = np.unique(f[np.isfinite(f)], return_counts=True)
        out["ties"].append(float(counts[counts > 1].sum() / f.size))
        for k, fk in res.fitness_k.items():
            out["reversed_by"][k].append(reversal_fraction(bottom, fk[g], q))
    return out


# -- densities ---------------------------------------------------------------------------------
def marginal_histograms(values, edges) -> np.ndarray:
    """Cell-average densities (mass 1) of ``values`` (T, N) on ``edges``, one row per time;
    values outside the edges count in the end cells."""
    values = np.asarray(values, float)
    x = np.clip(values, edges[0], edges[-1])
    w = np.diff(edges)
    return np.array([np.histogram(row, bins=edges)[0] / (row.size * w) for row in x])


# -- PCA ---------------------------------------------------------------------------------------
def pca(X, n_components: int = 2, seed: int = 0, oversample: int = 10, power: int = 4):
    """Principal components of the rows of ``X`` (M, P) by a randomised SVD of the centred
    matrix (range finder with ``power`` subspace iterations).

    Returns ``(scores (M, k), components (k, P), explained_variance_ratio (k,))``.
    """
    X = np.asarray(X, dtype=np.float64)
    Xc = X - X.mean(axis=0)
    rng = np.random.default_rng(seed)
    k = min(n_components + oversample, min(Xc.shape))
    Q, _ = np.linalg.qr(Xc @ rng.standard_normal((Xc.shape[1], k)))
    for _ in range(power):
        Q, _ = np.linalg.qr(Xc.T @ Q)
        Q, _ = np.linalg.qr(Xc @ Q)
    U, s, Vt = np.linalg.svd(Q.T @ Xc, full_matrices=False)
    total = float((Xc ** 2).sum())
    comps = Vt[:n_components]
    return Xc @ comps.T, comps, (s[:n_components] ** 2) / total


# -- F̄(h) from fixed-h agents -------------------------------------------------------------------
def fbar_from_fixed_h(x_agent, returns, burn_in: int = 2):
    """Estimate F̄ on the values of a hyperparameter from agents that kept it fixed.

    ``x_agent`` (N,) is each agent's value (e.g. log10 learning rate, on a grid, several
    agents per value); ``returns`` (G+1, N) the per-generation mean returns of a run without
    exploit (row 0 unused). Each agent's fitness is its mean return over generations
    ``burn_in+1 … G`` (the time average after burn-in); F̄(x) is the mean over the agents at
    x, with the standard error over those agents (independent runs).

    Returns ``(x_values, fbar, stderr, per_generation (G, n_values))``.
    """
    x_agent = np.asarray(x_agent, float)
    returns = np.asarray(returns, float)
    G = returns.shape[0] - 1
    if not 0 <= burn_in < G:
        raise ValueError(f"burn_in={burn_in} must lie in [0, {G - 1}] for {G} generations")
    xs = np.unique(x_agent)
    per_agent = np.nanmean(returns[burn_in + 1:], axis=0)
    fbar = np.array([per_agent[x_agent == x].mean() for x in xs])
    se = np.array([per_agent[x_agent == x].std(ddof=1) / math.sqrt((x_agent == x).sum())
                   if (x_agent == x).sum() > 1 else np.nan for x in xs])
    per_gen = np.array([[np.nanmean(returns[g][x_agent == x]) for x in xs]
                        for g in range(1, G + 1)])
    return xs, fbar, se, per_gen


def fbar_on_grid(xs, fbar, h_grid) -> np.ndarray:
    """F̄ at the h-grid centres by linear interpolation (constant beyond the end values)."""
    return np.interp(np.asarray(h_grid, float), np.asarray(xs, float), np.asarray(fbar, float))


# -- comparison with the reduced equation -----------------------------------------------------
Predictor = Callable[[np.ndarray, np.ndarray, np.ndarray, int], np.ndarray]


def compare_with_prediction(rho_agents, h_grid, fbar_grid, predict: Predictor) -> dict:
    """Compare the agents' densities ``rho_agents`` (G+1, n_h) (cell averages on the cells
    centred at ``h_grid``, uniform) with ``predict(fbar_grid, h_grid, rho0, G)``, which must
    return ρ (G+1, n_h) from ρ0 = rho_agents[0].

    Returns the prediction, the L1 distance ∫|ρ_agents − ρ_pred| dh per generation, and the
    means and standard deviations of h under both.
    """
    rho = np.asarray(rho_agents, float)
    h = np.asarray(h_grid, float)
    G = rho.shape[0] - 1
    dh = float(h[1] - h[0])
    pred = np.asarray(predict(np.asarray(fbar_grid, float), h, rho[0].copy(), G), float)
    if pred.shape != rho.shape:
        raise ValueError(f"predict returned shape {pred.shape}; it must return ρ for the "
                         f"initial state and each of the {G} generations, shape {rho.shape}")

    def moments(r):
        m = (r * h).sum(axis=1) * dh / (r.sum(axis=1) * dh)
        v = (r * h ** 2).sum(axis=1) * dh / (r.sum(axis=1) * dh) - m ** 2
        return m, np.sqrt(np.maximum(v, 0))

    ma, sa = moments(rho)
    mp, sp = moments(pred)
    return {"prediction": pred, "l1": np.abs(rho - pred).sum(axis=1) * dh,
            "mean_agents": ma, "std_agents": sa, "mean_pred": mp, "std_pred": sp}
