"""The bilevel limit on ridge regression (benchmarks/study_bilevel.py): the package's Gibbs
averages reproduce the exact Gaussian effective fitness, and F̄_T → F(θ*), argmax F̄_T →
the hypergradient's bilevel optimum, both at order 1 in T."""

import json

import numpy as np
import pytest

import pde_popdyn as pp

pytest.importorskip("sklearn", reason="the ridge problem uses scikit-learn's diabetes data")

from benchmarks import study_bilevel as bl  # noqa: E402


@pytest.fixture(scope="module")
def ridges():
    return {k: bl.Ridge.diabetes(v) for k, v in bl.FEATURES.items()}


def test_hypergradient_is_the_derivative_and_its_root_the_fine_search_optimum(ridges):
    for r in ridges.values():
        h = np.array([-3.0, -1.0, 0.5])
        d = 1e-5
        fd = (r.f_star(h + d) - r.f_star(h - d)) / (2 * d)
        np.testing.assert_allclose(r.hypergradient(h), fd, rtol=1e-6, atol=1e-10)
        h0 = r.bilevel_optimum()
        assert bl.H_BOX[0] + 1 < h0 < bl.H_BOX[1] - 1        # an interior bilevel optimum
        assert abs(r.fine_search_optimum() - h0) < 1e-6


def test_package_quadrature_equals_the_exact_gaussian_average_in_1d(ridges):
    r = ridges["1d"]
    h = np.array([-3.0, r.bilevel_optimum(), 1.0])
    for T in (1e-1, 1e-3, 1e-5):
        got = bl.package_fbar_1d(r, T, h)
        np.testing.assert_allclose(got, r.fbar(h, T), rtol=0, atol=1e-13)
        # and it is not the T = 0 value: the O(T) term is resolved
        assert np.all(np.abs(got - r.f_star(h)) > 0.1 * T * r.gibbs_trace(h))


def test_discrete_2d_gibbs_average_equals_the_exact_gaussian_average(ridges):
    r = ridges["2d"]
    for T in (1e-2, 1e-4):
        for h in (-2.5, 0.0):
            assert abs(bl.package_fbar_2d(r, T, h) - float(r.fbar(h, T))) < 1e-12


def test_effective_fitness_approaches_the_bilevel_objective_at_order_one(ridges):
    r = ridges["1d"]
    h = np.array([-3.0, r.bilevel_optimum(), 1.0])
    Ts = [1e-3, 1e-4, 1e-5, 1e-6]
    study = pp.convergence(
        lambda T: float(np.abs(bl.package_fbar_1d(r, T, h) - r.f_star(h)).max()), Ts,
        lambda e, T: e, parameter="T", finer="smaller", expected=1.0)
    assert study.agrees(0.01), study.table()


def test_argmax_approaches_the_bilevel_optimum_at_order_one(ridges):
    # the package's F̄ in 1-D; the closed form in 10-D, where O(T) sets in below T ≈ 1e-3
    for key, argmax in (("1d", lambda r, T: bl.package_argmax(
            lambda x: float(bl.package_fbar_1d(r, T, [x])[0]))),
                        ("10d", lambda r, T: r.argmax_fbar(T))):
        r = ridges[key]
        h0 = r.bilevel_optimum()
        Ts = [1e-3, 1e-4, 1e-5, 1e-6]
        shifts = {T: argmax(r, T) - h0 for T in Ts}
        study = pp.convergence(lambda T: abs(shifts[T]), Ts, lambda e, T: e, parameter="T",
                               finer="smaller", expected=1.0)
        assert study.agrees(0.05), (key, study.table())
        # the shift per unit T tends to the first-order coefficient g'(h*)/(2 F*''(h*))
        kappa = r.first_order_shift()
        assert shifts[1e-6] / 1e-6 == pytest.approx(kappa, rel=2e-3)


def test_mala_in_ten_dimensions_agrees_with_the_closed_form(ridges):
    r = ridges["10d"]
    out = bl.mala_check(r, r.bilevel_optimum(), 1e-3, chains=16, n_samples=1200, burn_in=600,
                        seed=3)
    assert abs(out["z"]) < 4, out
    # the check resolves the O(T) gap: the standard error is far below it
    assert out["stderr"] < 0.05 * abs(out["gap_exact"])


def test_quick_study_writes_json_figure_and_passes(tmp_path):
    res = bl.run(True, tmp_path)
    assert res["passed"] is True, res["headline"]
    data = json.loads((tmp_path / "bilevel.json").read_text())
    assert (tmp_path / "bilevel.png").stat().st_size > 10_000
    for d in data["dimensions"].values():
        assert abs(d["shift_rate"]["order"] - 1) <= 0.05
        assert abs(d["gap_rate"]["order"] - 1) <= 0.05
