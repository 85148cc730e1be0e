"""The speed, work-precision and scaling studies: their solvers, analyses, tiny end-to-end runs
and the ``pde-popdyn bench`` command."""

import json
import math

import numpy as np
import pytest

import pde_popdyn as pp
from benchmarks import study_scaling as scaling
from benchmarks import study_speed as speed
from benchmarks import study_workprecision as wp
from pde_popdyn import cli


@pytest.fixture(scope="module")
def small():
    prob = speed.problem()
    model = prob.model()
    grid = prob.grid(40, 40)
    f0 = prob.initial(grid)
    return prob, model, grid, f0, speed.semidiscrete_reference(model, grid, f0, 1.0)


# -- speed ---------------------------------------------------------------------------------
def test_all_methods_converge_to_the_same_semidiscrete_solution(small):
    prob, model, grid, f0, f_semi = small
    w = grid.weights
    f_exact_int, info = speed.exact_solve(model, grid, f0, 1.0)
    assert speed.rel_l1(f_exact_int, f_semi, w) < 1e-12          # exact in time
    assert info["n_saved"] == 2
    f_saves, info = speed.exact_solve(model, grid, f0, 1.0, speed.SAVE_DT)
    assert info["n_saved"] == 11 and speed.rel_l1(f_saves, f_semi, w) < 1e-12
    f_bdf, _ = speed.bdf_solve(model, grid, f0, 1.0, 1e-8)
    assert speed.rel_l1(f_bdf, f_semi, w) < 1e-6
    # Strang's time error is second order: halving Δt divides it by about 4
    e = [speed.rel_l1(speed.pp_solve(model, grid, f0, 1.0, k)[0], f_semi, w) for k in (20, 40)]
    assert 3.2 < e[0] / e[1] < 4.8
    # and the spatial floor is what the exact Gaussian comparison sees
    floor = speed.rel_l1(f_semi, prob.exact_density(grid, 1.0), w)
    assert 1e-3 < floor < 0.1


def test_bdf_baseline_repeats_a_run_that_overflowed_once(small, monkeypatch):
    """scipy's BDF can accept a step whose error norm is NaN (seen once in CI: inf − inf in
    its difference table). The baseline then runs again from a fixed first step, counts the
    retry, and still reaches the semi-discrete solution; failing twice is an error that names
    the tolerance."""
    prob, model, grid, f0, f_semi = small
    real = speed.solve_ivp
    calls = []

    def flaky(*args, **kw):
        calls.append(kw.get("first_step"))
        if len(calls) == 1:
            raise FloatingPointError("invalid value encountered in subtract")
        return real(*args, **kw)

    monkeypatch.setattr(speed, "solve_ivp", flaky)
    f, info = speed.bdf_solve(model, grid, f0, 1.0, 1e-8)
    assert info["retries"] == 1 and calls[0] is None and calls[1] > 0
    assert speed.rel_l1(f, f_semi, grid.weights) < 1e-6

    def broken(*args, **kw):
        out = real(*args, **kw)
        out.y[:] = np.nan
        return out

    monkeypatch.setattr(speed, "solve_ivp", broken)
    with pytest.raises(RuntimeError, match="BDF baseline failed at rtol=1e-06.*non-finite"):
        speed.bdf_solve(model, grid, f0, 1.0, 1e-6)


def test_retime_interleaved_keeps_every_timing_and_the_minimum():
    calls = []
    recs = [{"wall_seconds": 5.0, "cpu_seconds": 5.0}, {"wall_seconds": 0.0, "cpu_seconds": 0.0}]
    speed.retime_interleaved([(recs[0], lambda: calls.append("a")),
                              (recs[1], lambda: calls.append("b"))], repeats=3)
    assert calls == ["a", "b", "a", "b"]                      # interleaved
    assert len(recs[0]["wall_seconds_all"]) == 3
    assert recs[0]["wall_seconds_min"] < 1.0                  # a real re-timing beat 5 s
    assert recs[1]["wall_seconds_min"] == 0.0


def test_blas_threads_limits_and_records():
    pytest.importorskip("threadpoolctl")
    from threadpoolctl import threadpool_info
    with speed.blas_threads(1) as rec:
        assert rec["threadpoolctl"] and rec["limit"] == 1
        assert all(d["num_threads"] == 1 for d in threadpool_info())
    with speed.blas_threads(None) as rec:
        assert rec["limit"] is None


def test_speed_study_runs_end_to_end_on_a_tiny_config(tmp_path, monkeypatch):
    tiny = {"sizes": (32,), "steps": {32: (5, 10, 20)}, "rtols": {32: (1e-3, 1e-6)},
            "refine_levels": 1, "repeats": 2, "scaling_sizes": (32, 48), "scaling_steps": 2,
            "eps_total_sizes": (32,), "eps_sweep": ()}
    monkeypatch.setitem(speed.CONFIG, "quick", tiny)
    res = speed.run(True, tmp_path)
    data = json.loads((tmp_path / "speed.json").read_text())
    assert (tmp_path / "speed.png").stat().st_size > 0
    comp = data["comparison"][0]
    assert set(data["speed_ratio_by_method"]) == set(speed.METHODS)
    # the exact integrator reaches the equal-accuracy target at round-off
    assert comp["exact"][0]["reaches_target"] and comp["exact"][0]["err_time"] < 1e-12
    best = comp["best_method"]
    assert comp["speed_ratio"] == max(v for v in comp["speed_ratio_by_method"].values()
                                      if v is not None)
    assert comp["speed_ratio"] == pytest.approx(
        comp["best"]["bdf"]["wall_seconds_min"] / comp["best"][best]["wall_seconds_min"])
    assert "best method" in res["headline"] and isinstance(res["passed"], bool)
    assert data["blas_threads"]["limit"] == 1


# -- work-precision -----------------------------------------------------------------------
def test_gaussian_at_nodes_is_the_normal_density():
    grid = pp.Grid(theta=(-3, 3, 200), h=(-2, 2, 200))
    mean, cov = (-0.3, -0.4), [[0.05, 0.02], [0.02, 0.06]]
    g = wp.gaussian_at_nodes(grid, mean, cov)
    assert grid.mass(g) == pytest.approx(1.0, abs=1e-6)
    assert g.max() == pytest.approx(1 / (2 * np.pi * math.sqrt(0.05 * 0.06 - 0.02 ** 2)),
                                    rel=0.02)
    # point values and cell averages differ by O(Δ²)
    assert speed.rel_l1(g, pp.gaussian(grid, mean, cov), grid.weights) < 5e-3
    cheb = pp.Grid(theta=(-3, 3, 64), h=(-2, 2, 32), nodes="spectral")
    assert cheb.mass(wp.gaussian_at_nodes(cheb, mean, cov)) == pytest.approx(1.0, abs=1e-4)


def test_spectral_case_error_against_the_exact_gaussian_at_nodes():
    case = wp.Case(64, 32, "spectral")
    f, _ = wp.spectral_solve(case, 80)
    err = case.error(f)
    assert err < 5e-4                    # 1.5e-4 measured: spectral in space, Strang in time
    f2, _ = wp.spectral_solve(case, 160)
    assert case.error(f2) < err          # the splitting error dominates here and halves
    fv = wp.Case(64, 64, "cells")
    assert fv.error(wp.exact_solve(fv.model, fv.grid, fv.f0, 1.0)[0]) > 10 * err


def test_pareto_front_and_time_to_target():
    runs = [{"wall_seconds": t, "err": e} for t, e in
            [(1.0, 1e-2), (2.0, 1e-3), (1.5, 5e-2), (3.0, 2e-3), (4.0, 1e-4), (0.5, 1e-1)]]
    front = wp.pareto_front(runs)
    assert [(r["wall_seconds"], r["err"]) for r in front] == [
        (0.5, 1e-1), (1.0, 1e-2), (2.0, 1e-3), (4.0, 1e-4)]
    assert wp.cheapest_reaching(runs, 1e-3, k=2) == [runs[1], runs[4]]
    runs[4]["wall_seconds_min"] = 1.2                          # re-timed faster
    assert wp.time_to(runs, 1e-3) is runs[4]
    assert wp.time_to(runs, 1e-6) is None


def test_bdf_extrapolation_recovers_power_laws():
    ns = [96, 128, 160, 200, 256]
    fv = [{"n_theta": n, "err": 40.0 * n ** -2.0} for n in ns]
    bdf = [{"n_theta": n, "err": 40.0 * n ** -2.0 * 1.01, "rtol": 1e-4,
            "wall_seconds": 1e-6 * (n * n) ** 1.5} for n in ns]
    bdf += [{"n_theta": n, "err": 1.0, "rtol": 1e-2, "wall_seconds": 1e-9} for n in ns]
    ex = wp.bdf_extrapolation(fv, bdf, 1e-5)
    assert ex["floor_slope"] == pytest.approx(-2.0) and ex["cost_slope"] == pytest.approx(1.5)
    assert ex["n_needed"] == pytest.approx(2000.0, rel=1e-9)
    assert ex["bdf_seconds_needed"] == pytest.approx(1e-6 * 2000.0 ** 3, rel=1e-6)
    assert ex["bdf_seconds_needed_low"] == pytest.approx(ex["bdf_seconds_needed"], rel=1e-6)
    # a noisy cost exponent: the lower estimate drops to q − 2σ, but never below 1
    rng = np.random.default_rng(0)
    for r in bdf[:5]:
        r["wall_seconds"] *= math.exp(0.8 * rng.standard_normal())
    ex = wp.bdf_extrapolation(fv, bdf, 1e-5)
    assert ex["cost_slope_low"] == pytest.approx(
        min(ex["cost_slope"], max(ex["cost_slope"] - 2 * ex["cost_slope_stderr"], 1.0)))
    assert ex["bdf_seconds_needed_low"] <= ex["bdf_seconds_needed"] * (1 + 1e-9) \
        or ex["cost_slope_low"] == ex["cost_slope"]


def _pypde_rhs_and_fv(pde, n):
    case = wp.Case(n, n, "cells")
    mu, S = wp.exact_moments()
    case.f0 = wp.gaussian_at_nodes(case.grid, mu[0], S[0])
    eq, u0 = wp.make_pypde_equation(pde, case)
    M = speed.semidiscrete_matrix(case.model, case.grid)
    return eq, u0, (M @ case.f0.ravel()).reshape(case.grid.shape)


def test_pypde_equation_is_consistent_with_the_fv_operator():
    pde = pytest.importorskip("pde")
    diffs = []
    for n in (96, 192):
        eq, u0, ref = _pypde_rhs_and_fv(pde, n)
        rhs = eq.evolution_rate(u0).data                 # py-pde's field operators
        diffs.append(np.abs(rhs - ref).sum() / np.abs(ref).sum())
        np.testing.assert_allclose(eq.evolution_rate(2 * u0).data, 2 * rhs, rtol=1e-12,
                                   atol=1e-9)           # the linearised equation is linear
    # two second-order discretisations of the same operator on a smooth Gaussian
    assert diffs[0] < 0.06 and 3.0 < diffs[0] / diffs[1] < 5.0


@pytest.mark.slow
def test_pypde_compiled_rhs_equals_the_field_version():
    pde = pytest.importorskip("pde")
    eq, u0, _ = _pypde_rhs_and_fv(pde, 64)
    rhs = eq.make_evolution_rate(u0, "numba")            # ~30 s of numba compilation
    np.testing.assert_allclose(rhs(u0.data, 0.0), eq.evolution_rate(u0).data, rtol=1e-12,
                               atol=1e-12)


def test_workprecision_study_runs_end_to_end_without_pypde(tmp_path, monkeypatch, capsys):
    tiny = {"fv_exact": (32, 48, 96, 128), "fv_strang": {32: (5, 10)},
            "spectral": {"n": (48, 64), "steps": (20, 40)},
            "bdf": {32: (1e-3,), 64: (1e-4,), 96: (1e-4,)}, "bdf_cap_seconds": 30.0,
            "pypde": (32,), "pypde_retime": False, "repeats": 2,
            "default_threads_check": False}
    monkeypatch.setitem(wp.CONFIG, "quick", tiny)
    monkeypatch.setattr(wp, "pypde_module", lambda: (None, "ImportError: no module pde"))
    res = wp.run(True, tmp_path)
    assert "py-pde is not installed" in capsys.readouterr().out
    data = json.loads((tmp_path / "workprecision.json").read_text())
    assert (tmp_path / "workprecision.png").stat().st_size > 0
    assert data["pypde"]["available"] is False and data["runs"]["pypde"] == []
    assert data["passed_1e-3_pypde"] is None
    t3 = data["time_to_target"]["0.001"]
    assert t3["best_pde_popdyn"] == "spectral"           # only the spectral runs reach 1e-3
    assert t3["bdf"] is None and data["passed"] is False  # BDF never got below 1e-3 here
    assert "py-pde not installed" in res["headline"]
    for m in ("fv_exact", "spectral", "bdf"):
        assert data["pareto_fronts"][m]


def test_bdf_runs_stop_at_the_cap():
    runs, fns, skipped = wp.run_bdf({32: (1e-3, 1e-4), 48: (1e-3,)}, cap=0.0)
    assert len(runs) == 1 and runs[0]["rtol"] == 1e-3       # the loosest rtol first
    assert any("32² rtol" in s for s in skipped) and any("48²" in s for s in skipped)


# -- scaling ------------------------------------------------------------------------------
def test_scaling_study_runs_end_to_end_on_a_tiny_config(tmp_path, monkeypatch):
    tiny = {"sizes": (32, 48, 64), "steps": 3, "repeats": 1, "agents": (100, 1000, 10_000),
            "particle_steps": 3, "particle_repeats": 1}
    monkeypatch.setitem(scaling.CONFIG, "quick", tiny)
    res = scaling.run(True, tmp_path)
    data = json.loads((tmp_path / "scaling.json").read_text())
    assert (tmp_path / "scaling.png").stat().st_size > 0
    assert len(data["grid"]) == 6 and set(data["grid_fit"]) == {"0.1", "1e-05"}
    for r in data["particles"]:
        assert r["fast"] == "ou" and r["agent_steps_per_second"] > 0
        assert r["agent_steps_per_second"] == pytest.approx(
            r["n"] * r["steps"] / r["wall_seconds"])
    assert data["particle_fit"]["all"]["slope"] > 0
    assert res["passed"] is None and "agent-steps/s" in res["headline"]


# -- pde-popdyn bench ---------------------------------------------------------------------
def test_cli_bench_runs_the_benchmark_runner(capsys):
    assert cli.main(["bench", "--list"]) == 0
    out = capsys.readouterr().out
    assert "workprecision" in out and "scaling" in out and "speed" in out
    assert cli.main(["bench", "no-such-study"]) == 2


def test_cli_bench_outside_a_checkout_says_so(tmp_path, monkeypatch, capsys):
    fake = tmp_path / "site-packages" / "pde_popdyn" / "cli.py"
    fake.parent.mkdir(parents=True)
    monkeypatch.setattr(cli, "__file__", str(fake))
    assert cli.main(["bench", "--list"]) == 2
    err = capsys.readouterr().err
    assert "not part of the installed package" in err and "checkout" in err


def test_findiff_baseline_is_fourth_order_on_a_smooth_density():
    """The findiff method of lines (work-precision study) applies the expanded operator
    (mT/ε)u'' + (m/ε)(L_θ u_θ + L_θθ u) + D u_hh + κ F u with fourth-order accuracy."""
    findiff = pytest.importorskip("findiff", reason="findiff is not installed: pip install "
                                  "'pde_popdyn[bench]' for the findiff baseline")
    errs = []
    for n in (48, 96):
        case = wp.point_case(n)
        model, grid = case.model, case.grid
        th, hh = grid.mesh()
        s2 = 0.15
        u = np.exp(-(th ** 2 + hh ** 2) / (2 * s2))
        prob = wp.problem()
        K, a, b = prob.K, prob.a, prob.b
        L_th = K * (th - a * hh - b)
        rhs = ((prob.T / prob.eps) * (th ** 2 / s2 ** 2 - 1 / s2) * u
               + (1 / prob.eps) * (L_th * (-th / s2) * u + K * u)
               + prob.D * (hh ** 2 / s2 ** 2 - 1 / s2) * u
               + prob.kappa * model.fitness_on(grid) * u)
        M, edge = wp.findiff_matrix(findiff, case)
        got = (M @ u.ravel()).reshape(grid.shape)
        assert not got[edge].any()                        # boundary nodes held fixed
        errs.append(np.abs(got - rhs)[~edge].max() / np.abs(rhs).max())
    assert errs[1] < 1e-3
    assert 12 < errs[0] / errs[1] < 20, errs            # 2⁴ = 16


def test_pbt_study_runs_end_to_end_on_a_tiny_config(tmp_path, monkeypatch):
    from benchmarks import study_pbt as pbt
    tiny = {"breeder": (144, 288), "eps": (0.02, 0.01), "N": (300, 1200), "seeds": 2,
            "tau": (0.2, 0.1), "qc": 1e-2, "cells": 32}
    monkeypatch.setitem(pbt.CONFIG, "quick", tiny)
    out = pbt.run(True, tmp_path)
    data = json.loads((tmp_path / "pbt.json").read_text())
    assert "breeder's equation order" in out["headline"]
    assert 1.8 < data["results"]["breeder"]["order"] < 2.2
    assert 0.8 < data["results"]["eps"]["slope"] < 1.2
    assert (tmp_path / "pbt.png").exists()
