"""HDF5 snapshots (issue 6): round trip, xarray, resume, crash safety, bad files."""

import importlib
import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import h5py
import numpy as np
import pytest

import pde_popdyn as pp
from pde_popdyn.io import (EnsembleRecord, OutputExistsError, SnapshotWriter, inspect, repair,
                           write_solution)
from pde_popdyn.presets import build

DT = 1 / 64  # a power of two: k·Δt and T/n are exact, so runs of different length share Δt


def preset_run(path=None, t_final=0.5, save_every=4, n=(32, 24), **kw):
    prob = build("quadratic-bilevel", {"eps": 0.05})
    grid = prob.grid(*n)
    return pp.solve(prob.model(), grid, prob.initial(grid), t_final, DT, save_every=save_every,
                    progress=False, output=path, **kw), prob, grid


def user_model():
    return pp.Model(loss=lambda th, h: 0.5 * (th - h) ** 2 + 0.1 * th ** 4,
                    fitness=lambda th, h: -(th - 0.3) ** 2 - 0.2 * h ** 2,
                    temperature=0.1, eps=0.05, selection=pp.Replicator(2.0),
                    mutation=pp.Diffusion(0.02))


# -- round trip ---------------------------------------------------------------------------------
def test_round_trip_is_exact_and_self_describing(tmp_path):
    path = tmp_path / "run.h5"
    sol, prob, grid = preset_run(path)
    back = pp.load(path)
    assert np.array_equal(back.t, sol.t) and np.array_equal(back.f, sol.f)
    assert back.grid == grid
    # the preset model is rebuilt, so F-dependent diagnostics work on the loaded solution
    assert back.model is not None and back.model.preset["name"] == "quadratic-bilevel"
    np.testing.assert_allclose(back.mean_fitness, sol.mean_fitness, rtol=0, atol=1e-14)
    assert back.info["dt"] == DT and back.info["splitting"] == "strang"
    assert back.info["status"] == "complete"

    with h5py.File(path, "r") as f:
        dens = f["density"]
        assert dens.shape == (len(sol.t), *grid.shape)
        assert dens.chunks == (1, *grid.shape)
        assert dens.maxshape == (None, *grid.shape)
        assert dens.compression in ("gzip", "lzf")
        assert [d[0].name for d in dens.dims] == ["/time", "/theta", "/h"]
        for name in ("time", "theta", "h"):
            assert f[name].is_scale and f[name].attrs["units"] and f[name].attrs["long_name"]
        for name, values in sol.moments().items():  # 1-D diagnostics along time
            assert f[name].dims[0][0].name == "/time"
            np.testing.assert_allclose(f[name][:], values, rtol=0, atol=1e-13)
        model = json.loads(f.attrs["model"])
        assert model["eps"] == 0.05 and model["selection"]["rule"] == "Replicator"
        assert json.loads(f.attrs["preset"])["params"]["eps"] == 0.05
        assert json.loads(f.attrs["grid"]) == grid.to_dict()
        assert f.attrs["scheme"] == "fv" and f.attrs["pde_popdyn_version"] == pp.__version__


def test_xarray_opens_with_named_dims_and_grid_coordinates(tmp_path):
    xr = pytest.importorskip("xarray")
    pytest.importorskip("h5netcdf")
    path = tmp_path / "run.h5"
    sol, _, grid = preset_run(path)
    with xr.open_dataset(path, engine="h5netcdf") as ds:
        assert ds["density"].dims == ("time", "theta", "h")
        assert np.array_equal(ds["theta"].values, grid.theta)
        assert np.array_equal(ds["h"].values, grid.h)
        assert np.array_equal(ds["time"].values, sol.t)
        assert np.array_equal(ds["density"].values, sol.f)
        assert ds["mean_h"].dims == ("time",)
        assert ds["h"].attrs["long_name"].startswith("hyperparameter")


def test_user_model_loads_without_model_and_resumes_through_solve(tmp_path):
    model = user_model()
    grid = pp.Grid(theta=(-3, 3, 36), h=(-2, 2, 20))
    f0 = pp.gaussian(grid, mean=(0.5, -0.8), cov=[[0.1, 0], [0, 0.05]])
    full = pp.solve(model, grid, f0, 0.75, DT, save_every=4, progress=False)
    path = tmp_path / "user.h5"
    pp.solve(model, grid, f0, 0.25, DT, save_every=4, progress=False, output=path)
    assert pp.load(path).model is None  # callables cannot be stored
    with pytest.raises(ValueError, match="user-defined model"):
        pp.resume(path, 0.75)
    other = pp.Model(loss=model.loss, fitness=model.fitness, temperature=0.2, eps=0.05,
                     selection=pp.Replicator(2.0), mutation=pp.Diffusion(0.02))
    with pytest.raises(ValueError, match="temperature"):
        pp.solve(other, None, None, 0.75, None, resume=path)
    res = pp.solve(model, None, None, 0.75, None, resume=path, progress=False)
    assert np.array_equal(res.t, full.t) or np.abs(res.t - full.t).max() < 1e-14
    assert np.abs(res.f - full.f).max() <= 1e-13
    back = pp.load(path, model=model)
    assert np.array_equal(back.f, res.f) and back.model is model
    assert len(back.t) == len(full.t)


def test_resume_preset_equals_uninterrupted_run(tmp_path):
    full, _, _ = preset_run(None, t_final=1.0)
    path = tmp_path / "part.h5"
    preset_run(path, t_final=0.5)
    res = pp.resume(path, 1.0)
    diff = np.abs(res.f[-1] - full.f[-1]).max()
    assert diff <= 1e-13, diff
    back = pp.load(path)
    assert len(back.t) == len(full.t)
    assert np.abs(back.f - full.f).max() <= 1e-13
    assert inspect(path)["attrs"]["status"] == "complete"
    with pytest.raises(ValueError, match="whole number of stored steps"):
        pp.resume(path, 1.0 + DT / 3)
    with pytest.raises(ValueError, match="before the last time"):
        pp.resume(path, 0.25)


def test_ctrl_c_returns_the_run_so_far_and_resume_completes_it(tmp_path):
    """The first SIGINT ends the run after the step in flight: the state is saved, the file is
    closed as interrupted, the result so far is returned, and pp.resume continues it to the
    uninterrupted run's final state."""
    def ctrl_c(t, f, calls=[0]):
        calls[0] += 1
        if calls[0] == 9:
            os.kill(os.getpid(), signal.SIGINT)
    path = tmp_path / "ctrl_c.h5"
    part, _, _ = preset_run(path, t_final=1.0, save_every=2, trackers=[ctrl_c])
    assert part.stop_reason == "interrupted"
    full, _, _ = preset_run(None, t_final=1.0, save_every=2)
    with h5py.File(path, "r") as f:  # plain open: the writer closed the file cleanly
        assert f.attrs["status"] == "interrupted"
    back = pp.load(path)
    # steps 0, 2, 4, 6, 8 were saved, then step 9, after which the Ctrl-C was handled
    assert np.allclose(back.t, list(full.t[:5]) + [9 * DT], rtol=0, atol=1e-15)
    assert np.array_equal(back.f[:5], full.f[:5])
    res = pp.resume(path, 1.0)
    assert res.stop_reason == "t_final"
    assert np.abs(res.f[-1] - full.f[-1]).max() <= 1e-13


def test_hard_keyboard_interrupt_keeps_the_saved_snapshots(tmp_path):
    """A KeyboardInterrupt that is not the handled first SIGINT (here raised by a tracker)
    ends the run at its last saved state, with the file closed as interrupted."""
    def boom(t, f, calls=[0]):
        calls[0] += 1
        if calls[0] == 9:
            raise KeyboardInterrupt
    path = tmp_path / "hard.h5"
    part, _, _ = preset_run(path, t_final=1.0, save_every=2, trackers=[boom])
    full, _, _ = preset_run(None, t_final=1.0, save_every=2)
    assert part.stop_reason == "interrupted"
    assert np.array_equal(part.f, full.f[:5]) and np.array_equal(part.t, full.t[:5])
    with h5py.File(path, "r") as f:
        assert f.attrs["status"] == "interrupted"
    assert np.array_equal(pp.load(path).f, full.f[:5])


# -- crash safety ------------------------------------------------------------------------------
KILLED_RUN = textwrap.dedent("""
    import sys
    import pde_popdyn as pp
    from pde_popdyn.presets import build
    prob = build("quadratic-bilevel", {"eps": 0.05})
    grid = prob.grid(32, 24)
    pp.solve(prob.model(), grid, prob.initial(grid), 1000.0, 1 / 64, save_every=1,
             progress=False, output=sys.argv[1])
""")

def _wait_for_snapshots(path, proc, n, timeout=60.0):
    t0 = time.time()
    while time.time() - t0 < timeout:
        assert proc.poll() is None, "the run ended before it was killed"
        if path.exists():
            try:
                if len(pp.load(path).t) >= n:  # reads while the writer is running
                    return
            except ValueError:  # the file is being created
                pass
        time.sleep(0.05)
    raise AssertionError(f"no {n} snapshots within {timeout} s")


def test_sigkill_leaves_every_written_snapshot_and_resume_matches(tmp_path):
    script = tmp_path / "run.py"
    script.write_text(KILLED_RUN)
    path = tmp_path / "killed.h5"
    proc = subprocess.Popen([sys.executable, str(script), str(path)])
    try:
        _wait_for_snapshots(path, proc, 3)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    back = pp.load(path)
    n = len(back.t)
    assert n >= 3 and back.info["closed_cleanly"] is False
    with pytest.raises(OSError, match="open for write"):  # HDF5's consistency flag is set ...
        h5py.File(path, "r")
    assert repair(path) == n  # ... until repair() rewrites the file
    with h5py.File(path, "r") as f:
        assert f.attrs["status"] == "killed" and f["density"].shape[0] == n
        assert [d[0].name for d in f["density"].dims] == ["/time", "/theta", "/h"]
    # the same run, uninterrupted, in this process: identical snapshots
    ref, _, _ = preset_run(None, t_final=(n - 1) * DT, save_every=1)
    assert np.array_equal(back.t, ref.t)
    assert np.array_equal(back.f, ref.f)
    # resuming the killed file reaches the uninterrupted final state
    t_end = (n - 1 + 12) * DT
    res = pp.resume(path, t_end)
    full, _, _ = preset_run(None, t_final=t_end, save_every=1)
    assert np.abs(res.f[-1] - full.f[-1]).max() <= 1e-13
    with h5py.File(path, "r") as f:
        assert f["time"].shape[0] == n + 12 and f.attrs["status"] == "complete"


# -- bad files and overwriting -------------------------------------------------------------------
def _truncated(tmp_path):
    path = tmp_path / "truncated.h5"
    preset_run(path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def _foreign(tmp_path):
    path = tmp_path / "foreign.h5"
    with h5py.File(path, "w") as f:
        f["x"] = np.arange(3)
    return path


def _text(tmp_path):
    path = tmp_path / "notes.h5"
    path.write_text("not an HDF5 file\n")
    return path


@pytest.mark.parametrize("make,pattern", [
    (lambda tmp: tmp / "missing.h5", "no such snapshot file"),
    (_text, "not an HDF5 file"),
    (_foreign, "not a pde_popdyn snapshot file"),
    (_truncated, "damaged"),
])
def test_bad_files_give_clear_errors(tmp_path, make, pattern):
    path = make(tmp_path)
    for reader in (pp.load, inspect, lambda p: pp.resume(p, 1.0)):
        with pytest.raises((ValueError, FileNotFoundError), match=pattern) as info:
            reader(path)
        err = info.value
        assert str(path) in str(err)
        # no chained h5py exception and no frame inside h5py
        assert err.__cause__ is None and (err.__context__ is None or err.__suppress_context__)
        assert not any("h5py" in str(entry.path) for entry in info.traceback)


def test_existing_file_is_never_overwritten_without_overwrite(tmp_path):
    path = tmp_path / "keep.h5"
    path.write_bytes(b"precious")
    with pytest.raises(OutputExistsError, match="overwrite=True"):
        preset_run(path)
    with pytest.raises(ValueError):  # it is a ValueError too
        SnapshotWriter(path, grid=pp.Grid(theta=(-1, 1, 4), h=(0, 1, 4)))
    assert path.read_bytes() == b"precious"
    sol, _, _ = preset_run(path, overwrite=True)
    assert np.array_equal(pp.load(path).f, sol.f)


# -- other kinds ----------------------------------------------------------------------------------
def test_write_solution_and_reduced_files(tmp_path):
    xr = pytest.importorskip("xarray")
    pytest.importorskip("h5netcdf")
    sol, prob, grid = preset_run(None)
    path = write_solution(sol, tmp_path / "sol.h5")
    assert np.array_equal(pp.load(path).f, sol.f)
    # a solution of the reduced solver keeps its kind and its fitness F̄ on grid.h
    red = pp.solve_reduced(prob.model(), grid, sol.rho[0], 0.5, DT, progress=False)
    back = pp.load(write_solution(red, tmp_path / "solve_reduced.h5"))
    assert back.kind == "reduced" and np.array_equal(back.f, red.f)
    assert np.array_equal(back.mean_fitness, red.mean_fitness)
    # a reduced run: ρ(t, h) with dims (time, h)
    rho = sol.rho
    red = tmp_path / "reduced.h5"
    fbar = -(grid.h - 0.5) ** 2
    with SnapshotWriter(red, kind="reduced", grid=grid, attrs={"dt": DT}, fitness=fbar) as w:
        for t, r in zip(sol.t, rho):
            w(t, r)
    back = pp.load(red)
    assert back.f.shape == rho.shape and np.array_equal(back.f, rho)
    with xr.open_dataset(red, engine="h5netcdf") as ds:
        assert ds["density"].dims == ("time", "h")
        np.testing.assert_allclose(ds["mean_h"].values, sol.mean_h, rtol=0, atol=1e-12)
        np.testing.assert_allclose(ds["mean_fitness"].values,
                                   (rho * fbar).sum(1) / rho.sum(1), rtol=1e-12)


def test_ensemble_positions_histograms_and_rng_state(tmp_path):
    xr = pytest.importorskip("xarray")
    pytest.importorskip("h5netcdf")
    grid = pp.Grid(theta=(-4, 4, 16), h=(-3, 3, 12))
    rng = np.random.default_rng(7)
    path = tmp_path / "agents.h5"
    thetas, hs, states = [], [], []
    with SnapshotWriter(path, kind="ensemble", grid=grid, rng=rng, seed=7,
                        histogram=True) as w:
        for k in range(4):
            th, h = rng.normal(size=500), rng.normal(size=500)
            w(0.5 * k, (th, h))
            thetas.append(th), hs.append(h), states.append(rng.bit_generator.state)
    ens = pp.load(path)
    assert isinstance(ens, EnsembleRecord) or hasattr(ens, "theta")
    assert np.array_equal(ens.theta, np.array(thetas)) and np.array_equal(ens.h, np.array(hs))
    assert ens.info["seed"] == 7
    # the stored generator state continues the same random stream, bit for bit
    again = np.random.default_rng()
    again.bit_generator.state = ens.info["rng_state"]
    assert np.array_equal(again.normal(size=5), rng.normal(size=5))
    inside = np.array([(np.abs(t) < 4) & (np.abs(h) < 3) for t, h in zip(thetas, hs)]).mean(1)
    stored = ens.diagnostics if isinstance(ens, EnsembleRecord) else ens.stored_diagnostics
    np.testing.assert_allclose(stored["mass"], inside, rtol=1e-12)
    with xr.open_dataset(path, engine="h5netcdf") as ds:
        assert ds["particle_theta"].dims == ("time", "agent")
        assert ds["density"].dims == ("time", "theta", "h")
        np.testing.assert_allclose(ds["mean_h"].values, [h.mean() for h in hs], rtol=1e-12)


def test_several_axes_get_one_dimension_each(tmp_path):
    xr = pytest.importorskip("xarray")
    pytest.importorskip("h5netcdf")
    grid = pp.Grid(theta=[(-2, 2, 8), (-2, 2, 6)], h=(0, 1, 5))
    rng = np.random.default_rng(0)
    states = rng.random((3, *grid.shape))
    path = tmp_path / "multi.h5"
    with SnapshotWriter(path, grid=grid) as w:
        for k, f in enumerate(states):
            w(0.5 * k, f)
    back = pp.load(path)
    assert back.grid == grid and np.array_equal(back.f, states)
    with xr.open_dataset(path, engine="h5netcdf") as ds:
        assert ds["density"].dims == ("time", "theta1", "theta2", "h")
        assert np.array_equal(ds["theta2"].values, grid.theta[1])
        np.testing.assert_allclose(ds["mean_theta2"].values, grid.mean(states)[:, 1],
                                   rtol=0, atol=1e-14)
        np.testing.assert_allclose(ds["cov_theta1_h"].values, grid.cov(states)[:, 0, 2],
                                   rtol=0, atol=1e-14)
