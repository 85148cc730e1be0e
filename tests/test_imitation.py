"""The replicator copying h only (proportional imitation of hyperparameters): its kinetic
gain–loss term on the joint grid, its reduced equation and its agents."""

import numpy as np
import pytest

import pde_popdyn as pp
from pde_popdyn.slow.imitation import ImitationStep


def _model(eps=0.1, copy="h"):
    return pp.Model(loss=lambda th, h: 0.5 * (th - h) ** 2,
                    fitness=lambda th, h: -(th - 0.5) ** 2 - 0.3 * h ** 2, temperature=0.3,
                    eps=eps, selection=pp.Replicator(1.0, copy=copy),
                    mutation=pp.Diffusion(0.02), quadratic=(1.0, lambda h: h))


def test_kinetic_term_equals_the_pairwise_gain_and_loss():
    """d f/dt of the step at τ → 0 against the double sum over pairs written out."""
    grid = pp.Grid(theta=(-3, 3, 10), h=(-2, 2, 7))
    th, hh = grid.mesh()
    F = -(th - 0.5) ** 2 - 0.3 * hh ** 2
    f = pp.gaussian(grid, (-0.5, -0.5), [[0.3, 0.1], [0.1, 0.2]])
    tau = 1e-7
    rate = (ImitationStep(F, 1.0, grid)(f, tau) - f) / tau
    p = f * grid.weights
    nt, nh = grid.shape
    loss = p * np.array([[(p * np.maximum(F - F[i, j], 0)).sum() for j in range(nh)]
                         for i in range(nt)])
    # an agent at (θ_i, h') copying a donor (θ'', h_j) lands at (θ_i, h_j)
    gain = np.einsum("ik,lj,ljik->ij", p, p,
                     np.maximum(F[:, :, None, None] - F[None, None, :, :], 0)
                     .transpose(0, 1, 2, 3))
    np.testing.assert_allclose(rate, (gain - loss) / grid.weights, atol=1e-5 * np.abs(rate).max())


def test_mass_positivity_and_second_order_in_time():
    grid = pp.Grid(theta=(-3, 3, 32), h=(-2, 2, 24))
    f0 = pp.gaussian(grid, (-0.5, -0.5), [[0.3, 0.1], [0.1, 0.2]])
    means = []
    for dt in (0.04, 0.02, 0.01):
        sol = pp.solve(_model(), grid, f0, 1.0, dt, progress=False)
        assert np.abs(sol.mass - 1).max() < 1e-13 and sol.f.min() >= 0
        means.append(sol.mean_h[-1])
    d = np.abs(np.diff(means))
    assert 3.3 < d[0] / d[1] < 4.7, means
    # copying h only is a different joint dynamics than copying (θ, h) ...
    both = pp.solve(_model(copy="both"), grid, f0, 1.0, 0.01, progress=False)
    assert abs(both.mean_h[-1] - means[-1]) > 1e-3
    # ... with the same reduced equation: the joint gaps to it shrink together as ε → 0
    red = pp.solve_reduced(_model(), grid, grid.marginal(f0, "h"), 1.0, 0.01, progress=False)
    red_both = pp.solve_reduced(_model(copy="both"), grid, grid.marginal(f0, "h"), 1.0, 0.01,
                                progress=False)
    np.testing.assert_array_equal(red.f, red_both.f)


def test_agents_imitate_h_as_the_pde_says():
    grid = pp.Grid(theta=(-3, 3, 48), h=(-2, 2, 32))
    f0 = pp.gaussian(grid, (-0.5, -0.5), [[0.3, 0.1], [0.1, 0.2]])
    pde = pp.solve(_model(), grid, f0, 1.0, 0.01, progress=False)
    means = [pp.simulate_particles(_model(), 20_000, f0, 1.0, 0.01, grid=grid, seed=s,
                                   replicator="pairwise", progress=False,
                                   save_every=1000).mean_h[-1] for s in range(4)]
    se = np.std(means, ddof=1) / 2
    assert abs(np.mean(means) - pde.mean_h[-1]) < 5 * se + 3e-3


def test_copy_h_needs_pairwise_agents():
    grid = pp.Grid(theta=(-3, 3, 16), h=(-2, 2, 8))
    with pytest.raises(ValueError, match="replicator='pairwise'"):
        pp.simulate_particles(_model(), 100, pp.uniform(grid), 0.1, 0.05, grid=grid,
                              progress=False)
