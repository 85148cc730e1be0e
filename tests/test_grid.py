import numpy as np
import pytest

import pde_popdyn as pp


def test_grid_geometry_and_moments():
    g = pp.Grid(theta=(-3.0, 3.0, 120), h=(-2.0, 2.0, 80))
    assert g.shape == (120, 80)
    assert g.dtheta == pytest.approx(0.05) and g.dh == pytest.approx(0.05)
    np.testing.assert_allclose(g.theta_edges[[0, -1]], [-3, 3])
    np.testing.assert_allclose(np.diff(g.theta), g.dtheta)
    assert g.weights.shape == g.shape and g.weights.sum() == pytest.approx(24.0)
    f = pp.gaussian(g, mean=(0.3, -0.2), cov=[[0.1, 0.03], [0.03, 0.08]])
    assert (f * g.weights).sum() == pytest.approx(1.0, abs=1e-14)
    np.testing.assert_allclose(g.mean(f), [0.3, -0.2], atol=1e-6)
    # the midpoint rule on cell averages adds Δ²/12 to each variance
    np.testing.assert_allclose(g.cov(f), [[0.1 + g.dtheta ** 2 / 12, 0.03],
                                          [0.03, 0.08 + g.dh ** 2 / 12]], atol=1e-6)
    rho = g.marginal(f, "h")
    assert rho.shape == (80,) and rho.sum() * g.dh == pytest.approx(1.0)
    with pytest.raises(ValueError, match="axis"):
        g.marginal(f, "x")


@pytest.mark.parametrize("kwargs,match", [
    (dict(theta=(3.0, -3.0, 10), h=(0, 1, 10)), "high > low"),
    (dict(theta=(-3.0, 3.0, 2), h=(0, 1, 10)), "at least 3 cells"),
    (dict(theta=(-3.0, 3.0, 10.5), h=(0, 1, 10)), "integer"),
    (dict(theta=(-3.0, np.nan, 10), h=(0, 1, 10)), "finite"),
    (dict(theta=(-3.0, 3.0), h=(0, 1, 10)), "theta must be a tuple"),
])
def test_grid_bad_input(kwargs, match):
    with pytest.raises((ValueError, TypeError), match=match):
        pp.Grid(**kwargs)


def test_densities_helpers():
    g = pp.Grid(theta=(-1, 1, 10), h=(0, 1, 5))
    u = pp.uniform(g)
    assert (u * g.weights).sum() == pytest.approx(1.0)
    n = pp.normalize(3 * u, g)
    np.testing.assert_allclose(n, u)
    rng = np.random.default_rng(0)
    s = pp.from_samples(g, rng.uniform(-1, 1, 1000), rng.uniform(0, 1, 1000))
    assert (s * g.weights).sum() == pytest.approx(1.0)
    with pytest.raises(ValueError, match="positive definite"):
        pp.gaussian(g, (0, 0.5), [[1, 2], [2, 1]])
    with pytest.raises(ValueError, match="mean"):
        pp.gaussian(g, (0, np.nan), [0.1, 0.1])
    with pytest.raises(ValueError, match="no mass"):
        pp.gaussian(g, (50, 0.5), [1e-4, 1e-4])
