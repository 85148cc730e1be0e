"""Gibbs measure, log-partition and effective fitness F̄, F̄_α (issue 4, item 1)."""

import numpy as np
import pytest
from scipy.integrate import quad
from scipy.special import i0e, i1e

import pde_popdyn as pp
from pde_popdyn.fast.fv import SGOperator
from pde_popdyn.gibbs import effective_fitness, find_modes, gibbs, langevin_average, log_partition

# -- the quadratic family of docs/model.md (Closed forms): L = ½K(θ − μ(h))², F = −(q/2)(θ − θ*)² -----------
K, Q, TS = 2.0, 1.5, 0.3


def mu(h):
    return 0.5 * h + 0.1 * np.sin(h)


def temp(h):
    return 0.04 + 0.02 * np.cos(h)          # an h-dependent temperature


def quadratic_model():
    return pp.Model(loss=lambda th, h: 0.5 * K * (th - mu(h)) ** 2,
                    fitness=lambda th, h: -0.5 * Q * (th - TS) ** 2, temperature=temp)


def fbar_exact(h):
    return -(Q / 2) * ((mu(h) - TS) ** 2 + temp(h) / K)


def fbar_alpha_exact(h, a):
    r = a * Q * temp(h) / K
    return -np.log1p(r) / (2 * a) - Q * (mu(h) - TS) ** 2 / (2 * (1 + r))


GRID = pp.Grid(theta=(-4.0, 4.0, 64), h=(-2.0, 2.0, 41))


@pytest.mark.parametrize("method", ["quadrature", "trapezoid", "gauss-hermite"])
def test_gaussian_closed_forms(method):
    model = quadratic_model()
    v, err = effective_fitness(model, GRID, method, return_error=True)
    assert np.abs(v - fbar_exact(GRID.h)).max() <= 1e-12
    assert err.max() <= 1e-12
    for a in (1e-6, 1e-3, 0.1, 1.0, 10.0, 100.0):
        va = effective_fitness(model, GRID, method, pressure=a)
        assert np.abs(va - fbar_alpha_exact(GRID.h, a)).max() <= 1e-12, a


def test_laplace_is_exact_for_quadratic_and_first_order_in_pressure():
    model = quadratic_model()
    v = effective_fitness(model, GRID, "laplace")
    assert np.abs(v - fbar_exact(GRID.h)).max() <= 1e-11   # finite-difference derivatives
    # F̄_α: the first-order expansion F + T[F₂/2a + αF₁²/2a] matches to O(T²) only
    va = effective_fitness(model, GRID, "laplace", pressure=1.0)
    ex = fbar_alpha_exact(GRID.h, 1.0)
    T = temp(GRID.h)
    assert np.all(np.abs(va - ex) <= 2 * (Q * T / K) ** 2)


def test_log_partition_and_gibbs_density():
    model = quadratic_model()
    logZ, err = log_partition(model, GRID, return_error=True)
    exact = 0.5 * np.log(2 * np.pi * temp(GRID.h) / K)
    assert np.abs(logZ - exact).max() <= 1e-13 and err.max() <= 1e-13
    pi = gibbs(model, GRID)
    assert np.abs(pi.sum(axis=0) * GRID.dtheta - 1).max() <= 1e-13
    # the discrete Gibbs state is the one the Scharfetter–Gummel step leaves invariant
    op = SGOperator.from_model(model, GRID)
    np.testing.assert_allclose(pi, op.gibbs / GRID.dtheta, rtol=1e-12, atol=1e-300)
    np.testing.assert_allclose(op.apply(pi), 0.0, atol=1e-9 * np.abs(op.out_rate * pi).max())
    pic = gibbs(model, GRID, cell_averages=True)
    assert np.abs(pic.sum(axis=0) * GRID.dtheta - 1).max() <= 1e-13
    # cell averages and midpoint values differ at O(Δθ²)
    assert 1e-6 < np.abs(pic - pi).max() / pi.max() < 0.05


# -- a tilted double well with the temperature as the hyperparameter --------------------------
def double_well(tilt=0.3):
    return pp.Model(loss=lambda th, h: (th ** 2 - 1) ** 2 / 4 + tilt * th,
                    fitness=lambda th, h: -(th - 0.8) ** 2 + 0.1 * np.sin(3 * th),
                    temperature=lambda h: np.exp(h))


TEMPS = np.geomspace(0.0025, 0.02, 7)
DW_GRID = pp.Grid(theta=(-2.5, 2.5, 64), h=(-6.5, -3.5, 8))


def dw_reference(T):
    """scipy.integrate.quad on the box (an independent adaptive rule)."""
    L = lambda th: (th ** 2 - 1) ** 2 / 4 + 0.3 * th                  # noqa: E731
    F = lambda th: -(th - 0.8) ** 2 + 0.1 * np.sin(3 * th)           # noqa: E731
    lmin = L(-1.125)
    w = lambda th: np.exp(-(L(th) - lmin) / T)                        # noqa: E731
    kw = dict(points=[-1.13, 0.79], epsabs=0, epsrel=1e-13, limit=500)
    return quad(lambda th: w(th) * F(th), -2.5, 2.5, **kw)[0] / quad(w, -2.5, 2.5, **kw)[0]


def test_double_well_three_methods_agree():
    """Quadrature, trapezoid and Gauss–Hermite agree to 1e-10 on the double well.

    Gauss–Hermite is centred at the global minimum only; the second well carries the weight
    e^{−ΔL/T} with ΔL ≈ 0.59, below 2e-13 for T ≤ 0.02, so its omission is below the tolerance
    on this T range (at larger T the unimodal rule would be wrong).
    """
    model, hs = double_well(), np.log(TEMPS)
    q, eq = effective_fitness(model, DW_GRID, "quadrature", h=hs, return_error=True)
    tr = effective_fitness(model, DW_GRID, "trapezoid", h=hs)
    gh = effective_fitness(model, DW_GRID, "gauss-hermite", h=hs)
    assert eq.max() <= 1e-13
    assert np.abs(tr - q).max() <= 1e-10
    assert np.abs(gh - q).max() <= 1e-10
    ref = np.array([dw_reference(T) for T in TEMPS])
    assert np.abs(ref - q).max() <= 1e-11


def test_laplace_error_falls_like_T_squared():
    model, hs = double_well(), np.log(TEMPS)
    q = effective_fitness(model, DW_GRID, h=hs)
    lap, est = effective_fitness(model, DW_GRID, "laplace", h=hs, return_error=True)
    err = np.abs(lap - q)
    slope = np.polyfit(np.log(TEMPS), np.log(err), 1)[0]
    assert abs(slope - 2.0) <= 0.2, f"Laplace error slope {slope:.3f}, errors {err}"
    # the estimate (the size of the T² term) is the actual error to within 15 %
    assert np.all(np.abs(est / err - 1) < 0.15)
    lap2 = effective_fitness(model, DW_GRID, "laplace", h=hs, laplace_order=2)
    slope2 = np.polyfit(np.log(TEMPS), np.log(np.abs(lap2 - q)), 1)[0]
    assert abs(slope2 - 3.0) <= 0.3, f"second-order Laplace slope {slope2:.3f}"
    # the mode: a root of L' = θ³ − θ + 0.3 near −1.13
    th = find_modes(model, DW_GRID, h=hs)
    np.testing.assert_allclose(th ** 3 - th + 0.3, 0.0, atol=1e-12)
    assert np.all(th < -1.0)


def test_pressure_bounds_and_small_pressure_limit():
    model, hs = double_well(), np.log(TEMPS[[0, 3, 6]])
    fb = effective_fitness(model, DW_GRID, h=hs)
    # Var_π(F) from the average of F² (same quadrature)
    sq = pp.Model(loss=model.loss, fitness=lambda th, h: model.fitness(th, h) ** 2,
                  temperature=model.temperature)
    var = effective_fitness(sq, DW_GRID, h=hs) - fb ** 2
    alphas = np.geomspace(1e-5, 1e-1, 5)
    gaps = np.array([effective_fitness(model, DW_GRID, pressure=a, h=hs) - fb for a in alphas])
    assert np.all(gaps > 0)                                   # F̄_α ≥ F̄
    assert np.all(np.diff(gaps, axis=0) > 0)                  # increasing in α
    # F̄_α − F̄ = α Var/2 + O(α²): rate 1 in α, with the right constant
    for j in range(hs.size):
        slope = np.polyfit(np.log(alphas[:3]), np.log(gaps[:3, j]), 1)[0]
        assert abs(slope - 1.0) < 1e-2
        assert abs(gaps[0, j] / alphas[0] / (var[j] / 2) - 1) < 1e-3
    # and F̄_α stays below sup F; it approaches it as α grows
    big = effective_fitness(model, DW_GRID, pressure=1e4, h=hs)
    supF = 0.1 * np.sin(3 * 0.8) + 0.0                       # F is maximal near θ = 0.8
    assert np.all(big <= 0.1 + 1e-12) and np.all(big > fb)
    assert np.all(big > supF - 0.5)


def test_von_mises_on_a_periodic_box():
    k, ts = 1.0, 0.4
    grid = pp.Grid(theta=(-np.pi, np.pi, 64), h=(-np.pi, np.pi, 40), periodic=("theta",))
    for T in (0.05, 0.3, 1.0):
        model = pp.Model(loss=lambda th, h: -k * np.cos(th - h),
                         fitness=lambda th, h: np.cos(th - ts), temperature=T)
        v, err = effective_fitness(model, grid, return_error=True)
        exact = i1e(k / T) / i0e(k / T) * np.cos(grid.h - ts)
        assert np.abs(v - exact).max() <= 1e-13 and err.max() <= 1e-13
        lz = log_partition(model, grid)
        assert np.abs(lz - (np.log(2 * np.pi * i0e(k / T)) + k / T)).max() <= 1e-12
    with pytest.raises(ValueError, match="periodic"):
        effective_fitness(model, grid, "gauss-hermite")


def test_monte_carlo_within_standard_errors():
    model = quadratic_model()
    hs = np.array([-1.5, 0.0, 1.0])
    v, se = effective_fitness(model, GRID, "monte-carlo", h=hs, return_error=True,
                              n_samples=1000, n_chains=64, burn_in=300, seed=1)
    z = (v - fbar_exact(hs)) / se
    assert np.all(np.abs(z) < 4.5) and np.all(se < 2e-3)
    va, sea = effective_fitness(model, GRID, "monte-carlo", h=hs, pressure=2.0,
                                return_error=True, n_samples=1000, n_chains=64, burn_in=300,
                                seed=2)
    assert np.all(np.abs(va - fbar_alpha_exact(hs, 2.0)) < 4.5 * sea)
    # seeded: the same seed gives the same numbers
    v2 = effective_fitness(model, GRID, "monte-carlo", h=hs, n_samples=1000, n_chains=64,
                           burn_in=300, seed=1)
    np.testing.assert_array_equal(v, v2)


def test_langevin_average_in_two_dimensions():
    """d = 2: L = ½K|θ − μ(h)|², F = −(q/2)|θ − θ*|², F̄ = −(q/2)(|μ − θ*|² + 2T/K)."""
    hs = np.array([-0.5, 0.5])
    T = 0.05

    def loss(theta, h):
        return 0.5 * K * ((theta - h[..., None]) ** 2).sum(-1)

    def fit(theta, h):
        return -0.5 * Q * ((theta - np.array([TS, -TS])) ** 2).sum(-1)

    rng = np.random.default_rng(0)
    theta0 = hs[:, None, None] + 0.1 * rng.standard_normal((2, 48, 2))
    v, se = langevin_average(loss, fit, hs, T, theta0, n_samples=1000, burn_in=300, seed=3)
    exact = -(Q / 2) * ((hs - TS) ** 2 + (hs + TS) ** 2 + 2 * T / K)
    assert np.all(np.abs(v - exact) < 4.5 * se) and np.all(se < 3e-3)


def test_closed_form_method():
    model = quadratic_model()
    model.effective_fitness_exact = lambda h, a=None: (fbar_exact(h) if a is None
                                                       else fbar_alpha_exact(h, a))
    np.testing.assert_allclose(effective_fitness(model, GRID, "closed-form"),
                               fbar_exact(GRID.h), rtol=0, atol=0)
    np.testing.assert_allclose(effective_fitness(model, GRID, "closed-form", pressure=3.0),
                               effective_fitness(model, GRID, pressure=3.0), atol=1e-12)
    np.testing.assert_allclose(effective_fitness(model, GRID, fbar_exact, h=[0.1, 0.2]),
                               fbar_exact(np.array([0.1, 0.2])))
    with pytest.raises(ValueError, match="effective_fitness_exact"):
        effective_fitness(quadratic_model(), GRID, "closed-form")


@pytest.mark.parametrize("loss", [lambda th, h: 0.0 * th,          # flat: uniform on the box
                                  lambda th, h: -th ** 2,          # repelling
                                  lambda th, h: th + 0 * h])       # linear: mass at an edge
def test_non_normalisable_gibbs_measure_is_refused(loss):
    model = pp.Model(loss=loss, fitness=lambda th, h: -th ** 2, temperature=0.1)
    for method in ("quadrature", "gauss-hermite", "laplace", "monte-carlo"):
        with pytest.raises(ValueError, match="not normalisable|not confined"):
            effective_fitness(model, GRID, method)
    with pytest.raises(ValueError, match="not normalisable"):
        log_partition(model, GRID)
    with pytest.raises(ValueError, match="not normalisable"):
        gibbs(model, GRID)
    # truncated to the box on request
    v = effective_fitness(model, GRID, check=False, h=[0.0])
    assert np.isfinite(v).all()


def test_bad_input():
    model = quadratic_model()
    for bad in (0.0, -1.0):
        with pytest.raises(ValueError, match="pressure"):
            effective_fitness(model, GRID, pressure=bad)
    with pytest.raises(TypeError, match="pressure"):
        effective_fitness(model, GRID, pressure="high")
    with pytest.raises(ValueError, match="method"):
        effective_fitness(model, GRID, "simpson")
    with pytest.raises(ValueError, match="1-D"):
        effective_fitness(model, GRID, h=[[0.0, 1.0]])
    with pytest.raises(TypeError, match="pp.Grid"):
        effective_fitness(model, (-1, 1, 10))
    nofit = pp.Model(loss=model.loss, temperature=0.1)
    with pytest.raises(ValueError, match="no fitness"):
        effective_fitness(nofit, GRID)


def test_small_temperature_and_an_offset_loss_converge_to_round_off():
    """log Z ≈ −L/T is huge at small T (here with a loss offset of 50 at T = 1e-5): each of
    log Z and F̄ is held to its own relative tolerance, and a change that stops shrinking at
    round-off level ends the refinement with that change as the error estimate."""
    grid = pp.Grid(theta=(-1, 3, 64), h=(-2, 2, 16))
    m = pp.Model(loss=lambda th, h: 50.0 + 0.5 * (th - 1 - 0.2 * h) ** 2,
                 fitness=lambda th, h: -(th - 1.1) ** 2, temperature=1e-5)
    fbar, err = pp.effective_fitness(m, grid, return_error=True)
    exact = -(0.2 * grid.h - 0.1) ** 2 - 1e-5
    assert np.abs(fbar - exact).max() < 1e-9
    assert np.abs(fbar - exact).max() <= 10 * err.max()     # the estimate is round-off level
