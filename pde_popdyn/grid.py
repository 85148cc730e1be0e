"""Tensor grids over the parameter axis θ and the hyperparameter axis h.

A density on a :class:`Grid` is an array ``f`` of shape ``(n_theta, n_h)``: cell averages on a
finite-volume grid, nodal values on a spectral one, normalised so that
``(f * grid.weights).sum() == 1``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from ._validate import as_axis_spec

AxisName = Literal["theta", "h"]


def chebyshev_nodes(n: int) -> np.ndarray:
    """Chebyshev–Gauss–Lobatto points on [−1, 1] in increasing order (n points)."""
    return -np.cos(np.pi * np.arange(n) / (n - 1))


def clenshaw_curtis_weights(n: int) -> np.ndarray:
    """Clenshaw–Curtis quadrature weights on [−1, 1] for the n Chebyshev–Gauss–Lobatto points
    (exact for polynomials of degree ≤ n − 1)."""
    N = n - 1
    theta = np.pi * np.arange(n) / N
    w = np.zeros(n)
    v = np.ones(N - 1)
    interior = theta[1:-1]
    if N % 2 == 0:
        w[0] = w[-1] = 1.0 / (N ** 2 - 1)
        for k in range(1, N // 2):
            v -= 2 * np.cos(2 * k * interior) / (4 * k * k - 1)
        v -= np.cos(N * interior) / (N ** 2 - 1)
    else:
        w[0] = w[-1] = 1.0 / N ** 2
        for k in range(1, (N - 1) // 2 + 1):
            v -= 2 * np.cos(2 * k * interior) / (4 * k * k - 1)
    w[1:-1] = 2 * v / N
    return w


@dataclass(frozen=True)
class Axis:
    """One axis on ``[low, high]`` with ``cells`` nodes.

    ``nodes="cells"``: uniform cell centres, each carrying the width Δ = (high − low)/cells (the
    finite-volume axis; also the Fourier axis when periodic). ``nodes="chebyshev"``:
    Chebyshev–Gauss–Lobatto points including both ends, with Clenshaw–Curtis weights (the
    spectral axis for bounded θ).
    """

    name: str
    low: float
    high: float
    cells: int
    periodic: bool = False
    nodes: str = "cells"

    @property
    def uniform(self) -> bool:
        return self.nodes == "cells"

    @property
    def width(self) -> float:
        """Cell width Δ = (high − low) / cells (uniform axes only)."""
        if not self.uniform:
            raise ValueError(f"the {self.name}-axis has Chebyshev nodes, which have no single "
                             f"width; use grid.weights (or grid.{self.name}_weights)")
        return (self.high - self.low) / self.cells

    @property
    def centres(self) -> np.ndarray:
        """The nodes: cell centres, or Chebyshev points."""
        if self.uniform:
            return self.low + (np.arange(self.cells) + 0.5) * self.width
        return self.low + 0.5 * (chebyshev_nodes(self.cells) + 1) * self.length

    @property
    def edges(self) -> np.ndarray:
        """Cell faces (for Chebyshev nodes: the ends and the midpoints between nodes)."""
        if self.uniform:
            return np.linspace(self.low, self.high, self.cells + 1)
        c = self.centres
        return np.concatenate([[self.low], 0.5 * (c[1:] + c[:-1]), [self.high]])

    @property
    def weights(self) -> np.ndarray:
        """Quadrature weights of the nodes (∫ g ≈ Σ w_i g_i)."""
        if self.uniform:
            return np.full(self.cells, self.width)
        return 0.5 * self.length * clenshaw_curtis_weights(self.cells)

    @property
    def length(self) -> float:
        return self.high - self.low


class Grid:
    """Tensor-product grid over θ ∈ [θ_lo, θ_hi] and h ∈ [h_lo, h_hi].

    Parameters
    ----------
    theta, h:
        ``(low, high, cells)`` for each axis. ``cells`` ≥ 3.
    periodic:
        Names of the periodic axes, e.g. ``("theta",)`` for θ on a circle (the loss and fitness
        must then be periodic) or ``("h",)`` for periodic mutation in h. Other axes have zero
        flux in θ and reflecting boundaries in h.
    nodes:
        ``"cells"`` (default): uniform cells, for ``scheme="fv"`` (and Fourier on periodic θ).
        ``"spectral"``: Chebyshev–Gauss–Lobatto nodes in a bounded θ (``theta[2]`` nodes,
        Clenshaw–Curtis weights), for ``scheme="spectral"``; h stays uniform (DCT/FFT nodes).
        On any grid ``(f * grid.weights).sum()`` is the mass.

    Examples
    --------
    >>> grid = Grid(theta=(-3.0, 3.0, 128), h=(-2.0, 2.0, 64))
    >>> grid.shape
    (128, 64)
    """

    def __init__(self, theta: tuple[float, float, int], h: tuple[float, float, int],
                 periodic: tuple[str, ...] | list[str] = (), nodes: str = "cells"):
        if isinstance(periodic, str):
            periodic = (periodic,)
        unknown = [p for p in periodic if p not in ("theta", "h")]
        if unknown:
            raise ValueError(f"periodic={tuple(periodic)!r} names unknown axes {unknown}; use "
                             f"'theta' and/or 'h'")
        if nodes not in ("cells", "spectral"):
            raise ValueError(f"nodes={nodes!r} is not known; use 'cells' (finite volumes) or "
                             f"'spectral' (Chebyshev nodes in theta)")
        tnodes = "chebyshev" if nodes == "spectral" and "theta" not in periodic else "cells"
        self.nodes = nodes
        self.theta_axis = Axis("theta", *as_axis_spec("theta", theta), "theta" in periodic,
                               tnodes)
        self.h_axis = Axis("h", *as_axis_spec("h", h), "h" in periodic)

    # -- coordinates -------------------------------------------------------------------
    @property
    def theta(self) -> np.ndarray:
        """θ nodes (cell centres, or Chebyshev points), shape ``(n_theta,)``."""
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
    def theta_weights(self) -> np.ndarray:
        return self.theta_axis.weights

    @property
    def h_weights(self) -> np.ndarray:
        return self.h_axis.weights

    @property
    def weights(self) -> np.ndarray:
        """Quadrature weights of shape ``(n_theta, n_h)``: the mass is ``(f * weights).sum()``."""
        return np.outer(self.theta_weights, self.h_weights)

    def mesh(self) -> tuple[np.ndarray, np.ndarray]:
        """Θ and H arrays of shape ``(n_theta, n_h)`` (``indexing="ij"``)."""
        return np.meshgrid(self.theta, self.h, indexing="ij")

    # -- integrals of densities --------------------------------------------------------
    def mass(self, f: np.ndarray) -> np.ndarray:
        """∫∫ f dθ dh, over the last two axes (so a stack of densities works too)."""
        return self.integrate(f, 1.0)

    def marginal(self, f: np.ndarray, axis: AxisName = "h") -> np.ndarray:
        """Marginal density: ``axis="h"`` gives ρ(h) = ∫ f dθ; ``axis="theta"`` gives ∫ f dh."""
        f = np.asarray(f)
        if axis == "h":
            return np.einsum("...ij,i->...j", f, self.theta_weights)
        if axis == "theta":
            return np.einsum("...ij,j->...i", f, self.h_weights)
        raise ValueError(f"axis={axis!r} is not an axis of this grid; use 'theta' or 'h'")

    def mean(self, f: np.ndarray) -> np.ndarray:
        """(E θ, E h) under f (normalised by its mass); shape ``(..., 2)``."""
        f = np.asarray(f)
        m = self.mass(f)
        et = (self.marginal(f, "theta") * self.theta * self.theta_weights).sum(-1) / m
        eh = (self.marginal(f, "h") * self.h * self.h_weights).sum(-1) / m
        return np.stack([et, eh], axis=-1)

    def cov(self, f: np.ndarray) -> np.ndarray:
        """Covariance matrix of (θ, h) under f; shape ``(..., 2, 2)``.

        Moments of cell averages are taken at cell centres; this is second-order accurate
        (the midpoint rule) and adds no Sheppard correction.
        """
        f = np.asarray(f)
        m = self.mass(f)
        mu = self.mean(f)
        dt = self.theta[:, None] - mu[..., 0, None, None]
        dh = self.h[None, :] - mu[..., 1, None, None]
        c_tt = self.integrate(f, dt * dt) / m
        c_th = self.integrate(f, dt * dh) / m
        c_hh = self.integrate(f, dh * dh) / m
        return np.stack([np.stack([c_tt, c_th], -1), np.stack([c_th, c_hh], -1)], -2)

    def integrate(self, f: np.ndarray, g=1.0) -> np.ndarray:
        """∫∫ g f dθ dh for a field g broadcastable to the grid's shape."""
        return (np.asarray(f) * g * self.weights).sum(axis=(-2, -1))

    # -- misc ----------------------------------------------------------------------------
    @property
    def periodic(self) -> tuple[str, ...]:
        return tuple(a.name for a in (self.theta_axis, self.h_axis) if a.periodic)

    def to_dict(self) -> dict:
        a, b = self.theta_axis, self.h_axis
        return {"theta": [a.low, a.high, a.cells], "h": [b.low, b.high, b.cells],
                "periodic": list(self.periodic), "nodes": self.nodes}

    @classmethod
    def from_dict(cls, d: dict) -> "Grid":
        return cls(theta=tuple(d["theta"]), h=tuple(d["h"]),
                   periodic=tuple(d.get("periodic", ())), nodes=d.get("nodes", "cells"))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Grid) and self.to_dict() == other.to_dict()

    def __hash__(self) -> int:
        return hash(str(self.to_dict()))

    def __repr__(self) -> str:
        a, b = self.theta_axis, self.h_axis
        per = f", periodic={self.periodic}" if self.periodic else ""
        per += f", nodes={self.nodes!r}" if self.nodes != "cells" else ""
        return (f"Grid(theta=({a.low}, {a.high}, {a.cells}), "
                f"h=({b.low}, {b.high}, {b.cells}){per})")
