"""The ap study's reductions: the cost ratios and the bound |err| ≤ C Δt² it reports."""

import numpy as np

from benchmarks import study_ap as ap


def test_cost_reports_the_whole_run_the_steps_alone_and_the_set_up():
    cfg = {"cost_eps": (1e-1, 1e-5), "repeats": 1, "cost_split": False}
    out = ap.cost(cfg)
    walls = [r["new"]["wall_seconds"] for r in out["rows"]]
    runs = [r["new"]["run_seconds"] for r in out["rows"]]
    setups = [r["new"]["setup_seconds"] for r in out["rows"]]
    assert np.isclose(out["max_over_min"], max(walls) / min(walls))
    assert np.isclose(out["steps_max_over_min"], max(runs) / min(runs))
    # part by part against ε = 0.1 (the first row)
    assert np.isclose(out["steps_max_over_eps_0.1"], max(runs) / runs[0])
    assert np.isclose(out["setup_max_over_eps_0.1"], max(setups) / setups[0])
    # the steps and the set-up are parts of the whole run
    assert all(0 < r < w and 0 < s < w for r, s, w in zip(runs, setups, walls))
    assert out["rows"][0]["new"]["fast_step"]["rational"] > 0        # ε = 0.1: rational branch
    assert out["rows"][1]["new"]["fast_step"]["projection"] > 0      # ε = 1e-5: rank one


def test_self_convergence_reports_the_dt2_bound():
    cfg = {"conv_eps": (1e-1,), "starts": ("prepared",)}
    out = ap.self_convergence("boltzmann", 24, cfg)
    r = out["0.1/prepared/new"]
    dts = np.array(ap.DTS)
    assert np.isclose(r["c_mean"], np.max(np.abs(r["err_mean"]) / dts ** 2))
    assert np.isclose(r["c_var"], np.max(np.abs(r["err_var"]) / dts ** 2))
    # second order: the bound holds with a constant, and the error falls like Δt²
    assert r["order_mean"] > 1.8 and r["order_var"] > 1.8
    assert np.all(np.abs(r["err_mean"]) <= r["c_mean"] * dts ** 2 * (1 + 1e-12))
