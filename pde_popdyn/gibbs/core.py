"""Log-domain Gibbs averages and the adaptive quadrature on the θ-box (see the package
docstring of :mod:`pde_popdyn.gibbs`)."""

from __future__ import annotations

from typing import Any, Callable

import numpy as np
from scipy.special import logsumexp

from .._validate import _short, field_on_grid, positive_float
from ..grid import Grid
from ..model import Model

METHODS = ("quadrature", "trapezoid", "gauss-hermite", "laplace", "monte-carlo", "closed-form")



# --------------------------------------------------------------------------------------------
# evaluation helpers
# --------------------------------------------------------------------------------------------
def _check_model_grid(model: Any, grid: Any) -> None:
    if not isinstance(model, Model):
        raise TypeError(f"model must be a pp.Model, got {type(model).__name__}")
    if not isinstance(grid, Grid):
        raise TypeError(f"grid must be a pp.Grid, got {type(grid).__name__}")


def _points(grid: Grid, h: Any) -> np.ndarray:
    if h is None:
        return grid.h
    try:
        pts = np.atleast_1d(np.asarray(h, dtype=float))
    except (TypeError, ValueError):
        raise TypeError(f"h must be an array of hyperparameter values or None, "
                        f"got {_short(h)}") from None
    if pts.ndim != 1 or not np.all(np.isfinite(pts)):
        raise ValueError(f"h must be a 1-D array of finite values, got shape {pts.shape}")
    return pts


def _pressure(pressure: Any) -> float | None:
    if pressure is None:
        return None
    return positive_float("pressure", pressure)


def _eval_field(name: str, fn: Callable, theta: np.ndarray, h: np.ndarray) -> np.ndarray:
    """fn(θ, h) for θ of shape (n, m) (or (n, 1)) and h of shape (m,), as an (n, m) array."""
    th, hh = np.broadcast_arrays(np.asarray(theta, float), np.asarray(h, float)[None, :])
    th, hh = th.copy(), hh.copy()
    return field_on_grid(name, fn, (th, hh), th.shape, f"{name}(theta, h)")


def _phi(model: Model, theta: np.ndarray, h: np.ndarray) -> np.ndarray:
    """Φ = L/T at the nodes θ (n, m) or (n, 1) for each h (m,)."""
    T = model.temperature_on(h)
    return _eval_field("loss", model.loss, theta, h) / T[None, :]


def _fitness(model: Model, theta: np.ndarray, h: np.ndarray) -> np.ndarray:
    if model.fitness is None:
        raise ValueError("this model has no fitness, so there is no effective fitness; give "
                         "Model(fitness=...)")
    return _eval_field("fitness", model.fitness, theta, h)


def _log_mean_exp(p: np.ndarray, g: np.ndarray, alpha: float) -> np.ndarray:
    """log Σ_j p_j e^{α g_j} for normalised weights p (columns) and centred g, accurately.

    Near 1 the log is taken as log1p(Σ p (e^{αg} − 1)), so that α⁻¹ log(...) keeps full
    relative accuracy as α → 0 (no cancellation between log E e^{αF} and αF̄).
    """
    with np.errstate(divide="ignore"):
        logp = np.log(p)
    lse = logsumexp(logp + alpha * g, axis=0)
    small = np.abs(lse) < 0.5
    if small.any():
        ag = alpha * g[:, small]
        pp_ = p[:, small]
        # every term p e^{αg} ≤ e^{0.5} here, so exp(log p + αg) cannot overflow
        big = ag > 1.0
        term = np.where(big, np.exp(np.where(big, logp[:, small] + ag, 0.0)) - pp_ * big,
                        pp_ * np.expm1(np.minimum(ag, 1.0)))
        lse = lse.copy()
        lse[small] = np.log1p(term.sum(axis=0))
    return lse


def _averages(loga: np.ndarray, F: np.ndarray | None, pressure: float | None
              ) -> tuple[np.ndarray, np.ndarray | None]:
    """(log Σ e^{a}, average of F or F̄_α) from log-weights a (n, m) and F (n, m)."""
    logZ = logsumexp(loga, axis=0)
    if F is None:
        return logZ, None
    p = np.exp(loga - logZ[None, :])
    fbar = (p * F).sum(axis=0)
    if pressure is None:
        return logZ, fbar
    return logZ, fbar + _log_mean_exp(p, F - fbar[None, :], pressure) / pressure


# --------------------------------------------------------------------------------------------
# quadrature rules on the box
# --------------------------------------------------------------------------------------------
def _gl_rule(lo: float, hi: float, panels: int, order: int) -> tuple[np.ndarray, np.ndarray]:
    x, w = np.polynomial.legendre.leggauss(order)
    width = (hi - lo) / panels
    mids = lo + (np.arange(panels) + 0.5) * width
    nodes = (mids[:, None] + 0.5 * width * x[None, :]).ravel()
    logw = np.log(np.tile(0.5 * width * w, panels))
    return nodes, logw


def _trap_rule(lo: float, hi: float, n: int, periodic: bool) -> tuple[np.ndarray, np.ndarray]:
    if periodic:  # n equally spaced nodes, equal weights: the periodic trapezoid rule
        width = (hi - lo) / n
        return lo + np.arange(n) * width, np.full(n, np.log(width))
    nodes = np.linspace(lo, hi, n + 1)
    w = np.full(n + 1, (hi - lo) / n)
    w[[0, -1]] *= 0.5
    return nodes, np.log(w)


def _check_confined(model: Model, grid: Grid, h: np.ndarray, phi_nodes: np.ndarray) -> None:
    """Raise if exp(−L/T) is not confined on the θ-box (its maximum sits on an edge).

    Then the Gibbs measure is an artefact of the box: on the line it is not normalisable, or
    its mass lies outside the box.
    """
    ax = grid.theta_axis
    edges = _phi(model, np.array([[ax.low], [ax.high]]), h)        # (2, m)
    inner = phi_nodes.min(axis=0)
    tol = 1e-9 * np.maximum(1.0, np.abs(inner))
    bad = edges.min(axis=0) <= inner + tol
    if bad.any():
        j = int(np.argmax(bad))
        side = "lower" if edges[0, j] <= edges[1, j] else "upper"
        raise ValueError(
            f"loss: the Gibbs measure exp(-L/T) is not normalisable on the theta-box at "
            f"h={h[j]:.4g}: its density is largest at the {side} edge of the box "
            f"[{ax.low:g}, {ax.high:g}] (L/T = {edges.min(axis=0)[j]:.4g} there, minimum "
            f"{inner[j]:.4g} inside), so the loss does not confine theta. Use a loss with a "
            f"minimum inside the box (or widen the box), or pass check=False to accept the "
            f"Gibbs measure truncated to the box")


_ROUNDOFF_PLATEAU = 1e-9     # a change below this that no longer shrinks is round-off


def _adaptive(model: Model, grid: Grid, h: np.ndarray, pressure: float | None,
              want_f: bool, rule: str, tol: float, order: int, check: bool,
              max_nodes: int = 2 ** 17) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
    """Refine ``rule`` until log Z and the average change by < tol; return (logZ, avg, err)."""
    ax = grid.theta_axis
    periodic = ax.periodic
    if rule == "quadrature" and not periodic:
        level = 8
        make = lambda n: _gl_rule(ax.low, ax.high, n, order)          # noqa: E731
        size = lambda n: n * order                                     # noqa: E731
    else:
        level = 64
        make = lambda n: _trap_rule(ax.low, ax.high, n, periodic)      # noqa: E731
        size = lambda n: n + 1                                         # noqa: E731
    prev = None
    last_rel = None
    checked = False
    while True:
        nodes, logw = make(level)
        phi = _phi(model, nodes[:, None], h)
        if check and not periodic and not checked:
            _check_confined(model, grid, h, phi)
            checked = True
        F = _fitness(model, nodes[:, None], h) if want_f else None
        logZ, avg = _averages(logw[:, None] - phi, F, pressure)
        if prev is not None:
            # each quantity to its own relative tolerance: log Z ≈ −min L/T is huge at small
            # T and carries round-off of ~1e-16·|log Z|, which F̄ does not inherit
            rel = np.abs(logZ - prev[0]) / np.maximum(1.0, np.abs(logZ))
            err = np.abs(logZ - prev[0])
            scale = np.maximum(1.0, np.abs(logZ))
            if avg is not None:
                err = np.abs(avg - prev[1])
                scale = np.maximum(1.0, np.abs(avg))
                rel = np.maximum(rel, err / scale)
            if np.all(rel <= tol):
                return logZ, avg, err
            # the change stopped shrinking at a level round-off explains (~1e-16 per node
            # summed over many nodes): converged as far as double precision allows
            if last_rel is not None and np.all(rel <= _ROUNDOFF_PLATEAU) and \
                    np.max(rel) > 0.5 * np.max(last_rel):
                return logZ, avg, err
            last_rel = rel
            if size(2 * level) > max_nodes:
                j = int(np.argmax(rel))
                raise ValueError(
                    f"{rule}: the Gibbs average did not converge to tol={tol:g} with "
                    f"{size(level)} nodes (change {err[j]:.3g} at h={h[j]:.4g}). The Gibbs "
                    f"measure is probably far narrower than the theta-box: narrow the box or "
                    f"raise tol")
        prev = (logZ, avg)
        level *= 2


def _gibbs_nodes(model: Model, grid: Grid, h: np.ndarray) -> np.ndarray:
    """exp(−Φ) at the θ-nodes, normalised with the grid's θ-weights (Σ_i w_i π_i = 1)."""
    phi = _phi(model, grid.theta[:, None], h)
    p = np.exp(-(phi - phi.min(axis=0, keepdims=True)))
    return p / (grid.theta_weights[:, None] * p).sum(axis=0, keepdims=True)
