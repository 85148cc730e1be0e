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


def positive_float(name: str, value: Any, *, allow_zero: bool = False,
                   off_hint: bool = True) -> float:
    """A finite real number > 0 (or ≥ 0 with ``allow_zero``; ``off_hint``: the message says
    that 0 switches the quantity off, as for a rate)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {_short(value)} "
                        f"of type {type(value).__name__}")
    v = float(value)
    if not np.isfinite(v):
        raise ValueError(f"{name} must be finite, got {v}")
    if allow_zero and v < 0:
        raise ValueError(f"{name} must be >= 0, got {v}"
                         + ("; pass 0 to switch it off" if off_hint else ""))
    if not allow_zero and v <= 0:
        raise ValueError(f"{name} must be > 0, got {v}")
    return v


def flag(name: str, value: Any, *, allow_none: bool = False) -> bool | None:
    """True or False (numpy's bool too; None as well with ``allow_none``): a string such as
    'no' would count as true, so anything else is refused."""
    if value is None and allow_none:
        return None
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    raise TypeError(f"{name} must be True or False{' (or None)' if allow_none else ''}, got "
                    f"{_short(value)} of type {type(value).__name__}")


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
        if isinstance(spec, (str, bytes)):
            raise TypeError
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
    width = (high - low) / int(cells)
    if width <= 1e-12 * max(abs(low), abs(high)) or width * width < 1e-290:
        raise ValueError(f"{name}=({low}, {high}, {cells}) gives cells {width:.3g} wide: too "
                         f"narrow to tell apart in double precision or for the rates, which "
                         f"scale like 1/width²; rescale the variable (e.g. measure it in other "
                         f"units)")
    return low, high, int(cells)


class _ComplexResult(Exception):
    pass


def field_on_grid(name: str, fn: Callable, args: tuple, shape: tuple[int, ...],
                  hint: str) -> np.ndarray:
    """Evaluate a user callable on grid arrays; check it returns finite values of ``shape``."""
    try:
        # non-finite results are reported below, with the grid point, rather than as
        # floating-point exceptions from inside the user's function
        with np.errstate(all="ignore"):
            raw = fn(*args)
            if np.iscomplexobj(raw):
                raise _ComplexResult
            out = np.asarray(raw, dtype=float)
    except _ComplexResult:
        raise TypeError(f"{name} returned complex values; it must return real numbers (it is "
                        f"called as {hint})") from None
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
    if np.iscomplexobj(f):
        raise TypeError(f"{name} has complex values; a density must be real")
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
    with np.errstate(over="ignore"):
        total = arr.sum()
    if total <= 0:
        raise ValueError(f"{name} has zero mass; a density needs positive mass")
    if not np.isfinite(total):
        raise ValueError(f"{name}'s total mass overflows (its values reach {arr.max():.3g}); "
                         f"rescale it (the solvers normalise the mass anyway)")
    return arr
