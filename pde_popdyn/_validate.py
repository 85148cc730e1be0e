"""Input checks shared by the public entry points.

Every error names the argument, the offending value and the fix, so that a user never
has to read a traceback from deep inside numpy.
"""

from __future__ import annotations

import numbers
from typing import Any, Callable

import numpy as np


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def positive_float(name: str, value: Any, *, allow_zero: bool = False) -> float:
    """A finite real number > 0 (or ≥ 0 with ``allow_zero``)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {_short(value)} "
                        f"of type {type(value).__name__}")
    v = float(value)
    if not np.isfinite(v):
        raise ValueError(f"{name} must be finite, got {v}")
    if allow_zero and v < 0:
        raise ValueError(f"{name} must be >= 0, got {v}; pass 0 to switch it off")
    if not allow_zero and v <= 0:
        raise ValueError(f"{name} must be > 0, got {v}")
    return v


def finite_float(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {_short(value)} "
                        f"of type {type(value).__name__}")
    v = float(value)
    if not np.isfinite(v):
        raise ValueError(f"{name} must be finite, got {v}")
    return v


def as_axis_spec(name: str, spec: Any) -> tuple[float, float, int]:
    """Check an axis given as ``(low, high, cells)``."""
    try:
        low, high, cells = spec
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a tuple (low, high, cells), got {_short(spec)}; "
                        f"for example {name}=(-3.0, 3.0, 128)") from None
    low = finite_float(f"{name} low", low)
    high = finite_float(f"{name} high", high)
    if high <= low:
        raise ValueError(f"{name}=(low, high, cells) needs high > low, got low={low}, "
                         f"high={high}")
    if isinstance(cells, bool) or not isinstance(cells, numbers.Integral):
        raise TypeError(f"{name} cells must be an integer, got {_short(cells)}")
    if cells < 3:
        raise ValueError(f"{name} needs at least 3 cells, got {cells}")
    return low, high, int(cells)


def field_on_grid(name: str, fn: Callable, args: tuple, shape: tuple[int, ...],
                  hint: str) -> np.ndarray:
    """Evaluate a user callable on grid arrays; check it returns finite values of ``shape``."""
    try:
        # non-finite results are reported below, with the grid point, rather than as
        # floating-point exceptions from inside the user's function
        with np.errstate(all="ignore"):
            out = np.asarray(fn(*args), dtype=float)
    except Exception as exc:  # the user's function failed: say which one and how it is called
        raise TypeError(f"{name} raised {type(exc).__name__}: {exc}. It is called as {hint} "
                        f"with numpy arrays of shape {shape}; make it vectorised and "
                        f"returning floats") from exc
    try:
        out = np.broadcast_to(out, shape).copy()
    except ValueError:
        raise ValueError(f"{name} returned an array of shape {out.shape}, which does not "
                         f"broadcast to the grid shape {shape}; it is called as {hint}") from None
    bad = ~np.isfinite(out)
    if bad.any():
        idx = tuple(int(i[0]) for i in np.nonzero(bad))
        raise ValueError(f"{name} returned a non-finite value ({out[idx]}) at grid index "
                         f"{idx}; every value on the grid must be finite")
    return out


def density_array(name: str, f: Any, shape: tuple[int, ...]) -> np.ndarray:
    """A non-negative, finite array of ``shape`` with positive mass (returned as a float copy)."""
    try:
        arr = np.array(f, dtype=float)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be an array of shape {shape}, got {_short(f)}") from None
    if arr.shape != shape:
        raise ValueError(f"{name} has shape {arr.shape} but the grid needs {shape} "
                         f"(theta-axes first, then h-axes); build it on the same grid, e.g. "
                         f"with pp.gaussian(grid, ...)")
    if not np.all(np.isfinite(arr)):
        n = int((~np.isfinite(arr)).sum())
        raise ValueError(f"{name} contains {n} NaN or inf values; a density must be finite")
    if (arr < 0).any():
        raise ValueError(f"{name} has negative values (min {arr.min():.3g}); a density must "
                         f"be >= 0, e.g. clip it with np.maximum({name}, 0)")
    if arr.sum() <= 0:
        raise ValueError(f"{name} has zero mass; a density needs positive mass")
    return arr
