"""Diagnostics along joint and reduced runs (issue 4, item 4)."""

import numpy as np
import pytest

import pde_popdyn as pp
from pde_popdyn import diagnostics as dg
from pde_popdyn.gibbs import gibbs
from pde_popdyn.presets import GaussianProblem
from pde_popdyn.reduced import solve_reduced

# F̄(h) = h − T·0 (the fitness depends on h only): the optimum is the upper edge of the h-box,
# so the population presses against the reflecting boundary and the boundary term matters.
EDGE_MODEL = pp.Model(loss=lambda th, h: 0.5 * (th - h) ** 2, fitness=lambda th, h: 0.0 * th + h,
                      temperature=0.05, selection=pp.Replicator(1.0), mutation=pp.Diffusion(0.05))
EDGE_GRID = pp.Grid(theta=(-4, 4, 64), h=(-1, 1, 100))


def test_price_identity_with_the_boundary_term_reduced():
    rho0 = np.exp(-(EDGE_GRID.h - 0.5) ** 2 / (2 * 0.05))
    late = {}
    for dt in (0.01, 0.005):
        sol = solve_reduced(EDGE_MODEL, EDGE_GRID, rho0, 1.0, dt, save_every=1, progress=False)
        pr = sol.price_residual
        t = pr["t"]
        # the selection term is κ Cov(h, F̄) and the boundary term −D(ρ_M − ρ_1) is large here
        np.testing.assert_allclose(pr["selection"], sol.cov_h_fitness, rtol=1e-12, atol=0)
        assert np.abs(pr["boundary"]).max() > 0.05
        # the data violate the Neumann condition at t = 0: an initial layer, then O(Δt²)
        late[dt] = np.abs(pr["residual"][t > 0.3]).max()
        assert np.abs(pr["dmean_dt"] - pr["selection"])[t > 0.3].max() > 1e4 * late[dt]
    assert late[0.01] < 2e-6
    assert 3.0 < late[0.01] / late[0.005] < 5.0          # second order in Δt


def test_price_identity_joint_run():
    prob = GaussianProblem(eps=0.1, kappa=1.0, D=0.02, mean0=(-0.3, -0.4),
                           cov0=[[0.05, 0.0], [0.0, 0.06]])
    grid = prob.grid(40, 40)
    res = []
    for dt in (0.02, 0.01):
        sol = pp.solve(prob.model(), grid, prob.initial(grid), 0.4, dt, save_every=1,
                       progress=False)
        pr = sol.price_residual
        assert np.abs(pr["selection"]).max() > 0.05
        res.append(np.abs(pr["residual"][1:-1]).max())
    assert res[1] < 2e-4 and 3.0 < res[0] / res[1] < 5.0


def test_price_identity_jump_rule():
    model = pp.Model(loss=EDGE_MODEL.loss, fitness=lambda th, h: -(th - 0.3) ** 2,
                     temperature=0.05, selection=pp.BoltzmannJump(2.0, 3.0),
                     mutation=pp.GaussianJump(0.1))
    rho0 = np.exp(-(EDGE_GRID.h + 0.3) ** 2 / (2 * 0.05))
    res = []
    for dt in (0.01, 0.005):
        sol = solve_reduced(model, EDGE_GRID, rho0, 1.0, dt, save_every=1, progress=False)
        pr = sol.price_residual
        assert np.abs(pr["selection"]).max() > 0.05 and not pr["boundary"].any()
        res.append(np.abs(pr["residual"][1:-1]).max())
    assert res[1] < 2e-5 and 3.0 < res[0] / res[1] < 5.0


def test_moments_covariance_and_distance_to_optimum():
    """For Gaussian ρ = N(m, v) and F̄ = −(g/2)(h − ĥ)²: Cov(h, F̄) = −g v (m − ĥ)."""
    prob = GaussianProblem(kappa=2.0, D=0.02, h_box=(-3.0, 3.0), theta_box=(-5.0, 5.0))
    grid = prob.grid(32, 256)
    g, hhat = prob.effective_fitness_coeffs()
    m0, v0 = -0.8, 0.03
    rho0 = np.exp(-(grid.h - m0) ** 2 / (2 * v0))
    sol = solve_reduced(prob.model(), grid, rho0, 0.5, 0.01, progress=False, scheme="spectral")
    m, v = dg.h_moments(sol)
    np.testing.assert_allclose(m, sol.mean_h)
    assert abs(m[0] - m0) < 1e-13 and abs(v[0] - v0) < 1e-13
    assert abs(sol.cov_h_fitness[0] - (-g * v0 * (m0 - hhat))) < 1e-12
    assert abs(dg.argmax_fitness(sol.effective_fitness, grid.h) - hhat) < 1e-12
    np.testing.assert_allclose(sol.distance_to_optimum, np.abs(sol.mean_h - hhat), atol=1e-12)
    np.testing.assert_allclose(sol.mean_effective_fitness, sol.mean_fitness)
    d = sol.diagnostics()
    assert {"mean_h", "var_h", "mean_effective_fitness", "cov_h_fitness",
            "distance_to_optimum", "price_residual"} <= set(d)
    assert "slow_manifold_distance" not in d
    with pytest.raises(ValueError, match="joint"):
        sol.slow_manifold_distance


def test_slow_manifold_distance_is_order_eps():
    """Well-prepared data f₀ = ρ₀ π_h: zero distance at t = 0, then O(ε) (with Δt = ε/10, so
    that the splitting resolves the fast relaxation)."""
    dist = {}
    for eps in (1e-2, 1e-3):
        prob = GaussianProblem(eps=eps, kappa=1.0, D=0.02, mean0=(-0.3, -0.4))
        grid = prob.grid(48, 32)
        model = prob.model()
        rho0 = np.exp(-(grid.h + 0.4) ** 2 / (2 * 0.06))
        f0 = gibbs(model, grid) * rho0[None, :]
        sol = pp.solve(model, grid, f0, 25 * eps, eps / 10, progress=False)
        sm = sol.slow_manifold_distance
        assert sm[0] < 1e-14
        dist[eps] = sm[-1]
        d = sol.diagnostics()
        assert {"slow_manifold_distance", "mean_fitness", "price_residual"} <= set(d)
        # ⟨F⟩_f and ⟨F̄⟩_ρ agree up to the same O(ε)
        assert abs(d["mean_fitness"][-1] - d["mean_effective_fitness"][-1]) < 50 * eps
    slope = np.log10(dist[1e-2] / dist[1e-3])
    assert abs(slope - 1) < 0.15, f"slow-manifold distance {dist}"


@pytest.mark.parametrize("scheme", ["fv", "spectral"])
def test_price_identity_periodic_h(scheme):
    """Periodic h (von Mises landscape): the boundary term of the wrapped mean is large and
    the residual is O(Δt²) for both Laplacians."""
    grid = pp.Grid(theta=(-np.pi, np.pi, 32), h=(-np.pi, np.pi, 64), periodic=("theta", "h"))
    model = pp.Model(loss=lambda th, h: -np.cos(th - h), fitness=lambda th, h: np.cos(th - 0.4),
                     temperature=0.3, selection=pp.Replicator(1.0), mutation=pp.Diffusion(0.05))
    rho0 = np.exp(np.cos(grid.h + 2))
    res = []
    for dt in (0.02, 0.01):
        sol = solve_reduced(model, grid, rho0, 3.0, dt, scheme=scheme, progress=False,
                            save_every=1)
        pr = sol.price_residual
        assert np.abs(pr["boundary"]).max() > 0.05
        res.append(np.abs(pr["residual"][1:-1]).max())
    assert res[1] < 3e-6 and 3.0 < res[0] / res[1] < 5.0


# -- grids with two h-axes (issue 10) ---------------------------------------------------------
def _F1(th, h1):
    return -(th - 0.3) ** 2 - 0.5 * np.sin(h1)


def _F2(h2):
    return np.cos(2 * h2)


@pytest.fixture(scope="module")
def product_runs():
    """F = F1(θ, h1) + F2(h2), L = L(θ, h1), f₀ = f₂(θ, h1) ρ(h2): the 3-D solution is the
    2-D one times an h2-density, so every h1-diagnostic of the 3-D run equals the 2-D one."""
    common = dict(temperature=0.1, eps=0.05, selection=pp.Replicator(1.5),
                  mutation=pp.Diffusion(0.02))
    m3 = pp.Model(loss=lambda th, h: 0.5 * (th - h[0]) ** 2,
                  fitness=lambda th, h: _F1(th, h[0]) + _F2(h[1]), **common)
    m2 = pp.Model(loss=lambda th, h: 0.5 * (th - h) ** 2, fitness=_F1, **common)
    g3 = pp.Grid(theta=(-3, 3, 24), h=[(-1.5, 1.5, 16), (-1, 1, 12)])
    g2 = pp.Grid(theta=(-3, 3, 24), h=(-1.5, 1.5, 16))
    f2 = pp.gaussian(g2, (0.0, -0.5), [0.2, 0.1])
    h2 = g3.h[1]
    r = np.exp(-((h2 - 0.3) ** 2) / 0.1)
    r /= r.sum() * g3.h_axes[1].width
    f3 = f2[:, :, None] * r[None, None, :]
    sol3 = pp.solve(m3, g3, f3, 0.5, 0.025, save_every=1, progress=False)
    sol2 = pp.solve(m2, g2, f2, 0.5, 0.025, save_every=1, progress=False)
    return sol3, sol2


def test_diagnostics_with_two_h_axes(product_runs):
    sol3, sol2 = product_runs
    d3, d2 = sol3.diagnostics(), sol2.diagnostics()
    n = len(sol3.t)
    for key in ("mean_h", "var_h", "cov_h_fitness", "price_residual"):
        assert d3[key].shape == (n, 2), key
    for key in ("mean_effective_fitness", "distance_to_optimum", "slow_manifold_distance",
                "mean_fitness"):
        assert d3[key].shape == (n,), key
    np.testing.assert_allclose(d3["mean_h"], sol3.mean_h, rtol=0, atol=1e-14)
    np.testing.assert_allclose(d3["var_h"], sol3.var_h, rtol=0, atol=1e-14)
    # the h1-part is the 2-D run's
    for key in ("mean_h", "var_h", "price_residual"):
        np.testing.assert_allclose(d3[key][:, 0], d2[key], rtol=0, atol=1e-10, err_msg=key)
    np.testing.assert_allclose(d3["slow_manifold_distance"], d2["slow_manifold_distance"],
                               rtol=1e-9, atol=1e-14)
    # the Price identity holds along h2 too (selection on F2 moves E[h2]): O(Δt²) residual
    pr = sol3.price_residual
    assert np.abs(pr["selection"][:, 1]).max() > 0.05
    assert np.abs(pr["residual"][1:-1, 1]).max() < 2e-2 * np.abs(pr["dmean_dt"][:, 1]).max()
    # F̄(h1, h2) = F̄1(h1) + F2(h2), F̄1 with the discrete Gibbs state of the θ-cells
    fbar = sol3.effective_fitness
    g3 = sol3.grid
    h1, h2 = g3.h
    th = g3.theta[:, None]
    pi = np.exp(-0.5 * (th - h1[None, :]) ** 2 / 0.1)
    pi /= pi.sum(0)
    expected = (pi * _F1(th, h1[None, :])).sum(0)[:, None] + _F2(h2)[None, :]
    assert fbar.shape == g3.h_shape
    np.testing.assert_allclose(fbar, expected, rtol=0, atol=1e-12)
    # and close to the continuum F̄ of the 2-D run (quadrature on the box)
    np.testing.assert_allclose(fbar[:, 0] - _F2(h2[0]), sol2.effective_fitness, atol=2e-3)
    # h* = argmax F̄ on the 2-D h-grid, refined along each axis
    hstar = dg.argmax_fitness(fbar, g3.h)
    assert len(hstar) == 2
    np.testing.assert_allclose(d3["distance_to_optimum"],
                               np.hypot(*(sol3.mean_h - np.asarray(hstar)).T), atol=1e-14)
