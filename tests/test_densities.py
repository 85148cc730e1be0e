"""Initial densities on every kind of grid (issue 10: pp.gaussian on a spectral grid)."""

import numpy as np
import pytest

import pde_popdyn as pp


def normal_pdf(points, mean, cov):
    """The normal density N(mean, cov) at the stacked points (..., d)."""
    d = np.asarray(points) - np.asarray(mean)
    P = np.linalg.inv(cov)
    q = np.einsum("...i,ij,...j->...", d, P, d)
    return np.exp(-0.5 * q) / np.sqrt((2 * np.pi) ** len(mean) * np.linalg.det(cov))


def test_gaussian_on_the_spectral_grid_is_the_density_at_the_nodes():
    """The grid the README recommends for scheme='spectral' holds point values at Chebyshev (θ)
    × uniform (h) nodes: the Gaussian there is the normal density at the nodes, normalised by
    the grid's Clenshaw–Curtis × midpoint quadrature."""
    g = pp.Grid(theta=(-3, 3, 48), h=(-2, 2, 32), nodes="spectral")
    mean, cov = (0.3, -0.2), np.array([[0.1, 0.03], [0.03, 0.08]])
    f = pp.gaussian(g, mean, cov)
    assert f.shape == g.shape
    assert g.mass(f) == pytest.approx(1.0, abs=1e-14)
    th, hh = g.mesh()
    exact = normal_pdf(np.stack([th, hh], -1), mean, cov)
    # the tails outside the box are < 1e-12 of the mass, so normalising changes nothing visible
    np.testing.assert_allclose(f, exact, rtol=0, atol=1e-10 * exact.max())
    np.testing.assert_allclose(g.mean(f), mean, atol=1e-10)  # no cell-averaging offset here
    with pytest.raises(ValueError, match="cell_averages=True needs a grid of cells"):
        pp.gaussian(g, mean, cov, cell_averages=True)


def test_gaussian_on_a_spectral_grid_runs_with_the_spectral_scheme():
    prob_model = pp.Model(loss=lambda th, h: 0.5 * (th - h) ** 2,
                          fitness=lambda th, h: -(th - 0.5) ** 2, temperature=0.1, eps=0.1,
                          selection=pp.Replicator(1.0), mutation=pp.Diffusion(0.02))
    g = pp.Grid(theta=(-3, 3, 32), h=(-2, 2, 16), nodes="spectral")
    sol = pp.solve(prob_model, g, pp.gaussian(g, (0.0, -0.5), [0.05, 0.05]), 0.2, 0.05,
                   scheme="spectral", progress=False)
    assert np.all(np.isfinite(sol.f)) and abs(sol.mass[-1] - 1) < 1e-12


def test_gaussian_on_grids_with_three_axes():
    """Mean and covariance over every axis (θ-axes first, then h-axes); cell averages add
    Δ²/12 to each variance (the midpoint rule of the moments), nothing to the covariances."""
    mean = (0.1, -0.3, 0.2)
    cov = np.array([[0.08, 0.01, 0.0], [0.01, 0.06, 0.02], [0.0, 0.02, 0.07]])
    for g in (pp.Grid(theta=(-2, 2, 40), h=[(-2, 2, 36), (-2, 2, 32)]),
              pp.Grid(theta=[(-2, 2, 40), (-2, 2, 36)], h=(-2, 2, 32))):
        f = pp.gaussian(g, mean, cov)
        assert f.shape == g.shape and g.mass(f) == pytest.approx(1.0, abs=1e-13)
        np.testing.assert_allclose(g.mean(f), mean, atol=1e-8)
        widths = np.array([a.width for a in g.axes])
        np.testing.assert_allclose(g.cov(f), cov + np.diag(widths ** 2 / 12), atol=1e-8)
    with pytest.raises(ValueError, match="mean must be 3 finite numbers"):
        pp.gaussian(g, (0.0, 0.0), cov)
    with pytest.raises(ValueError, match="cov must be a finite 3x3 matrix"):
        pp.gaussian(g, mean, [[0.1, 0.0], [0.0, 0.1]])


def test_from_samples_on_a_spectral_grid_divides_by_the_cell_sizes():
    """A histogram density is counts / (N · cell size); on Chebyshev nodes the cells (between
    the midpoints of neighbouring nodes) are unequal, so dividing by the quadrature weights
    instead would bias it. Uniform samples must give a flat density."""
    g = pp.Grid(theta=(-1, 1, 12), h=(0, 1, 5), nodes="spectral")
    rng = np.random.default_rng(1)
    n = 400_000
    f = pp.from_samples(g, rng.uniform(-1, 1, n), rng.uniform(0, 1, n))
    assert g.mass(f) == pytest.approx(1.0, abs=1e-12)
    # a flat density 1/2 on the box, up to sampling noise (≥ 5000 samples a cell: ~1.5 %)
    np.testing.assert_allclose(f, 0.5, rtol=0.08)
    th, h = rng.normal(0, 0.3, (2, 1000))
    g2 = pp.Grid(theta=[(-1, 1, 8), (-1, 1, 8)], h=(-1, 1, 4))
    f2 = pp.from_samples(g2, np.stack([th, h], 1), rng.uniform(-1, 1, 1000))
    assert f2.shape == g2.shape and g2.mass(f2) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="theta must have 2 columns"):
        pp.from_samples(g2, th, h)
