"""Grids with two h-axes: θ ∈ R, h ∈ R² (a 3-D grid)."""

import numpy as np
import pytest

import pde_popdyn as pp
from pde_popdyn.exact import gaussian_moments
from pde_popdyn.rules import Diffusion, Replicator

# linear-Gaussian problem in z = (θ, h1, h2): L = K/2 (θ − a1 h1 − a2 h2)², quadratic F
K, A1, A2, T, EPS, KAPPA, D = 1.0, 0.7, 0.4, 0.08, 0.2, 0.8, 0.03
Q = np.array([[2.0, 0.3, 0.0], [0.3, 1.0, 0.2], [0.0, 0.2, 0.5]])
ZS = np.array([0.4, 0.2, -0.3])
MU0 = np.array([-0.2, -0.4, 0.3])
S0 = np.array([[0.06, 0.01, 0.0], [0.01, 0.05, 0.01], [0.0, 0.01, 0.06]])


def fitness3(th, h):
    z = [th - ZS[0], h[0] - ZS[1], h[1] - ZS[2]]
    return -0.5 * sum(Q[i, j] * z[i] * z[j] for i in range(3) for j in range(3))


def gaussian3(grid, mu, S):
    th, (h1, h2) = grid.mesh()
    z = [th - mu[0], h1 - mu[1], h2 - mu[2]]
    P = np.linalg.inv(S)
    f = np.exp(-0.5 * sum(P[i, j] * z[i] * z[j] for i in range(3) for j in range(3)))
    return f / grid.mass(f)


def test_grid_with_two_h_axes():
    g = pp.Grid(theta=(-1, 1, 4), h=[(0, 1, 5), (0, 2, 6)], periodic=("h2",))
    assert g.shape == (4, 5, 6) and g.ndim_h == 2 and g.h_shape == (5, 6)
    assert g.weights.sum() == pytest.approx(2 * 1 * 2)
    assert [a.periodic for a in g.h_axes] == [False, True]
    f = np.random.default_rng(0).random(g.shape)
    assert g.marginal(f, "h").shape == (5, 6)
    assert g.marginal(f, "theta").shape == (4,)
    assert g.mean(f).shape == (3,) and g.cov(f).shape == (3, 3)
    assert pp.Grid.from_dict(g.to_dict()) == g
    with pytest.raises(ValueError, match="2 h-axes; use grid.h_axes"):
        g.h_axis
    with pytest.raises(ValueError, match="at most 3 axes"):
        pp.Grid(theta=[(0, 1, 4), (0, 1, 4)], h=[(0, 1, 4), (0, 1, 4)])


def test_three_d_gaussian_closed_form_second_order():
    model = pp.Model(loss=lambda th, h: 0.5 * K * (th - A1 * h[0] - A2 * h[1]) ** 2,
                     fitness=fitness3, temperature=T, eps=EPS, selection=pp.Replicator(KAPPA),
                     mutation=pp.Diffusion(D))
    r = K / EPS
    M = np.array([[-r, r * A1, r * A2], [0, 0, 0], [0, 0, 0.0]])
    tf = 0.3
    mu, S = gaussian_moments(M, np.zeros(3), np.diag([T / EPS, D, D]), Q, ZS, KAPPA, MU0, S0,
                             [tf])
    errs = []
    for n in (16, 32):
        g = pp.Grid(theta=(-2.5, 2.5, n), h=[(-2, 2, n), (-2, 2, n)])
        sol = pp.solve(model, g, gaussian3(g, MU0, S0), tf, 0.01, progress=False)
        ex = gaussian3(g, mu[0], S[0])
        errs.append(np.abs(sol.f[-1] - ex).sum() / ex.sum())
        assert np.abs(sol.mass - 1).max() < 1e-12 and sol.f.min() >= 0
    order = np.log2(errs[0] / errs[1])
    assert order >= 1.8, (order, errs)
    assert sol.mean_h.shape == (len(sol.t), 2)
    np.testing.assert_allclose(sol.mean[-1], mu[0], atol=2e-3)


def test_three_d_run_is_the_product_of_lower_dimensional_runs():
    """F = F1(θ, h1) + F2(h2) and L = L(θ, h1): f(θ, h1, h2) = f₂(θ, h1) ρ(h2) exactly."""
    def F1(th, h1):
        return -(th - 0.3) ** 2 - 0.5 * np.sin(h1)

    def F2(h2):
        return np.cos(2 * h2)
    common = dict(temperature=0.1, eps=0.05, selection=Replicator(1.5), mutation=Diffusion(0.02))
    m3 = pp.Model(loss=lambda th, h: 0.5 * (th - h[0]) ** 2,
                  fitness=lambda th, h: F1(th, h[0]) + F2(h[1]), **common)
    m2 = pp.Model(loss=lambda th, h: 0.5 * (th - h) ** 2, fitness=F1, **common)
    g3 = pp.Grid(theta=(-3, 3, 24), h=[(-1.5, 1.5, 16), (-1, 1, 12)])
    g2 = pp.Grid(theta=(-3, 3, 24), h=(-1.5, 1.5, 16))
    g1 = pp.Grid(theta=(-1, 1, 3), h=(-1, 1, 12))
    f2 = pp.gaussian(g2, (0.0, -0.5), [0.2, 0.1])
    r1 = np.exp(-((g1.h - 0.3) ** 2) / 0.1)
    r1 /= r1.sum() * g1.dh
    f3 = f2[:, :, None] * r1[None, None, :]
    sol3 = pp.solve(m3, g3, f3, 0.5, 0.05, progress=False)
    sol2 = pp.solve(m2, g2, f2, 0.5, 0.05, progress=False)
    m1 = pp.Model(loss=lambda th, h: 0.5 * th ** 2, selection=Replicator(1.5),
                  mutation=Diffusion(0.02), fitness=lambda th, h: F2(h), temperature=1.0)
    rho = pp.solve_reduced(m1, g1, r1, 0.5, 0.05, fitness=F2(g1.h), progress=False).f
    expected = sol2.f[-1][:, :, None] * rho[-1][None, None, :]
    np.testing.assert_allclose(sol3.f[-1], expected, rtol=1e-10, atol=1e-13 * expected.max())


def himmelblau(h1, h2):
    return (h1 ** 2 + h2 - 11) ** 2 + (h1 + h2 ** 2 - 7) ** 2


HIMMELBLAU_MINIMA = [(3.0, 2.0), (-2.805118, 3.131312), (-3.779310, -3.283186),
                     (3.584428, -1.848126)]


def test_himmelblau_population_finds_every_optimum():
    """A 2-D hyperparameter space with the multimodal effective fitness F̄ = −H(h)/20 − T
    (Himmelblau's function): from a uniform population, selection with weak mutation puts the
    mass on the four optima, each of which keeps a share."""
    model = pp.Model(loss=lambda th, h: 0.5 * (th - 0.2 * h[0]) ** 2,
                     fitness=lambda th, h: -himmelblau(*h) / 20 - (th - 0.2 * h[0]) ** 2,
                     temperature=0.05, eps=0.01, selection=pp.Replicator(1.0),
                     mutation=pp.Diffusion(0.01))
    g = pp.Grid(theta=(-2, 2, 24), h=[(-5, 5, 40), (-5, 5, 40)])
    sol = pp.solve(model, g, pp.uniform(g), 4.0, 0.05, progress=False)
    rho = sol.rho[-1]
    h1, h2 = np.meshgrid(*g.h, indexing="ij")
    shares = [(rho * g.h_weights)[np.hypot(h1 - a, h2 - b) < 1.0].sum()
              for a, b in HIMMELBLAU_MINIMA]
    assert sum(shares) > 0.9, shares
    assert min(shares) > 0.1, shares
    assert np.abs(sol.mass - 1).max() < 1e-12


# θ ∈ R², h ∈ R: L = ½ (θ − a h)ᵀ K (θ − a h) with a coupled (non-separable) K
K2 = np.array([[1.5, 0.5], [0.5, 1.0]])
AV = np.array([0.8, -0.5])
T2, EPS2 = 0.1, 0.2
Q2 = np.array([[1.0, 0.2, 0.3], [0.2, 0.8, 0.0], [0.3, 0.0, 1.0]])
ZS2 = np.array([0.3, -0.2, 0.4])
MU2 = np.array([-0.3, 0.2, -0.3])
S2 = np.array([[0.07, 0.01, 0.01], [0.01, 0.06, 0.0], [0.01, 0.0, 0.05]])


def loss2(th, h):
    u0, u1 = th[0] - AV[0] * h, th[1] - AV[1] * h
    return 0.5 * (K2[0, 0] * u0 * u0 + 2 * K2[0, 1] * u0 * u1 + K2[1, 1] * u1 * u1)


def fitness2(th, h):
    z = [th[0] - ZS2[0], th[1] - ZS2[1], h - ZS2[2]]
    return -0.5 * sum(Q2[i, j] * z[i] * z[j] for i in range(3) for j in range(3))


def gaussian_theta2(grid, mu, S):
    (t1, t2), hh = grid.mesh()
    z = [t1 - mu[0], t2 - mu[1], hh - mu[2]]
    P = np.linalg.inv(S)
    f = np.exp(-0.5 * sum(P[i, j] * z[i] * z[j] for i in range(3) for j in range(3)))
    return f / grid.mass(f)


def test_two_theta_axes_gaussian_closed_form_second_order():
    model = pp.Model(loss=loss2, fitness=fitness2, temperature=T2, eps=EPS2,
                     selection=pp.Replicator(0.8), mutation=pp.Diffusion(0.03))
    M = np.zeros((3, 3))
    M[:2, :2] = -K2 / EPS2
    M[:2, 2] = K2 @ AV / EPS2
    Dm = np.diag([T2 / EPS2, T2 / EPS2, 0.03])
    tf = 0.3
    mu, S = gaussian_moments(M, np.zeros(3), Dm, Q2, ZS2, 0.8, MU2, S2, [tf])
    errs = []
    for n in (16, 32):
        g = pp.Grid(theta=[(-2.5, 2.5, n), (-2.5, 2.5, n)], h=(-2, 2, n))
        sol = pp.solve(model, g, gaussian_theta2(g, MU2, S2), tf, 0.01, progress=False)
        ex = gaussian_theta2(g, mu[0], S[0])
        errs.append(np.abs(sol.f[-1] - ex).sum() / ex.sum())
        assert np.abs(sol.mass - 1).max() < 1e-12 and sol.f.min() >= 0
    order = np.log2(errs[0] / errs[1])
    assert order >= 1.8, (order, errs)
    assert sol.mean_theta.shape == (len(sol.t), 2)
    np.testing.assert_allclose(sol.mean[-1], mu[0], atol=3e-3)


def test_two_theta_axes_gibbs_stationary_and_asymptotic_preserving():
    """Selection and mutation off: the discrete Gibbs state of a non-quadratic 2-D loss with
    T(h) is fixed, and with ε → 0 any start is projected onto it in one step."""
    grid = pp.Grid(theta=[(-2, 2, 14), (-2, 2, 12)], h=(0, 1, 4))
    for eps in (0.5, 1e-7):
        model = pp.Model(loss=lambda th, h: (th[0] ** 2 - 1) ** 2 + th[1] ** 2 + h * th[0] * th[1],
                         temperature=lambda h: 0.4 + 0.2 * h, eps=eps)
        (t1, t2), hh = grid.mesh()
        logpi = -((t1 ** 2 - 1) ** 2 + t2 ** 2 + hh * t1 * t2) / (0.4 + 0.2 * hh)
        gibbs = np.exp(logpi - logpi.max(axis=(0, 1)))
        gibbs /= gibbs.sum(axis=(0, 1))
        f0 = gibbs / grid.mass(gibbs)
        sol = pp.solve(model, grid, f0, 0.2, 0.05, progress=False)
        assert np.abs(sol.f - f0).max() / f0.max() < 1e-13
    rough = np.random.default_rng(1).random(grid.shape)
    sol = pp.solve(model, grid, rough, 0.05, 0.05, progress=False)
    col_mass = rough.sum(axis=(0, 1)) / grid.mass(rough)
    np.testing.assert_allclose(sol.f[-1], gibbs * col_mass,
                               rtol=1e-12)


def test_two_theta_axes_run_is_the_product_of_lower_dimensional_runs():
    """L = L₁(θ1, h) + L₂(θ2), F = F₁(θ1, h) + F₂(θ2): f(θ1, θ2, h) = f₁(θ1, h) g(θ2), where
    g solves the θ2-problem alone (here on a grid whose h-axis it ignores)."""
    def L1(t, h):
        return 0.5 * (t - h) ** 2 + 0.1 * t ** 4

    def L2(t):
        return 0.5 * t ** 2 + 0.2 * np.sin(2 * t)

    def F1(t, h):
        return -(t - 0.3) ** 2 - 0.2 * h ** 2

    def F2(t):
        return -0.5 * (t + 0.2) ** 2
    common = dict(temperature=0.2, eps=0.05, selection=Replicator(1.0), mutation=Diffusion(0.02))
    m3 = pp.Model(loss=lambda th, h: L1(th[0], h) + L2(th[1]),
                  fitness=lambda th, h: F1(th[0], h) + F2(th[1]), **common)
    m1 = pp.Model(loss=L1, fitness=F1, **common)
    m2 = pp.Model(loss=lambda t, h: L2(t), fitness=lambda t, h: F2(t), **common)
    g3 = pp.Grid(theta=[(-2.5, 2.5, 20), (-2.5, 2.5, 18)], h=(-1, 1, 10))
    g1 = pp.Grid(theta=(-2.5, 2.5, 20), h=(-1, 1, 10))
    g2 = pp.Grid(theta=(-2.5, 2.5, 18), h=(-1, 1, 3))
    f1 = pp.gaussian(g1, (0.2, -0.3), [0.3, 0.1])
    f2 = np.exp(-(g2.theta[:, None] + 0.4) ** 2 / 0.4) * np.ones(3)   # uniform in dummy h
    f3 = f1[:, None, :] * f2[:, 0][None, :, None]
    s3 = pp.solve(m3, g3, f3, 0.4, 0.05, progress=False).f[-1]
    # several θ-axes run the split scheme; the one-axis factors are run by the same scheme
    s1 = pp.solve(m1, g1, f1, 0.4, 0.05, integrator="split", progress=False).f[-1]
    s2 = pp.solve(m2, g2, f2, 0.4, 0.05, integrator="split", progress=False).f[-1]
    assert np.abs(s2 - s2[:, :1]).max() <= 1e-14 * s2.max()    # still uniform in the dummy h
    expected = s1[:, None, :] * s2[:, 0][None, :, None]
    expected /= g3.mass(expected)
    np.testing.assert_allclose(s3, expected, rtol=1e-9, atol=1e-12 * expected.max())
