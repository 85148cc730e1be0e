"""pp.convergence: least-squares orders with their spread, end-to-end studies with pp.solve."""

import json

import matplotlib.pyplot as plt
import numpy as np
import pytest
from scipy import stats

import pde_popdyn as pp
from pde_popdyn.convergence import ConvergenceStudy, fit_exponential, fit_power
from pde_popdyn.presets import GaussianProblem


# -- the fit on synthetic data -------------------------------------------------------------------
def test_exact_power_law_recovered_exactly():
    v = np.array([8, 16, 32, 64, 128])
    fit = fit_power(v, 3.0 * v ** -2.0)
    assert fit.slope == pytest.approx(-2.0, abs=1e-12)
    assert fit.stderr == pytest.approx(0.0, abs=1e-12)
    assert fit.intercept == pytest.approx(np.log(3.0), abs=1e-12)
    study = ConvergenceStudy.from_errors(v, 3.0 * v ** -2.0, parameter="cells")
    assert study.order == pytest.approx(2.0, abs=1e-12)        # cells refine upward: order = −slope
    np.testing.assert_allclose(study.local_orders, 2.0, atol=1e-12)


@pytest.mark.parametrize("p", [0.5, 1.0, 2.0, 4.0])
def test_noisy_power_law_within_spread_and_stderr_calibrated(p):
    """e = C dt^p · exp(σ ξ): the fitted order lies within its spread as often as the
    t-distribution with n − 2 dof says, so the reported stderr is the true spread."""
    rng = np.random.default_rng(1234 + int(10 * p))
    dt = 0.1 / 2.0 ** np.arange(6)
    n, sigma, trials = dt.size, 0.05, 400
    within1 = within3 = 0
    orders, ses = [], []
    for _ in range(trials):
        e = 0.7 * dt ** p * np.exp(sigma * rng.standard_normal(n))
        st = ConvergenceStudy.from_errors(dt, e, parameter="dt")
        orders.append(st.order)
        ses.append(st.order_stderr)
        z = abs(st.order - p) / st.order_stderr
        within1 += z <= 1
        within3 += z <= 3
    cover1 = stats.t.cdf(1, n - 2) - stats.t.cdf(-1, n - 2)          # 0.626 for 4 dof
    assert abs(within1 / trials - cover1) < 0.07
    assert within3 / trials > 0.94                                    # t_4: P(|t| ≤ 3) = 0.96
    # the mean stderr matches the scatter of the fitted orders
    x = np.log(dt)
    true_se = sigma / np.sqrt(((x - x.mean()) ** 2).sum())
    assert np.std(orders) == pytest.approx(true_se, rel=0.15)
    assert np.mean(orders) == pytest.approx(p, abs=3 * true_se / np.sqrt(trials))


def test_exponential_fit_recovers_rate():
    rng = np.random.default_rng(7)
    n = np.array([8, 12, 16, 20, 24, 28])
    e = 2.0 * np.exp(-0.9 * n) * np.exp(0.05 * rng.standard_normal(n.size))
    fit = fit_exponential(n, e)
    q = stats.t.ppf(0.995, n.size - 2)                     # a 99% interval, 4 dof
    assert abs(-fit.slope - 0.9) <= q * fit.stderr
    assert fit.stderr < 0.01
    st = ConvergenceStudy.from_errors(n, e, parameter="cells", kind="exponential", expected=0.9)
    assert st.rate == pytest.approx(-fit.slope)
    assert st.agrees(q * fit.stderr)
    assert "rate" in st.table()
    plt.close(st.plot().figure)


def test_study_sorts_coarse_to_fine_and_orders_sign():
    dt = [1 / 16, 1 / 4, 1 / 32, 1 / 8]                  # any order in
    st = ConvergenceStudy.from_errors(dt, [d ** 2 for d in dt], parameter="dt")
    np.testing.assert_allclose(st.values, [1 / 4, 1 / 8, 1 / 16, 1 / 32])
    assert st.order == pytest.approx(2.0) and st.slope == pytest.approx(2.0)
    N = [100, 400, 1600, 6400]                            # particles: slope −½, order ½
    st = ConvergenceStudy.from_errors(N, [n ** -0.5 for n in N], parameter="N")
    assert st.slope == pytest.approx(-0.5) and st.order == pytest.approx(0.5)


def test_convergence_with_seeds_averages_and_reports_noise():
    """A Monte-Carlo mean of N samples: error |mean − 0| ∝ N^{-1/2} averaged over seeds."""
    def run(N, seed):
        return np.random.default_rng(seed).standard_normal(N).mean()

    def error(result, N):
        return abs(result)

    Ns = [100, 400, 1600, 6400, 25600]
    st = pp.convergence(run, Ns, error, parameter="N", seeds=40, expected=0.5)
    assert st.n_seeds == 40 and st.error_stderr.shape == (5,)
    assert np.all(st.error_stderr > 0) and np.all(st.error_stderr < st.errors)
    assert st.noise_stderr > 0
    assert abs(st.slope + 0.5) < 0.1
    # E|mean| = sqrt(2/π)/sqrt(N): the seed means agree within their standard errors
    exact = np.sqrt(2 / np.pi / np.asarray(st.values))
    assert np.all(np.abs(st.errors - exact) < 4 * st.error_stderr)
    assert "seeds" in st.table()
    plt.close(st.plot().figure)


# -- end to end with pp.solve --------------------------------------------------------------------
@pytest.fixture(scope="module")
def time_problem():
    prob = GaussianProblem(eps=1.0, kappa=2.0, D=0.02)
    model, grid = prob.model(), prob.grid(32, 24)
    return model, grid, prob.initial(grid)


@pytest.mark.parametrize("splitting, expected", [("strang", 2.0), ("lie", 1.0)])
def test_time_order_of_splitting(time_problem, splitting, expected):
    model, grid, f0 = time_problem

    def run(dt):
        return pp.solve(model, grid, f0, 1.0, dt, splitting=splitting, progress=False,
                        save_every=10 ** 6).f[-1]

    def l1(f, f_ref):
        return float(np.abs(f - f_ref).sum() * grid.dtheta * grid.dh)

    st = pp.convergence(run, [1 / 4, 1 / 8, 1 / 16, 1 / 32], l1, reference=1 / 512,
                        parameter="dt", expected=expected, keep_results=True,
                        label=f"{splitting} splitting")
    print(st.table())
    assert st.agrees(0.15), st.table()
    assert st.order_stderr < 0.1
    np.testing.assert_allclose(st.local_orders, expected, atol=0.2)
    assert len(st.results) == 4 and st.results[0].shape == grid.shape
    assert np.all(st.seconds > 0)


def test_fv_space_order_against_exact_density():
    """FV (Scharfetter–Gummel + exact DCT mutation) is second order in the cells against the
    exact Gaussian solution; Δt = 1/64 with Strang keeps the time error ~10⁻⁵, far below."""
    prob = GaussianProblem(a=0.5, eps=1.0, kappa=2.0, D=0.02, T=0.1, theta_box=(-2.0, 1.0),
                           h_box=(-2.4, 0.4), cov0=[[0.0625, 0.0], [0.0, 0.0625]])
    model, t_final = prob.model(), 0.5

    def run(n):
        g = prob.grid(n, n)
        return g, pp.solve(model, g, prob.initial(g), t_final, 1 / 64, progress=False,
                           save_every=10 ** 6).f[-1]

    def err(result, n):
        g, f = result
        return float(np.abs(f - prob.exact_density(g, t_final)).sum() * g.dtheta * g.dh)

    st = pp.convergence(run, [24, 32, 48, 64], err, parameter="cells", expected=2)
    print(st.table())
    assert st.agrees(0.15), st.table()
    assert st.errors[-1] < 3e-3


# -- reporting -----------------------------------------------------------------------------------
def test_table_dict_and_plot():
    v = [10, 20, 40, 80]
    e = [1e-2, 2.6e-3, 6.1e-4, 1.6e-4]
    st = ConvergenceStudy.from_errors(v, e, parameter="cells", expected=2, seconds=[1, 2, 4, 8],
                                      label="demo")
    text = st.table()
    lines = text.splitlines()
    assert lines[0] == "demo" and "cells" in lines[1] and "local order" in lines[1]
    assert len([ln for ln in lines if ln.strip().startswith(("10 ", "20 ", "40 ", "80 "))]) == 4
    assert f"{st.order:.3f} ± {st.order_stderr:.3f}" in text and "expected order: 2" in text
    d = json.loads(json.dumps(st.to_dict()))
    assert d["values"] == [10.0, 20.0, 40.0, 80.0]
    assert d["order"] == pytest.approx(st.order) and len(d["local_orders"]) == 3
    lo, hi = st.interval(0.95)
    assert lo < st.order < hi
    ax = st.plot()
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert any(lab.startswith("fit: order") for lab in labels)
    assert any("slope -2" in lab for lab in labels)                  # the reference triangle
    assert ax.get_xscale() == "log" and ax.get_yscale() == "log"
    assert ax.get_xlabel() == "cells" and ax.get_ylabel() == "error"
    plt.close(ax.figure)


# -- bad input -----------------------------------------------------------------------------------
def _run(v):
    return v


def _err(r, v):
    return v ** 2


def test_fewer_than_four_values():
    with pytest.raises(ValueError, match="at least 4"):
        pp.convergence(_run, [0.1, 0.05, 0.025], _err, parameter="dt")
    with pytest.raises(ValueError, match="at least 4"):
        fit_power([1, 2, 3], [1, 2, 3])


def test_non_positive_errors():
    with pytest.raises(ValueError, match="dt=0.05.*finite and > 0"):
        pp.convergence(_run, [0.1, 0.05, 0.025, 0.0125], lambda r, v: 0.0 if v == 0.05 else v,
                       parameter="dt")
    with pytest.raises(ValueError, match="finite and > 0"):
        ConvergenceStudy.from_errors([1, 2, 3, 4], [1.0, -1.0, 0.5, 0.2])
    with pytest.raises(ValueError, match="finite and > 0"):
        fit_power([1, 2, 3, 4], [1.0, np.nan, 0.5, 0.2])


def test_other_bad_input():
    vals = [0.1, 0.05, 0.025, 0.0125]
    with pytest.raises(ValueError, match="repeated"):
        pp.convergence(_run, [0.1, 0.1, 0.05, 0.025], _err, parameter="dt")
    with pytest.raises(ValueError, match="must be > 0"):
        pp.convergence(_run, [0.1, 0.0, 0.05, 0.025], _err, parameter="dt")
    with pytest.raises(ValueError, match="finer"):
        pp.convergence(_run, vals, _err, parameter="tolerance")
    with pytest.raises(TypeError, match="integers"):
        pp.convergence(_run, [10, 20.5, 40, 80], _err, parameter="cells")
    with pytest.raises(ValueError, match="finer than every value"):
        pp.convergence(_run, vals, _err, parameter="dt", reference=0.05)
    with pytest.raises(TypeError, match="scalar"):
        pp.convergence(_run, vals, lambda r, v: np.ones(2), parameter="dt")
    with pytest.raises(TypeError, match="callable"):
        pp.convergence(_run, vals, "l1", parameter="dt")
    with pytest.raises(ValueError, match="at least 2"):
        pp.convergence(lambda v, s: v, vals, _err, parameter="dt", seeds=1)
    with pytest.raises(ValueError, match="kind"):
        pp.convergence(_run, vals, _err, parameter="dt", kind="linear")
    with pytest.raises(ValueError, match="no expected order"):
        ConvergenceStudy.from_errors(vals, [v ** 2 for v in vals], parameter="dt").agrees(0.1)


def test_exception_in_run_names_the_value():
    def run(dt):
        if dt < 0.03:
            raise RuntimeError("diverged")
        return dt

    with pytest.raises(RuntimeError, match="diverged") as info:
        pp.convergence(run, [0.1, 0.05, 0.025, 0.0125], _err, parameter="dt")
    assert any("dt=0.025" in n for n in info.value.__notes__)


def test_custom_parameter_with_finer():
    tol = [1e-2, 1e-3, 1e-4, 1e-5]
    st = pp.convergence(_run, tol, lambda r, v: 5 * v, parameter="tolerance", finer="smaller")
    assert st.order == pytest.approx(1.0)
