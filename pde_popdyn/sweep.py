"""Parameter sweeps: run ``fn(**params)`` over a grid of configurations, on any executor.

::

    import pde_popdyn as pp
    from pde_popdyn.presets import GaussianProblem

    def final_mean_h(kappa, D):                 # defined at module level: picklable
        prob = GaussianProblem(kappa=kappa, D=D)
        g = prob.grid(32, 24)
        return pp.solve(prob.model(), g, prob.initial(g), 1.0, 0.05, progress=False).mean_h[-1]

    res = pp.sweep(final_mean_h, {"kappa": [1, 2, 4], "D": [0.01, 0.02]})   # serial
    res.values            # 6 results, in input order (the Cartesian product, last key fastest)

    from concurrent.futures import ProcessPoolExecutor
    with ProcessPoolExecutor(max_workers=4) as ex:
        res = pp.sweep(final_mean_h, {...}, ex)                     # local processes

    from dask.distributed import Client, LocalCluster                # pip install pde_popdyn[dask]
    with LocalCluster(n_workers=4, threads_per_worker=1) as cluster, Client(cluster) as client:
        res = pp.sweep(final_mean_h, {...}, client)            # or Client("scheduler:8786")

Any :class:`concurrent.futures.Executor` works, so the same code runs serially, on a laptop's
processes, or on a dask cluster; a dask ``Client`` may be passed itself (it is used through
``client.get_executor()``). Each configuration is one task ``fn(**params)``.

Pickling. For a process pool or dask, ``fn``, the parameters and the returned value travel
between processes: ``ProcessPoolExecutor`` uses :mod:`pickle`, so ``fn`` must be defined at
the top level of an importable module (not a lambda, a nested function or ``__main__`` on
spawn-start platforms) and its result must be picklable (a Solution of a model built from
local functions, such as ``GaussianProblem().model()``, is not; return arrays, numbers or dicts
of them instead). dask uses cloudpickle, which also handles lambdas and closures. A result that
cannot travel is reported as that configuration's error, with this hint.

Errors. An exception in one configuration is caught and recorded (``record.error``: the
exception text and the configuration; ``record.traceback``); the other configurations still
run. With ``return_exceptions=False`` a :class:`SweepError` carrying the whole result is raised
at the end instead.

Files. With ``output_dir``, each successful result is written to its own HDF5 file
``<output_dir>/<prefix><index>.h5`` by the calling process (so a remote cluster needs no shared
file system) as it arrives:

* a :class:`~pde_popdyn.Solution`: with :func:`pde_popdyn.io.write_solution` (a snapshot file
  that :func:`pde_popdyn.load` reads back);
* an object with a ``save(path)`` method: ``value.save(path)``;
* anything else: with h5py, a number or array as dataset ``value``, a dict of them as one
  dataset per key in group ``value``.

Every file gets the root attributes ``sweep_params`` (JSON), ``sweep_index`` and
``sweep_seconds``, and ``<output_dir>/sweep.json`` lists every configuration with its file,
time and error.
"""

from __future__ import annotations

import itertools
import json
import os
import time
import traceback as _tb
from collections.abc import Mapping, Sequence
from concurrent.futures import Executor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ._validate import _short

RESERVED = ("value", "error", "seconds", "path", "index")


@dataclass
class SweepRecord:
    """One configuration of a sweep and its outcome.

    ``value`` is ``fn(**params)`` (None if it failed), ``error`` None or the text
    "<ExceptionType>: <message> [configuration #i: {params}]", ``seconds`` the wall time of the
    call (measured where it ran), ``path`` the HDF5 file written (or None).
    """

    index: int
    params: dict[str, Any]
    value: Any = None
    error: str | None = None
    seconds: float = float("nan")
    path: str | None = None
    traceback: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


class SweepError(RuntimeError):
    """Raised with ``return_exceptions=False`` when a configuration failed; ``.result`` holds
    the whole :class:`SweepResult`, so the successful configurations are not lost."""

    def __init__(self, result: "SweepResult"):
        self.result = result
        bad = result.failed
        super().__init__(f"{len(bad)} of {len(result)} configurations failed; the first: "
                         f"{bad[0].error}")


class SweepResult(Sequence):
    """The records of a sweep in input order: a read-only list of :class:`SweepRecord`."""

    def __init__(self, records: list[SweepRecord]):
        self.records = list(records)

    def __getitem__(self, i):
        return self.records[i]

    def __len__(self) -> int:
        return len(self.records)

    @property
    def ok(self) -> list[SweepRecord]:
        """The records that succeeded."""
        return [r for r in self.records if r.ok]

    @property
    def failed(self) -> list[SweepRecord]:
        """The records whose configuration raised (or whose result could not be saved)."""
        return [r for r in self.records if not r.ok]

    @property
    def all_ok(self) -> bool:
        return not self.failed

    @property
    def values(self) -> list:
        """``fn(**params)`` for every configuration, None where it failed."""
        return [r.value for r in self.records]

    @property
    def params(self) -> list[dict[str, Any]]:
        return [r.params for r in self.records]

    def to_records(self) -> list[dict[str, Any]]:
        """Flat dicts ``{**params, value, error, seconds, path}``, e.g. for
        ``pandas.DataFrame(result.to_records())``."""
        return [{**r.params, "value": r.value, "error": r.error, "seconds": r.seconds,
                 "path": r.path} for r in self.records]

    def raise_if_failed(self) -> "SweepResult":
        if self.failed:
            raise SweepError(self)
        return self

    def __repr__(self) -> str:
        return (f"SweepResult({len(self)} configurations, {len(self.ok)} ok, "
                f"{len(self.failed)} failed)")


# -- configurations ---------------------------------------------------------------------------
def _plain(v: Any) -> Any:
    return v.item() if isinstance(v, np.generic) else v


def configurations(params: Any) -> list[dict[str, Any]]:
    """The list of configurations described by ``params``.

    A dict maps each name to a list (or range, or 1-D array) of options; the configurations
    are their Cartesian product, the last name varying fastest. A value that is not a list,
    range or array (a number, a string, a tuple, ...) is held fixed. A list of dicts is taken
    as the configurations themselves.
    """
    if isinstance(params, Mapping):
        names = list(params)
        axes = []
        for k in names:
            if not isinstance(k, str):
                raise TypeError(f"parameter names must be strings, got {k!r}")
            v = params[k]
            if isinstance(v, np.ndarray):
                if v.ndim != 1:
                    raise ValueError(f"params[{k!r}] must be a 1-D array of options, got "
                                     f"shape {v.shape}")
                v = [_plain(x) for x in v]
            if isinstance(v, (list, range)):
                if len(v) == 0:
                    raise ValueError(f"params[{k!r}] is an empty list: no configurations")
                axes.append(list(v))
            else:
                axes.append([v])
        configs = [dict(zip(names, combo)) for combo in itertools.product(*axes)]
    elif isinstance(params, (list, tuple)):
        configs = []
        for i, c in enumerate(params):
            if not isinstance(c, Mapping) or not all(isinstance(k, str) for k in c):
                raise TypeError(f"params[{i}] must be a dict of keyword arguments, got "
                                f"{_short(c)}")
            configs.append(dict(c))
    else:
        raise TypeError(f"params must be a dict of lists (their Cartesian product) or a list "
                        f"of dicts, got {_short(params)}")
    if not configs:
        raise ValueError("params describes no configurations")
    for c in configs:
        clash = [k for k in c if k in RESERVED]
        if clash:
            raise ValueError(f"parameter name(s) {clash} are reserved for the sweep's records "
                             f"{RESERVED}; rename them")
    return configs


# -- running ----------------------------------------------------------------------------------
def _describe(index: int, params: dict[str, Any]) -> str:
    return f"[configuration #{index}: {_short(params) if len(repr(params)) > 200 else params!r}]"


def _call(fn: Callable, params: dict[str, Any], index: int) -> tuple:
    """Run one configuration (in a worker): (value, error text, traceback, seconds)."""
    t0 = time.perf_counter()
    try:
        value = fn(**params)
    except Exception as exc:
        return (None, f"{type(exc).__name__}: {exc} {_describe(index, params)}",
                _tb.format_exc(), time.perf_counter() - t0)
    return value, None, None, time.perf_counter() - t0


_PICKLE_HINT = ("; with a process pool or dask, fn, its parameters and its result must be "
                "picklable: define fn at the top level of a module and return arrays, numbers "
                "or dicts (see pde_popdyn.sweep)")


def _transport_error(exc: BaseException, index: int, params: dict[str, Any]) -> str:
    text = f"{type(exc).__name__}: {exc}"
    low = text.lower()
    if "pickl" in low or "serializ" in low or "can't get local" in low:
        text += _PICKLE_HINT
    return f"{text} {_describe(index, params)}"


# -- files --------------------------------------------------------------------------------------
def _json(obj: Any) -> str:
    def default(o):
        if isinstance(o, np.generic):
            return o.item()
        if isinstance(o, np.ndarray):
            return o.tolist()
        return repr(o)
    return json.dumps(obj, default=default)


def _store_h5(value: Any, path: Path) -> None:
    import h5py
    with h5py.File(path, "w") as f:
        if value is None:
            return
        if isinstance(value, Mapping):
            grp = f.create_group("value")
            for k, v in value.items():
                grp.create_dataset(str(k), data=_array(v, f"value[{k!r}]"))
        else:
            f.create_dataset("value", data=_array(value, "value"))


def _array(v: Any, name: str) -> np.ndarray:
    if isinstance(v, str):
        return np.array(v.encode())
    a = np.asarray(v)
    if a.dtype == object:
        raise TypeError(f"{name} of type {type(v).__name__} cannot be stored in HDF5: return "
                        f"numbers, arrays, or a dict of them (or give it a save(path) method)")
    return a


def save_value(value: Any, path: str | os.PathLike, *, params: dict | None = None,
               index: int | None = None, seconds: float | None = None) -> Path:
    """Write one sweep result to the HDF5 file ``path`` (see the module docstring)."""
    import h5py
    from .solution import Solution
    p = Path(path)
    if isinstance(value, Solution):
        from .io import write_solution
        write_solution(value, p, overwrite=True)
    elif callable(getattr(value, "save", None)):
        value.save(p)
    else:
        _store_h5(value, p)
    with h5py.File(p, "a") as f:
        f.attrs["sweep_params"] = _json(params or {})
        if index is not None:
            f.attrs["sweep_index"] = index
        if seconds is not None:
            f.attrs["sweep_seconds"] = seconds
    return p


def _prepare_output(output_dir: Any, n: int, prefix: str, overwrite: bool) -> list[Path]:
    d = Path(output_dir)
    d.mkdir(parents=True, exist_ok=True)
    width = max(4, len(str(n - 1)))
    paths = [d / f"{prefix}{i:0{width}d}.h5" for i in range(n)]
    if not overwrite:
        existing = [str(p) for p in paths if p.exists()]
        if existing:
            raise FileExistsError(f"{len(existing)} output file(s) exist already, e.g. "
                                  f"{existing[0]}; pass overwrite=True or another output_dir")
    return paths


def _as_executor(executor: Any) -> Any:
    """A dask ``distributed.Client`` has ``submit`` but returns dask futures, which
    ``concurrent.futures.as_completed`` cannot wait on; its ``get_executor()`` is a true
    :class:`concurrent.futures.Executor`. Other objects pass through unchanged."""
    if isinstance(executor, Executor) or executor is None:
        return executor
    cls = type(executor)
    if cls.__module__.split(".")[0] == "distributed" and callable(
            getattr(executor, "get_executor", None)):
        return executor.get_executor()
    return executor


# -- entry point ----------------------------------------------------------------------------------
def sweep(fn: Callable[..., Any], params: Any, executor: Executor | None = None, *,
          output_dir: str | os.PathLike | None = None, return_exceptions: bool = True,
          prefix: str = "run_", overwrite: bool = False,
          progress: bool = False) -> SweepResult:
    """Run ``fn(**config)`` for every configuration of ``params``; results in input order.

    Parameters
    ----------
    fn:
        Called with each configuration as keyword arguments. Must be picklable (defined at the
        top level of a module) for process pools and dask; see the module docstring.
    params:
        A dict of lists (their Cartesian product, last name fastest; non-list values held
        fixed) or a list of dicts. See :func:`configurations`.
    executor:
        None: run serially in this process, in order. Otherwise any
        :class:`concurrent.futures.Executor` (``ThreadPoolExecutor``, ``ProcessPoolExecutor``,
        a dask ``client.get_executor()``), or a dask ``distributed.Client`` itself, used
        through its executor. The executor (or client) is not shut down.
    output_dir:
        If given, each successful result is written to ``<output_dir>/<prefix><index>.h5``
        (see the module docstring) and ``sweep.json`` indexes them. Existing files are an
        error unless ``overwrite``.
    return_exceptions:
        True (default): a configuration that raises is recorded in its record's ``error``
        and the sweep goes on. False: the sweep still runs every configuration, then raises
        :class:`SweepError` (its ``.result`` is the full result).
    progress:
        Show a tqdm progress bar.
    """
    if not callable(fn):
        raise TypeError(f"fn must be callable as fn(**params), got {_short(fn)}")
    configs = configurations(params)
    executor = _as_executor(executor)
    if executor is not None and not callable(getattr(executor, "submit", None)):
        raise TypeError(f"executor must be a concurrent.futures.Executor (with .submit), got "
                        f"{_short(executor)}; for dask use Client(...).get_executor()")
    paths = (_prepare_output(output_dir, len(configs), prefix, overwrite)
             if output_dir is not None else None)
    records = [SweepRecord(i, c) for i, c in enumerate(configs)]
    bar = None
    if progress:
        from tqdm.auto import tqdm
        bar = tqdm(total=len(configs), desc="sweep")

    def finish(i: int, out: tuple) -> None:
        rec = records[i]
        rec.value, rec.error, rec.traceback, rec.seconds = out
        if paths is not None and rec.ok:
            try:
                save_value(rec.value, paths[i], params=rec.params, index=i,
                           seconds=rec.seconds)
                rec.path = str(paths[i])
            except Exception as exc:  # the value stays; the record says it was not saved
                rec.error = (f"result not saved to {paths[i]}: {type(exc).__name__}: {exc} "
                             f"{_describe(i, rec.params)}")
                rec.traceback = _tb.format_exc()
        if bar is not None:
            bar.update(1)

    try:
        if executor is None:
            for i, c in enumerate(configs):
                finish(i, _call(fn, c, i))
        else:
            futures = {}
            for i, c in enumerate(configs):
                try:
                    futures[executor.submit(_call, fn, c, i)] = i
                except Exception as exc:  # e.g. fn cannot be serialised by this executor
                    finish(i, (None, _transport_error(exc, i, c), _tb.format_exc(),
                               float("nan")))
            for fut in as_completed(futures):
                i = futures[fut]
                try:
                    out = fut.result()
                except Exception as exc:  # transport failure or a worker that died
                    out = (None, _transport_error(exc, i, configs[i]), _tb.format_exc(),
                           float("nan"))
                finish(i, out)
    finally:
        if bar is not None:
            bar.close()
        if output_dir is not None:
            manifest = [{"index": r.index, "params": r.params, "path": r.path,
                         "seconds": r.seconds if np.isfinite(r.seconds) else None,
                         "error": r.error} for r in records]
            (Path(output_dir) / "sweep.json").write_text(_json(manifest))

    result = SweepResult(records)
    if not return_exceptions:
        result.raise_if_failed()
    return result
