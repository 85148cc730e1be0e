"""Helpers shared by the benchmark studies: machine description, log–log slopes, timing, JSON.

Every study records *where* and *when* its numbers were measured (:func:`machine_info`,
:func:`now`), fits observed orders as least-squares slopes with their standard error
(:func:`fit_slope`), times by the minimum over repeats (:func:`timer`, :func:`timed`) and
writes its raw numbers with :func:`write_json`, which accepts numpy scalars and arrays.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import os
import platform
import subprocess
import time
from pathlib import Path
from typing import Any, Callable, NamedTuple, Sequence

import numpy as np

PACKAGE_DIR = Path(__file__).resolve().parent
DEFAULT_OUTDIR = PACKAGE_DIR / "results"
DEFAULT_RESULTS_MD = PACKAGE_DIR / "RESULTS.md"


# -- machine and date ----------------------------------------------------------------------
def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def _git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "-C", str(PACKAGE_DIR), "rev-parse", "--short", "HEAD"],
                             capture_output=True, text=True, timeout=5)
        if out.returncode != 0:
            return None
        commit = out.stdout.strip()
        dirty = subprocess.run(["git", "-C", str(PACKAGE_DIR), "status", "--porcelain",
                                "--untracked-files=no"], capture_output=True, text=True,
                               timeout=5)
        return commit + ("+dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return None


def machine_info() -> dict[str, Any]:
    """CPU model, core counts, OS, Python/numpy/scipy/pde_popdyn versions and the git commit."""
    import scipy

    try:
        import pde_popdyn
        pp_version = getattr(pde_popdyn, "__version__", "unknown")
    except ImportError:  # pragma: no cover - the package is installed in this repository
        pp_version = None
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not on Linux
        usable = os.cpu_count()
    try:
        load = [round(x, 2) for x in os.getloadavg()]
    except (AttributeError, OSError):  # pragma: no cover - not on Unix
        load = None
    threads = {k: os.environ[k] for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                                          "MKL_NUM_THREADS") if k in os.environ}
    return {
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "usable_cores": usable,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "pde_popdyn": pp_version,
        "git_commit": _git_commit(),
        "thread_env": threads,
        # 1, 5 and 15 min load averages: above the core count, timings are slowed down by
        # other processes sharing the machine
        "loadavg": load,
    }


def machine_summary(info: dict[str, Any]) -> str:
    """One line for RESULTS.md: 'AMD EPYC, 2 cores, numpy 2.4.6, scipy 1.17.1, load 0.5'."""
    if not info:
        return "?"
    text = (f"{info.get('cpu', '?')}, {info.get('cores', '?')} cores, "
            f"numpy {info.get('numpy', '?')}, scipy {info.get('scipy', '?')}")
    load = info.get("loadavg")
    if load:
        text += f", load {load[0]:.1f} at start"
    return text


def now() -> str:
    """The current UTC date and time, ISO 8601 to the second."""
    return _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat()


# -- fits ----------------------------------------------------------------------------------
class Slope(NamedTuple):
    """Least-squares slope p of log y = p log x + c, and its standard error."""

    slope: float
    stderr: float

    def __str__(self) -> str:
        return f"{self.slope:.3f} ± {self.stderr:.3f}"


def fit_line(x: Sequence[float], y: Sequence[float]) -> tuple[float, float, float]:
    """(slope, intercept, stderr of the slope) of the least-squares line log y ≈ p log x + c.

    The standard error is sqrt(Σ r² / (n − 2) / Σ (log x − mean)²) (0 for n = 2, where the
    line is exact and no spread can be estimated). Raises ValueError unless x and y are
    positive and finite, of equal length ≥ 2, with at least two distinct x.
    """
    lx = np.log(_positive("x", x))
    ly = np.log(_positive("y", y))
    if lx.shape != ly.shape:
        raise ValueError(f"x and y must have the same length, got {lx.size} and {ly.size}")
    if lx.size < 2:
        raise ValueError(f"need at least 2 points to fit a slope, got {lx.size}")
    dx = lx - lx.mean()
    sxx = float(dx @ dx)
    if sxx == 0.0:
        raise ValueError("x: all values are equal; a slope needs at least two distinct x")
    p = float(dx @ (ly - ly.mean())) / sxx
    c = float(ly.mean() - p * lx.mean())
    n = lx.size
    if n > 2:
        resid = ly - (p * lx + c)
        se = math.sqrt(float(resid @ resid) / (n - 2) / sxx)
    else:
        se = 0.0
    return p, c, se


def fit_slope(x: Sequence[float], y: Sequence[float]) -> Slope:
    """The least-squares slope of log y against log x, with its standard error (see
    :func:`fit_line`). An observed order of convergence or a cost exponent."""
    p, _, se = fit_line(x, y)
    return Slope(p, se)


def _positive(name: str, v: Sequence[float]) -> np.ndarray:
    a = np.asarray(v, dtype=float).ravel()
    if not np.all(np.isfinite(a)) or np.any(a <= 0):
        raise ValueError(f"{name}: a log-log fit needs positive finite values, got {a.tolist()}")
    return a


# -- timing --------------------------------------------------------------------------------
def timed(fn: Callable[[], Any], repeats: int = 3) -> tuple[float, Any]:
    """Call ``fn()`` ``repeats`` times; return (minimum wall time in seconds, last result).

    The minimum is the least disturbed by other processes sharing the machine.
    """
    if repeats < 1:
        raise ValueError(f"repeats must be ≥ 1, got {repeats}")
    best = math.inf
    result = None
    for _ in range(repeats):
        t0 = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - t0)
    return best, result


def timer(fn: Callable[[], Any], repeats: int = 3) -> float:
    """The minimum wall time in seconds of ``repeats`` calls of ``fn()``."""
    return timed(fn, repeats)[0]


# -- JSON ----------------------------------------------------------------------------------
def to_jsonable(obj: Any) -> Any:
    """Convert numpy scalars/arrays, tuples, paths and non-finite floats (→ None) to JSON."""
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return to_jsonable(obj.tolist())
    if isinstance(obj, (bool, np.bool_)):
        return bool(obj)
    if isinstance(obj, (int, np.integer)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        x = float(obj)
        return x if math.isfinite(x) else None
    if isinstance(obj, Path):
        return str(obj)
    if obj is None or isinstance(obj, str):
        return obj
    raise TypeError(f"cannot write an object of type {type(obj).__name__} to JSON: {obj!r}")


def write_json(path: str | Path, data: Any) -> Path:
    """Write ``data`` (numpy-safe, see :func:`to_jsonable`) as indented JSON; return the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(to_jsonable(data), indent=1, allow_nan=False)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text + "\n", encoding="utf-8")
    tmp.replace(path)
    return path


def read_json(path: str | Path) -> Any:
    return json.loads(Path(path).read_text(encoding="utf-8"))


__all__ = ["machine_info", "machine_summary", "now", "Slope", "fit_line", "fit_slope",
           "timed", "timer", "to_jsonable", "write_json", "read_json", "DEFAULT_OUTDIR",
           "DEFAULT_RESULTS_MD"]
