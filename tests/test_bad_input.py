"""Bad input found by fuzzing the public API: each gets a clear error naming the argument
(never a silent overwrite, a silent NaN, a dropped imaginary part or a numpy traceback)."""

import re
import textwrap

import h5py
import numpy as np
import pytest

import pde_popdyn as pp
from pde_popdyn import cli
from pde_popdyn.config import build_run
from pde_popdyn.run import NonFiniteStateError


@pytest.fixture(scope="module")
def case():
    grid = pp.Grid(theta=(-3.0, 3.0, 24), h=(-2.0, 2.0, 16))
    f0 = pp.gaussian(grid, mean=(-0.5, 0.6), cov=[[0.04, 0.0], [0.0, 0.04]])
    return grid, f0


def model(**kw):
    args = dict(loss=lambda th, h: 0.5 * (th - h) ** 2, fitness=lambda th, h: -(th - 0.5) ** 2,
                temperature=0.05, eps=0.01, selection=pp.Replicator(1.0),
                mutation=pp.Diffusion(0.01))
    args.update(kw)
    return pp.Model(**args)


def test_overwrite_and_progress_must_be_booleans(case, tmp_path):
    grid, f0 = case
    path = tmp_path / "run.h5"
    pp.solve(model(), grid, f0, 0.02, 0.01, progress=False, output=path)
    before = path.read_bytes()
    for kw in (dict(overwrite="no"), dict(overwrite=1)):
        with pytest.raises(TypeError, match="overwrite must be True or False, got"):
            pp.solve(model(), grid, f0, 0.02, 0.01, progress=False, output=path, **kw)
    assert path.read_bytes() == before                   # the file was not replaced
    with pytest.raises(TypeError, match=re.escape("progress must be True or False (or None)")):
        pp.solve(model(), grid, f0, 0.02, 0.01, progress="x")
    with pytest.raises(TypeError, match="progress must be True or False"):
        pp.solve_reduced(model(), grid, np.ones(grid.n_h), 0.02, 0.01, progress="x")
    with pytest.raises(TypeError, match="overwrite must be True or False"):
        pp.simulate_particles(model(quadratic=(1.0, pp.AffineCenter())), 10, f0, 0.02, 0.01,
                              grid=grid, overwrite="yes", output=tmp_path / "p.h5")


def test_a_run_that_overflows_raises_and_keeps_its_snapshots(case, tmp_path):
    """F of size 1e50: exp(κτF) overflows. The run used to finish with stop_reason 't_final'
    and every density NaN; now it raises, naming the usual causes, and the file keeps the
    snapshots saved before (status 'failed')."""
    grid, f0 = case
    bad = model(fitness=lambda th, h: 1e50 * (1 + th ** 2))
    path = tmp_path / "nan.h5"
    with pytest.raises(NonFiniteStateError, match="became NaN or infinite") as err, \
            pytest.warns(RuntimeWarning, match="Rescale the fitness"), np.errstate(all="ignore"):
        pp.solve(bad, grid, f0, 1.0, 0.01, progress=False, output=path, save_every=10)
    msg = str(err.value)
    assert "selection rate times the spread of the fitness" in msg
    with h5py.File(path, "r") as f:
        assert f.attrs["status"] == "failed"
        # every snapshot written before the state went bad is kept, and none after
        times = f["time"][:]
        assert np.isfinite(f["density"][:]).all() and times[0] == 0.0 and times.size < 10
        assert f"the snapshots up to t={times[-1]:g} are kept" in msg
    # a GuardTracker still stops such a run with a warning instead
    with np.errstate(all="ignore"), pytest.warns(RuntimeWarning, match="GuardTracker"), \
            pytest.warns(RuntimeWarning, match="Rescale the fitness"):
        sol = pp.solve(bad, grid, f0, 1.0, 0.01, progress=False, save_every=10,
                       trackers=[pp.GuardTracker()])
    assert sol.stop_reason == "guard"


def test_complex_and_overflowing_inputs_are_refused(case):
    grid, f0 = case
    with pytest.raises(TypeError, match="loss returned complex values"):
        model(loss=lambda th, h: 0.5 * (th - h) ** 2 + 0j).loss_on(grid)
    with pytest.raises(TypeError, match="f0 has complex values"):
        pp.solve(model(), grid, f0 + 0j, 0.02, 0.01, progress=False)
    with pytest.raises(ValueError, match="total mass overflows"):
        pp.solve(model(), grid, np.full(grid.shape, 1e308), 0.02, 0.01, progress=False)


def test_argument_messages_name_the_argument(case, tmp_path):
    grid, f0 = case
    with pytest.raises(ValueError, match="n_hermite must be an integer >= 2"):
        pp.effective_fitness(model(), grid, method="gauss-hermite", n_hermite=0)
    with pytest.raises(ValueError, match="quadratic center must be a finite number"):
        model(quadratic=(1.0, "c"))
    with pytest.raises(ValueError, match="too narrow"):
        pp.Grid(theta=(-3.0, 3.0, 24), h=(0.0, 1e-200, 12))
    with pytest.raises(TypeError, match=re.escape("theta must be a tuple (low, high, cells)")):
        pp.Grid(theta="abc", h=(-2.0, 2.0, 16))
    with pytest.raises(ValueError) as err:
        pp.solve(model(), grid, f0, -1.0, 0.01, progress=False)
    assert "t_final must be >= 0" in str(err.value) and "switch it off" not in str(err.value)
    path = tmp_path / "r.h5"
    pp.solve(model(), grid, f0, 0.02, 0.01, progress=False, output=path)
    with pytest.raises(ValueError, match="t_final must be a finite number"):
        pp.resume(path, float("nan"), model=model())


def test_config_model_function_errors_are_one_line(tmp_path, capsys):
    (tmp_path / "m.py").write_text(textwrap.dedent('''
        def make_model():
            raise RuntimeError("no GPU here")
        '''))
    cfg = tmp_path / "c.toml"
    cfg.write_text('model = "m.py:make_model"\n[grid]\ntheta = [-3.0, 3.0, 24]\n'
                   'h = [-2.0, 2.0, 16]\n[initial]\nmean = [0.0, 0.0]\ncov = [0.05, 0.05]\n')
    assert cli.main(["run", str(cfg), "--out", str(tmp_path / "out"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "make_model() raised RuntimeError: no GPU here" in err and "Traceback" not in err
    cfg.write_text('preset = "gaussian"\n[selection]\nrule = "GuardTracker"\n')
    with pytest.raises(ValueError) as exc:
        build_run(cli.load_config(cfg))
    msg = str(exc.value)
    listed = msg.split("they are")[1]
    assert "not a selection rule" in msg and "Replicator" in listed and "Tracker" not in listed
    assert "Diffusion" not in listed                     # mutation rules go in [mutation]


def test_a_run_shorter_than_a_pbt_interval_warns(case):
    grid, f0 = case
    pbt = model(selection=pp.PBT(interval=5.0, fraction=0.2), mutation=pp.GaussianJump(0.1))
    with pytest.warns(UserWarning, match="no generation falls in this run"):
        pp.solve(pbt, grid, f0, 0.1, 0.05, progress=False)
    short = model(selection=pp.PBT(interval=0.05, fraction=0.2), mutation=pp.GaussianJump(0.1))
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)      # a generation at t = 0.05: no warning
        pp.solve(short, grid, f0, 0.1, 0.05, progress=False)


def test_particle_gradient_is_checked_on_every_path(case):
    grid, f0 = case
    quad = model(quadratic=(1.0, pp.AffineCenter()))
    with pytest.raises(ValueError, match="gradient='x' is not known"):
        pp.simulate_particles(quad, 10, f0, 0.02, 0.01, grid=grid, gradient="x")
    with pytest.raises(ValueError, match="is not used by fast='ou'"):
        pp.simulate_particles(quad, 10, f0, 0.02, 0.01, grid=grid, gradient="central")
    ens = pp.simulate_particles(quad, 10, f0, 0.02, 0.01, grid=grid, gradient="central",
                                fast="euler", seed=1)
    assert np.isfinite(ens.h).all()


def test_a_nan_loss_is_named_when_the_agents_blow_up(case):
    grid, f0 = case
    bad = model(loss=lambda th, h: np.where(h > 0.0, np.nan, 0.5 * (th - h) ** 2),
                loss_grad=None)
    with pytest.raises(FloatingPointError, match="the loss itself is nan at θ = 0"):
        pp.simulate_particles(bad, 50, f0, 0.05, 0.01, grid=grid, gradient="central",
                              seed=0, check=False)


def test_a_selection_spread_beyond_the_eigenvalue_accuracy_warns(case):
    """κ·ΔF far above the fast rates: the fast step's eigenvalues are bisected to 1e-12 of the
    spread, coarser than those rates, and results go wrong (F = θ², κ = 1e16 puts E[h] in the
    other well); the solver warns, naming the fix. At κ = 100 it stays silent."""
    import warnings

    grid, f0 = case
    sym = dict(fitness=lambda th, h: th ** 2)
    with pytest.warns(RuntimeWarning, match="Rescale the fitness or lower the selection rate"), \
            np.errstate(all="ignore"):
        pp.solve(model(selection=pp.Replicator(1e16), **sym), grid, f0, 0.05, 0.01,
                 progress=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        pp.solve(model(selection=pp.Replicator(100.0), **sym), grid, f0, 0.05, 0.01,
                 progress=False)
