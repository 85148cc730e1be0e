"""Initial densities on a grid: Gaussians, uniform, histograms of samples, normalisation.

Every density is normalised to unit mass with the grid's quadrature,
``(f * grid.weights).sum() == 1``, and holds what the grid's scheme evolves:

* on a grid of cells (``nodes="cells"``, the finite-volume scheme) the cell averages
  f_i = |C_i|⁻¹ ∫_{C_i} f;
* on a spectral grid (``nodes="spectral"``: Chebyshev nodes in θ, uniform nodes in h) the
  point values f(x_i) at the nodes.
"""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np

from ._validate import density_array
from .grid import Grid

_GL_POINTS = 4  # Gauss–Legendre points per cell and axis for cell averages


def normalize(f: Any, grid: Grid) -> np.ndarray:
    """Return ``f / mass``: a copy with unit mass on the grid, after checking it is a density."""
    arr = density_array("f", f, grid.shape)
    return arr / grid.mass(arr)


def _split(grid: Grid, coords: list[np.ndarray]) -> tuple[Any, Any]:
    """Per-axis coordinate arrays as the model's callables take them: (θ, h), each an array
    with one axis of its kind, or a tuple of arrays with several."""
    d = grid.ndim_theta
    th = coords[0] if d == 1 else tuple(coords[:d])
    hh = coords[d] if grid.ndim_h == 1 else tuple(coords[d:])
    return th, hh


def _cell_points(axis) -> tuple[np.ndarray, np.ndarray]:
    """Gauss–Legendre points inside every cell, shape (cells, p), and weights summing to 1."""
    x, w = np.polynomial.legendre.leggauss(_GL_POINTS)
    return axis.centres[:, None] + 0.5 * axis.width * x[None, :], 0.5 * w


def cell_average(grid: Grid, fn, *, exact_cells: bool = True) -> np.ndarray:
    """Cell averages of a vectorised ``fn(theta, h)`` on a grid of cells, by 4-point
    Gauss–Legendre quadrature per cell and axis (with three axes ``fn`` is called once per
    quadrature point of a cell, on arrays of the grid's shape, so memory stays that of one
    density).

    With ``exact_cells=False`` the values at the nodes are returned instead.
    """
    if not exact_cells:
        return np.asarray(fn(*grid.mesh()), dtype=float)
    if grid.nodes != "cells":
        raise ValueError("cell averages need a grid of cells (nodes='cells'); a spectral grid "
                         "holds point values: pass exact_cells=False")
    rules = [_cell_points(a) for a in grid.axes]
    if len(rules) == 2:   # one call on (n_theta, n_h, p, p): cheap in memory for two axes
        (tn, tw), (hn, hw) = rules
        vals = fn(tn[:, None, :, None], hn[None, :, None, :])
        return np.einsum("ijab,a,b->ij", np.asarray(vals, dtype=float), tw, hw)
    out = np.zeros(grid.shape)
    for idx in itertools.product(range(_GL_POINTS), repeat=len(rules)):
        coords = np.meshgrid(*[p[:, k] for (p, _), k in zip(rules, idx)], indexing="ij")
        weight = np.prod([w[k] for (_, w), k in zip(rules, idx)])
        out += weight * np.asarray(fn(*_split(grid, coords)), dtype=float)
    return out


def gaussian(grid: Grid, mean: Any, cov: Any, *, cell_averages: bool | None = None
             ) -> np.ndarray:
    """Normalised Gaussian density N(mean, cov) on the grid, truncated to its box.

    The density is (2π)^{-d/2} det(C)^{-1/2} exp(−½ (x − μ)ᵀ C⁻¹ (x − μ)) in the grid's
    coordinates x = (θ…, h…), divided by its mass on the box.

    Parameters
    ----------
    mean:
        μ, one number per axis of the grid, θ-axes first: ``(θ_mean, h_mean)`` for the usual
        grid, ``(θ, h1, h2)`` on a grid with two h-axes.
    cov:
        C, a symmetric positive-definite ``ndim × ndim`` matrix, or ``ndim`` variances for an
        uncorrelated Gaussian.
    cell_averages:
        None (default): what the grid's scheme evolves, cell averages (4-point Gauss–Legendre
        per cell and axis) on a grid of cells, point values at the nodes on a spectral grid.
        True: cell averages (grids of cells only). False: point values at the nodes.
    """
    d = len(grid.axes)
    mu = np.asarray(mean, dtype=float)
    if mu.shape != (d,) or not np.all(np.isfinite(mu)):
        names = ", ".join(f"{a.name}_mean" for a in grid.axes)
        raise ValueError(f"mean must be {d} finite numbers ({names}), one per axis of the "
                         f"grid, got {mean!r}")
    c = np.asarray(cov, dtype=float)
    if c.shape == (d,):
        c = np.diag(c)
    if c.shape != (d, d) or not np.all(np.isfinite(c)):
        raise ValueError(f"cov must be a finite {d}x{d} matrix (or {d} variances), one row "
                         f"per axis of the grid, got {cov!r}")
    if not np.allclose(c, c.T, rtol=1e-12, atol=0):
        raise ValueError(f"cov must be symmetric, got {c.tolist()}")
    if np.linalg.eigvalsh(c).min() <= 0:
        raise ValueError(f"cov must be positive definite, got eigenvalues "
                         f"{np.linalg.eigvalsh(c).tolist()}")
    if cell_averages is None:
        cell_averages = grid.nodes == "cells"
    elif cell_averages and grid.nodes != "cells":
        raise ValueError("cell_averages=True needs a grid of cells (nodes='cells'); a spectral "
                         "grid holds point values at its nodes: leave cell_averages=None")
    prec = np.linalg.inv(c)

    def density(th, hh):
        xs = ([*th] if isinstance(th, tuple) else [th]) + ([*hh] if isinstance(hh, tuple)
                                                           else [hh])
        q = sum(prec[i, j] * (xs[i] - mu[i]) * (xs[j] - mu[j])
                for i in range(d) for j in range(d))
        return np.exp(-0.5 * q)

    f = cell_average(grid, density, exact_cells=bool(cell_averages))
    if grid.mass(f) <= 0:
        raise ValueError(f"the Gaussian N(mean={mu.tolist()}, cov={c.tolist()}) has no mass "
                         f"on the grid's box {grid!r}; move the mean inside the box")
    return f / grid.mass(f)


def uniform(grid: Grid) -> np.ndarray:
    """The uniform density on the grid's box."""
    f = np.ones(grid.shape)
    return f / grid.mass(f)


def _sample_columns(name: str, values: Any, k: int) -> np.ndarray:
    arr = np.asarray(values, dtype=float)
    if k == 1 and arr.ndim == 1:
        return arr[:, None]
    if arr.ndim != 2 or arr.shape[1] != k:
        raise ValueError(f"{name} must have {k} columns (samples × {name}-axes) on this grid, "
                         f"got an array of shape {arr.shape}")
    return arr


def from_samples(grid: Grid, theta: Any, h: Any) -> np.ndarray:
    """Histogram density of samples (θ_i, h_i) on the grid's cells (samples outside are dropped).

    ``theta`` and ``h`` hold one row per sample: shape (N,) for one axis of that kind, (N, k)
    for k axes. The density of a cell is its count divided by N times the cell's size (the
    cells of a spectral grid run between the midpoints of neighbouring nodes), then
    normalised to unit mass with the grid's quadrature.
    """
    th = _sample_columns("theta", theta, grid.ndim_theta)
    hh = _sample_columns("h", h, grid.ndim_h)
    if th.shape[0] != hh.shape[0]:
        raise ValueError(f"theta and h must have the same number of samples, got "
                         f"{th.shape[0]} and {hh.shape[0]}")
    edges = [a.edges for a in grid.axes]
    counts, _ = np.histogramdd(np.hstack([th, hh]), bins=edges)
    if counts.sum() == 0:
        raise ValueError("no sample lies inside the grid's box")
    sizes = np.diff(edges[0])
    for e in edges[1:]:
        sizes = np.multiply.outer(sizes, np.diff(e))
    f = counts / sizes
    return f / grid.mass(f)
