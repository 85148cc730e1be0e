"""The one run loop: trackers, stop reasons, interrupts and resume for every kind of run."""

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

import pde_popdyn as pp
from pde_popdyn.presets import build


def double_well_model():
    return pp.Model(loss=lambda th, h: (th ** 2 - 1) ** 2 + 0.3 * h * th,
                    fitness=lambda th, h: -(th - 0.8) ** 2 - 0.5 * h ** 2,
                    temperature=0.4, eps=0.05, selection=pp.Replicator(1.0),
                    mutation=pp.Diffusion(0.05))


def test_steady_state_tracker_stops_a_relaxing_double_well_early():
    grid = pp.Grid(theta=(-2.5, 2.5, 48), h=(-1.5, 1.5, 24))
    f0 = pp.gaussian(grid, (-1.0, 1.0), [[0.1, 0.0], [0.0, 0.1]])
    sol = pp.solve(double_well_model(), grid, f0, 200.0, 0.1, progress=False,
                   trackers=[pp.SteadyStateTracker(atol=1e-6, rtol=1e-6, every=5)])
    assert sol.stop_reason == "steady_state"
    assert sol.t[-1] < 200.0
    # stopped where it no longer moves: one more unit of time changes little
    more = pp.solve(double_well_model(), grid, sol.f[-1], 1.0, 0.1, progress=False)
    assert np.abs(more.f[-1] - sol.f[-1]).max() < 1e-4 * sol.f[-1].max()
    # the reduced solver stops the same way
    red = pp.solve_reduced(double_well_model(), grid, grid.marginal(f0, "h"), 200.0, 0.1,
                           progress=False, trackers=[pp.SteadyStateTracker(1e-8, 1e-7)])
    assert red.stop_reason == "steady_state" and red.t[-1] < 200.0


def test_a_callable_returning_true_stops_the_particle_simulator():
    prob = build("gaussian")
    grid = prob.grid(32, 24)
    seen = []

    def stop_when_mean_passes(t, P):
        seen.append(t)
        return bool(P.h.mean() > -0.95)
    ens = pp.simulate_particles(prob.model(), 2000, prob.initial(grid), 5.0, 0.01, grid=grid,
                                seed=1, progress=False, trackers=[stop_when_mean_passes])
    assert ens.stop_reason == "tracker"
    assert ens.t[-1] < 5.0 and ens.t[-1] == pytest.approx(seen[-1])
    assert ens.h[-1].mean() > -0.95 and ens.h[-2].mean() <= -0.95 or len(ens.t) == 2


def test_callback_schedules_every_steps_and_every_model_time():
    prob = build("gaussian")
    grid = prob.grid(16, 12)
    steps, times = [], []
    pp.solve(prob.model(), grid, prob.initial(grid), 1.0, 0.05, progress=False,
             trackers=[pp.CallbackTracker(lambda t, f: steps.append(t), every=4),
                       pp.CallbackTracker(lambda t, f: times.append(t), interval=0.3)])
    np.testing.assert_allclose(steps, [0.2, 0.4, 0.6, 0.8, 1.0])
    np.testing.assert_allclose(times, [0.3, 0.6, 0.9])
    with pytest.raises(ValueError, match="every=<steps> or interval=<model time>, not both"):
        pp.CallbackTracker(print, every=2, interval=0.1)
    with pytest.raises(TypeError, match="trackers must hold"):
        pp.solve(prob.model(), grid, prob.initial(grid), 0.1, 0.05, trackers=[3])


def test_guard_stops_a_run_that_goes_negative_and_names_what_it_found():
    """The spectral scheme is positive only to spectral accuracy: from a box-shaped density
    its collocated fast step undershoots, and the guard stops the run there."""
    grid = pp.Grid(theta=(-3, 3, 24), h=(-2, 2, 8), nodes="spectral")
    model = pp.Model(loss=lambda th, h: 0.5 * (th - h) ** 2, fitness=lambda th, h: -th ** 2,
                     temperature=0.3, eps=0.1, selection=pp.Replicator(1.0))
    f0 = np.zeros(grid.shape)
    f0[8:12] = 1.0
    with pytest.warns(RuntimeWarning, match="negative density"):
        sol = pp.solve(model, grid, f0, 1.0, 0.05, scheme="spectral", progress=False,
                       trackers=[pp.GuardTracker(tol=1e-12)])
    assert sol.stop_reason == "guard" and sol.t[-1] < 1.0
    with pytest.warns(RuntimeWarning, match="non-finite"):
        assert pp.GuardTracker().handle(0.5, np.array([1.0, np.nan])) == "guard"


def test_plot_tracker_draws_to_a_file(tmp_path):
    prob = build("gaussian")
    grid = prob.grid(16, 12)
    path = tmp_path / "live.png"
    pp.solve(prob.model(), grid, prob.initial(grid), 0.5, 0.05, progress=False,
             trackers=[pp.PlotTracker(grid, every=5, path=str(path))])
    assert path.exists() and path.stat().st_size > 1000


def test_reduced_runs_stream_to_a_file_and_resume_to_the_uninterrupted_run(tmp_path):
    prob = build("quadratic-bilevel", {"eps": 0.05})
    grid = prob.grid(32, 24)
    rho0 = grid.marginal(prob.initial(grid), "h")
    model = prob.model()
    full = pp.solve_reduced(model, grid, rho0, 1.0, 0.05, progress=False, save_every=2)
    path = tmp_path / "reduced.h5"
    part = pp.solve_reduced(model, grid, rho0, 0.5, 0.05, progress=False, save_every=2,
                            output=path)
    assert pp.load(path).kind == "reduced"
    res = pp.resume(path, 1.0)
    assert np.abs(res.f[-1] - full.f[-1]).max() <= 1e-13
    np.testing.assert_allclose(res.t, full.t)
    # the first run's arguments are accepted and checked against the file
    again = pp.solve_reduced(model, grid, rho0, 1.0, 0.05, progress=False, resume=path)
    assert again.t[-1] == pytest.approx(1.0) and part.t[-1] == pytest.approx(0.5)


def test_particle_runs_resume_bit_for_bit_from_their_file(tmp_path):
    prob = build("gaussian")
    grid = prob.grid(24, 16)
    model = prob.model()
    f0 = prob.initial(grid)
    full = pp.simulate_particles(model, 500, f0, 1.0, 0.05, grid=grid, seed=4, progress=False,
                                 save_every=5)
    path = tmp_path / "agents.h5"
    pp.simulate_particles(model, 500, f0, 0.5, 0.05, grid=grid, seed=4, progress=False,
                          save_every=5, output=path)
    res = pp.resume(path, 1.0)
    np.testing.assert_array_equal(res.h[-1], full.h[-1])
    np.testing.assert_array_equal(res.theta[-1], full.theta[-1])
    assert pp.load(path).t[-1] == pytest.approx(1.0)


SIGINT_RUN = textwrap.dedent("""
    preset = "quadratic-bilevel"
    name = "sig"
    [params]
    eps = 0.05
    [grid]
    n_theta = 48
    n_h = 32
    [run]
    t_final = 1000.0
    dt = 0.01
    save_every = 50
    [output]
    figures = false
""")


def test_sigint_to_a_running_cli_leaves_a_file_resume_completes(tmp_path):
    """A SIGINT to `pde-popdyn run` ends it cleanly after the step in flight; pp.resume
    continues the file to the same final state as an uninterrupted run (≤ 1e-13). (The run is
    set far longer than the signal's wait, t = 1000, so that it is surely still running.)"""
    cfg = tmp_path / "sig.toml"
    cfg.write_text(SIGINT_RUN)
    out = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, "-m", "pde_popdyn.cli", "run", str(cfg), "--out",
                             str(out), "--quiet"], cwd=tmp_path, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    h5 = out / "sig.h5"
    deadline = time.time() + 60
    while time.time() < deadline:
        if h5.exists():
            try:
                if len(pp.load(h5).t) >= 3:
                    break
            except Exception:  # noqa: BLE001 - a file caught mid-write: poll again
                pass
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode in (0, 130), stderr
    part = pp.load(h5)
    assert part.info["file_attrs"]["status"] == "interrupted", stdout + stderr
    assert part.t[-1] < 12.0
    res = pp.resume(h5, 12.0)
    prob = build("quadratic-bilevel", {"eps": 0.05})
    grid = prob.grid(48, 32)
    full = pp.solve(prob.model(), grid, prob.initial(grid), 12.0, 0.01, progress=False,
                    save_every=10 ** 6)
    assert np.abs(res.f[-1] - full.f[-1]).max() <= 1e-13


def test_clipped_mass_is_recorded_and_tiny():
    """Clipping hides negativity; the ledger records what each clip removed. Spectral
    mutation of a kinked density clips a spectrally small undershoot; the finite-volume steps
    clip nothing but round-off."""
    grid = pp.Grid(theta=(-3, 3, 24), h=(-2, 2, 32))
    model = pp.Model(loss=lambda th, h: 0.5 * (th - h) ** 2, fitness=lambda th, h: -th ** 2,
                     temperature=0.3, eps=0.1, selection=pp.Truncation(2.0, 0.3),
                     mutation=[pp.Diffusion(0.05), pp.GaussianJump(0.3)])
    f0 = np.zeros(grid.shape)
    f0[:, 10:14] = 1.0                      # a box in h: kinks for the spectral mutation
    fv = pp.solve(model, grid, f0, 1.0, 0.05, progress=False)
    clipped = fv.info["clipped_mass"]
    assert set(clipped) >= {"mutation", "explore", "selection"}
    assert all(v["total"] < 1e-13 for v in clipped.values()), clipped
    smooth_model = pp.Model(loss=model.loss, fitness=model.fitness, temperature=0.3, eps=0.1,
                            selection=pp.Replicator(1.0), mutation=pp.Diffusion(0.05))
    kinked = pp.solve_reduced(smooth_model, grid, f0.sum(0), 1.0, 0.05, scheme="spectral",
                              progress=False).info["clipped_mass"]["mutation"]
    smooth = pp.solve_reduced(smooth_model, grid, np.exp(-grid.h ** 2 / 0.2), 1.0, 0.05,
                              scheme="spectral", progress=False).info["clipped_mass"]["mutation"]
    # the undershoot of a box's cosine series is visible and reported; a smooth density's is
    # at round-off; truncation makes kinks, and its spectral run reports what was clipped
    assert kinked["largest"] > 1e-4 and smooth["total"] < 1e-12, (kinked, smooth)
    trunc = pp.solve_reduced(model, grid, np.exp(-grid.h ** 2 / 0.2), 1.0, 0.05,
                             scheme="spectral", progress=False).info["clipped_mass"]
    assert 0 < trunc["mutation"]["total"] < 1e-4, trunc


@pytest.mark.parametrize("kind", ["joint", "reduced", "ensemble"])
def test_a_fresh_result_converts_to_the_dataset_of_its_file(kind, tmp_path):
    xr = pytest.importorskip("xarray", reason="needs pip install '.[interop]'")
    from pde_popdyn import io
    prob = build("gaussian")
    grid = prob.grid(24, 16)
    model, f0 = prob.model(), prob.initial(grid)
    path = tmp_path / f"{kind}.h5"
    if kind == "joint":
        res = pp.solve(model, grid, f0, 0.5, 0.05, progress=False, output=path)
    elif kind == "reduced":
        res = pp.solve_reduced(model, grid, grid.marginal(f0, "h"), 0.5, 0.05, progress=False,
                               output=path)
    else:
        res = pp.simulate_particles(model, 300, f0, 0.5, 0.05, grid=grid, seed=1,
                                    progress=False, output=path, save_every=2)
    a, b = res.to_xarray(), xr.open_dataset(path, engine="h5netcdf")
    for k in io.RUNTIME_ATTRIBUTES:
        a.attrs.pop(k, None)
        b.attrs.pop(k, None)
    xr.testing.assert_identical(a, b)
