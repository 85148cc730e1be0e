"""Compiled sweeps for the uniformisation series of :mod:`pde_popdyn.unsplit`.

One sweep is y = P x with the non-negative matrix P = I + (G + κ(F − F_max))/c on a grid with one
θ-axis and one h-axis: a five-point stencil (θ-neighbours with the Scharfetter–Gummel rates,
h-neighbours with the mutation rate), plus the periodic wrap-arounds. :func:`uniformised_series`
runs the whole series Σ_k w_k P^k x row by row, so that every row stays in cache and the
Poisson-weighted accumulation is fused into the sweep. It is compiled with numba when numba is
importable and runs the same arithmetic in numpy otherwise (``HAVE_NUMBA`` tells which).
"""

from __future__ import annotations

import numpy as np

try:  # numba is a dependency, but the package must work where it cannot be installed
    import numba

    HAVE_NUMBA = True
except ImportError:  # pragma: no cover - exercised only without numba
    numba = None
    HAVE_NUMBA = False

from .fast.uniformisation import NEGLIGIBLE_WEIGHT as _NEGLIGIBLE


def _series_py(x, stay, pu, pd, puw, pdw, ph, per_t, per_h, w, acc):  # pragma: no cover
    """Reference (and numba source): acc += Σ_{k≥1} w_k P^k x, x overwritten by P^K x."""
    nt, nh = x.shape
    y = np.empty_like(x)
    for k in range(1, w.shape[0]):
        wk = w[k]
        for i in range(nt):
            for j in range(nh):
                y[i, j] = stay[i, j] * x[i, j]
            if i > 0:
                for j in range(nh):
                    y[i, j] += pu[i - 1, j] * x[i - 1, j]
            elif per_t:
                for j in range(nh):
                    y[i, j] += puw[j] * x[nt - 1, j]
            if i < nt - 1:
                for j in range(nh):
                    y[i, j] += pd[i, j] * x[i + 1, j]
            elif per_t:
                for j in range(nh):
                    y[i, j] += pdw[j] * x[0, j]
            if ph != 0.0:
                for j in range(1, nh):
                    y[i, j] += ph * x[i, j - 1]
                for j in range(nh - 1):
                    y[i, j] += ph * x[i, j + 1]
                if per_h:
                    y[i, 0] += ph * x[i, nh - 1]
                    y[i, nh - 1] += ph * x[i, 0]
            if wk > _NEGLIGIBLE:
                for j in range(nh):
                    acc[i, j] += wk * y[i, j]
        x, y = y, x
    return x


if HAVE_NUMBA:
    _series_nb = numba.njit(cache=True, nogil=True)(_series_py)


def uniformised_series(x: np.ndarray, stay: np.ndarray, pu: np.ndarray, pd: np.ndarray,
                       puw: np.ndarray, pdw: np.ndarray, ph: float, per_t: bool, per_h: bool,
                       w: np.ndarray, acc: np.ndarray) -> None:
    """acc += Σ_{k=1}^{K} w_k P^k x for a 2-D grid (one θ-axis, one h-axis), in place."""
    if HAVE_NUMBA:
        _series_nb(np.array(x, dtype=np.float64), stay, pu, pd, puw, pdw,
                   float(ph), bool(per_t), bool(per_h), w, acc)
        return
    # numpy fallback: the same sweeps, whole-array operations
    x = np.array(x, dtype=float)
    y = np.empty_like(x)
    for wk in w[1:]:
        np.multiply(stay, x, out=y)
        y[1:] += pu * x[:-1]
        y[:-1] += pd * x[1:]
        if per_t:
            y[0] += puw * x[-1]
            y[-1] += pdw * x[0]
        if ph != 0.0:
            y[:, 1:] += ph * x[:, :-1]
            y[:, :-1] += ph * x[:, 1:]
            if per_h:
                y[:, 0] += ph * x[:, -1]
                y[:, -1] += ph * x[:, 0]
        if wk > _NEGLIGIBLE:
            acc += wk * y
        x, y = y, x
