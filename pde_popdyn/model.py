"""The model: loss, fitness, temperature, time-scale ratio, selection and mutation.

The joint density f(t, θ, h) solves, for replicator selection with diffusive mutation,

    ∂_t f = 𝓛_ε f + κ (F − ⟨F⟩_f) f + D ∂²_h f,
    𝓛_ε f = (1/ε) ∂_θ( m(h) [ T(h) ∂_θ f + f ∂_θ L ] ),

with zero flux in θ and reflecting (Neumann) boundaries in h; the other selection and mutation
rules replace the last two terms (each rule's class states its term; docs/model.md has all).
"""

from __future__ import annotations

import numbers
from typing import Any, Callable, Union

import numpy as np

from ._validate import _short, field_on_grid, positive_float
from .rules import (BoltzmannJump, Diffusion, GaussianJump, MutationRule, Perturb,
                    PriorResample, Replicator, SelectionRule, Setting, Truncation,
                    check_mutations)
from .slow.explore import Compose

FieldFn = Callable[[np.ndarray, np.ndarray], np.ndarray]
HFn = Callable[[np.ndarray], np.ndarray]
Scalar = Union[float, int]


def _check_h_function(name: str, value: Any) -> Scalar | HFn:
    if callable(value):
        return value
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a positive number or a callable of h, "
                        f"got {_short(value)}")
    return positive_float(name, value)


class AffineCenter:
    """The centre c(h) = slope·h + offset of a quadratic loss L = ½K|θ − c(h)|², for
    ``Model(quadratic=(K, AffineCenter(slope, offset)))``.

    It behaves as the callable ``lambda h: slope * h + offset``, and it tells the particle
    solver that the centre is affine in h. With K, T and m constants and θ ∈ R, the Strang step
    M(Δt/2) O(Δt) M(Δt/2) (Brownian mutation in h, exact OU step in θ) is then a Gaussian move
    of (θ, h) jointly, which the compiled step samples with two normals per agent instead of
    three:

        h' = h + s ζ₁,   θ' = c(h) + (θ − c(h))·e^{−x} + β ζ₁ + γ ζ₂,

    with s² = 2DΔt, x = mKΔt/ε, β = (1 − e^{−x})·slope·√(DΔt/2) and
    γ² = (T/K)(1 − e^{−2x}) + (1 − e^{−x})²·slope²·DΔt/2, the mean and covariance of the
    three-step composition.
    """

    __slots__ = ("slope", "offset")

    def __init__(self, slope: float = 1.0, offset: float = 0.0):
        for name, v in (("slope", slope), ("offset", offset)):
            if isinstance(v, bool) or not isinstance(v, numbers.Real) or not np.isfinite(v):
                raise TypeError(f"AffineCenter {name} must be a finite number, got {_short(v)}")
        self.slope, self.offset = float(slope), float(offset)

    def __call__(self, h):
        return self.slope * np.asarray(h, dtype=float) + self.offset

    def __repr__(self) -> str:
        return f"AffineCenter(slope={self.slope!r}, offset={self.offset!r})"

    def __eq__(self, other) -> bool:
        return isinstance(other, AffineCenter) and (self.slope, self.offset) == (
            other.slope, other.offset)

    def __hash__(self) -> int:
        return hash((AffineCenter, self.slope, self.offset))

    def __reduce__(self):
        return (AffineCenter, (self.slope, self.offset))


def _check_quadratic(value: Any) -> tuple | None:
    """Validate ``quadratic=(K, center)``: K > 0 a number or callable, center finite or callable."""
    if value is None:
        return None
    if not isinstance(value, tuple) or len(value) != 2:
        raise TypeError(f"quadratic must be a pair (K, center) declaring L = ½K(h)|θ − "
                        f"center(h)|² + g(h), got {_short(value)}")
    K, center = value
    K = _check_h_function("quadratic K", K)
    if not callable(center):
        try:
            c = np.asarray(center, dtype=float)
        except (TypeError, ValueError):
            c = np.full(2, np.nan)          # reported below
        if c.ndim > 1 or not np.all(np.isfinite(c)):
            raise ValueError(f"quadratic center must be a finite number, a 1-D array (θ ∈ "
                             f"R^d) or a callable center(h), got {_short(center)}")
        center = float(c) if c.ndim == 0 else c
    return (K, center)


class Model:
    """A two-time-scale population model (docs/model.md).

    Parameters
    ----------
    loss:
        Training loss L(θ, h), confining in θ. Called as ``loss(theta, h)`` with two arrays of
        the grid's shape ``(n_theta, n_h)``; must be vectorised. On a grid with several θ- or
        h-axes the corresponding argument is a tuple of arrays of the grid's shape, one per
        axis: ``loss((theta1, theta2), h)`` or ``loss(theta, (h1, h2))``.
    fitness:
        Fitness F(θ, h), e.g. minus a validation loss; same calling convention. May be
        ``None`` only when ``selection`` is ``None``.
    temperature:
        T > 0: a number or a callable ``T(h)`` of the h-centres (``T((h1, h2))`` with several
        h-axes).
    eps:
        ε > 0, the ratio of the fast (θ) to the slow (h) time scale.
    selection:
        A selection rule: ``Replicator(rate, copy)``, ``BoltzmannJump(rate, pressure, copy)``,
        ``Truncation(rate, fraction, copy)``, ``PBT(interval, fraction, copy, rank_on)``, or
        ``None`` (off).
    mutation:
        A mutation rule, a list of them, or ``None``: ``Diffusion(coefficient)`` acts over
        time (D ∂²_h); ``GaussianJump(std)``, ``Perturb(factors)`` and
        ``PriorResample(probability, prior)`` perturb each copied h (explore), so they need a
        selection rule with copy events (jumps, truncation, PBT). Explore kernels listed
        together are applied one after another.
    mobility:
        m > 0, a number or a callable ``m(h)``; scales the speed of the fast dynamics and leaves
        the Gibbs measure π_h ∝ exp(−L/T) unchanged. Defaults to 1.
    name:
        Optional label, stored with results.
    loss_grad:
        Optional ∇_θ L, called as ``loss_grad(theta, h)`` and returning an array of theta's
        shape. Used by the particle solver (:func:`pde_popdyn.simulate_particles`) for
        Euler–Maruyama and MALA steps; the grid solvers do not need it.
    quadratic:
        Optional declaration ``(K, center)`` that the loss is L = ½ K(h) |θ − c(h)|² + g(h),
        with K a positive number or a callable ``K(h)`` and c a number (array for θ ∈ R^d),
        a callable ``center(h)``, or :class:`AffineCenter` (slope, offset) for
        c(h) = slope·h + offset, with which the compiled particle step draws two normals per
        agent-step instead of three (Strang, θ ∈ R, constant K, T, m). It lets the particle solver take the exact
        Ornstein–Uhlenbeck step (asymptotic-preserving for any Δt/ε); the declaration is
        checked against ``loss`` when particles are simulated.
    """

    def __init__(self, loss: FieldFn, fitness: FieldFn | None = None, *,
                 temperature: Scalar | HFn = 1.0, eps: float = 0.01,
                 selection: SelectionRule | None = None, mutation: Any = None,
                 mobility: Scalar | HFn = 1.0, name: str | None = None,
                 loss_grad: Callable | None = None, quadratic: tuple | None = None):
        if not callable(loss):
            raise TypeError(f"loss must be a callable loss(theta, h), got {_short(loss)}")
        if fitness is not None and not callable(fitness):
            raise TypeError(f"fitness must be a callable fitness(theta, h) or None, "
                            f"got {_short(fitness)}")
        if selection is not None and not isinstance(selection, SelectionRule):
            raise TypeError(f"selection must be a selection rule (pp.Replicator, "
                            f"pp.BoltzmannJump, pp.Truncation, pp.PBT) or None, got "
                            f"{_short(selection)}")
        mutations = check_mutations(mutation)
        kernels = [m for m in mutations if not m.continuous]
        if kernels and (selection is None or not selection.accepts_explore):
            names = ", ".join(type(m).__name__ for m in kernels)
            raise ValueError(f"mutation={names} acts at copy events, so it needs a selection "
                             f"rule with copies (pp.BoltzmannJump, pp.Truncation, pp.PBT); use "
                             f"pp.Diffusion(D) with Replicator selection")
        if selection is not None and fitness is None:
            raise ValueError("fitness is None but selection is on; give fitness=F(theta, h) "
                             "or selection=None")
        self.loss = loss
        self.fitness = fitness
        self.temperature = _check_h_function("temperature", temperature)
        self.mobility = _check_h_function("mobility", mobility)
        self.eps = positive_float("eps", eps)
        self.selection = selection
        self.mutation = mutation
        self.mutations = mutations
        self.name = name
        if loss_grad is not None and not callable(loss_grad):
            raise TypeError(f"loss_grad must be a callable loss_grad(theta, h) returning "
                            f"∂L/∂θ with theta's shape, or None, got {_short(loss_grad)}")
        self.loss_grad = loss_grad
        self.quadratic = _check_quadratic(quadratic)

    # -- evaluation on a grid ----------------------------------------------------------
    def _h_field(self, name: str, value: Scalar | HFn, h) -> np.ndarray:
        """value(h) at points h: an array, or a tuple of arrays (one per h-axis)."""
        if isinstance(h, tuple):
            h = tuple(np.asarray(x, dtype=float) for x in h)
            shape = np.broadcast_shapes(*(x.shape for x in h))
        else:
            h = np.asarray(h, dtype=float)
            shape = h.shape
        if not callable(value):
            return np.full(shape, float(value))
        out = field_on_grid(name, value, (h,), shape, f"{name}(h)")
        if (out <= 0).any():
            i = np.unravel_index(int(np.argmin(out)), shape)
            where = (tuple(round(float(x[i]), 4) for x in h) if isinstance(h, tuple)
                     else f"{float(h[i]):.4g}")
            raise ValueError(f"{name}(h) must be > 0 everywhere on the grid; it is "
                             f"{out[i]:.3g} at h={where}")
        return out

    def temperature_on(self, h) -> np.ndarray:
        """T(h) at the points ``h`` (checked > 0 and finite); ``h`` is an array, or a tuple of
        arrays for several h-axes (e.g. ``grid.h_mesh()``)."""
        return self._h_field("temperature", self.temperature, h)

    def mobility_on(self, h) -> np.ndarray:
        """m(h) at the points ``h`` (checked > 0 and finite)."""
        return self._h_field("mobility", self.mobility, h)

    def loss_on(self, grid) -> np.ndarray:
        """L on the grid's nodes, shape ``grid.shape``."""
        th, hh = grid.mesh()
        return field_on_grid("loss", self.loss, (th, hh), grid.shape, "loss(theta, h)")

    def fitness_on(self, grid) -> np.ndarray:
        """F on the grid's nodes, shape ``grid.shape``."""
        if self.fitness is None:
            raise ValueError("this model has no fitness; give Model(fitness=...)")
        th, hh = grid.mesh()
        return field_on_grid("fitness", self.fitness, (th, hh), grid.shape,
                             "fitness(theta, h)")

    def describe(self) -> dict:
        """A JSON-able description (callables by name; they cannot be serialised)."""
        def fn(v: Any) -> Any:
            return getattr(v, "__name__", repr(v)) if callable(v) else v
        return {
            "name": self.name,
            "loss": fn(self.loss), "fitness": fn(self.fitness),
            "temperature": fn(self.temperature), "mobility": fn(self.mobility),
            "eps": self.eps,
            "loss_grad": fn(getattr(self, "loss_grad", None)),
            "quadratic": None if getattr(self, "quadratic", None) is None else
            [fn(v) if callable(v) else np.asarray(v).tolist() for v in self.quadratic],
            "selection": None if self.selection is None else self.selection.describe(),
            "mutation": (None if not self.mutations else
                         self.mutations[0].describe() if len(self.mutations) == 1 else
                         [m.describe() for m in self.mutations]),
        }

    # -- the rules' grid faces -----------------------------------------------------------
    @property
    def selection_active(self) -> bool:
        """True when a selection rule is set and switched on."""
        return self.selection is not None and self.selection.active

    @property
    def diffusion_coefficient(self) -> float:
        """D of the diffusive mutation D Δ_h (0 if none)."""
        return sum(m.diffusion_coefficient for m in self.mutations)

    def explore_kernel(self, setting: Setting):
        """The kernel K applied to each copied h (the composition of the explore rules), or
        None."""
        kernels = [m.kernel(setting) for m in self.mutations if not m.continuous]
        kernels = [k for k in kernels if k is not None]
        if not kernels:
            return None
        return kernels[0] if len(kernels) == 1 else Compose(kernels)

    def mutation_steps(self, setting: Setting) -> list:
        """The sub-steps of the continuous mutations."""
        steps = [m.grid_step(setting) for m in self.mutations if m.continuous]
        return [s for s in steps if s is not None]

    def __repr__(self) -> str:
        return (f"Model(name={self.name!r}, eps={self.eps}, selection={self.selection}, "
                f"mutation={self.mutation})")


__all__ = ["Model", "Replicator", "BoltzmannJump", "Truncation", "Diffusion", "GaussianJump",
           "Perturb", "PriorResample", "MutationRule", "SelectionRule"]
