"""Approximate Gibbs averages: modes and Gauss–Hermite, the Laplace expansion, Langevin/MALA
time averages (see the package docstring of :mod:`pde_popdyn.gibbs`)."""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from .._validate import field_on_grid
from ..grid import Grid
from ..model import Model
from .core import (_averages, _check_model_grid, _eval_field, _fitness, _gibbs_nodes, _phi,
                   _points, _pressure)




# --------------------------------------------------------------------------------------------
# mode finding and derivatives (Gauss–Hermite, Laplace)
# --------------------------------------------------------------------------------------------
def _stencil(order: int, half: int = 4) -> np.ndarray:
    """Central finite-difference weights for the derivative of ``order`` on 2·half+1 points
    (unit spacing), from the exact Taylor (Vandermonde) system."""
    k = np.arange(-half, half + 1, dtype=float)
    V = np.vander(k, increasing=True).T                 # V[p, j] = k_j^p
    rhs = np.zeros(k.size)
    rhs[order] = float(np.prod(np.arange(1, order + 1)))
    return np.linalg.solve(V, rhs)


_STENCILS = {d: _stencil(d) for d in range(1, 6)}


def _derivatives(fn: Callable[[np.ndarray], np.ndarray], x: np.ndarray, step: float,
                 orders: tuple[int, ...]) -> dict[int, np.ndarray]:
    """Derivatives of fn (vectorised over x of shape (m,), returning (k, m) for (k, m) input)
    at x by 9-point central differences of spacing ``step``."""
    k = np.arange(-4, 5, dtype=float)[:, None]
    vals = fn(x[None, :] + step * k)                    # (9, m)
    return {d: (_STENCILS[d][:, None] * vals).sum(axis=0) / step ** d for d in orders}


def find_modes(model: Model, grid: Grid, h: Any = None, *, max_iter: int = 100,
               step: float | None = None) -> np.ndarray:
    """The global minimiser θ*(h) of L(·, h) on the θ-box, by a vectorised Newton iteration.

    Started from the best of 8·n_θ equally spaced points on the box, then Newton steps
    θ ← θ − L'/L'' with finite-difference derivatives (a damped gradient step where L'' ≤ 0),
    until the step is below 1e-13 × (box length). Raises if a minimiser sits on the box edge.
    """
    _check_model_grid(model, grid)
    h = _points(grid, h)
    ax = grid.theta_axis
    ell = ax.high - ax.low
    step = 2e-3 * ell if step is None else step
    xs = np.linspace(ax.low, ax.high, 8 * ax.cells + 1)
    L0 = _eval_field("loss", model.loss, xs[:, None], h)
    th = xs[np.argmin(L0, axis=0)]

    def loss(t):
        return _eval_field("loss", model.loss, t, h)

    for _ in range(max_iter):
        d = _derivatives(loss, th, step, (1, 2))
        g, c = d[1], d[2]
        newton = c > 0
        dx = np.where(newton, -g / np.where(newton, c, 1.0), -np.sign(g) * step)
        dx = np.clip(dx, -0.05 * ell, 0.05 * ell)
        th = np.clip(th + dx, ax.low, ax.high)
        if np.all(np.abs(dx) <= 1e-13 * ell):
            break
    if not ax.periodic:
        on_edge = (th <= ax.low + 1e-9 * ell) | (th >= ax.high - 1e-9 * ell)
        if on_edge.any():
            j = int(np.argmax(on_edge))
            raise ValueError(f"loss: the minimiser of L(., h) at h={h[j]:.4g} is on the edge "
                             f"of the theta-box; the Gibbs measure is not confined on the box. "
                             f"Widen the box")
    return th


def _gauss_hermite(model: Model, grid: Grid, h: np.ndarray, pressure: float | None,
                   want_f: bool, n: int, step: float | None
                   ) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
    if grid.theta_axis.periodic:
        raise ValueError("method='gauss-hermite' integrates over the whole line and cannot be "
                         "used on a periodic theta-axis; use method='quadrature'")
    mode = find_modes(model, grid, h, step=step)
    ell = grid.theta_axis.high - grid.theta_axis.low
    T = model.temperature_on(h)
    d2 = _derivatives(lambda t: _eval_field("loss", model.loss, t, h), mode,
                      2e-3 * ell if step is None else step, (2,))[2]
    if np.any(d2 <= 0):
        j = int(np.argmax(d2 <= 0))
        raise ValueError(f"gauss-hermite: L'' <= 0 at the minimiser theta={mode[j]:.4g} "
                         f"(h={h[j]:.4g}); the local Gaussian scale is undefined. Use "
                         f"method='quadrature'")
    s = np.sqrt(2.0 * T / d2)                                          # (m,)
    out = []
    for nn in (n // 2, n):
        x, w = np.polynomial.hermite.hermgauss(nn)
        theta = mode[None, :] + s[None, :] * x[:, None]                # (nn, m)
        phi = _phi(model, theta, h)
        loga = (np.log(w) + x ** 2)[:, None] + np.log(s)[None, :] - phi
        F = _fitness(model, theta, h) if want_f else None
        out.append(_averages(loga, F, pressure))
    (lz0, a0), (lz1, a1) = out
    err = np.abs(lz1 - lz0) if a1 is None else np.maximum(np.abs(a1 - a0), np.abs(lz1 - lz0))
    return lz1, a1, err


def _laplace(model: Model, grid: Grid, h: np.ndarray, pressure: float | None, order: int,
             step: float | None) -> tuple[np.ndarray, np.ndarray]:
    if order not in (1, 2):
        raise ValueError(f"laplace_order must be 1 or 2, got {order!r}")
    if pressure is not None and order == 2:
        raise ValueError("the Laplace expansion of F̄_α is implemented to first order only; "
                         "pass laplace_order=1")
    ell = grid.theta_axis.high - grid.theta_axis.low
    step = 2e-3 * ell if step is None else step
    mode = find_modes(model, grid, h, step=step)
    T = model.temperature_on(h)

    def loss(t):
        return _eval_field("loss", model.loss, t, h)

    def fit(t):
        return _fitness(model, t, h)

    dL = _derivatives(loss, mode, step, (2, 3))
    dF = _derivatives(fit, mode, step, (1, 2))
    a, L3 = dL[2], dL[3]
    F1, F2 = dF[1], dF[2]
    if np.any(a <= 0):
        j = int(np.argmax(a <= 0))
        raise ValueError(f"laplace: L'' <= 0 at the minimiser theta={mode[j]:.4g} "
                         f"(h={h[j]:.4g}); the expansion needs a non-degenerate minimum")
    F0 = fit(mode[None, :])[0]
    c1 = F2 / (2 * a) - F1 * L3 / (2 * a ** 2)
    if pressure is not None:
        c1 = c1 + pressure * F1 ** 2 / (2 * a)
        # the T² term is not derived for F̄_α: estimate the error by the T² term of F̄
    # second-order coefficient (derivatives of order 4–5 on a wider stencil: less round-off)
    wide = 3.0 * step
    dLw = _derivatives(loss, mode, wide, (4, 5))
    dFw = _derivatives(fit, mode, wide, (3, 4))
    L4, L5, F3, F4 = dLw[4], dLw[5], dFw[3], dFw[4]
    c2 = (F4 / (8 * a ** 2) - 5 * F3 * L3 / (12 * a ** 3) - F2 * L4 / (4 * a ** 3)
          + 5 * F2 * L3 ** 2 / (8 * a ** 4) - F1 * L5 / (8 * a ** 3)
          + 2 * F1 * L3 * L4 / (3 * a ** 4) - 5 * F1 * L3 ** 3 / (8 * a ** 5))
    if order == 1:
        return F0 + T * c1, np.abs(T ** 2 * c2)
    # no T³ coefficient is available: estimate it geometrically, |T³ c2²/c1| (a heuristic)
    est = np.abs(T ** 3 * c2 ** 2) / np.maximum(np.abs(c1), 1e-300)
    return F0 + T * c1 + T ** 2 * c2, est


# --------------------------------------------------------------------------------------------
# Monte Carlo (MALA)
# --------------------------------------------------------------------------------------------
def langevin_average(loss: Callable, fitness: Callable, h: Any, temperature: Any,
                     theta0: Any, *, n_samples: int = 2000, burn_in: int = 1000,
                     pressure: float | None = None, seed: int | None = 0,
                     box: tuple[float, float] | None = None, step: float | None = None,
                     grad_step: float = 1e-5) -> tuple[np.ndarray, np.ndarray]:
    """E_{π_h}[F] (or F̄_α) and its standard error by MALA, for θ of any dimension d.

    Targets π_h(θ) ∝ exp(−L(θ,h)/T(h)) (restricted to the box ``box`` = (low, high) in every
    coordinate, if given: proposals outside are rejected, which leaves the restricted measure
    invariant). The proposal is θ' = θ − τ ∇Φ(θ) + √(2τ) ξ with Φ = L/T and the gradient by
    central differences of ``grad_step`` (a deterministic function of θ, so the
    Metropolis–Hastings correction keeps the chain exact). τ is adapted per h during burn-in
    toward the acceptance rate 0.574 and then frozen.

    Parameters
    ----------
    loss, fitness:
        Called as ``loss(theta, h)`` with ``theta`` of shape (m, c, d) and ``h`` of shape
        (m, c); return shape (m, c).
    h:
        m hyperparameter values, shape (m,).
    temperature:
        T > 0, a number or an array of shape (m,).
    theta0:
        Initial states, shape (m, c, d): c independent chains per h.

    Returns
    -------
    value, stderr:
        arrays of shape (m,); ``stderr`` is the standard deviation of the c per-chain averages
        over √c (for F̄_α by the delta method).
    """
    h = np.atleast_1d(np.asarray(h, float))
    x = np.array(theta0, dtype=float)
    if x.ndim != 3 or x.shape[0] != h.size:
        raise ValueError(f"theta0 must have shape (len(h), n_chains, d) = ({h.size}, c, d), "
                         f"got {x.shape}")
    m, c, d = x.shape
    if c < 2:
        raise ValueError("langevin_average needs at least 2 chains per h for a standard error")
    T = np.broadcast_to(np.asarray(temperature, float), (m,))
    if np.any(T <= 0):
        raise ValueError("temperature must be > 0")
    alpha = _pressure(pressure)
    n_samples = int(n_samples)
    burn_in = int(burn_in)
    if n_samples < 1 or burn_in < 0:
        raise ValueError("n_samples must be >= 1 and burn_in >= 0")
    rng = np.random.default_rng(seed)
    H = np.broadcast_to(h[:, None], (m, c))
    Tm = T[:, None]

    def phi(z):
        return np.asarray(loss(z, H), float) / Tm

    def grad(z):
        g = np.empty_like(z)
        for k in range(d):          # d is the (small) dimension, not a loop over agents
            e = np.zeros(d)
            e[k] = grad_step
            g[..., k] = (phi(z + e) - phi(z - e)) / (2 * grad_step)
        return g

    def inside(z):
        if box is None:
            return np.ones(z.shape[:2], bool)
        return np.all((z >= box[0]) & (z <= box[1]), axis=-1)

    tau = np.full((m, 1), 0.1 if step is None else float(step))
    if step is None:  # a first guess from the curvature of Φ at the starting points
        p0 = phi(x)
        curv = np.abs(phi(x + 1e-3) - 2 * p0 + phi(x - 1e-3)) / 1e-6
        tau = (0.5 / np.maximum(np.median(curv, axis=1, keepdims=True), 1e-12))
    px, gx = phi(x), grad(x)
    sums = np.zeros((m, c))
    sums_w = np.zeros((m, c))
    shift = None
    acc_total = np.zeros(m)
    for it in range(burn_in + n_samples):
        noise = rng.standard_normal(x.shape)
        t3 = tau[..., None]
        y = x - t3 * gx + np.sqrt(2 * t3) * noise
        ok = inside(y)
        y = np.where(ok[..., None], y, x)
        py, gy = phi(y), grad(y)
        # log q(x | y) − log q(y | x) for the Gaussian proposals
        fwd = ((y - x + t3 * gx) ** 2).sum(-1)
        bwd = ((x - y + t3 * gy) ** 2).sum(-1)
        log_r = -(py - px) - (bwd - fwd) / (4 * tau)
        accept = ok & (np.log(rng.random((m, c))) < np.minimum(log_r, 0.0))
        x = np.where(accept[..., None], y, x)
        px = np.where(accept, py, px)
        gx = np.where(accept[..., None], gy, gx)
        rate = accept.mean(axis=1)
        if it < burn_in and step is None:
            # Robbins–Monro on log τ toward acceptance 0.574 (frozen after burn-in)
            tau *= np.exp(rate - 0.574)[:, None]
        else:
            Fx = np.asarray(fitness(x, H), float)
            sums += Fx
            if alpha is not None:
                if shift is None:
                    shift = Fx.mean(axis=1, keepdims=True)
                sums_w += np.exp(np.minimum(alpha * (Fx - shift), 700.0))
            acc_total += rate
    chain_mean = sums / n_samples
    value = chain_mean.mean(axis=1)
    se = chain_mean.std(axis=1, ddof=1) / np.sqrt(c)
    if alpha is not None:
        cw = sums_w / n_samples
        mw = cw.mean(axis=1)
        value = shift[:, 0] + np.log(mw) / alpha
        se = cw.std(axis=1, ddof=1) / np.sqrt(c) / (alpha * mw)
    return value, se


def _monte_carlo(model: Model, grid: Grid, h: np.ndarray, pressure: float | None,
                 n_samples: int, n_chains: int, burn_in: int, seed: int | None
                 ) -> tuple[np.ndarray, np.ndarray]:
    if grid.theta_axis.periodic:
        raise ValueError("method='monte-carlo' samples on the line segment of the box; use "
                         "method='quadrature' on a periodic theta-axis")
    # start the chains from the Gibbs state on the grid's cells (inverse CDF + jitter)
    rng = np.random.default_rng(seed)
    pi = _gibbs_nodes(model, grid, h) * grid.theta_weights[:, None]   # node probabilities
    cdf = np.cumsum(pi, axis=0)
    cdf /= cdf[-1]
    u = rng.random((h.size, n_chains))
    idx = np.minimum((u[:, :, None] > cdf.T[:, None, :]).sum(-1), grid.n_theta - 1)
    edges = grid.theta_axis.edges
    theta0 = edges[idx] + (edges[idx + 1] - edges[idx]) * rng.random(idx.shape)
    theta0 = theta0[..., None]
    T = model.temperature_on(h)

    def loss(z, hh):
        return _checked(model.loss, "loss", z[..., 0], hh)

    def fit(z, hh):
        return _checked(model.fitness, "fitness", z[..., 0], hh)

    return langevin_average(loss, fit, h, T, theta0, n_samples=n_samples, burn_in=burn_in,
                            pressure=pressure, seed=None if seed is None else seed + 1,
                            box=(grid.theta_axis.low, grid.theta_axis.high))


def _checked(fn, name, th, hh):
    return field_on_grid(name, fn, (th, hh), th.shape, f"{name}(theta, h)")
