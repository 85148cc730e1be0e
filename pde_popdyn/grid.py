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


def _axis_specs(name: str, spec) -> list:
    """``(low, high, cells)`` or a list of such triples (several axes)."""
    if isinstance(spec, (list, tuple)) and spec and all(
            isinstance(s, (list, tuple)) for s in spec):
        return [as_axis_spec(f"{name}[{i}]", s) for i, s in enumerate(spec)]
    return [as_axis_spec(name, spec)]


class Grid:
    """Tensor-product grid over θ-axes and h-axes (one of each, or up to 3 axes in all).

    Parameters
    ----------
    theta, h:
        ``(low, high, cells)`` for each axis, or a list of such triples for several axes:
        ``theta=[(-3, 3, 48), (-3, 3, 48)]`` gives θ ∈ R², ``h=[(…), (…)]`` gives h ∈ R².
        ``cells`` ≥ 3; at most 3 axes in all.
    periodic:
        Names of the periodic axes, e.g. ``("theta",)`` for θ on a circle (the loss and fitness
        must then be periodic) or ``("h",)`` for periodic mutation in h; with several axes of a
        kind, ``"h"`` makes all of them periodic and ``"h1"``, ``"h2"`` (or ``"theta1"``, …)
        single ones. Other axes have zero flux in θ and reflecting boundaries in h.
    nodes:
        ``"cells"`` (default): uniform cells, for ``scheme="fv"`` (and Fourier on periodic θ).
        ``"spectral"``: Chebyshev–Gauss–Lobatto nodes in a bounded θ (``theta[2]`` nodes,
        Clenshaw–Curtis weights), for ``scheme="spectral"``; h stays uniform (DCT/FFT nodes).
        On any grid ``(f * grid.weights).sum()`` is the mass.

    Notes
    -----
    Densities have shape ``(*theta_cells, *h_cells)``: θ-axes first, then h-axes. With one axis
    of each kind, ``grid.theta``/``grid.h`` are 1-D arrays of nodes; with several, tuples of
    them (one per axis), and the model's callables receive tuples of mesh arrays (see
    :class:`pde_popdyn.Model`).

    Examples
    --------
    >>> grid = Grid(theta=(-3.0, 3.0, 128), h=(-2.0, 2.0, 64))
    >>> grid.shape
    (128, 64)
    """

    def __init__(self, theta, h, periodic: tuple[str, ...] | list[str] = (),
                 nodes: str = "cells"):
        if isinstance(periodic, str):
            periodic = (periodic,)
        periodic = tuple(periodic)
        tspecs, hspecs = _axis_specs("theta", theta), _axis_specs("h", h)
        if len(tspecs) + len(hspecs) > 3:
            raise ValueError(f"a grid has at most 3 axes in all; got {len(tspecs)} theta-axes "
                             f"and {len(hspecs)} h-axes")
        tnames = ["theta"] if len(tspecs) == 1 else [f"theta{i + 1}" for i in range(len(tspecs))]
        hnames = ["h"] if len(hspecs) == 1 else [f"h{i + 1}" for i in range(len(hspecs))]
        known = {"theta", "h", *tnames, *hnames}
        unknown = [p for p in periodic if p not in known]
        if unknown:
            raise ValueError(f"periodic={periodic!r} names unknown axes {unknown}; use "
                             f"'theta' and/or 'h' (or {sorted(known - {'theta', 'h'})})")
        if nodes not in ("cells", "spectral"):
            raise ValueError(f"nodes={nodes!r} is not known; use 'cells' (finite volumes) or "
                             f"'spectral' (Chebyshev nodes in theta)")
        if nodes == "spectral" and len(tspecs) > 1:
            raise ValueError("nodes='spectral' is available for one theta-axis; use "
                             "nodes='cells' (scheme='fv') for several")
        self.nodes = nodes

        def per(name: str, kind: str) -> bool:
            return name in periodic or kind in periodic

        self.theta_axes = tuple(
            Axis(n, *s, per(n, "theta"),
                 "chebyshev" if nodes == "spectral" and not per(n, "theta") else "cells")
            for n, s in zip(tnames, tspecs))
        self.h_axes = tuple(Axis(n, *s, per(n, "h")) for n, s in zip(hnames, hspecs))

    # -- axes --------------------------------------------------------------------------
    @property
    def axes(self) -> tuple[Axis, ...]:
        return self.theta_axes + self.h_axes

    @property
    def ndim_theta(self) -> int:
        return len(self.theta_axes)

    @property
    def ndim_h(self) -> int:
        return len(self.h_axes)

    def _single(self, kind: str) -> Axis:
        axes = self.theta_axes if kind == "theta" else self.h_axes
        if len(axes) != 1:
            raise ValueError(f"this grid has {len(axes)} {kind}-axes; use grid.{kind}_axes")
        return axes[0]

    @property
    def theta_axis(self) -> Axis:
        """The θ-axis of a grid with one θ-axis."""
        return self._single("theta")

    @property
    def h_axis(self) -> Axis:
        """The h-axis of a grid with one h-axis."""
        return self._single("h")

    # -- coordinates -------------------------------------------------------------------
    @staticmethod
    def _pick(axes, attr: str):
        vals = tuple(getattr(a, attr) for a in axes)
        return vals[0] if len(vals) == 1 else vals

    @property
    def theta(self):
        """θ nodes (cell centres, or Chebyshev points): shape ``(n_theta,)``, or a tuple."""
        return self._pick(self.theta_axes, "centres")

    @property
    def h(self):
        """h cell centres: shape ``(n_h,)``, or a tuple of them for several h-axes."""
        return self._pick(self.h_axes, "centres")

    @property
    def theta_edges(self):
        return self._pick(self.theta_axes, "edges")

    @property
    def h_edges(self):
        return self._pick(self.h_axes, "edges")

    @property
    def dtheta(self):
        return self._pick(self.theta_axes, "width")

    @property
    def dh(self):
        return self._pick(self.h_axes, "width")

    @property
    def theta_shape(self) -> tuple[int, ...]:
        return tuple(a.cells for a in self.theta_axes)

    @property
    def h_shape(self) -> tuple[int, ...]:
        return tuple(a.cells for a in self.h_axes)

    @property
    def shape(self) -> tuple[int, ...]:
        return self.theta_shape + self.h_shape

    @property
    def n_theta(self) -> int:
        return int(np.prod(self.theta_shape))

    @property
    def n_h(self) -> int:
        return int(np.prod(self.h_shape))

    @property
    def theta_weights(self) -> np.ndarray:
        """Quadrature weights over the θ-axes, shape ``theta_shape``."""
        return _outer([a.weights for a in self.theta_axes])

    @property
    def h_weights(self) -> np.ndarray:
        """Quadrature weights over the h-axes, shape ``h_shape``."""
        return _outer([a.weights for a in self.h_axes])

    @property
    def weights(self) -> np.ndarray:
        """Quadrature weights of the grid's shape: the mass is ``(f * weights).sum()``."""
        return _outer([a.weights for a in self.axes])

    def mesh(self):
        """(Θ, H) mesh arrays of the grid's shape (``indexing="ij"``); with several axes of a
        kind, that entry is a tuple of arrays, one per axis."""
        arrays = np.meshgrid(*[a.centres for a in self.axes], indexing="ij")
        d = self.ndim_theta
        th = arrays[0] if d == 1 else tuple(arrays[:d])
        hh = arrays[d] if self.ndim_h == 1 else tuple(arrays[d:])
        return th, hh

    def h_mesh(self):
        """h mesh arrays of shape ``h_shape`` (a tuple for several h-axes); ``grid.h`` if one."""
        if self.ndim_h == 1:
            return self.h
        return tuple(np.meshgrid(*[a.centres for a in self.h_axes], indexing="ij"))

    def _coords(self) -> list[np.ndarray]:
        """Every axis' node coordinate broadcast to the grid's shape (θ-axes, then h-axes)."""
        return list(np.meshgrid(*[a.centres for a in self.axes], indexing="ij"))

    # -- integrals of densities --------------------------------------------------------
    def _sum_axes(self, k: int) -> tuple[int, ...]:
        return tuple(range(-k, 0))

    def mass(self, f: np.ndarray) -> np.ndarray:
        """∫ f over every axis (the last ``ndim`` axes, so a stack of densities works too)."""
        return self.integrate(f, 1.0)

    def marginal(self, f: np.ndarray, axis: AxisName = "h") -> np.ndarray:
        """Marginal density: ``axis="h"`` gives ρ(h) = ∫ f dθ; ``axis="theta"`` gives ∫ f dh."""
        f = np.asarray(f)
        nd = len(self.shape)
        if axis == "h":
            w = self.theta_weights
            return (f * w.reshape(w.shape + (1,) * self.ndim_h)).sum(
                axis=tuple(range(f.ndim - nd, f.ndim - self.ndim_h)))
        if axis == "theta":
            return (f * self.h_weights).sum(axis=self._sum_axes(self.ndim_h))
        raise ValueError(f"axis={axis!r} is not an axis of this grid; use 'theta' or 'h'")

    def mean(self, f: np.ndarray) -> np.ndarray:
        """Means of (θ…, h…) under f (normalised by its mass); shape ``(..., ndim)``.
        For one axis of each kind this is (E θ, E h)."""
        f = np.asarray(f)
        m = self.mass(f)
        return np.stack([self.integrate(f, x) / m for x in self._coords()], axis=-1)

    def cov(self, f: np.ndarray) -> np.ndarray:
        """Covariance matrix of (θ…, h…) under f; shape ``(..., ndim, ndim)``.

        Moments of cell averages are taken at cell centres; this is second-order accurate
        (the midpoint rule) and adds no Sheppard correction.
        """
        f = np.asarray(f)
        m = self.mass(f)
        mu = self.mean(f)
        nd = len(self.shape)
        dev = [x - mu[..., i].reshape(mu.shape[:-1] + (1,) * nd)
               for i, x in enumerate(self._coords())]
        rows = [np.stack([self.integrate(f, dev[i] * dev[j]) / m for j in range(nd)], -1)
                for i in range(nd)]
        return np.stack(rows, -2)

    def integrate(self, f: np.ndarray, g=1.0) -> np.ndarray:
        """∫ g f over every axis, for a field g broadcastable to the grid's shape."""
        return (np.asarray(f) * g * self.weights).sum(axis=self._sum_axes(len(self.shape)))

    def histogram(self, theta: np.ndarray, h: np.ndarray) -> np.ndarray:
        """The histogram density of points (θ_i, h_i) on the grid's cells (one θ- and one
        h-axis): counts per cell over N times the cell weights, so the mass is the fraction of
        points inside the box."""
        if self.ndim_theta != 1 or self.ndim_h != 1:
            raise ValueError("histograms on a grid need one theta-axis and one h-axis")
        theta, h = np.asarray(theta, dtype=float), np.asarray(h, dtype=float)
        if theta.ndim != 1 or h.ndim != 1:
            raise ValueError("histograms on the grid need 1-D θ and h (one value per point)")
        counts, _, _ = np.histogram2d(theta, h, bins=[self.theta_edges, self.h_edges])
        return counts / theta.size / self.weights

    # -- misc ----------------------------------------------------------------------------
    @property
    def periodic(self) -> tuple[str, ...]:
        return tuple(a.name for a in self.axes if a.periodic)

    def to_dict(self) -> dict:
        def spec(axes):
            out = [[a.low, a.high, a.cells] for a in axes]
            return out[0] if len(out) == 1 else out
        return {"theta": spec(self.theta_axes), "h": spec(self.h_axes),
                "periodic": list(self.periodic), "nodes": self.nodes}

    @classmethod
    def from_dict(cls, d: dict) -> "Grid":
        def spec(v):
            return [tuple(x) for x in v] if v and isinstance(v[0], (list, tuple)) else tuple(v)
        return cls(theta=spec(d["theta"]), h=spec(d["h"]),
                   periodic=tuple(d.get("periodic", ())), nodes=d.get("nodes", "cells"))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Grid) and self.to_dict() == other.to_dict()

    def __hash__(self) -> int:
        return hash(str(self.to_dict()))

    def __repr__(self) -> str:
        def spec(axes):
            parts = [f"({a.low}, {a.high}, {a.cells})" for a in axes]
            return parts[0] if len(parts) == 1 else "[" + ", ".join(parts) + "]"
        extra = f", periodic={self.periodic}" if self.periodic else ""
        extra += f", nodes={self.nodes!r}" if self.nodes != "cells" else ""
        return f"Grid(theta={spec(self.theta_axes)}, h={spec(self.h_axes)}{extra})"


def _outer(vectors: list[np.ndarray]) -> np.ndarray:
    out = vectors[0]
    for v in vectors[1:]:
        out = np.multiply.outer(out, v)
    return out
