"""The unsplit exact integrator (integrator='uniformisation')."""

import numpy as np
import pytest

import pde_popdyn as pp
from pde_popdyn.presets import GaussianProblem
from pde_popdyn.fast.uniformisation import poisson_weights

PROB = GaussianProblem(eps=0.1, kappa=1.0, D=0.02, mean0=(-0.3, -0.4),
                       cov0=[[0.05, 0.02], [0.02, 0.06]])


def test_exact_in_time_and_at_the_spatial_floor():
    """The state at t = 1 does not depend on how many saves the run makes, equals the Δt → 0
    limit of Strang splitting, and its error is the spatial error alone."""
    grid = PROB.grid(64, 48)
    model, f0 = PROB.model(), PROB.initial(grid)
    one = pp.solve(model, grid, f0, 1.0, 1.0, integrator="uniformisation", progress=False)
    many = pp.solve(model, grid, f0, 1.0, 0.05, integrator="uniformisation", progress=False)
    np.testing.assert_allclose(one.f[-1], many.f[-1], rtol=1e-11, atol=1e-14)
    strang = [pp.solve(model, grid, f0, 1.0, dt, progress=False).f[-1] for dt in (0.02, 0.01)]
    d = [np.abs(s - one.f[-1]).sum() / one.f[-1].sum() for s in strang]
    assert 3.5 < d[0] / d[1] < 4.5          # Strang converges (order 2) to the exact step
    assert one.f.min() >= 0 and np.abs(many.mass - 1).max() < 1e-13
    ex = PROB.exact_density(grid, 1.0)
    err = np.abs(one.f[-1] - ex).sum() / ex.sum()
    fine = PROB.grid(128, 96)
    ex_fine = PROB.exact_density(fine, 1.0)
    err_fine = np.abs(pp.solve(model, fine, PROB.initial(fine), 1.0, 1.0, integrator="uniformisation",
                               progress=False).f[-1] - ex_fine).sum() / ex_fine.sum()
    assert 3.5 < err / err_fine < 4.5          # the remaining error is O(Δθ², Δh²)


def test_exact_keeps_the_gibbs_state_and_handles_periodic_axes():
    grid = pp.Grid(theta=(-np.pi, np.pi, 32), h=(-1, 1, 8), periodic=("theta", "h"))
    model = pp.Model(loss=lambda th, h: -np.cos(th - h) + 0.2 * np.cos(2 * th),
                     temperature=lambda h: 0.5 + 0.2 * h, eps=0.3)
    th, hh = grid.mesh()
    g = np.exp((np.cos(th - hh) - 0.2 * np.cos(2 * th)) / (0.5 + 0.2 * hh))
    g /= grid.mass(g)
    sol = pp.solve(model, grid, g, 0.5, 0.25, integrator="uniformisation", progress=False)
    assert np.abs(sol.f - g).max() / g.max() < 1e-13


def test_exact_refuses_what_it_cannot_do():
    grid = PROB.grid(32, 16)
    f0 = PROB.initial(grid)
    stiff = GaussianProblem(eps=1e-6).model()
    with pytest.raises(ValueError, match="use the default integrator='ap', which is asymptotic"):
        pp.solve(stiff, grid, f0, 1.0, 0.1, integrator="uniformisation")
    jump = pp.Model(loss=lambda t, h: 0.5 * (t - h) ** 2, fitness=lambda t, h: -t * t,
                    selection=pp.BoltzmannJump(1.0, 1.0), eps=0.1)
    with pytest.raises(ValueError, match="needs selection=pp.Replicator"):
        pp.solve(jump, grid, f0, 1.0, 0.1, integrator="uniformisation")


def test_poisson_weights_tail():
    for lam in (0.0, 0.3, 20.0, 3000.0):
        w = poisson_weights(lam)
        assert w.sum() == pytest.approx(1.0, abs=1e-15)
        assert np.all(w >= 0)
        mean = (np.arange(w.size) * w).sum()
        assert mean == pytest.approx(lam, abs=1e-9 * max(lam, 1))


def test_compiled_and_numpy_series_agree(monkeypatch):
    """The fused numba series and the numpy fallback run the same arithmetic."""
    import pde_popdyn._kernels as kernels
    grid = pp.Grid(theta=(-3, 3, 40), h=(-2, 2, 24), periodic=("h",))
    model, f0 = PROB.model(), PROB.initial(grid)
    compiled = pp.solve(model, grid, f0, 0.3, 0.3, integrator="uniformisation", progress=False).f[-1]
    monkeypatch.setattr(kernels, "HAVE_NUMBA", False)
    plain = pp.solve(model, grid, f0, 0.3, 0.3, integrator="uniformisation", progress=False).f[-1]
    np.testing.assert_allclose(compiled, plain, rtol=1e-12, atol=1e-15)
    assert compiled.min() >= 0
