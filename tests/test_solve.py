"""Acceptance tests of the joint solver against closed forms (issue: core solver)."""

import numpy as np
import pytest

import pde_popdyn as pp
from pde_popdyn.presets import GaussianProblem

# Two parameter sets: uncorrelated data, and correlated data with a cross term in the fitness
# and an h-dependent loss minimiser θ*(h) = a h + b.
PROBLEMS = {
    "uncorrelated": GaussianProblem(eps=0.1, kappa=1.0, D=0.02, mean0=(-0.3, -0.4),
                                    cov0=[[0.05, 0.0], [0.0, 0.06]]),
    "correlated": GaussianProblem(eps=0.2, K=1.5, a=0.8, b=0.1, T=0.08, kappa=0.7, D=0.03,
                                  Q=[[2.0, 0.5], [0.5, 1.0]], zstar=(0.4, 0.3),
                                  mean0=(-0.2, -0.5), cov0=[[0.06, 0.025], [0.025, 0.05]]),
}
T_FINAL = 0.5


def rel_l1(a, b):
    return np.abs(a - b).sum() / np.abs(b).sum()


def gaussian_error(prob, n, dt=0.005, splitting="strang"):
    grid = prob.grid(n, n)
    sol = pp.solve(prob.model(), grid, prob.initial(grid), T_FINAL, dt, splitting=splitting,
                   progress=False)
    return rel_l1(sol.f[-1], prob.exact_density(grid, T_FINAL)), sol


@pytest.mark.parametrize("name", list(PROBLEMS))
def test_gaussian_accuracy_and_spatial_order(name):
    prob = PROBLEMS[name]
    e64, _ = gaussian_error(prob, 64)
    e128, sol = gaussian_error(prob, 128)
    assert e128 <= 5e-3, f"relative L1 error {e128:.3e} on 128^2"
    order = np.log2(e64 / e128)
    assert order >= 1.8, f"observed spatial order {order:.3f} (errors {e64:.3e}, {e128:.3e})"
    # the moments agree with the moment ODEs too
    mu, S = prob.exact(sol.t)
    assert np.abs(sol.mean - mu).max() < 5e-3
    assert np.abs(sol.cov - S).max() < 5e-3


@pytest.mark.parametrize("splitting,expected", [("strang", 2.0), ("lie", 1.0)])
def test_time_order(splitting, expected):
    """Errors against a fine-Δt reference on the same grid, so the spatial error cancels."""
    prob = PROBLEMS["correlated"]
    grid = prob.grid(40, 40)
    model, f0 = prob.model(), prob.initial(grid)
    ref = pp.solve(model, grid, f0, 0.4, 0.4 / 256, splitting=splitting, progress=False).f[-1]
    errs = np.array([rel_l1(pp.solve(model, grid, f0, 0.4, 0.4 / n, splitting=splitting,
                                     progress=False).f[-1], ref) for n in (4, 8, 16, 32)])
    slope = np.polyfit(np.log([0.1, 0.05, 0.025, 0.0125]), np.log(errs), 1)[0]
    assert abs(slope - expected) < 0.15, f"observed order {slope:.3f}, errors {errs}"


def _work(sol):
    return sum(s["work_per_cell"] for s in sol.info["fast_step"].values())


def test_small_eps_same_step_reduced_limit():
    """ε = 1e-5 with the Δt of ε = 0.1: no more work, positive, mass-exact, reduced limit."""
    base = dict(kappa=1.0, D=0.02, mean0=(-0.3, -0.4), cov0=[[0.05, 0.0], [0.0, 0.06]])
    dt, tf = 0.01, 1.0
    sols = {}
    for eps in (0.1, 1e-5):
        prob = GaussianProblem(eps=eps, **base)
        grid = prob.grid(128, 64)
        sols[eps] = pp.solve(prob.model(), grid, prob.initial(grid), tf, dt, progress=False)
    small = sols[1e-5]
    assert small.info["dt"] == sols[0.1].info["dt"]
    # the cost of a step is set by the fast step's work; ε = 1e-5 must not need more
    assert _work(small) <= 1.5 * _work(sols[0.1])
    assert np.abs(small.mass - 1).max() < 1e-12
    assert small.f.min() >= 0.0
    m, v = GaussianProblem(eps=1e-5, **base).reduced(small.t)
    assert np.abs(small.mean_h - m).max() < 2e-3
    assert np.abs(small.var_h - v).max() < 1e-3
    # and the fast variable sits on the Gibbs state: E[θ | h] = h, Var(θ | h) = T/K
    assert np.abs(small.mean_theta[-1] - small.mean_h[-1]) < 1e-3


def test_gibbs_state_stationary_double_well():
    """Selection and mutation off: the discrete Gibbs state of a double well with T(h), m(h)
    is a fixed point of the scheme, to round-off, for moderate and stiff Δt/ε."""
    grid = pp.Grid(theta=(-2.5, 2.5, 96), h=(0.0, 1.0, 24))
    for eps in (1.0, 1e-2, 1e-6):
        model = pp.Model(loss=lambda th, h: (th ** 2 - 1) ** 2 + 0.3 * h * th,
                         temperature=lambda h: 0.2 + 0.3 * h, mobility=lambda h: 1 + h ** 2,
                         eps=eps)
        th, hh = grid.mesh()
        T = 0.2 + 0.3 * hh
        logpi = -((th ** 2 - 1) ** 2 + 0.3 * hh * th) / T
        gibbs = np.exp(logpi - logpi.max(axis=0))
        gibbs /= gibbs.sum(axis=0) * grid.dtheta          # each column a density in θ
        rho = 1.0 + np.sin(np.pi * grid.h)                # any h-marginal stays put
        f0 = gibbs * rho[None, :]
        f0 /= grid.mass(f0)
        sol = pp.solve(model, grid, f0, 1.0, 0.05, progress=False)
        drift = np.abs(sol.f - f0).max() / f0.max()
        assert drift < 1e-13, f"eps={eps}: Gibbs state moved by {drift:.2e}"


def test_positivity_and_mass_from_rough_data():
    """Uniform data far from equilibrium, strong selection, tiny ε: f ≥ 0 and mass exact."""
    prob = GaussianProblem(eps=1e-3, kappa=5.0, D=0.05)
    grid = prob.grid(64, 32)
    sol = pp.solve(prob.model(), grid, pp.uniform(grid), 1.0, 0.05, progress=False)
    assert sol.f.min() >= 0.0
    assert np.abs(sol.mass - 1).max() < 1e-12


def test_solution_diagnostics_shapes():
    prob = PROBLEMS["uncorrelated"]
    grid = prob.grid(32, 16)
    sol = pp.solve(prob.model(), grid, prob.initial(grid), 0.2, 0.01, save_every=5,
                   progress=False)
    assert sol.f.shape == (5, 32, 16) and sol.t.shape == (5,)
    np.testing.assert_allclose(sol.t, [0, 0.05, 0.1, 0.15, 0.2])
    assert sol.rho.shape == (5, 16)
    np.testing.assert_allclose(sol.rho.sum(1) * grid.dh, 1.0, rtol=1e-13)
    moments = sol.moments()
    assert set(moments) >= {"mass", "mean_h", "var_h", "mean_fitness"}
    assert all(v.shape == (5,) for v in moments.values())
    th, hh = grid.mesh()
    F = prob.model().fitness(th, hh)
    direct = (sol.f[-1] * F).sum() * grid.dtheta * grid.dh
    assert moments["mean_fitness"][-1] == pytest.approx(direct, rel=1e-12)


def test_t_final_zero_returns_initial_state():
    prob = PROBLEMS["uncorrelated"]
    grid = prob.grid(16, 8)
    f0 = prob.initial(grid)
    sol = pp.solve(prob.model(), grid, f0, 0.0, 0.1, progress=False)
    assert sol.f.shape == (1, 16, 8)
    np.testing.assert_allclose(sol.f[0], f0, rtol=1e-14)
