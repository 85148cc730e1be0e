"""Gibbs measure, partition function and effective fitness (docs/model.md, "Reduced equations").

For each hyperparameter value h the fast dynamics relax to the Gibbs measure on the θ-box

    π_h(θ) = exp(−L(θ,h)/T(h)) / Z(h),      Z(h) = ∫_box exp(−L(θ,h)/T(h)) dθ,

and the slow dynamics see the **effective fitness**

    F̄(h) = E_{π_h}[F(·,h)] = ∫ F(θ,h) π_h(θ) dθ,

or, for Boltzmann-jump selection with pressure α, the tilted average

    F̄_α(h) = α⁻¹ log E_{π_h}[e^{αF}],       F̄ ≤ F̄_α ≤ sup F,  F̄_α → F̄ as α → 0.

All averages are computed in the log domain: with log-weights a_j = log w_j − Φ(θ_j), Φ = L/T,
the normalised weights are p_j = exp(a_j − logsumexp(a)), so neither over- nor underflow can
occur however large Φ is.

Methods of :func:`effective_fitness`
------------------------------------
``"quadrature"`` (default)
    Composite Gauss–Legendre on the θ-box (``order`` nodes per panel), the number of panels
    doubled until two levels agree to ``tol``; the error estimate is that difference. On a
    periodic θ-axis the trapezoid rule is used instead (it converges geometrically for smooth
    periodic integrands).
``"trapezoid"``
    Equally spaced nodes with end-point half weights, doubled until converged. For a Gibbs
    density that is negligible at both edges of the box it converges geometrically too (the
    Euler–Maclaurin corrections vanish): an independent check of ``"quadrature"``.
``"gauss-hermite"``
    Gauss–Hermite nodes centred at the mode θ*(h) of π_h (found by a vectorised Newton
    iteration) and scaled by the local curvature, θ = θ* + s x with s = (2T/L'')^{1/2}. It
    integrates over the whole line, not the box. It is accurate only when π_h is unimodal (or
    the other modes carry negligible mass, e.g. e^{−ΔL/T} below the tolerance) and concentrated
    away from the edges. Not available on a periodic θ-axis.
``"laplace"``
    The small-T expansion about the global minimiser θ* of L (derivatives in θ by central
    finite differences; ``laplace_order`` 1 or 2). With a = L'', L₃ = L''', … and Fₖ = ∂ₖF at θ*:

        F̄ = F + T [F₂/(2a) − F₁L₃/(2a²)]
              + T² [F₄/(8a²) − 5F₃L₃/(12a³) − F₂L₄/(4a³) + 5F₂L₃²/(8a⁴) − F₁L₅/(8a³)
                    + 2F₁L₃L₄/(3a⁴) − 5F₁L₃³/(8a⁵)] + O(T³).

    The first-order term follows from E[x²] = T/a and E[x⁴] = 3T²/a² under the Gaussian
    N(0, T/a) with the cubic correction e^{−L₃x³/(6T)} ≈ 1 − L₃x³/(6T); the second-order term
    was derived symbolically (the same expansion carried two orders further). For the
    pressure, F̄_α = F + T [F₂/(2a) + αF₁²/(2a) − F₁L₃/(2a²)] + O(T²) (the log of the same
    expansion for e^{αF}); it is first order only. The error estimate of the first-order
    result is the size of the T² term of F̄ (for F̄_α too: a proxy); for ``laplace_order=2`` it
    is the heuristic |T³c₂²/c₁|. A double-well with a second minimum contributes
    e^{−ΔL/T}, beyond all orders.
``"monte-carlo"``
    MALA (Metropolis-adjusted Langevin) chains targeting π_h restricted to the box, seeded,
    vectorised over h and chains; the error is the standard error over independent chains.
    :func:`langevin_average` is the same estimator for θ of any dimension.
``"closed-form"`` or a callable
    ``model.effective_fitness_exact`` (or the callable passed as ``method``), called as
    ``fn(h)`` or, with a pressure, ``fn(h, pressure)``.
"""

from __future__ import annotations

import numbers
from typing import Any, Callable

import numpy as np
from scipy.special import logsumexp

from ._validate import _short, field_on_grid, positive_float
from .grid import Grid
from .model import Model

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
            err = np.abs(logZ - prev[0])
            if avg is not None:
                err = np.maximum(err, np.abs(avg - prev[1]))
            scale = np.maximum(1.0, np.abs(avg if avg is not None else logZ))
            if np.all(err <= tol * scale):
                return logZ, avg, err
            if size(2 * level) > max_nodes:
                j = int(np.argmax(err / scale))
                raise ValueError(
                    f"{rule}: the Gibbs average did not converge to tol={tol:g} with "
                    f"{size(level)} nodes (change {err[j]:.3g} at h={h[j]:.4g}). The Gibbs "
                    f"measure is probably far narrower than the theta-box: narrow the box or "
                    f"raise tol")
        prev = (logZ, avg)
        level *= 2


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


# --------------------------------------------------------------------------------------------
# public API
# --------------------------------------------------------------------------------------------
def _gibbs_nodes(model: Model, grid: Grid, h: np.ndarray) -> np.ndarray:
    """exp(−Φ) at the θ-nodes, normalised with the grid's θ-weights (Σ_i w_i π_i = 1)."""
    phi = _phi(model, grid.theta[:, None], h)
    p = np.exp(-(phi - phi.min(axis=0, keepdims=True)))
    return p / (grid.theta_weights[:, None] * p).sum(axis=0, keepdims=True)


def gibbs(model: Model, grid: Grid, *, cell_averages: bool = False,
          check: bool = True) -> np.ndarray:
    """The Gibbs density π_h(θ) ∝ exp(−L(θ,h)/T(h)) on the grid, shape (n_theta, n_h).

    Each column integrates to 1 over θ with the grid's θ-weights:
    ``(pi * grid.theta_weights[:, None]).sum(axis=0) == 1``.

    ``cell_averages=False`` (default): the values exp(−Φ(θ_i)) at the θ-nodes, normalised on
    the grid. On a finite-volume grid this is the discrete Gibbs state that the
    Scharfetter–Gummel fast step of :func:`pde_popdyn.solve` leaves exactly invariant, so
    ρ·π_h is the discrete slow manifold of the joint solver. ``cell_averages=True`` (uniform
    θ-cells only): cell averages (16-point Gauss–Legendre per cell) of the continuous density
    exp(−Φ)/Z with Z on the box by :func:`log_partition`.
    """
    _check_model_grid(model, grid)
    h = grid.h
    if check and not grid.theta_axis.periodic:
        _check_confined(model, grid, h, _phi(model, grid.theta[:, None], h))
    if not cell_averages:
        return _gibbs_nodes(model, grid, h)
    if not grid.theta_axis.uniform:
        raise ValueError("cell_averages=True needs uniform theta-cells (nodes='cells')")
    logZ = log_partition(model, grid, check=False)
    # 16-point Gauss–Legendre in every cell (exact to round-off when the cells resolve π_h)
    x, w = np.polynomial.legendre.leggauss(16)
    nodes = grid.theta[:, None] + 0.5 * grid.dtheta * x[None, :]      # (n_theta, 16)
    phi = _phi(model, nodes.reshape(-1, 1), h).reshape(grid.n_theta, 16, grid.n_h)
    vals = np.exp(-phi - logZ[None, None, :])
    return np.einsum("iqj,q->ij", vals, 0.5 * w)


def log_partition(model: Model, grid: Grid, h: Any = None, *, tol: float = 1e-14,
                  order: int = 20, check: bool = True, return_error: bool = False):
    """log Z(h) = log ∫_box exp(−L(θ,h)/T(h)) dθ by adaptive quadrature (log domain).

    At the grid's h-centres, or at the points ``h``. With ``return_error=True`` returns
    ``(logZ, err)`` with err the change between the last two refinement levels.
    """
    _check_model_grid(model, grid)
    h = _points(grid, h)
    logZ, _, err = _adaptive(model, grid, h, None, False, "quadrature", tol, order, check)
    return (logZ, err) if return_error else logZ


def effective_fitness(model: Model, grid: Grid, method: str | Callable = "quadrature",
                      pressure: float | None = None, h: Any = None,
                      return_error: bool = False, *, tol: float = 1e-14, order: int = 20,
                      n_hermite: int = 80, laplace_order: int = 1,
                      n_samples: int = 2000, n_chains: int = 64, burn_in: int = 1000,
                      seed: int | None = 0, fd_step: float | None = None,
                      check: bool = True):
    """Effective fitness F̄(h) = E_{π_h}[F] or, with ``pressure=α``, F̄_α = α⁻¹ log E e^{αF}.

    The Gibbs measure π_h ∝ exp(−L/T) is taken on the grid's θ-box (see the module docstring
    for the methods and their accuracy).

    Parameters
    ----------
    method:
        'quadrature' (default), 'trapezoid', 'gauss-hermite', 'laplace', 'monte-carlo',
        'closed-form' (uses ``model.effective_fitness_exact``), or a callable ``fn(h)`` /
        ``fn(h, pressure)``.
    pressure:
        α > 0 for F̄_α, or None for F̄.
    h:
        Points at which to evaluate; default the grid's h-centres.
    return_error:
        Also return an error estimate per point: the change between the last two refinement
        levels (quadrature, trapezoid), between n/2 and n nodes (Gauss–Hermite), the size of
        the next term (Laplace), the standard error (Monte Carlo), 0 (closed form).
    tol, order:
        Target accuracy (relative to max(1, |F̄|)) and Gauss–Legendre nodes per panel.
    n_hermite:
        Gauss–Hermite nodes (the estimate compares with n_hermite/2).
    laplace_order:
        1 (first order in T, default) or 2.
    n_samples, n_chains, burn_in, seed:
        Monte Carlo settings (per h-point: ``n_chains`` chains of ``n_samples`` samples).
    fd_step:
        Finite-difference spacing for the θ-derivatives (Newton, Gauss–Hermite, Laplace);
        default 2e-3 × the box length.
    check:
        Raise if exp(−L/T) is not confined on the θ-box.

    Returns
    -------
    F̄ of shape (len(h),), or (F̄, error) with ``return_error=True``.
    """
    _check_model_grid(model, grid)
    pts = _points(grid, h)
    alpha = _pressure(pressure)
    if callable(method) or method == "closed-form":
        fn = method if callable(method) else getattr(model, "effective_fitness_exact", None)
        if fn is None:
            raise ValueError("method='closed-form' needs model.effective_fitness_exact, a "
                             "callable fn(h) (and fn(h, pressure) for F̄_α); set it or pass "
                             "the callable as method=")
        args = (pts,) if alpha is None else (pts, alpha)
        val = np.asarray(fn(*args), dtype=float)
        val = np.broadcast_to(val, pts.shape).copy()
        if not np.all(np.isfinite(val)):
            raise ValueError("the closed-form effective fitness returned non-finite values")
        err = np.zeros_like(val)
    elif method in ("quadrature", "trapezoid"):
        if not isinstance(order, numbers.Integral) or order < 2:
            raise ValueError(f"order must be an integer >= 2, got {order!r}")
        tol = positive_float("tol", tol)
        _, val, err = _adaptive(model, grid, pts, alpha, True, method, tol, int(order), check)
    elif method == "gauss-hermite":
        if check and not grid.theta_axis.periodic:
            _check_confined(model, grid, pts, _phi(model, grid.theta[:, None], pts))
        _, val, err = _gauss_hermite(model, grid, pts, alpha, True, int(n_hermite), fd_step)
    elif method == "laplace":
        if check and not grid.theta_axis.periodic:
            _check_confined(model, grid, pts, _phi(model, grid.theta[:, None], pts))
        val, err = _laplace(model, grid, pts, alpha, laplace_order, fd_step)
    elif method == "monte-carlo":
        if check and not grid.theta_axis.periodic:
            _check_confined(model, grid, pts, _phi(model, grid.theta[:, None], pts))
        val, err = _monte_carlo(model, grid, pts, alpha, n_samples, n_chains, burn_in, seed)
    else:
        raise ValueError(f"method={method!r} is not known; use one of {METHODS} or a "
                         f"callable fn(h)")
    return (val, err) if return_error else val


class GibbsAverages:
    """What a rule's reduced face may ask for: F̄ and F̄_α on the h-grid (or the fitness the
    user gave instead), and the Gibbs lift ρ ↦ ρ π_h onto the joint grid with F there.

    ``setting`` is where the reduced sub-steps act (arrays of the h-shape); the averages are
    computed once and cached."""

    def __init__(self, model: Model, grid: Grid, setting: Any = None,
                 fitness: np.ndarray | None = None):
        self.model, self.grid, self.setting = model, grid, setting
        self.user_fitness = fitness
        self._fbar: dict[Any, np.ndarray] = {}
        self._pi = None

    def effective_fitness(self, pressure: float | None = None) -> np.ndarray:
        """F̄ (pressure None) or F̄_α on the h-nodes by quadrature; the user's fitness if one
        was given to the solver."""
        if self.user_fitness is not None:
            return self.user_fitness
        if pressure not in self._fbar:
            self._fbar[pressure] = np.asarray(effective_fitness(
                self.model, self.grid, "quadrature", pressure=pressure), dtype=float)
        return self._fbar[pressure]

    @property
    def gibbs(self) -> np.ndarray:
        """π_h(θ) on the grid's nodes (columns integrate to 1 with the θ-weights)."""
        if self._pi is None:
            self._pi = gibbs(self.model, self.grid, check=False)
        return self._pi

    @property
    def joint_fitness(self) -> np.ndarray:
        return self.model.fitness_on(self.grid)

    def lift(self, rho: np.ndarray) -> np.ndarray:
        """Masses of ρ(h) π_h(θ) on the joint grid, from masses of ρ on the h-cells."""
        w = self.grid.theta_weights.reshape(self.grid.theta_shape + (1,) * self.grid.ndim_h)
        return self.gibbs * w * rho

    def project(self, f: np.ndarray) -> np.ndarray:
        """Masses of ρ on the h-cells from masses on the joint grid."""
        return f.sum(axis=tuple(range(self.grid.ndim_theta)))


__all__ = ["effective_fitness", "gibbs", "log_partition", "find_modes", "langevin_average",
           "METHODS", "GibbsAverages"]
