"""The uniformly second-order time step of pde_popdyn.ap (issue 15)."""

import numpy as np
import pytest
import scipy.linalg as sla

import pde_popdyn as pp
from pde_popdyn.ap import make_joint_stepper as _make
from pde_popdyn.equations import JointSystem
from pde_popdyn.fast.fv import SGOperator
from pde_popdyn.presets import GaussianProblem
from pde_popdyn.slow.mutation import DiffusionStep, neumann_laplacian
from pde_popdyn.unsplit import UnsplitStep


def laplacian(grid):
    return neumann_laplacian(grid.n_h, grid.dh)


def make_joint_stepper(model, grid, dt, *, splitting="strang", scheme="fv", n_steps=None):
    """The stepper the joint solver builds (as pde_popdyn.ap.make_joint_stepper)."""
    system = JointSystem(model, grid, scheme=scheme, splitting=splitting)
    return _make(system.op, model, grid, system.setting, system.fitness, dt,
                 splitting=splitting, spectral=scheme == "spectral"), {}

PROBLEM = dict(T=0.05, kappa=1.0, D=0.01, Q=[[2.0, 0.0], [0.0, 1.0]], zstar=(0.5, -0.3),
               mean0=(-0.5, 0.6), cov0=[[0.04, 0.0], [0.0, 0.04]],
               theta_box=(-3.0, 3.0), h_box=(-2.0, 2.0))


def gaussian_case(eps, n=24):
    prob = GaussianProblem(eps=eps, **PROBLEM)
    grid = prob.grid(n, n)
    return prob.model(), grid, prob.initial(grid)


def h_moments(grid, f):
    rho = grid.marginal(f, "h")
    rho = rho / (rho.sum() * grid.dh)
    m = (rho * grid.h).sum() * grid.dh
    return np.array([m, (rho * (grid.h - m) ** 2).sum() * grid.dh])


def run(model, grid, f0, t, dt):
    return pp.solve(model, grid, f0, t, dt, progress=False, save_every=10 ** 6).f[-1]


def split_run(model, grid, f0, t, dt):
    """The previous scheme: Strang splitting of selection, mutation and the fast step."""
    return pp.solve(model, grid, f0, t, dt, integrator="split", progress=False,
                    save_every=10 ** 6).f[-1]


def slope(dts, errs):
    return np.polyfit(np.log(dts), np.log(np.abs(errs)), 1)[0]


@pytest.fixture(scope="module")
def stiff_reference():
    """ε = 1e-4 on 24²: the semi-discrete solution at t = 0.5, exact in time (uniformisation,
    about 1e8 cell updates)."""
    model, grid, f0 = gaussian_case(1e-4)
    op = SGOperator.from_model(model, grid)
    step = UnsplitStep(op, grid, model.fitness_on(grid), 1.0, PROBLEM["D"], max_sweeps=1e9)
    return model, grid, f0, h_moments(grid, step(f0 / grid.mass(f0), 0.5))


def test_replicator_is_second_order_where_the_split_scheme_is_first_order(stiff_reference):
    model, grid, f0, ref = stiff_reference
    dts = np.array([0.1, 0.05, 0.025])
    new = np.array([h_moments(grid, run(model, grid, f0, 0.5, dt)) - ref for dt in dts])
    old = np.array([h_moments(grid, split_run(model, grid, f0, 0.5, dt)) - ref for dt in dts])
    for i in (0, 1):                                   # E[h], Var[h]
        assert slope(dts, new[:, i]) > 1.8, new[:, i]
        assert slope(dts, old[:, i]) < 1.3, old[:, i]
        assert np.all(np.abs(new[:, i]) < np.abs(old[:, i]))


def test_limit_is_strang_of_the_reduced_equation():
    """ε = 1e-10: the h-marginal follows e^{Δt/2 κF̄} e^{Δt DΔ_h} e^{Δt/2 κF̄} exactly, with the
    discrete Gibbs average F̄ and the same DCT mutation step."""
    model, grid, f0 = gaussian_case(1e-10)
    dt, n = 0.1, 5
    got = grid.marginal(run(model, grid, f0, n * dt, dt), "h")
    op = SGOperator.from_model(model, grid)
    fbar = (op.gibbs * model.fitness_on(grid)).sum(axis=0)
    mut = DiffusionStep(PROBLEM["D"], grid.n_h, grid.dh)
    rho = grid.marginal(f0 / grid.mass(f0), "h")
    half = np.exp(0.5 * dt * PROBLEM["kappa"] * (fbar - fbar.max()))
    for _ in range(n):
        rho = half * mut(half * rho, dt)
        rho /= rho.sum() * grid.dh
    assert np.abs(got - rho).max() <= 1e-9 * rho.max()
    # and the previous splitting is off by the tilted average log E_π e^{κΔtF}/κΔt
    old = grid.marginal(split_run(model, grid, f0, n * dt, dt), "h")
    assert np.abs(old - rho).max() > 1e-4 * rho.max()


def test_reduced_strang_converges_to_the_reduced_semidiscrete_solution():
    """ε → 0: the limit scheme converges (order 2) to exp(t(κF̄ + DΔ_h)) ρ0."""
    model, grid, f0 = gaussian_case(1e-10)
    op = SGOperator.from_model(model, grid)
    fbar = (op.gibbs * model.fitness_on(grid)).sum(axis=0)
    M = PROBLEM["kappa"] * np.diag(fbar) + PROBLEM["D"] * laplacian(grid).toarray()
    rho = sla.expm(0.5 * M) @ grid.marginal(f0 / grid.mass(f0), "h")
    ref = np.array([(rho * grid.h).sum() / rho.sum()])
    dts = np.array([0.1, 0.05, 0.025])
    errs = [h_moments(grid, run(model, grid, f0, 0.5, dt))[0] - ref[0] for dt in dts]
    assert slope(dts, errs) > 1.9


@pytest.mark.parametrize("eps", [1.0, 1e-2, 1e-4, 1e-8])
@pytest.mark.parametrize("rule", ["replicator", "boltzmann", "truncation", "none"])
def test_positive_mass_exact_and_gibbs_fixed(eps, rule):
    grid = pp.Grid(theta=(-3, 3, 24), h=(-1.5, 1.5, 12))
    sel = {"replicator": pp.Replicator(2.0), "boltzmann": pp.BoltzmannJump(1.5, 3.0),
           "truncation": pp.Truncation(1.0, 0.25), "none": None}[rule]
    mut = pp.GaussianJump(0.2) if rule in ("boltzmann", "truncation") else pp.Diffusion(0.05)
    model = pp.Model(loss=lambda th, h: 0.5 * (th - h) ** 2 + 0.1 * th ** 4,
                     fitness=lambda th, h: -(th - 0.4) ** 2 - 0.5 * h ** 2, temperature=0.1,
                     eps=eps, selection=sel, mutation=mut)
    f0 = np.exp(-((grid.mesh()[0] - 1.0) ** 2 + grid.mesh()[1] ** 2) / 0.3)
    sol = pp.solve(model, grid, f0, 0.3, 0.05, progress=False, save_every=1)
    assert sol.f.min() >= 0.0
    assert np.abs(grid.mass(sol.f) - 1.0).max() <= 1e-13
    assert sol.info["fast_step"]["0.05"]["clipped_mass"] <= 1e-14
    # with selection and mutation off the discrete Gibbs state does not move
    still = pp.Model(loss=model.loss, temperature=0.1, eps=eps)
    op = SGOperator.from_model(still, grid)
    rho = np.linspace(1.0, 2.0, grid.n_h)
    gibbs = op.gibbs * rho / grid.mass(op.gibbs * rho)
    out = pp.solve(still, grid, gibbs, 0.3, 0.05, progress=False).f[-1]
    assert np.abs(out - gibbs).max() <= 1e-13 * gibbs.max()


def jump_model(eps, rule):
    sel = pp.BoltzmannJump(1.0, 2.0) if rule == "boltzmann" else pp.Truncation(1.0, 0.2)
    return pp.Model(loss=lambda th, h: 0.5 * (th - h) ** 2, fitness=lambda th, h: -0.5 * th ** 2,
                    temperature=0.05, eps=eps, selection=sel, mutation=pp.GaussianJump(0.1))


@pytest.mark.parametrize("rule", ["boltzmann", "truncation"])
@pytest.mark.parametrize("eps", [1e-1, 1e-3, 1e-6])
def test_jump_rules_are_second_order_for_every_eps(rule, eps):
    """Self-convergence of E[h] and Var[h] (Richardson reference from the two finest steps),
    from data in local equilibrium ρ0(h) π_h(θ)."""
    grid = pp.Grid(theta=(-3.5, 3.5, 24), h=(-2.0, 2.0, 24))
    model = jump_model(eps, rule)
    op = SGOperator.from_model(model, grid)
    f0 = op.gibbs * np.exp(-(grid.h - 1.0) ** 2 / 0.08)
    dts = [0.1, 0.05, 0.025, 0.0125]
    m = np.array([h_moments(grid, run(model, grid, f0, 0.5, dt)) for dt in dts])
    ref = m[-1] + (m[-1] - m[-2]) / 3
    for i in (0, 1):
        assert slope(dts[:-1], m[:-1, i] - ref[i]) > 1.8, m[:, i] - ref[i]


def test_boltzmann_stationary_state_is_a_fixed_point_for_every_dt():
    """The exponential midpoint rule with exact E and Φ keeps the semi-discrete stationary
    state (the Perron vector of λ(λ − 𝓛_ε)⁻¹ K_σ ω) fixed, whatever Δt."""
    grid = pp.Grid(theta=(-3.5, 3.5, 20), h=(-2.0, 2.0, 16))
    model = jump_model(1e-3, "boltzmann")
    op = SGOperator.from_model(model, grid)
    n = grid.n_theta
    A = np.zeros((grid.n_h, n, n))
    i = np.arange(n)
    A[:, i, i] = -op.out_rate.T
    A[:, i[1:], i[:-1]] = op.up.T
    A[:, i[:-1], i[1:]] = op.down.T
    R = np.linalg.inv(np.eye(n)[None] - A)                 # λ = 1
    omega = np.exp(2.0 * model.fitness_on(grid))
    kernel = DiffusionStep(1.0, grid.n_h, grid.dh)
    f = np.ones(grid.shape)
    for _ in range(3000):
        g = np.einsum("jil,lj->ij", R, kernel(omega * f, 0.5 * 0.1 ** 2))
        g /= grid.mass(g)
        if np.abs(g - f).max() < 1e-15 * g.max():
            break
        f = g
    for dt in (0.2, 0.02):
        out = pp.solve(model, grid, f, 1.0, dt, progress=False).f[-1]
        assert np.abs(out - f).max() <= 1e-10 * f.max()


def test_chunked_and_single_steps_agree_bit_for_bit():
    model, grid, f0 = gaussian_case(1e-3, 16)
    stepper, _ = make_joint_stepper(model, grid, 0.05, n_steps=6)
    a = stepper.advance(f0 / grid.mass(f0), 0.05, 6)
    stepper2, _ = make_joint_stepper(model, grid, 0.05, n_steps=6)
    b = f0 / grid.mass(f0)
    for _ in range(6):
        b = stepper2(b, 0.05)
    assert np.array_equal(a, b)
    with pytest.raises(ValueError, match="built for dt=0.05"):
        stepper(a, 0.1)
    with pytest.raises(ValueError, match="splitting='midpoint'"):
        make_joint_stepper(model, grid, 0.05, splitting="midpoint")


def test_spectral_scheme_shares_the_step():
    """scheme='spectral' runs the same composition: at small ε its h-marginal follows the
    reduced Strang scheme with the collocated Gibbs average F̄ = Σ w π F and the spectral
    mutation step, up to O(ε) and the spectral error of the Gibbs state (A π ≈ 1e-6 here);
    the previous splitting is 100 times further off. Its per-column propagators are the
    exponentials they claim to be."""
    from pde_popdyn.fast.spectral import SpectralColumnPropagator, SpectralOperator
    grid = pp.Grid(theta=(-3.0, 3.0, 32), h=(-2.0, 2.0, 16), nodes="spectral")
    model = pp.Model(loss=lambda th, h: 0.5 * (th - h) ** 2 + 0.05 * th ** 4,
                     fitness=lambda th, h: -(th - 0.5) ** 2 - 0.5 * h ** 2, temperature=0.3,
                     eps=1e-6, selection=pp.Replicator(1.0), mutation=pp.Diffusion(0.02))
    f0 = np.exp(-((grid.mesh()[0] + 0.5) ** 2 + (grid.mesh()[1] - 0.6) ** 2) / 0.3)
    dt, n = 0.1, 5
    got = pp.solve(model, grid, f0, n * dt, dt, scheme="spectral", progress=False).rho[-1]
    old = pp.solve(model, grid, f0, n * dt, dt, scheme="spectral", integrator="split",
                   progress=False).rho[-1]
    op = SpectralOperator.from_model(model, grid)
    w = op.weights[:, None]
    fbar = (w * op.gibbs * model.fitness_on(grid)).sum(axis=0)
    mut = DiffusionStep(0.02, grid.n_h, grid.dh, spectral=True)
    rho = (w * f0).sum(axis=0)
    half = np.exp(0.5 * dt * (fbar - fbar.max()))
    for _ in range(n):
        rho = half * mut(half * rho, dt)
        rho /= rho.sum() * grid.dh
    assert np.abs(got - rho).max() <= 2e-5 * rho.max()
    assert np.abs(old - rho).max() >= 2e-3 * rho.max()
    # the propagators: exp(τ(A + κF − max κF)) and Φ against scipy on the stacked matrices
    F = model.fitness_on(grid)
    P = SpectralColumnPropagator(op, 1e-3, diag=F)
    E = np.stack([sla.expm(1e-3 * (a + np.diag(d - d.max()))) for a, d in zip(op.A, F.T)])
    ref = np.einsum("jil,lj->ij", E, f0) * P.shift
    assert np.abs(P.apply(f0, 1) - ref).max() <= 1e-12 * np.abs(ref).max()
    J = SpectralColumnPropagator(op, 1e-3, lam=2.0)
    n_t = grid.n_theta
    Z = np.zeros((grid.n_h, 2 * n_t, 2 * n_t))
    Z[:, :n_t, :n_t] = 2e-3 * (op.A - 2.0 * np.eye(n_t))
    Z[:, :n_t, n_t:] = 2e-3 * np.eye(n_t)
    phi = sla.expm(Z)[:, :n_t, n_t:]
    ref = np.einsum("jil,lj->ij", phi, f0)
    assert np.abs(J.integral(f0, 2) - ref).max() <= 1e-12 * np.abs(ref).max()


# --------------------------------------------------------------------------------------------
# the initial layer (data off the slow manifold)
# --------------------------------------------------------------------------------------------
def test_phi_partial_fractions_are_uniformly_accurate():
    from pde_popdyn.ap import _phi_shifts
    x = np.concatenate([np.linspace(1e-3, 60.0, 4000), np.logspace(1.8, 7, 200)])
    phi = 1 / x - 1 / (2 * np.sinh(np.minimum(x / 2, 700)))
    a, c = _phi_shifts().T
    approx = (c[None, :] * x[:, None] / (x[:, None] ** 2 + a[None, :] ** 2)).sum(axis=1)
    assert np.max(np.abs(approx - phi) / phi) < 5e-3


@pytest.mark.parametrize("ncol", [3, 37])     # 37: the compiled loops' vector body and tail
def test_shifted_tridiagonal_solves_match_dense_ones(ncol):
    from pde_popdyn.fast._tridiag_kernels import shifted_solves
    rng = np.random.default_rng(3)
    n = 7
    sub, sup = -rng.uniform(0.5, 2, (ncol, n - 1)), -rng.uniform(0.5, 2, (ncol, n - 1))
    diag = 5.0 + rng.uniform(0, 1, (ncol, n))
    shifts = np.array([[1.0, 0.7], [4.0, -0.3]])
    rhs = rng.normal(size=(ncol, n))
    got = shifted_solves(sub, sup, diag, shifts, rhs)
    for q in range(ncol):
        T = np.diag(diag[q]) + np.diag(sub[q], -1) + np.diag(sup[q], 1)
        want = sum(c * np.linalg.solve(T - 1j * a * np.eye(n), rhs[q]).real for a, c in shifts)
        np.testing.assert_allclose(got[q], want, rtol=1e-12, atol=1e-12)


@pytest.fixture(scope="module")
def layer_reference():
    """ε = 1e-3 on 24², data off the slow manifold: the semi-discrete solution at t = 0.5."""
    model, grid, f0 = gaussian_case(1e-3)
    op = SGOperator.from_model(model, grid)
    step = UnsplitStep(op, grid, model.fitness_on(grid), 1.0, PROBLEM["D"], max_sweeps=1e10)
    return model, grid, f0, h_moments(grid, step(f0 / grid.mass(f0), 0.5))


def test_initial_layer_correction_keeps_second_order_off_the_manifold(layer_reference,
                                                                      monkeypatch):
    """Off the manifold, with Δt from 6ε to 100ε, the step without the correction stalls on the
    layer's O(ε²κD) error (order well below 2); with it the order is 2 and the error is that of
    data lifted onto the manifold."""
    import pde_popdyn.ap as ap
    model, grid, f0, ref = layer_reference
    dts = np.array([0.1, 0.05, 0.025, 0.0125, 0.00625])
    new = np.array([h_moments(grid, run(model, grid, f0, 0.5, dt)) - ref for dt in dts])
    sol = pp.solve(model, grid, f0, 0.5, 0.1, progress=False)
    info = next(iter(sol.info["fast_step"].values()))
    assert info["initial_layer_corrections"] == 1
    monkeypatch.setattr(ap.InitialLayer, "build", classmethod(lambda cls, *a, **k: None))
    old = np.array([h_moments(grid, run(model, grid, f0, 0.5, dt)) - ref for dt in dts])
    assert slope(dts, new[:, 0]) > 1.9, new[:, 0]
    assert slope(dts, old[:, 0]) < 1.75, old[:, 0]
    assert abs(new[-1, 0]) < 0.5 * abs(old[-1, 0])


@pytest.mark.parametrize("rule", ["boltzmann", "truncation"])
def test_jump_layer_correction_keeps_second_order_off_the_manifold(rule, monkeypatch):
    """Jump rules from data far from local equilibrium, Δt from 3ε to 100ε: without the
    correction the gain's share of the O(ε) layer is missed (an O(λε) error that Δt does not
    reduce: the order stalls); with it the order is 2."""
    import pde_popdyn.ap as ap
    grid = pp.Grid(theta=(-3.5, 3.5, 24), h=(-2.0, 2.0, 24))
    model = jump_model(1e-3, rule)
    th, hh = grid.mesh()
    f0 = np.exp(-((th + 0.5) ** 2 + (hh - 1.0) ** 2) / 0.08)
    dts = np.array([0.1, 0.05, 0.025, 0.0125, 0.00625, 0.003125])

    def orders():
        m = np.array([h_moments(grid, run(model, grid, f0, 1.0, dt)) for dt in dts])
        err = m[:-2] - (m[-1] + (m[-1] - m[-2]) / 3)
        return [slope(dts[:-2], err[:, i]) for i in (0, 1)], err

    new, err = orders()
    info = next(iter(pp.solve(model, grid, f0, 0.1, 0.1, progress=False)
                     .info["fast_step"].values()))
    assert info["initial_layer_corrections"] == 1
    monkeypatch.setattr(ap.JumpLayer, "build", classmethod(lambda cls, *a, **k: None))
    old, _ = orders()
    assert min(new) > 1.8, (new, err)
    assert min(old) < 1.5, old
