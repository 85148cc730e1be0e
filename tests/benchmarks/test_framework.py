"""The benchmark runner (discovery, failure isolation, JSON + RESULTS.md) and its helpers."""

import json
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from scipy.stats import linregress

import benchmarks
from benchmarks._common import fit_line, fit_slope, machine_info, timed, timer, write_json


def _fake_study(name: str, slope: float, passed):
    """A study obeying the contract: writes <name>.json and <name>.png, returns a headline."""

    def run(quick, outdir):
        from matplotlib.figure import Figure

        n = np.array([8, 16, 32, 64])
        err = 0.5 * n ** slope
        fit = fit_slope(n, err)
        write_json(Path(outdir) / f"{name}.json",
                   {"n": n, "err": err, "slope": fit.slope, "stderr": fit.stderr,
                    "quick": quick, "nan": np.nan})
        fig = Figure(figsize=(2, 2))
        fig.add_subplot().loglog(n, err)
        fig.savefig(Path(outdir) / f"{name}.png")
        return {"headline": f"order {fit.slope:.2f} | fake", "passed": passed}

    return SimpleNamespace(NAME=name, DESCRIPTION=f"fake study {name}", run=run)


def _boom():
    def run(quick, outdir):
        raise RuntimeError("deliberate failure")
    return SimpleNamespace(NAME="boom", DESCRIPTION="always fails", run=run)


def test_runner_writes_json_and_results_md_and_isolates_failures(tmp_path):
    studies = {"fake": _fake_study("fake", -2.0, True), "boom": _boom(),
               "other": _fake_study("other", -1.0, None)}
    out = tmp_path / "results"
    summaries = benchmarks.run_studies(["boom", "fake"], quick=True, outdir=out,
                                       studies=studies, echo=False)
    by_name = {s["study"]: s for s in summaries}
    assert by_name["boom"]["status"] == "error"
    assert "deliberate failure" in by_name["boom"]["error"]
    assert by_name["fake"]["status"] == "ok" and by_name["fake"]["passed"] is True

    data = json.loads((out / "fake.json").read_text())
    assert data["slope"] == pytest.approx(-2.0, abs=1e-12)      # the study's raw numbers kept
    assert data["nan"] is None                                  # standard JSON, no NaN token
    s = data["summary"]
    assert s["headline"].startswith("order -2.00") and s["quick"] is True
    assert s["wall_seconds"] > 0 and s["figure"] == "fake.png"
    for key in ("cpu", "cores", "numpy", "scipy"):
        assert s["machine"][key]
    failed = json.loads((out / "boom.json").read_text())["summary"]
    assert failed["status"] == "error" and "RuntimeError" in failed["traceback"]

    md = (out / "RESULTS.md").read_text()
    rows = [ln for ln in md.splitlines() if ln.startswith("| [")]
    assert len(rows) == 2
    assert any(r.startswith("| [boom]") and "| error |" in r for r in rows)
    fake_row = next(r for r in rows if r.startswith("| [fake]"))
    assert "order -2.00 \\| fake" in fake_row and "| yes | quick |" in fake_row
    assert "![fake](fake.png)" in md

    # a later run of another study keeps the earlier rows (read back from their JSON)
    benchmarks.run_studies(["other"], quick=False, outdir=out, studies=studies, echo=False)
    md = (out / "RESULTS.md").read_text()
    rows = [ln for ln in md.splitlines() if ln.startswith("| [")]
    assert [r.split("]")[0] for r in rows] == ["| [boom", "| [fake", "| [other"]
    assert "| — | full |" in rows[2]


def test_runner_rejects_unknown_names_and_bad_results(tmp_path):
    with pytest.raises(ValueError, match="unknown benchmark"):
        benchmarks.run_studies(["nope"], outdir=tmp_path, studies={"fake": _fake_study(
            "fake", -1, True)}, echo=False)
    assert not any(tmp_path.iterdir())                           # nothing ran
    bad = SimpleNamespace(NAME="bad", DESCRIPTION="", run=lambda quick, outdir: {"x": 1})
    s = benchmarks.run_one("bad", bad, quick=True, outdir=tmp_path, echo=False)
    assert s["status"] == "error" and "headline" in s["error"]


def test_discover_finds_the_speed_study_and_reports_broken_imports(tmp_path):
    studies = benchmarks.discover()
    assert "speed" in studies and callable(studies["speed"].run)
    broken = benchmarks.BrokenStudy("broken", ImportError("no module x"), "Traceback ...")
    s = benchmarks.run_one("broken", broken, quick=True, outdir=tmp_path, echo=False)
    assert s["status"] == "error" and "could not be imported" in s["error"]
    assert benchmarks.main(["--list"]) == 0
    assert benchmarks.main(["no-such-study", "--out", str(tmp_path)]) == 2


def test_fit_slope_recovers_exponent_and_matches_linregress():
    x = np.array([16, 32, 64, 128, 256])
    s = fit_slope(x, 3.0 * x ** -2.0)
    assert s.slope == pytest.approx(-2.0, abs=1e-12) and s.stderr < 1e-12
    rng = np.random.default_rng(1)
    y = 3.0 * x ** -2.0 * np.exp(0.05 * rng.standard_normal(x.size))
    s = fit_slope(x, y)
    ref = linregress(np.log(x), np.log(y))
    assert s.slope == pytest.approx(ref.slope, rel=1e-12)
    assert s.stderr == pytest.approx(ref.stderr, rel=1e-10)
    assert abs(s.slope + 2.0) < 4 * s.stderr + 1e-3
    p, c, _ = fit_line(x, y)
    assert c == pytest.approx(ref.intercept, rel=1e-12)
    with pytest.raises(ValueError, match="positive"):
        fit_slope([1, 2, 3], [1.0, 0.0, 2.0])
    with pytest.raises(ValueError, match="at least 2"):
        fit_slope([1], [1.0])


def test_timer_takes_the_minimum_and_json_is_numpy_safe(tmp_path):
    delays = iter([0.05, 0.001, 0.03])

    def work():
        time.sleep(next(delays))
        return "done"

    best, result = timed(work, repeats=3)
    assert best < 0.02 and result == "done"
    assert timer(lambda: None, repeats=2) >= 0
    path = write_json(tmp_path / "x.json", {"a": np.float32(1.5), "b": np.arange(3),
                                            "c": (np.int64(2), np.bool_(True)),
                                            "d": np.inf, "e": Path("p")})
    assert json.loads(path.read_text()) == {"a": 1.5, "b": [0, 1, 2], "c": [2, True],
                                            "d": None, "e": "p"}
    with pytest.raises(TypeError, match="cannot write"):
        write_json(tmp_path / "y.json", {"f": object()})
    info = machine_info()
    assert info["cores"] >= 1 and info["numpy"] == np.__version__
