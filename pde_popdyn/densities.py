"""Initial densities on a grid: Gaussians, uniform, histograms of samples, normalisation.

All densities are cell averages normalised to unit mass on the grid's box:
``(f * grid.weights).sum() == 1``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ._validate import density_array
from .grid import Grid

_GL_POINTS = 4  # Gauss–Legendre points per cell and axis for cell averages


def normalize(f: Any, grid: Grid) -> np.ndarray:
    """Return ``f / mass``: a copy with unit mass on the grid, after checking it is a density."""
    arr = density_array("f", f, grid.shape)
    return arr / grid.mass(arr)


def _cell_nodes(axis) -> tuple[np.ndarray, np.ndarray]:
    """Gauss–Legendre nodes inside every cell, shape (cells, p), and weights summing to 1."""
    x, w = np.polynomial.legendre.leggauss(_GL_POINTS)
    nodes = axis.centres[:, None] + 0.5 * axis.width * x[None, :]
    return nodes, 0.5 * w


def cell_average(grid: Grid, fn, *, exact_cells: bool = True) -> np.ndarray:
    """Cell averages of a vectorised ``fn(theta, h)``, by 4×4-point Gauss–Legendre per cell.

    With ``exact_cells=False`` the midpoint value is returned instead.
    """
    if not exact_cells:
        th, hh = grid.mesh()
        return np.asarray(fn(th, hh), dtype=float)
    tn, tw = _cell_nodes(grid.theta_axis)
    hn, hw = _cell_nodes(grid.h_axis)
    vals = fn(tn[:, None, :, None], hn[None, :, None, :])   # (nθ, nh, p, p)
    return np.einsum("ijab,a,b->ij", np.asarray(vals, dtype=float), tw, hw)


def gaussian(grid: Grid, mean: Any, cov: Any, *, cell_averages: bool = True) -> np.ndarray:
    """Normalised Gaussian density N(mean, cov) on the grid, truncated to its box.

    Parameters
    ----------
    mean:
        ``(θ_mean, h_mean)``.
    cov:
        2×2 symmetric positive-definite covariance of (θ, h), or a pair of variances for an
        uncorrelated Gaussian.
    cell_averages:
        True (default): exact-to-quadrature cell averages, so that the density matches what the
        finite-volume scheme evolves. False: point values at the cell centres.
    """
    mu = np.asarray(mean, dtype=float)
    if mu.shape != (2,) or not np.all(np.isfinite(mu)):
        raise ValueError(f"mean must be two finite numbers (theta_mean, h_mean), got {mean!r}")
    c = np.asarray(cov, dtype=float)
    if c.shape == (2,):
        c = np.diag(c)
    if c.shape != (2, 2) or not np.all(np.isfinite(c)):
        raise ValueError(f"cov must be a finite 2x2 matrix (or two variances), got {cov!r}")
    if not np.allclose(c, c.T, rtol=1e-12, atol=0):
        raise ValueError(f"cov must be symmetric, got {c.tolist()}")
    if np.linalg.eigvalsh(c).min() <= 0:
        raise ValueError(f"cov must be positive definite, got eigenvalues "
                         f"{np.linalg.eigvalsh(c).tolist()}")
    prec = np.linalg.inv(c)

    def logpdf(th, hh):
        d0, d1 = th - mu[0], hh - mu[1]
        return -0.5 * (prec[0, 0] * d0 * d0 + 2 * prec[0, 1] * d0 * d1 + prec[1, 1] * d1 * d1)

    f = cell_average(grid, lambda th, hh: np.exp(logpdf(th, hh)), exact_cells=cell_averages)
    if grid.mass(f) <= 0:
        raise ValueError(f"the Gaussian N(mean={mu.tolist()}, cov={c.tolist()}) has no mass "
                         f"on the grid's box {grid!r}; move the mean inside the box")
    return f / grid.mass(f)


def uniform(grid: Grid) -> np.ndarray:
    """The uniform density on the grid's box."""
    f = np.ones(grid.shape)
    return f / grid.mass(f)


def from_samples(grid: Grid, theta: Any, h: Any) -> np.ndarray:
    """Histogram density of samples (θ_i, h_i) on the grid's cells (samples outside are dropped)."""
    theta = np.asarray(theta, dtype=float).ravel()
    h = np.asarray(h, dtype=float).ravel()
    if theta.shape != h.shape:
        raise ValueError(f"theta and h must have the same number of samples, got "
                         f"{theta.size} and {h.size}")
    counts, _, _ = np.histogram2d(theta, h, bins=[grid.theta_edges, grid.h_edges])
    if counts.sum() == 0:
        raise ValueError("no sample lies inside the grid's box")
    return counts / grid.mass(counts)
