"""Results as xarray Datasets (issue 16): ``to_xarray()`` is the Dataset the run's file opens
as, and ``pp.load(path, engine="xarray")`` reads a file lazily."""

import shutil
import sys

import numpy as np
import pytest

import pde_popdyn as pp
from pde_popdyn.io import RUNTIME_ATTRIBUTES, SnapshotWriter, write_ensemble, write_solution
from pde_popdyn.presets import build

xr = pytest.importorskip("xarray", reason="xarray is in the interop extra")
pytest.importorskip("h5netcdf", reason="h5netcdf is in the interop extra")

DT = 1 / 32


def opened(path):
    with xr.open_dataset(path, engine="h5netcdf") as ds:
        return ds.load()


def without_runtime(ds):
    """The Dataset without the attributes that record when a file was written."""
    out = ds.copy()
    out.attrs = {k: v for k, v in ds.attrs.items() if k not in RUNTIME_ATTRIBUTES}
    return out


@pytest.fixture(scope="module")
def problem():
    prob = build("quadratic-bilevel", {"eps": 0.05})
    return prob, prob.grid(24, 8)


def test_joint_solution_is_the_dataset_of_its_output_file(tmp_path, problem):
    prob, grid = problem
    path = tmp_path / "run.h5"
    sol = pp.solve(prob.model(), grid, prob.initial(grid), 0.25, DT, save_every=2,
                   progress=False, output=path)
    ds = sol.to_xarray()
    on_disk = opened(path)
    xr.testing.assert_identical(without_runtime(ds), without_runtime(on_disk))
    assert set(ds.attrs) == set(on_disk.attrs)  # only the values of the run-time ones differ
    assert ds.attrs["status"] == "complete"
    assert ds["density"].dims == ("time", "theta", "h")
    np.testing.assert_array_equal(ds["density"].values, sol.f)
    np.testing.assert_allclose(ds["mean_fitness"].values, sol.mean_fitness, rtol=0, atol=1e-14)
    # a loaded result converts to exactly its file, run-time attributes included
    xr.testing.assert_identical(pp.load(path).to_xarray(), on_disk)


def test_reduced_solution_is_the_dataset_of_its_file(tmp_path, problem):
    prob, grid = problem
    sol = pp.solve(prob.model(), grid, prob.initial(grid), 0.125, DT, progress=False)
    red = pp.solve_reduced(prob.model(), grid, sol.rho[0], 0.25, DT, save_every=2,
                           progress=False)
    ds = red.to_xarray()
    path = write_solution(red, tmp_path / "reduced.h5")
    xr.testing.assert_identical(without_runtime(ds), without_runtime(opened(path)))
    assert ds["density"].dims == ("time", "h")
    assert ds["effective_fitness"].dims == ("h",)
    assert ds.attrs["kind"] == "reduced" and ds.attrs["fitness_kind"] == red.info["fitness_kind"]
    np.testing.assert_array_equal(ds["effective_fitness"].values, red.info["fitness"])
    xr.testing.assert_identical(pp.load(path).to_xarray(), opened(path))


def test_particle_ensembles_are_the_dataset_of_their_files(tmp_path, problem):
    prob, grid = problem
    ens = pp.simulate_particles(prob.model(), 64, prob.initial(grid), 0.25, DT, seed=5,
                                grid=grid, save_every=2, progress=False)
    ds = ens.to_xarray()
    path = write_ensemble(ens, tmp_path / "particles.h5")
    xr.testing.assert_identical(without_runtime(ds), without_runtime(opened(path)))
    assert ds["particle_theta"].dims == ("time", "agent")
    np.testing.assert_array_equal(ds["particle_h"].values, ens.h)
    assert ds.attrs["seed"] == "5" and ds.attrs["fitness_mode"] == "instantaneous"

    # a file with a histogram, per-agent fields, extra diagnostics and generator states
    path = tmp_path / "agents.h5"
    rng = np.random.default_rng(1)
    with SnapshotWriter(path, kind="ensemble", grid=grid, rng=rng, seed=1, histogram=True,
                        attrs={"dt": 0.5}) as w:
        for k in range(3):
            th, h = rng.normal(size=20), rng.normal(size=20)
            w.write(0.5 * k, theta=th, h=h, diagnostics={"best": float(-(th ** 2).min())},
                    agent_fields={"fitness": -th ** 2, "parent": rng.integers(0, 20, 20)})
    back = pp.load(path)
    on_disk = opened(path)
    xr.testing.assert_identical(back.to_xarray(), on_disk)
    assert on_disk["parent"].dims == ("time", "agent") and on_disk["parent"].dtype == np.int64
    assert on_disk["rng_state"].dims == ("time",)
    np.testing.assert_array_equal(on_disk["fitness"].values, back.agent_fields["fitness"])


def test_several_axes_and_components(tmp_path):
    grid = pp.Grid(theta=[(-2, 2, 8), (-2, 2, 6)], h=(0, 1, 5))
    states = np.random.default_rng(0).random((3, *grid.shape))
    sol = pp.Solution(t=np.array([0.0, 0.5, 1.0]), f=states, grid=grid,
                      info={"dt": 0.5, "scheme": "fv", "splitting": "strang", "save_every": 1})
    path = write_solution(sol, tmp_path / "multi.h5")
    ds = sol.to_xarray()
    xr.testing.assert_identical(without_runtime(ds), without_runtime(opened(path)))
    assert ds["density"].attrs["cell_methods"] == "theta1: mean theta2: mean h: mean"
    assert {"theta1_bnds", "theta2_bnds", "h_bnds"} <= set(ds.data_vars)
    path = tmp_path / "vectors.h5"
    with SnapshotWriter(path, kind="ensemble") as w:
        for k in range(2):
            w.write(k, theta=np.full((4, 2), k, float), h=np.zeros(4))
    back = pp.load(path)
    xr.testing.assert_identical(back.to_xarray(), opened(path))
    assert opened(path)["particle_theta"].dims == ("time", "agent", "theta_component")


def test_lazy_loading_is_dask_backed_one_snapshot_per_chunk(tmp_path, problem):
    pytest.importorskip("dask", reason="dask is in the interop extra")
    prob, grid = problem
    path = tmp_path / "run.h5"
    sol = pp.solve(prob.model(), grid, prob.initial(grid), 0.25, DT, save_every=2,
                   progress=False, output=path)
    ds = pp.load(path, engine="xarray")
    try:
        assert ds["density"].chunks[0] == (1,) * len(sol.t)
        assert type(ds["density"].data).__module__.startswith("dask")
        np.testing.assert_array_equal(ds["density"][-1].values, sol.f[-1])
        xr.testing.assert_identical(ds.load(), opened(path))
    finally:
        ds.close()


def test_lazy_loading_of_a_file_whose_writer_was_killed(tmp_path, problem):
    pytest.importorskip("dask", reason="dask is in the interop extra")
    prob, grid = problem
    live, killed = tmp_path / "live.h5", tmp_path / "killed.h5"
    rho = np.ones(grid.h_shape)
    w = SnapshotWriter(live, kind="reduced", grid=grid, background=False)
    for k in range(4):
        w(0.1 * k, rho * (k + 1))
    shutil.copy(live, killed)  # what a SIGKILL leaves behind: the "open for write" flag
    w.finish()
    ds = pp.load(killed, engine="xarray")
    try:
        assert ds.sizes["time"] == 4
        np.testing.assert_array_equal(ds["density"].values, [rho * (k + 1) for k in range(4)])
    finally:
        ds.close()


def test_engine_is_checked(tmp_path, problem):
    with pytest.raises(ValueError, match="engine='netcdf4' is not known"):
        pp.load(tmp_path / "x.h5", engine="netcdf4")


def test_without_xarray_to_xarray_says_what_to_install(monkeypatch, problem):
    prob, grid = problem
    sol = pp.Solution(t=np.array([0.0]), f=np.ones((1, *grid.shape)), grid=grid)
    monkeypatch.setitem(sys.modules, "xarray", None)  # import xarray now raises ImportError
    with pytest.raises(ImportError, match=r'pip install "pde_popdyn\[interop\]"'):
        sol.to_xarray()
