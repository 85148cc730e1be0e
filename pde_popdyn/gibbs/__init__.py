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

from .._validate import positive_float
from ..grid import Grid
from ..model import Model
from .approx import (_gauss_hermite, _laplace, _monte_carlo, find_modes,  # noqa: F401
                     langevin_average)
from ..fast.fv import gibbs_state
from .core import (METHODS, _adaptive, _check_confined, _check_model_grid, _gibbs_nodes, _phi,
                   _points, _pressure)

# --------------------------------------------------------------------------------------------
# public API
# --------------------------------------------------------------------------------------------
def discrete_gibbs(model: Model, grid: Grid) -> np.ndarray:
    """π_h ∝ exp(−L/T) at the θ-nodes of every h-node, on a grid with any number of θ- and
    h-axes, each column normalised with the θ-weights (Σ_θ w_θ π_h(θ) = 1): the state the
    finite-volume fast step leaves exactly invariant. Shape ``grid.shape``."""
    phi = model.loss_on(grid) / model.temperature_on(grid.h_mesh())
    return gibbs_state(phi, grid.ndim_theta, grid.theta_weights)


def discrete_effective_fitness(model: Model, grid: Grid, pressure: float | None = None
                               ) -> np.ndarray:
    """F̄(h) = Σ_θ w_θ π_h F (or, with a pressure α, F̄_α = α⁻¹ log Σ_θ w_θ π_h e^{αF}) with the
    discrete Gibbs state of :func:`discrete_gibbs`, on every h-node (shape ``grid.h_shape``);
    the ε → 0 limit of the finite-volume scheme, on grids with any number of axes."""
    axes = tuple(range(grid.ndim_theta))
    wt = grid.theta_weights.reshape(grid.theta_shape + (1,) * grid.ndim_h)
    p = discrete_gibbs(model, grid) * wt
    F = model.fitness_on(grid)
    if pressure is None:
        return (p * F).sum(axis=axes)
    top = F.max(axis=axes, keepdims=True)
    return top.reshape(grid.h_shape) + np.log(
        (p * np.exp(pressure * (F - top))).sum(axis=axes)) / pressure


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
    if grid.ndim_theta > 1 or grid.ndim_h > 1:
        if cell_averages:
            raise ValueError("cell_averages=True needs one theta-axis and one h-axis; use "
                             "cell_averages=False (node values) on this grid")
        return discrete_gibbs(model, grid)
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
        if isinstance(n_hermite, bool) or not isinstance(n_hermite, numbers.Integral) \
                or n_hermite < 2:
            raise ValueError(f"n_hermite must be an integer >= 2 (the number of Gauss–Hermite "
                             f"nodes; default 80), got {n_hermite!r}")
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
            if self.grid.ndim_theta > 1 or self.grid.ndim_h > 1:
                # several axes: the discrete Gibbs average (the quadrature is one-axis)
                fbar = discrete_effective_fitness(self.model, self.grid, pressure)
            else:
                fbar = effective_fitness(self.model, self.grid, "quadrature",
                                         pressure=pressure)
            self._fbar[pressure] = np.asarray(fbar, dtype=float)
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
           "METHODS", "GibbsAverages", "discrete_gibbs", "discrete_effective_fitness"]
