"""pp.compare: distances between a particle Ensemble and a grid Solution."""

import numpy as np
import pytest

import pde_popdyn as pp
from pde_popdyn.compare import _cdf_w1, compare
from pde_popdyn.particles import Ensemble, sample_density


def _w1_by_quantiles(x, edges, mass, m=2_000_000):
    """Reference: W1 = ∫₀¹ |F_N⁻¹(u) − G⁻¹(u)| du on a fine u-grid."""
    u = (np.arange(m) + 0.5) / m
    G = np.concatenate([[0.0], np.cumsum(mass)])
    q = np.interp(u, G / G[-1], edges)
    xs = np.sort(x)
    return np.abs(xs[np.minimum((u * x.size).astype(int), x.size - 1)] - q).mean()


def test_w1_is_exact():
    rng = np.random.default_rng(0)
    edges = np.linspace(-1, 1, 11)
    mass = rng.random(10)
    mass /= mass.sum()
    for x in (rng.normal(0, 0.4, 300), rng.uniform(-2, 2, 1000), np.array([0.05])):
        assert _cdf_w1(x, edges, mass) == pytest.approx(_w1_by_quantiles(x, edges, mass),
                                                        rel=1e-5, abs=1e-7)
    # a point mass at x0 against a uniform cell density on [0, 1]: ∫|1{x≥x0} − x| dx
    x0 = 0.3
    assert _cdf_w1(np.array([x0]), np.array([0.0, 1.0]), np.array([1.0])) == \
        pytest.approx(x0 ** 2 / 2 + (1 - x0) ** 2 / 2, rel=1e-12)


def _ensemble_from(sol: pp.Solution, n: int, seed: int) -> Ensemble:
    """Agents sampled exactly from the piecewise-constant densities of a solution."""
    rng = np.random.default_rng(seed)
    th, hh = zip(*(sample_density(sol.grid, f, n, rng) for f in sol.f))
    return Ensemble(t=sol.t.copy(), theta=np.stack(th), h=np.stack(hh), model=sol.model)


@pytest.fixture(scope="module")
def solution():
    grid = pp.Grid(theta=(-2, 2, 24), h=(-1.5, 1.5, 20))
    model = pp.Model(lambda th, h: 0.5 * (th - h) ** 2, lambda th, h: -(th - 0.5) ** 2,
                     temperature=0.1, eps=0.1, selection=pp.Replicator(2.0),
                     mutation=pp.Diffusion(0.02))
    f0 = pp.gaussian(grid, (-0.3, -0.4), [[0.05, 0.01], [0.01, 0.06]])
    return pp.solve(model, grid, f0, 0.5, 0.05, save_every=5)


def test_compare_against_exact_samples(solution):
    n = 200_000
    ens = _ensemble_from(solution, n, 1)
    c = compare(ens, solution, sheppard="piecewise")
    assert c["t"].size == 3
    for q in ("mean_theta", "mean_h", "var_theta", "var_h"):
        assert np.all(np.abs(c[f"{q}_error"]) < 5 * c[f"se_{q}"]), q
    assert np.all(np.abs(c["cov_theta_h_error"]) < 5 * np.sqrt(0.1 * 0.1 / n))
    # exact samples: W1 and the histogram L1 are pure sampling noise, O(N^{-1/2})
    assert np.all(c["w1_h"] < 3 / np.sqrt(n))
    assert np.all(c["l1_h"] < 3 * np.sqrt(20 / n))
    assert np.all(c["l1_joint"] < 3 * np.sqrt(480 / n))
    # the piecewise-constant density's variance exceeds the smooth one's by Δ²/6
    s = compare(ens, solution)
    dh = solution.grid.dh
    np.testing.assert_allclose(s["var_h_error"] - c["var_h_error"], dh ** 2 / 6, rtol=1e-9)
    raw = compare(ens, solution, sheppard="none")
    np.testing.assert_allclose(raw["var_h_pde"], solution.var_h, rtol=1e-12)
    np.testing.assert_allclose(raw["mean_theta_pde"], solution.mean_theta, rtol=1e-12)


def test_w1_and_l1_fall_like_inverse_square_root(solution):
    ns = [1000, 10_000, 100_000]
    w = [np.mean([compare(_ensemble_from(solution, n, s), solution)["w1_h"][-1]
                  for s in range(6)]) for n in ns]
    slope = np.polyfit(np.log(ns), np.log(w), 1)[0]
    assert -0.65 < slope < -0.35


def test_compare_reduced_solution_and_outside_mass(solution):
    grid = solution.grid
    rho = solution.rho                                   # (n_saved, n_h)
    red = pp.Solution(t=solution.t, f=rho, grid=grid)
    ens = _ensemble_from(solution, 5000, 2)
    c = compare(ens, red, sheppard="piecewise")
    assert "mean_theta_error" not in c and "l1_joint" not in c
    full = compare(ens, solution, sheppard="piecewise")
    np.testing.assert_allclose(c["mean_h_error"], full["mean_h_error"], rtol=1e-10)
    np.testing.assert_allclose(c["w1_h"], full["w1_h"], rtol=1e-10)
    # agents outside the box count fully in the L1 distance
    h = ens.h.copy()
    h[:, :500] = 10.0
    moved = Ensemble(t=ens.t, theta=ens.theta, h=h)
    c2 = compare(moved, red)
    assert np.all(c2["l1_h"] >= 0.1 - 1e-12)


def test_compare_matches_times_and_rejects_bad_input(solution):
    ens = _ensemble_from(solution, 100, 3)
    part = Ensemble(t=np.array([0.25, 0.3]), theta=ens.theta[1:], h=ens.h[1:])
    assert compare(part, solution)["t"].tolist() == [0.25]
    none = Ensemble(t=np.array([0.3]), theta=ens.theta[:1], h=ens.h[:1])
    with pytest.raises(ValueError, match="no saved time"):
        compare(none, solution)
    with pytest.raises(TypeError, match="pp.Ensemble"):
        compare(solution, solution)
    with pytest.raises(TypeError, match="pp.Solution"):
        compare(ens, ens)
    with pytest.raises(ValueError, match="sheppard"):
        compare(ens, solution, sheppard="yes")


def test_compare_a_real_run(solution):
    """End to end: agents evolved from the smooth initial Gaussian track pp.solve."""
    n = 50_000
    z = np.random.default_rng(4).multivariate_normal((-0.3, -0.4), [[0.05, 0.01],
                                                                     [0.01, 0.06]], n)
    ens = pp.simulate_particles(solution.model, n, (z[:, 0], z[:, 1]), 0.5, 0.05, seed=5,
                                save_every=5, grid=solution.grid, gradient="central",
                                fast="euler", substeps=20)
    c = compare(ens, solution)
    # EM with 20 sub-steps and a coarse grid: agreement to a few per cent of a std
    assert np.all(np.abs(c["mean_h_error"]) < 0.02)
    assert np.all(np.abs(c["mean_theta_error"]) < 0.02)
    assert np.all(c["w1_h"] < 0.02)
