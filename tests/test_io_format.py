"""The snapshot format (issues 10 and 16): CF metadata, per-agent fields, format version 1,
and the rule that io holds the format only."""

import ast
import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import h5py
import numpy as np
import pytest

import pde_popdyn as pp
from pde_popdyn.io import (FORMAT_VERSION, SnapshotFileError, SnapshotWriter, read, repair,
                           write_ensemble, write_solution)
from pde_popdyn.presets import build

DT = 1 / 32
DATA = Path(__file__).parent / "data"


def joint_run(path=None, n=(24, 8), t_final=0.125, **kw):
    prob = build("quadratic-bilevel", {"eps": 0.05})
    grid = prob.grid(*n)
    sol = pp.solve(prob.model(), grid, prob.initial(grid), t_final, DT, save_every=2,
                   progress=False, output=path, **kw)
    return sol, prob, grid


def ensemble_file(path, n_agents=12, snapshots=3, rng_seed=3, **writer_kw):
    """An ensemble file with positions, a histogram, per-agent fields, generator states."""
    prob = build("quadratic-bilevel", {"eps": 0.05})
    grid = prob.grid(24, 8)
    rng = np.random.default_rng(rng_seed)
    expected = {"theta": [], "h": [], "fitness": [], "parent": []}
    with SnapshotWriter(path, kind="ensemble", grid=grid, rng=rng, seed=rng_seed,
                        histogram=True, attrs={"dt": 0.25}, **writer_kw) as w:
        for k in range(snapshots):
            th, h = rng.normal(size=n_agents), rng.normal(size=n_agents)
            fit, parent = -(th - h) ** 2, rng.integers(0, n_agents, n_agents)
            w.write(0.25 * k, theta=th, h=h, diagnostics={"best_fitness": fit.max()},
                    agent_fields={"fitness": fit, "parent": parent})
            for key, v in zip(expected, (th, h, fit, parent)):
                expected[key].append(v)
    return grid, {k: np.array(v) for k, v in expected.items()}


# -- CF metadata --------------------------------------------------------------------------------
def test_coordinates_have_cell_bounds_and_density_says_cell_means(tmp_path):
    path = tmp_path / "run.h5"
    sol, _, grid = joint_run(path)
    with h5py.File(path, "r") as f:
        assert f.attrs["format_version"] == FORMAT_VERSION == 2
        for name, axis in (("theta", grid.theta_axis), ("h", grid.h_axis)):
            assert f[name].attrs["bounds"] == f"{name}_bnds"
            bnds = f[f"{name}_bnds"][:]
            assert bnds.shape == (axis.cells, 2)
            np.testing.assert_array_equal(bnds[:, 0], axis.edges[:-1])
            np.testing.assert_array_equal(bnds[:, 1], axis.edges[1:])
            assert np.all(bnds[:, 0] < f[name][:]) and np.all(f[name][:] < bnds[:, 1])
        assert f["density"].attrs["cell_methods"] == "theta: mean h: mean"
        for name in ("density", "mass", "mean_h", "var_theta", "mean_fitness"):
            fill = f[name].attrs["_FillValue"]
            assert fill.dtype == f[name].dtype and np.isnan(fill)
        # the dimensionless model time is not declared a calendar time axis
        assert "axis" not in f["time"].attrs and f["time"].attrs["units"] == "1"
        assert "calendar" not in f["time"].attrs
        # nothing about the machine or the process unless asked
        assert "writer_host" not in f.attrs and "writer_pid" not in f.attrs


def test_host_and_process_only_when_asked(tmp_path):
    grid = pp.Grid(theta=(-1, 1, 4), h=(0, 1, 3))
    with SnapshotWriter(tmp_path / "p.h5", grid=grid, record_process=True) as w:
        w(0.0, np.ones(grid.shape))
    with h5py.File(tmp_path / "p.h5", "r") as f:
        assert isinstance(f.attrs["writer_host"], str) and f.attrs["writer_pid"] > 0


def test_spectral_density_says_point_values(tmp_path):
    prob = build("quadratic-bilevel", {"eps": 0.05})
    grid = pp.Grid(theta=(-3, 3, 24), h=(-2, 2, 8), nodes="spectral")
    th, hh = grid.mesh()
    f0 = np.exp(-((th + 0.5) ** 2 + (hh + 1) ** 2) / 0.08)
    path = tmp_path / "spectral.h5"
    pp.solve(prob.model(), grid, f0, 0.0625, DT, scheme="spectral", progress=False,
             output=path)
    with h5py.File(path, "r") as f:
        assert f["density"].attrs["cell_methods"] == "theta: point h: point"
        np.testing.assert_array_equal(f["theta"][:], grid.theta)  # the Chebyshev nodes
        assert f["theta_bnds"][0, 0] == -3 and f["theta_bnds"][-1, 1] == 3


def test_cf_xarray_finds_the_bounds(tmp_path):
    xr = pytest.importorskip("xarray", reason="xarray is in the interop extra")
    pytest.importorskip("cf_xarray", reason="cf_xarray is in the cf extra")
    path = tmp_path / "run.h5"
    joint_run(path)
    with xr.open_dataset(path, engine="h5netcdf") as ds:
        assert ds.cf.bounds == {"theta": ["theta_bnds"], "h": ["h_bnds"]}
        assert ds.cf.get_bounds("theta").dims == ("theta", "bnds")
        assert ds["time"].dtype == np.float64  # not decoded into dates


CF_CHECK = textwrap.dedent("""
    import json, sys
    try:
        from cfchecker.cfchecks import CFChecker
    except Exception as exc:  # not installed, or no UDUNITS-2 library
        print(json.dumps({"unusable": f"{type(exc).__name__}: {exc}"}))
        sys.exit(0)
    tables, paths = sys.argv[1], sys.argv[2:]
    checker = CFChecker(cfStandardNamesXML=tables + "/standard_names.xml",
                        cfAreaTypesXML=tables + "/area_types.xml",
                        cfRegionNamesXML=tables + "/region_names.xml", silent=True)
    out = {}
    for path in paths:
        res = checker.checker(path)
        messages = [f"{cat}: {msg}" for scope in [res["global"], *res["variables"].values()]
                    for cat in ("FATAL", "ERROR", "WARN") for msg in scope.get(cat, [])]
        out[path] = {"counts": checker.get_counts(res), "messages": messages}
    print(json.dumps(out))
""")


def test_cf_checker_finds_no_errors_in_joint_reduced_and_particle_files(tmp_path):
    sol, prob, grid = joint_run(tmp_path / "joint.nc")  # the checker wants a .nc suffix
    red = pp.solve_reduced(prob.model(), grid, sol.rho[0], 0.125, DT, progress=False)
    write_solution(red, tmp_path / "reduced.nc")
    ensemble_file(tmp_path / "agents.nc")
    ens = pp.simulate_particles(prob.model(), 40, prob.initial(grid), 0.125, DT, seed=2,
                                grid=grid, progress=False)
    write_ensemble(ens, tmp_path / "particles.nc")
    paths = [str(tmp_path / f"{name}.nc") for name in ("joint", "reduced", "agents",
                                                       "particles")]
    # in a process of its own: the checker's netCDF4 brings its own HDF5 library
    proc = subprocess.run([sys.executable, "-c", CF_CHECK, str(DATA / "cf_tables"), *paths],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    if "unusable" in report:
        pytest.skip(f"the CF checker cannot run here ({report['unusable']}); install it with "
                    f"pip install 'pde_popdyn[cf]' and the UDUNITS-2 library "
                    f"(Debian: apt-get install libudunits2-0)")
    for path in paths:
        counts, messages = report[path]["counts"], report[path]["messages"]
        assert counts["FATAL"] == 0 and counts["ERROR"] == 0, (path, messages)
        assert counts["WARN"] == 0, (path, messages)


# -- per-agent fields -----------------------------------------------------------------------------
def test_agent_fields_round_trip_with_their_dtypes(tmp_path):
    path = tmp_path / "agents.h5"
    _, want = ensemble_file(path)
    ens = pp.load(path)
    assert set(ens.agent_fields) == {"fitness", "parent"}
    assert ens.agent_fields["fitness"].shape == (3, 12)
    assert ens.agent_fields["parent"].dtype == np.int64
    np.testing.assert_array_equal(ens.agent_fields["fitness"], want["fitness"])
    np.testing.assert_array_equal(ens.agent_fields["parent"], want["parent"])
    np.testing.assert_array_equal(ens.theta, want["theta"])
    np.testing.assert_array_equal(ens.stored_diagnostics["best_fitness"],
                                  want["fitness"].max(axis=1))
    rec = read(path)
    assert rec.kind == "ensemble" and set(rec.agent_fields) == {"fitness", "parent"}
    assert "fitness" not in rec.diagnostics and "best_fitness" in rec.diagnostics
    assert len(rec.rng_states) == 3 and rec.rng_states[-1] == ens.info["rng_state"]
    with h5py.File(path, "r") as f:
        assert [d[0].name for d in f["parent"].dims] == ["/time", "/agent"]
        assert f.attrs["agent_fields"] == "fitness,parent"
        assert "_FillValue" in f["fitness"].attrs and "_FillValue" not in f["parent"].attrs


@pytest.mark.parametrize("fields,error,pattern", [
    ({"fitness": np.zeros(5)}, ValueError, r"shape \(5,\).*shape \(12,\)"),
    ({"mass": np.zeros(12)}, ValueError, "not usable"),
    ({"time": np.zeros(12)}, ValueError, "not usable"),
    ({"alive": np.ones(12, bool)}, TypeError, "astype"),
    ([1, 2], TypeError, "must be a dict"),
])
def test_bad_agent_fields_are_refused_before_writing(tmp_path, fields, error, pattern):
    with SnapshotWriter(tmp_path / "a.h5", kind="ensemble") as w:
        with pytest.raises(error, match=pattern):
            w.write(0.0, theta=np.zeros(12), h=np.zeros(12), agent_fields=fields)
        w.write(0.0, theta=np.zeros(12), h=np.zeros(12), agent_fields={"x": np.zeros(12)})
        with pytest.raises(ValueError, match="fixed when the file starts"):
            w.write(1.0, theta=np.zeros(12), h=np.zeros(12), agent_fields={"y": np.zeros(12)})
    assert len(pp.load(tmp_path / "a.h5").t) == 1


def test_agent_fields_need_an_ensemble(tmp_path):
    grid = pp.Grid(theta=(-1, 1, 4), h=(0, 1, 3))
    with SnapshotWriter(tmp_path / "j.h5", grid=grid) as w:
        with pytest.raises(ValueError, match="no agents"):
            w.write(0.0, np.ones(grid.shape), agent_fields={"x": np.zeros(3)})


# -- format version 1 -----------------------------------------------------------------------------
def test_version_1_files_still_load(tmp_path):
    # written by the format-1 writer (tests/data/README: the same runs as below)
    joint = pp.load(DATA / "v1_joint.h5")
    ref, prob, grid = joint_run(integrator="split")        # the scheme the file was made with
    assert joint.grid == grid and np.array_equal(joint.t, ref.t)
    assert np.abs(joint.f - ref.f).max() <= 1e-12
    assert joint.model.preset["name"] == "quadratic-bilevel"
    assert read(DATA / "v1_joint.h5").format_version == 1

    red = pp.load(DATA / "v1_reduced.h5")
    want = pp.solve_reduced(prob.model(), grid, ref.rho[0], 0.125, DT, save_every=2,
                            progress=False)
    assert red.kind == "reduced" and np.abs(red.f - want.f).max() <= 1e-12
    np.testing.assert_allclose(red.mean_fitness, want.mean_fitness, rtol=1e-12)

    ens = pp.load(DATA / "v1_ensemble.h5")
    rng = np.random.default_rng(3)
    draws = [(rng.normal(size=12), rng.normal(size=12)) for _ in range(3)]
    np.testing.assert_array_equal(ens.theta, [d[0] for d in draws])
    np.testing.assert_array_equal(ens.h, [d[1] for d in draws])
    assert ens.agent_fields == {} and ens.stored_density.shape == (3, 24, 8)


def test_version_1_file_resumes_in_its_own_format(tmp_path):
    path = tmp_path / "old.h5"
    shutil.copy(DATA / "v1_joint.h5", path)
    res = pp.resume(path, 0.25)                 # continues with the file's (split) scheme
    full, _, _ = joint_run(t_final=0.25, integrator="split")
    assert np.abs(res.f[-1] - full.f[-1]).max() <= 1e-12
    back = read(path)
    assert back.format_version == 1 and len(back.t) == len(full.t)


# -- repair keeps the netCDF structure ------------------------------------------------------------
def test_repair_of_a_killed_file_keeps_dimensions_and_bounds(tmp_path):
    path, copy = tmp_path / "live.h5", tmp_path / "killed.h5"
    w = SnapshotWriter(path, kind="ensemble", grid=build("quadratic-bilevel").grid(24, 8),
                       rng=np.random.default_rng(0), histogram=True, background=False)
    rng = np.random.default_rng(1)
    for k in range(3):
        w.write(0.1 * k, theta=rng.normal(size=10), h=rng.normal(size=10),
                agent_fields={"parent": np.arange(10)})
    shutil.copy(path, copy)  # what a SIGKILL leaves: the "open for writing" flag is set
    w.finish()
    with pytest.raises(OSError):
        h5py.File(copy, "r")
    assert read(copy).closed_cleanly is False
    assert repair(copy) == 3
    with h5py.File(copy, "r") as f:
        assert f.attrs["status"] == "killed"
        assert f["bnds"].attrs["NAME"].startswith(b"This is a netCDF dimension")
        assert [d[0].name for d in f["theta_bnds"].dims] == ["/theta", "/bnds"]
        assert [d[0].name for d in f["rng_state"].dims] == ["/time", "/rng_chars"]
    a, b = read(copy), read(path)
    np.testing.assert_array_equal(a.fields["particle_theta"], b.fields["particle_theta"])
    assert a.rng_states == b.rng_states and a.agent_fields.keys() == b.agent_fields.keys()


def test_a_newer_format_is_refused_with_a_clear_error(tmp_path):
    path = tmp_path / "future.h5"
    joint_run(path)
    with h5py.File(path, "r+") as f:
        f.attrs["format_version"] = FORMAT_VERSION + 1
    with pytest.raises(SnapshotFileError, match="newer than this pde_popdyn"):
        pp.load(path)


# -- io holds the format only ---------------------------------------------------------------------
SOLVING = {"solve", "reduced", "splitting", "particles", "presets", "solution", "model",
           "loading", "resume", "unsplit", "fast", "slow", "diagnostics", "sweep", "gibbs"}


def test_io_imports_nothing_that_solves():
    io_dir = Path(pp.__file__).parent / "io"
    for path in io_dir.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):  # imports in functions too
            if isinstance(node, ast.ImportFrom) and node.level >= 2:
                top = (node.module or "").split(".")[0]
                names = [top] if top else [a.name for a in node.names]
                assert not SOLVING & set(names), (path.name, ast.unparse(node))
            if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                assert not node.module.startswith("pde_popdyn"), (path.name, node.module)
            if isinstance(node, ast.Import):
                assert not any(a.name.startswith("pde_popdyn") for a in node.names)
        assert len(path.read_text().splitlines()) <= 600, path.name
