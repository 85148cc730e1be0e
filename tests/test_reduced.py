"""The reduced (ε → 0) equation: solve_reduced and steady_state (issue 4, items 2–3)."""

import numpy as np
import pytest

import pde_popdyn as pp
from pde_popdyn.exact import reduced_gaussian
from pde_popdyn.gibbs import effective_fitness
from pde_popdyn.presets import GaussianProblem
from pde_popdyn.exact import (mehler_log_kernel, mehler_solution)
from pde_popdyn.reduced import (solve_reduced,
                                steady_state)

# θ-box wide enough that π_h = N(h, T/K) is not truncated for any h in the h-box
PROB = GaussianProblem(kappa=2.0, D=0.02, mean0=(0.0, -0.8), cov0=[[0.04, 0], [0, 0.03]],
                       h_box=(-3.0, 3.0), theta_box=(-5.0, 5.0))
M0, V0 = -0.8, 0.03


def gauss(h, m, v):
    return np.exp(-(h - m) ** 2 / (2 * v)) / np.sqrt(2 * np.pi * v)


def test_default_fitness_is_the_quadrature_effective_fitness():
    grid = PROB.grid(64, 64)
    sol = solve_reduced(PROB.model(), grid, gauss(grid.h, M0, V0), 0.05, 0.01, progress=False)
    np.testing.assert_allclose(sol.info["fitness"], PROB.effective_fitness(grid.h),
                               rtol=0, atol=1e-12)
    assert sol.kind == "reduced" and sol.f.shape == (len(sol.t), grid.n_h)


def test_gaussian_closed_form_spectral_and_fv():
    g, hhat = PROB.effective_fitness_coeffs()
    errs = {}
    for n in (64, 128):
        grid = PROB.grid(32, n)
        rho0 = gauss(grid.h, M0, V0)
        for scheme in ("spectral", "fv"):
            sol = solve_reduced(PROB.model(), grid, rho0, 2.0, 0.002, scheme=scheme,
                                progress=False)
            m, v = reduced_gaussian(sol.t, M0, V0, g, hhat, PROB.kappa, PROB.D)
            errs[scheme, n] = max(np.abs(sol.mean_h - m).max(), np.abs(sol.var_h - v).max())
            assert np.abs(sol.mass - 1).max() < 1e-13
    assert errs["spectral", 128] < 1e-8          # limited by the O(Δt²) splitting error
    assert errs["fv", 128] < 1e-3
    order = np.log2(errs["fv", 64] / errs["fv", 128])
    assert abs(order - 2) < 0.1, f"finite-volume order in h {order:.3f}"


def test_no_mutation_closed_form():
    prob = GaussianProblem(kappa=1.0, D=0.0, h_box=(-3.0, 3.0), theta_box=(-5.0, 5.0))
    g, hhat = prob.effective_fitness_coeffs()
    grid = prob.grid(32, 256)
    sol = solve_reduced(prob.model(), grid, gauss(grid.h, M0, V0), 3.0, 0.05, progress=False)
    m, v = reduced_gaussian(sol.t, M0, V0, g, hhat, prob.kappa, 0.0)
    # without mutation the replicator step alone is exact in time: spectral accuracy in h
    assert np.abs(sol.mean_h - m).max() < 1e-12 and np.abs(sol.var_h - v).max() < 1e-12


@pytest.mark.parametrize("splitting,expected", [("strang", 2.0), ("lie", 1.0)])
def test_time_order(splitting, expected):
    grid = PROB.grid(32, 96)
    rho0 = gauss(grid.h, M0, V0) * (1 + 0.5 * np.sin(4 * grid.h))
    model = PROB.model()
    ref = solve_reduced(model, grid, rho0, 1.0, 1 / 2048, splitting=splitting,
                        progress=False).f[-1]
    ns = np.array([8, 16, 32, 64])
    errs = [np.abs(solve_reduced(model, grid, rho0, 1.0, 1 / n, splitting=splitting,
                                 progress=False).f[-1] - ref).sum() * grid.dh for n in ns]
    slope = np.polyfit(np.log(1 / ns), np.log(errs), 1)[0]
    assert abs(slope - expected) < 0.1, f"observed order {slope:.3f}, errors {errs}"


def test_spectral_option_converges_exponentially():
    """Same Δt for every n, against n = 256: the spatial error alone. The spectral error falls
    below 1e-11 by n = 60, faster than any power; the finite-volume one like n⁻²."""
    model = pp.Model(loss=lambda th, h: 0.5 * th ** 2, fitness=lambda th, h: 0 * th,
                     temperature=0.1, selection=pp.Replicator(2.0), mutation=pp.Diffusion(0.05))

    def fbar(h):
        return -0.75 * (h - 0.3) ** 2 + 0.2 * np.sin(2 * h)

    def rho0(h):
        return np.exp(-(h + 0.5) ** 2 / 0.1) * (1 + 0.5 * np.sin(3 * h))

    def run(n, scheme):
        grid = pp.Grid(theta=(-1, 1, 4), h=(-3, 3, n))
        s = solve_reduced(model, grid, rho0(grid.h), 1.0, 0.01, fitness=fbar, scheme=scheme,
                          progress=False)
        return np.array([s.mean_h[-1], s.var_h[-1]])

    ref = run(256, "spectral")
    ns = np.array([18, 30, 42, 54, 60])
    err = np.array([np.abs(run(n, "spectral") - ref).max() for n in ns])
    err_fv = np.array([np.abs(run(n, "fv") - ref).max() for n in (30, 60)])
    assert err[-1] < 1e-11
    rate = -np.polyfit(ns, np.log(err), 1)[0]
    assert rate > 0.35, f"spectral error decays like exp(-{rate:.3f} n): {err}"
    # an algebraic fit would need an order > 10 (finite volumes: order 2)
    assert np.log(err[1] / err[-1]) / np.log(ns[-1] / ns[1]) > 10
    assert 1.6 < np.log2(err_fv[0] / err_fv[1]) < 2.4


def test_mehler_kernel_properties():
    D, c, t = 0.02, 1.5, 0.7
    lam = np.sqrt(c / D)
    x = np.linspace(-1, 1, 5)
    y = np.linspace(-8, 8, 20001)
    dy = y[1] - y[0]
    K = np.exp(mehler_log_kernel(t, x[:, None], y[None, :], D, c))
    # the ground state e^{−λx²/2} is an eigenfunction with eigenvalue −Dλ
    np.testing.assert_allclose((K * np.exp(-lam * y ** 2 / 2)).sum(1) * dy,
                               np.exp(-D * lam * t - lam * x ** 2 / 2), rtol=1e-12)
    # semigroup: K(0.3) ∘ K(0.4) = K(0.7)
    K1 = np.exp(mehler_log_kernel(0.3, x[:, None], y[None, :], D, c))
    K2 = np.exp(mehler_log_kernel(0.4, y, 0.2, D, c))
    np.testing.assert_allclose(K1 @ K2 * dy, np.exp(mehler_log_kernel(t, x, 0.2, D, c)),
                               rtol=1e-11)
    # c → 0: the heat kernel
    heat = np.exp(-(x - 0.3) ** 2 / (4 * D * t)) / np.sqrt(4 * np.pi * D * t)
    np.testing.assert_allclose(np.exp(mehler_log_kernel(t, x, 0.3, D, 1e-12)), heat,
                               rtol=1e-8)
    # no overflow for long times
    assert np.isfinite(mehler_log_kernel(1e4, x, 0.3, D, c)).all()


def test_non_gaussian_data_against_the_mehler_solution():
    kappa, g, hstar, D = 2.0, 1.5, 0.3, 0.02
    model = pp.Model(loss=lambda th, h: 0.5 * th ** 2, fitness=lambda th, h: 0 * th,
                     temperature=0.1, selection=pp.Replicator(kappa), mutation=pp.Diffusion(D))

    def rho0(y):
        return np.exp(-(y + 0.5) ** 4 / 0.02) * (1 + 0.5 * np.sin(6 * y))

    def fbar(h):
        return -(g / 2) * (h - hstar) ** 2

    errs = {}
    for n in (64, 128):
        grid = pp.Grid(theta=(-1, 1, 4), h=(-2.5, 2.5, n))
        exact = mehler_solution(1.0, grid.h, rho0, (-2.5, 2.5), g=g, hstar=hstar,
                                kappa=kappa, D=D, nodes=1600)
        for scheme in ("spectral", "fv"):
            sol = solve_reduced(model, grid, rho0(grid.h), 1.0, 0.0025, fitness=fbar,
                                scheme=scheme, progress=False)
            errs[scheme, n] = np.abs(sol.f[-1] - exact).sum() * grid.dh
    assert errs["spectral", 128] < 5e-8              # the O(Δt²) splitting error
    assert errs["fv", 128] < 1e-3
    assert abs(np.log2(errs["fv", 64] / errs["fv", 128]) - 2) < 0.1


def test_steady_state_gaussian_and_long_run():
    g, hhat = PROB.effective_fitness_coeffs()
    model = PROB.model()
    vinf = np.sqrt(2 * PROB.D / (PROB.kappa * g))
    errs = []
    for n in (128, 256):
        grid = PROB.grid(32, n)
        st = steady_state(model, grid)
        rho = st.rho
        assert rho.min() >= 0 and abs(rho.sum() * grid.dh - 1) < 1e-13
        fbar = PROB.effective_fitness(grid.h)
        # Λ₀ = κ⟨F̄⟩ exactly (discrete identity)
        assert abs(st.eigenvalue - PROB.kappa * (fbar * rho).sum() * grid.dh) < 1e-12
        m = (rho * grid.h).sum() * grid.dh
        v = (rho * (grid.h - m) ** 2).sum() * grid.dh
        errs.append(max(abs(m - hhat), abs(v - vinf), np.abs(rho - gauss(grid.h, hhat, vinf)).max()))
        # eigenvalue κ F̄(ĥ) − √(Dκg/2) and gap √(2Dκg) of the harmonic oscillator
        assert abs(st.eigenvalue - (PROB.kappa * fbar.max() - np.sqrt(PROB.D * PROB.kappa * g / 2))) < 1e-3
        assert abs(st.gap - np.sqrt(2 * PROB.D * PROB.kappa * g)) < 2e-3
    assert errs[1] < 2e-3 and abs(np.log2(errs[0] / errs[1]) - 2) < 0.15
    # a long run of solve_reduced ends at the same state
    grid = PROB.grid(32, 128)
    st = steady_state(model, grid)
    sol = solve_reduced(model, grid, gauss(grid.h, M0, V0), 60.0, 0.01, progress=False)
    assert np.abs(sol.f[-1] - st.rho).sum() * grid.dh < 1e-6
    # (the Strang steady state differs from the exact one by O(Δt²))
    assert abs(sol.mean_fitness[-1] * PROB.kappa - st.eigenvalue) < 1e-6


def test_boltzmann_and_truncation_rules():
    """The jump rule selects on F̄_α (default) and 'copy h' reduces to 'copy both'; both rules
    are positive and mass-exact; truncation moves the mean toward the optimum."""
    base = PROB.model()
    grid = PROB.grid(32, 64)
    rho0 = gauss(grid.h, M0, V0)
    models = {c: pp.Model(loss=base.loss, fitness=base.fitness, temperature=PROB.T,
                          selection=pp.BoltzmannJump(2.0, pressure=3.0, copy=c),
                          mutation=pp.GaussianJump(0.2)) for c in ("both", "h")}
    sols = {c: solve_reduced(m, grid, rho0, 1.0, 0.01, progress=False) for c, m in models.items()}
    np.testing.assert_allclose(sols["both"].f, sols["h"].f, rtol=0, atol=0)
    np.testing.assert_allclose(sols["both"].info["fitness"],
                               effective_fitness(models["both"], grid, pressure=3.0), atol=0)
    sol = sols["both"]
    assert sol.f.min() >= 0 and np.abs(sol.mass - 1).max() < 1e-13
    assert sol.mean_h[-1] > sol.mean_h[0] + 0.3
    spec = solve_reduced(models["both"], grid, rho0, 1.0, 0.01, scheme="spectral",
                         progress=False)
    assert np.abs(spec.f[-1] - sol.f[-1]).sum() * grid.dh < 2e-2     # O(Δh²) apart
    assert spec.f.min() >= 0 and np.abs(spec.mass - 1).max() < 1e-13
    trunc = pp.Model(loss=base.loss, fitness=base.fitness, temperature=PROB.T,
                     selection=pp.Truncation(1.0, 0.2, copy="h"), mutation=pp.GaussianJump(0.2))
    st = solve_reduced(trunc, grid, rho0, 1.0, 0.01, progress=False)
    assert st.f.min() >= 0 and np.abs(st.mass - 1).max() < 1e-13
    # the top fifth replaces the bottom fifth at rate 1: the mean moves by ≈ 0.1 per unit time
    assert st.mean_h[-1] > st.mean_h[0] + 0.05


def test_reduced_solution_object():
    grid = PROB.grid(32, 64)
    sol = solve_reduced(PROB.model(), grid, gauss(grid.h, M0, V0), 0.1, 0.01, progress=False,
                        save_every=2)
    assert sol.rho is sol.f and sol.marginal("h") is sol.f
    assert len(sol.t) == 6
    mom = sol.moments()
    assert set(mom) == {"mass", "mean_h", "var_h", "mean_fitness"}
    for attr in ("mean", "cov", "mean_theta", "var_theta"):
        with pytest.raises(ValueError, match="reduced"):
            getattr(sol, attr)
    with pytest.raises(ValueError, match="reduced"):
        sol.marginal("theta")
    assert "kind='reduced'" in repr(sol)
    # a callable fitness of h and an array give the same run
    f1 = solve_reduced(PROB.model(), grid, gauss(grid.h, M0, V0), 0.1, 0.01, progress=False,
                       fitness=PROB.effective_fitness)
    f2 = solve_reduced(PROB.model(), grid, gauss(grid.h, M0, V0), 0.1, 0.01, progress=False,
                       fitness=PROB.effective_fitness(grid.h))
    np.testing.assert_array_equal(f1.f, f2.f)


def test_bad_input():
    grid = PROB.grid(32, 64)
    model = PROB.model()
    with pytest.raises(ValueError, match=r"rho0 has shape \(32, 64\).*marginal"):
        solve_reduced(model, grid, np.ones(grid.shape), 1.0, 0.1)
    with pytest.raises(ValueError, match="rho0 has shape"):
        solve_reduced(model, grid, np.ones(grid.n_h + 1), 1.0, 0.1)
    with pytest.raises(ValueError, match="negative"):
        solve_reduced(model, grid, -np.ones(grid.n_h), 1.0, 0.1)
    with pytest.raises(ValueError, match="fitness has shape"):
        solve_reduced(model, grid, np.ones(grid.n_h), 1.0, 0.1, fitness=np.ones(3))
    with pytest.raises(ValueError, match="scheme"):
        solve_reduced(model, grid, np.ones(grid.n_h), 1.0, 0.1, scheme="chebyshev")
    with pytest.raises(ValueError, match="dt"):
        solve_reduced(model, grid, np.ones(grid.n_h), 1.0, 0.0)
    jump = pp.Model(loss=model.loss, fitness=model.fitness, temperature=0.05,
                    selection=pp.BoltzmannJump(1.0, 1.0))
    with pytest.raises(ValueError, match="replicator"):
        steady_state(jump, grid)
    with pytest.raises(ValueError, match="pressure"):
        pp.BoltzmannJump(1.0, pressure=0.0)


def _h_model(fn, D, kappa=2.0):
    """F̄(h) = fn(h) − T/2 through L = ½(θ − h)², F = fn(h) − ½(θ − h)²."""
    return pp.Model(loss=lambda th, h: 0.5 * (th - h) ** 2,
                    fitness=lambda th, h: fn(h) - 0.5 * (th - h) ** 2, temperature=0.05,
                    selection=pp.Replicator(kappa), mutation=pp.Diffusion(D) if D else None)


def test_mean_toward_the_fittest_exponential_with_mutation_algebraic_without():
    """Quadratic F̄ = −(h − ½)²: with D the distance to h* decays at √(2Dκg) (= the eigsh
    gap); without mutation it decays like 1/(1 + κgv₀t)."""
    grid = pp.Grid(theta=(-4.0, 4.5, 32), h=(-3.0, 3.5, 192))
    fn = lambda h: -(h - 0.5) ** 2                                          # noqa: E731
    rho0 = np.exp(-(grid.h + 1.0) ** 2 / 0.2)
    model = _h_model(fn, 0.02)
    sol = solve_reduced(model, grid, rho0, 20.0, 0.02, progress=False, save_every=25)
    d = sol.distance_to_optimum
    win = sol.t > 6
    rate = -np.polyfit(sol.t[win], np.log(d[win]), 1)[0]
    assert abs(rate / np.sqrt(2 * 0.02 * 2.0 * 2.0) - 1) < 0.01
    assert abs(rate / steady_state(model, grid).gap - 1) < 1e-3
    sol0 = solve_reduced(_h_model(fn, 0.0), grid, rho0, 200.0, 0.1, progress=False,
                         save_every=20)
    w = sol0.t >= 50
    slope = np.polyfit(np.log(sol0.t[w]), np.log(sol0.distance_to_optimum[w]), 1)[0]
    exact = np.polyfit(np.log(sol0.t[w]), np.log(1 / (1 + 2 * 2 * 0.1 * sol0.t[w])), 1)[0]
    assert abs(slope - exact) < 1e-3 and abs(slope + 1) < 0.06


def test_survival_of_the_flattest():
    """A narrow high peak (H=1, w=0.05) and a broad low one (H=0.8, w=0.4): the replicator
    keeps the high one at small D; above D_c ≈ 5e-4 the broad one holds the steady state."""
    def fn(h):
        return np.exp(-(h + 0.5) ** 2 / (2 * 0.05 ** 2)) + 0.8 * np.exp(-(h - 0.8) ** 2 / 0.32)

    grid = pp.Grid(theta=(-3.0, 4.0, 32), h=(-2.0, 2.5, 1024))
    broad = grid.h > 0.15
    mass = {D: steady_state(_h_model(fn, D), grid).rho[broad].sum() * grid.dh
            for D in (1e-5, 1e-4, 2e-3, 1e-2)}
    assert mass[1e-5] < 1e-3 and mass[1e-4] < 1e-3
    assert mass[2e-3] > 0.999 and mass[1e-2] > 0.99        # (wide mutation spreads it a little)
