"""Cell-centred tensor grids over the parameter axis θ and the hyperparameter axis h.

A density on a :class:`Grid` is an array ``f`` of shape ``(n_theta, n_h)`` holding cell
averages, normalised so that ``(f * grid.weights).sum() == 1``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from ._validate import as_axis_spec

AxisName = Literal["theta", "h"]


@dataclass(frozen=True)
class Axis:
    """One uniform, cell-centred axis ``[low, high]`` split into ``cells`` cells."""

    name: str
    low: float
    high: float
    cells: int
    periodic: bool = False

    @property
    def width(self) -> float:
        """Cell width Δ = (high − low) / cells."""
        return (self.high - self.low) / self.cells

    @property
    def edges(self) -> np.ndarray:
        """The ``cells + 1`` cell faces."""
        return np.linspace(self.low, self.high, self.cells + 1)

    @property
    def centres(self) -> np.ndarray:
        """The ``cells`` cell centres."""
        return self.low + (np.arange(self.cells) + 0.5) * self.width

    @property
    def length(self) -> float:
        return self.high - self.low


class Grid:
    """Tensor-product, cell-centred grid over θ ∈ [θ_lo, θ_hi] and h ∈ [h_lo, h_hi].

    Parameters
    ----------
    theta, h:
        ``(low, high, cells)`` for each axis. ``cells`` ≥ 3.
    periodic:
        Names of the periodic axes, e.g. ``("theta",)`` for θ on a circle (the loss and fitness
        must then be periodic) or ``("h",)`` for periodic mutation in h. Other axes have zero
        flux in θ and reflecting boundaries in h.

    Examples
    --------
    >>> grid = Grid(theta=(-3.0, 3.0, 128), h=(-2.0, 2.0, 64))
    >>> grid.shape
    (128, 64)
    """

    def __init__(self, theta: tuple[float, float, int], h: tuple[float, float, int],
                 periodic: tuple[str, ...] | list[str] = ()):
        if isinstance(periodic, str):
            periodic = (periodic,)
        unknown = [p for p in periodic if p not in ("theta", "h")]
        if unknown:
            raise ValueError(f"periodic={tuple(periodic)!r} names unknown axes {unknown}; use "
                             f"'theta' and/or 'h'")
        self.theta_axis = Axis("theta", *as_axis_spec("theta", theta), "theta" in periodic)
        self.h_axis = Axis("h", *as_axis_spec("h", h), "h" in periodic)

    # -- coordinates -------------------------------------------------------------------
    @property
    def theta(self) -> np.ndarray:
        """θ cell centres, shape ``(n_theta,)``."""
        return self.theta_axis.centres

    @property
    def h(self) -> np.ndarray:
        """h cell centres, shape ``(n_h,)``."""
        return self.h_axis.centres

    @property
    def theta_edges(self) -> np.ndarray:
        return self.theta_axis.edges

    @property
    def h_edges(self) -> np.ndarray:
        return self.h_axis.edges

    @property
    def dtheta(self) -> float:
        return self.theta_axis.width

    @property
    def dh(self) -> float:
        return self.h_axis.width

    @property
    def shape(self) -> tuple[int, int]:
        return (self.theta_axis.cells, self.h_axis.cells)

    @property
    def n_theta(self) -> int:
        return self.theta_axis.cells

    @property
    def n_h(self) -> int:
        return self.h_axis.cells

    @property
    def weights(self) -> np.ndarray:
        """Quadrature weights of shape ``(n_theta, n_h)``: the mass is ``(f * weights).sum()``."""
        return np.full(self.shape, self.dtheta * self.dh)

    def mesh(self) -> tuple[np.ndarray, np.ndarray]:
        """Θ and H arrays of shape ``(n_theta, n_h)`` (``indexing="ij"``)."""
        return np.meshgrid(self.theta, self.h, indexing="ij")

    # -- integrals of densities --------------------------------------------------------
    def mass(self, f: np.ndarray) -> np.ndarray:
        """∫∫ f dθ dh, over the last two axes (so a stack of densities works too)."""
        return np.asarray(f).sum(axis=(-2, -1)) * (self.dtheta * self.dh)

    def marginal(self, f: np.ndarray, axis: AxisName = "h") -> np.ndarray:
        """Marginal density: ``axis="h"`` gives ρ(h) = ∫ f dθ; ``axis="theta"`` gives ∫ f dh."""
        f = np.asarray(f)
        if axis == "h":
            return f.sum(axis=-2) * self.dtheta
        if axis == "theta":
            return f.sum(axis=-1) * self.dh
        raise ValueError(f"axis={axis!r} is not an axis of this grid; use 'theta' or 'h'")

    def mean(self, f: np.ndarray) -> np.ndarray:
        """(E θ, E h) under f (normalised by its mass); shape ``(..., 2)``."""
        f = np.asarray(f)
        m = self.mass(f)
        et = (self.marginal(f, "theta") * self.theta).sum(-1) * self.dtheta / m
        eh = (self.marginal(f, "h") * self.h).sum(-1) * self.dh / m
        return np.stack([et, eh], axis=-1)

    def cov(self, f: np.ndarray) -> np.ndarray:
        """Covariance matrix of (θ, h) under f; shape ``(..., 2, 2)``.

        Moments of cell averages, taken at cell centres; this is second-order accurate
        (the midpoint rule) and adds no Sheppard correction.
        """
        f = np.asarray(f)
        m = self.mass(f)
        mu = self.mean(f)
        dt = self.theta[:, None] - mu[..., 0, None, None]
        dh = self.h[None, :] - mu[..., 1, None, None]
        w = self.dtheta * self.dh
        c_tt = (f * dt * dt).sum(axis=(-2, -1)) * w / m
        c_th = (f * dt * dh).sum(axis=(-2, -1)) * w / m
        c_hh = (f * dh * dh).sum(axis=(-2, -1)) * w / m
        return np.stack([np.stack([c_tt, c_th], -1), np.stack([c_th, c_hh], -1)], -2)

    def integrate(self, f: np.ndarray, g: np.ndarray) -> np.ndarray:
        """∫∫ g f dθ dh for a field g of the grid's shape."""
        return (np.asarray(f) * g).sum(axis=(-2, -1)) * (self.dtheta * self.dh)

    # -- misc ----------------------------------------------------------------------------
    @property
    def periodic(self) -> tuple[str, ...]:
        return tuple(a.name for a in (self.theta_axis, self.h_axis) if a.periodic)

    def to_dict(self) -> dict:
        a, b = self.theta_axis, self.h_axis
        return {"theta": [a.low, a.high, a.cells], "h": [b.low, b.high, b.cells],
                "periodic": list(self.periodic)}

    @classmethod
    def from_dict(cls, d: dict) -> "Grid":
        return cls(theta=tuple(d["theta"]), h=tuple(d["h"]), periodic=tuple(d.get("periodic", ())))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Grid) and self.to_dict() == other.to_dict()

    def __hash__(self) -> int:
        return hash(str(self.to_dict()))

    def __repr__(self) -> str:
        a, b = self.theta_axis, self.h_axis
        per = f", periodic={self.periodic}" if self.periodic else ""
        return (f"Grid(theta=({a.low}, {a.high}, {a.cells}), "
                f"h=({b.low}, {b.high}, {b.cells}){per})")
