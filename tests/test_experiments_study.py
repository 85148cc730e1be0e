"""The CartPole study (benchmarks/study_cartpole.py) end to end on a tiny configuration."""

import json

import numpy as np
import pytest

pytest.importorskip("gymnasium", reason="the CartPole study needs gymnasium "
                                        "(pip install 'pde_popdyn[gym]')")

from benchmarks import study_cartpole as study  # noqa: E402

TINY = {"n_agents": 10, "generations": 3, "steps": 80, "windows": (1, 5), "seeds": (0, 1),
        "fbar_lr": (-4.0, -2.5), "fbar_per_lr": 3, "burn_in": 1, "workers": 1,
        "hidden": (16, 16)}


def test_cartpole_study_runs_end_to_end_on_a_tiny_config(tmp_path, monkeypatch):
    monkeypatch.setitem(study.CONFIG, "quick", TINY)
    monkeypatch.setenv("PDE_POPDYN_CARTPOLE_RUNS", str(tmp_path / "runs"))
    res = study.run(True, tmp_path)
    data = json.loads((tmp_path / "cartpole.json").read_text())
    assert (tmp_path / "cartpole.png").stat().st_size > 0
    assert res["passed"] is None and "k=1" in res["headline"] and "k=5" in res["headline"]
    assert "missing" in res["headline"] or data["prediction"]["available"]
    for k in ("1", "5"):
        s = data["by_window"][k]
        assert len(s["mean_return"]) == 3 and s["seeds"] == [0, 1]
        assert all(1 <= x <= 100 for x in s["mean_return"])
        assert len(s["rank_corr_next"]) == 2 and len(s["reversed_by"]["1"]) == 2
        assert s["reversed_by"][k] == [0.0, 0.0]          # a window never reverses itself
        assert s["surviving_lineages"][0] == 10 and s["surviving_lineages"][-1] <= 10
    fh = data["fixed_h"]
    assert fh["log10_lr"] == [-4.0, -2.5] and all(x > 0 for x in fh["stderr"])
    assert data["reference_run"]["wall_seconds"] > 0
    assert np.asarray(data["rho_lr_reference"]).shape == (4, 30)
    # the reference run left its snapshot files; a second call reuses the cached runs
    assert (tmp_path / "runs" / "quick").exists()
    res2 = study.run(True, tmp_path)
    data2 = json.loads((tmp_path / "cartpole.json").read_text())
    assert data2["cached_runs"] == 5 and data2["by_window"] == data["by_window"]


def test_cartpole_quick_setting_runs(tmp_path, monkeypatch):
    """The study's own --quick setting (32 agents, 3 generations, k = 1, 2, 5), as CI runs it."""
    monkeypatch.setenv("PDE_POPDYN_CARTPOLE_RUNS", str(tmp_path / "runs"))
    res = study.run(True, tmp_path)
    data = json.loads((tmp_path / "cartpole.json").read_text())
    cfg = study.CONFIG["quick"]
    assert data["quick"] and res["passed"] is None
    assert sorted(data["by_window"]) == sorted(str(k) for k in cfg["windows"])
    for s in data["by_window"].values():
        assert len(s["mean_return"]) == cfg["generations"]
        assert all(1 <= x <= 100 for x in s["mean_return"])
    assert data["reference_run"]["wall_seconds"] > 0
