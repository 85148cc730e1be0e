"""pp.sweep: a grid of configurations, serially or on any concurrent.futures executor."""

import json
import math
import os
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor

import h5py
import numpy as np
import pytest

import pde_popdyn as pp
from pde_popdyn.presets import GaussianProblem
from pde_popdyn.sweep import SweepError, configurations


# Module-level functions: picklable by reference for process pools and dask workers.
def tiny_solve(kappa, D, splitting="strang"):
    """A small joint solve; returns picklable arrays (not the Solution, whose model holds
    local functions)."""
    prob = GaussianProblem(kappa=kappa, D=D, eps=0.1)
    g = prob.grid(16, 12)
    sol = pp.solve(prob.model(), g, prob.initial(g), 0.2, 0.05, splitting=splitting,
                   progress=False)
    return {"mean_h": sol.mean_h, "f_final": sol.f[-1]}


def tiny_solution(kappa):
    prob = GaussianProblem(kappa=kappa)
    g = prob.grid(16, 12)
    return pp.solve(prob.model(), g, prob.initial(g), 0.1, 0.05, progress=False)


def power(x, p):
    if x < 0:
        raise ValueError(f"x must be >= 0, got {x}")
    return x ** p


def pid(x):
    return os.getpid()


GRID16 = {"kappa": [0.5, 1.0, 2.0, 4.0], "D": [0.0, 0.01, 0.02, 0.04]}


def _same(a, b):
    assert len(a) == len(b)
    for ra, rb in zip(a, b):
        assert ra.params == rb.params and ra.ok and rb.ok
        for k in ra.value:
            np.testing.assert_allclose(ra.value[k], rb.value[k], rtol=1e-12, atol=1e-15)


@pytest.fixture(scope="module")
def serial16():
    return pp.sweep(tiny_solve, GRID16)


# -- configurations ------------------------------------------------------------------------------
def test_configurations_product_and_list():
    c = configurations({"a": [1, 2], "b": ["x", "y", "z"], "fixed": (0, 1)})
    assert len(c) == 6
    assert c[0] == {"a": 1, "b": "x", "fixed": (0, 1)} and c[1]["b"] == "y"   # last fastest
    assert configurations({"a": np.array([1.5, 2.5])}) == [{"a": 1.5}, {"a": 2.5}]
    assert type(configurations({"a": np.arange(2)})[0]["a"]) is int
    assert configurations([{"a": 1}, {"b": 2}]) == [{"a": 1}, {"b": 2}]
    with pytest.raises(ValueError, match="empty"):
        configurations({"a": []})
    with pytest.raises(TypeError, match="dict of lists"):
        configurations(3)
    with pytest.raises(TypeError, match=r"params\[1\]"):
        configurations([{"a": 1}, 2])
    with pytest.raises(ValueError, match="reserved"):
        configurations({"value": [1, 2]})


# -- serial -------------------------------------------------------------------------------------
def test_serial_sweep_in_order(serial16):
    assert len(serial16) == 16 and serial16.all_ok and not serial16.failed
    assert [r.index for r in serial16] == list(range(16))
    assert serial16[1].params == {"kappa": 0.5, "D": 0.01}
    assert all(r.seconds > 0 for r in serial16)
    # each result is the direct call's
    direct = tiny_solve(2.0, 0.02)
    rec = serial16[10]
    assert rec.params == {"kappa": 2.0, "D": 0.02}
    np.testing.assert_array_equal(rec.value["f_final"], direct["f_final"])
    # stronger selection moves the population faster toward the fitter h
    h_end = {(r.params["kappa"], r.params["D"]): r.value["mean_h"][-1] for r in serial16}
    assert h_end[(4.0, 0.01)] > h_end[(0.5, 0.01)]
    recs = serial16.to_records()
    assert set(recs[0]) == {"kappa", "D", "value", "error", "seconds", "path"}


def test_error_isolation_serial():
    res = pp.sweep(power, {"x": [2.0, -1.0, 3.0], "p": [2]})
    assert [r.ok for r in res] == [True, False, True]
    assert res.values == [4.0, None, 9.0]
    assert len(res.ok) == 2 and len(res.failed) == 1
    err = res[1].error
    assert err.startswith("ValueError: x must be >= 0, got -1.0")
    assert "configuration #1" in err and "'x': -1.0" in err and "'p': 2" in err
    assert "Traceback" in res[1].traceback
    with pytest.raises(SweepError, match="1 of 3 configurations failed") as info:
        pp.sweep(power, {"x": [2.0, -1.0, 3.0], "p": [2]}, return_exceptions=False)
    assert info.value.result.values == [4.0, None, 9.0]        # nothing lost


def test_thread_executor_and_list_of_dicts():
    cfgs = [{"x": float(x), "p": 3} for x in range(8)]
    with ThreadPoolExecutor(max_workers=3) as ex:
        res = pp.sweep(power, cfgs, ex)
    assert res.values == [float(x) ** 3 for x in range(8)]


# -- processes -------------------------------------------------------------------------------------
def test_process_pool_matches_serial(serial16):
    with ProcessPoolExecutor(max_workers=2) as ex:
        res = pp.sweep(tiny_solve, GRID16, ex)
        bad = pp.sweep(power, {"x": [1.0, -2.0, 3.0], "p": [0.5]}, ex)
        pids = pp.sweep(pid, {"x": list(range(6))}, ex).values
    _same(res, serial16)
    assert all(p != os.getpid() for p in pids)                    # really ran elsewhere
    assert bad.values[0] == 1.0 and bad.values[2] == pytest.approx(math.sqrt(3))
    assert "configuration #1" in bad[1].error and "x must be >= 0" in bad[1].error


def test_process_pool_unpicklable_result_is_reported():
    """A Solution whose model holds local functions cannot come back from a process: that
    configuration reports it with the pickling hint, the sweep goes on."""
    with ProcessPoolExecutor(max_workers=2) as ex:
        res = pp.sweep(tiny_solution, {"kappa": [1.0, 2.0]}, ex)
    assert not res.all_ok
    assert all("picklable" in r.error and "configuration #" in r.error for r in res.failed)


# -- dask ---------------------------------------------------------------------------------------
def test_dask_local_cluster_matches_serial(serial16):
    distributed = pytest.importorskip(
        "dask.distributed",
        reason="dask is not installed: pip install 'pde_popdyn[dask]' to test sweeps on a "
               "dask LocalCluster")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=":0") as cluster, \
            distributed.Client(cluster) as client:
        ex = client.get_executor()
        res = pp.sweep(tiny_solve, GRID16, ex)
        bad = pp.sweep(power, {"x": [1.0, -2.0], "p": [2]}, ex)
        n_workers = len(client.scheduler_info()["workers"])
    assert n_workers == 2
    _same(res, serial16)
    assert bad.values[0] == 1.0 and "configuration #1" in bad[1].error


# -- files ---------------------------------------------------------------------------------------
def test_output_dir_arrays_and_solutions(tmp_path):
    res = pp.sweep(tiny_solve, {"kappa": [1.0, 2.0], "D": [0.01]}, output_dir=tmp_path / "a")
    for r in res:
        assert r.path is not None
        with h5py.File(r.path) as f:
            np.testing.assert_array_equal(f["value/f_final"][()], r.value["f_final"])
            assert json.loads(f.attrs["sweep_params"]) == r.params
            assert f.attrs["sweep_index"] == r.index
    manifest = json.loads((tmp_path / "a" / "sweep.json").read_text())
    assert [m["path"] for m in manifest] == [r.path for r in res]
    with pytest.raises(FileExistsError, match="overwrite=True"):
        pp.sweep(tiny_solve, {"kappa": [1.0, 2.0], "D": [0.01]}, output_dir=tmp_path / "a")

    # a Solution is written as a snapshot file that pp.load reads back
    res = pp.sweep(tiny_solution, {"kappa": [1.0, 3.0]}, output_dir=tmp_path / "b")
    assert res.all_ok
    back = pp.load(res[1].path)
    np.testing.assert_array_equal(back.f, res[1].value.f)
    np.testing.assert_array_equal(back.t, res[1].value.t)

    # a failed configuration writes no file; scalars are stored as datasets
    res = pp.sweep(power, {"x": [2.0, -1.0], "p": [2]}, output_dir=tmp_path / "c")
    assert res[1].path is None and not (tmp_path / "c" / "run_0001.h5").exists()
    with h5py.File(res[0].path) as f:
        assert f["value"][()] == 4.0


def test_bad_arguments():
    with pytest.raises(TypeError, match="fn must be callable"):
        pp.sweep(3, {"x": [1]})
    with pytest.raises(TypeError, match="get_executor"):
        pp.sweep(power, {"x": [1], "p": [1]}, executor="dask")


def test_dask_client_passed_directly(serial16):
    """dask users pass their Client itself (issue 10): it is used through its executor."""
    distributed = pytest.importorskip(
        "dask.distributed",
        reason="dask is not installed: pip install 'pde_popdyn[dask]' to test sweeps with a "
               "dask Client")
    with distributed.LocalCluster(n_workers=1, threads_per_worker=2, processes=False,
                                  dashboard_address=":0") as cluster, \
            distributed.Client(cluster) as client:
        res = pp.sweep(tiny_solve, GRID16, client)
        bad = pp.sweep(power, {"x": [1.0, -2.0], "p": [2]}, client)
    _same(res, serial16)
    assert bad.values[0] == 1.0 and "configuration #1" in bad[1].error
