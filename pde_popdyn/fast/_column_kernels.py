"""Compiled loops of :mod:`pde_popdyn.fast.columns` (numba when importable, else plain Python).

* :func:`banded_series` builds, for every h-column, the dense matrices Σ_k w_k P^k and
  Σ_k v_k P^k of a tridiagonal non-negative matrix P. Starting from the identity, P^k has
  bandwidth k (no periodic wrap), so the k-th term costs O(k n) instead of O(n²).
* :func:`gth_solve` solves (diag(κ) − G) x = b per column for a birth–death generator G
  (rates ``up``: i → i+1, ``down``: i+1 → i) and a non-negative killing vector κ, or the
  transposed system, by Gaussian elimination in the Grassmann–Taksar–Heyman form: every pivot
  is written as a sum of non-negative terms, so for b ≥ 0 every operation adds non-negative
  numbers and the solution has a small *relative* error in every entry, tails included.
"""

from __future__ import annotations

import numpy as np

from .blas import one_blas_thread
from ._tridiag_kernels import RationalFactors, rational_finish, rational_split, shifted_solves

try:  # numba is a dependency, but the package must work where it cannot be installed
    import numba

    HAVE_NUMBA = True
except ImportError:  # pragma: no cover - exercised only without numba
    numba = None
    HAVE_NUMBA = False


def _banded_series_py(stay, pu, pd, puw, pdw, periodic, w, v, out_w, out_v):  # pragma: no cover
    """out_w[j] = Σ_k w[k, j] P_j^k, out_v[j] = Σ_k v[k, j] P_j^k (v may have zero rows)."""
    ncol, n = stay.shape
    kmax = w.shape[0] - 1
    x = np.empty((n, n))
    y = np.zeros((n, n))      # entries outside the band are read as zeros: never garbage
    for j in range(ncol):
        for i in range(n):
            for m in range(n):
                y[i, m] = 0.0
        for i in range(n):
            for m in range(n):
                x[i, m] = 0.0
            x[i, i] = 1.0
        for i in range(n):
            for m in range(n):
                out_w[j, i, m] = 0.0
                out_v[j, i, m] = 0.0
            out_w[j, i, i] = w[0, j]
            out_v[j, i, i] = v[0, j]
        for k in range(1, kmax + 1):
            for i in range(n):
                if periodic:
                    lo = 0
                    hi = n
                else:
                    lo = i - k
                    if lo < 0:
                        lo = 0
                    hi = i + k + 1
                    if hi > n:
                        hi = n
                for m in range(lo, hi):
                    acc = stay[j, i] * x[i, m]
                    if i > 0:
                        acc += pu[j, i - 1] * x[i - 1, m]
                    elif periodic:
                        acc += puw[j] * x[n - 1, m]
                    if i < n - 1:
                        acc += pd[j, i] * x[i + 1, m]
                    elif periodic:
                        acc += pdw[j] * x[0, m]
                    y[i, m] = acc
                    out_w[j, i, m] += w[k, j] * acc
                    out_v[j, i, m] += v[k, j] * acc
            x, y = y, x


def _gth_solve_py(up, down, kill, b, transpose):
    """Solve (diag(kill) − G) x = b (or its transpose) per column; arrays laid out (n, ncol)
    (``up``/``down`` (n − 1, ncol)), the loops over contiguous columns innermost; returns x.

    Every column does the GTH recurrence in the order of a column-by-column loop (the same
    result bit for bit); running the columns side by side lets the compiled divisions
    vectorise, which a chain of dependent divisions within one column cannot. For that the
    outputs and workspace are allocated here and the running row of each sweep is kept in its
    own vector (the compiler then knows that no store overlaps a load; otherwise the loops stay
    scalar, 3–4× slower at 128²)."""
    n, ncol = b.shape
    p = np.empty((n, ncol))
    y = np.empty((n, ncol))
    out = np.empty((n, ncol))
    s = np.empty(ncol)            # the running sum of the pivot recurrence
    q = np.empty(ncol)            # the previous row's pivot
    v = np.empty(ncol)            # the previous row of a sweep
    for j in range(ncol):
        s[j] = kill[0, j]
        p[0, j] = kill[0, j]
    for i in range(1, n):                # p_i = s_i + up_i (none on the last row)
        for j in range(ncol):
            q[j] = p[i - 1, j] + up[i - 1, j]
            p[i - 1, j] = q[j]
        for j in range(ncol):
            sj = kill[i, j] + down[i - 1, j] * s[j] / q[j]
            s[j] = sj
            p[i, j] = sj
    if not transpose:
        for j in range(ncol):
            y[0, j] = b[0, j]
            v[j] = b[0, j]
        for i in range(1, n):
            for j in range(ncol):
                w = b[i, j] + up[i - 1, j] * v[j] / p[i - 1, j]
                y[i, j] = w
                v[j] = w
        for j in range(ncol):
            w = y[n - 1, j] / p[n - 1, j]
            out[n - 1, j] = w
            v[j] = w
        for i in range(n - 2, -1, -1):
            for j in range(ncol):
                w = (y[i, j] + down[i, j] * v[j]) / p[i, j]
                out[i, j] = w
                v[j] = w
    else:
        for j in range(ncol):
            w = b[0, j] / p[0, j]
            y[0, j] = w
            v[j] = w
        for i in range(1, n):
            for j in range(ncol):
                w = (b[i, j] + down[i - 1, j] * v[j]) / p[i, j]
                y[i, j] = w
                v[j] = w
        for j in range(ncol):
            out[n - 1, j] = y[n - 1, j]
            v[j] = y[n - 1, j]
        for i in range(n - 2, -1, -1):
            for j in range(ncol):
                w = y[i, j] + up[i, j] / p[i, j] * v[j]
                out[i, j] = w
                v[j] = w
    return out


def _sturm_count(a, b2, x):
    """Number of eigenvalues below x of the symmetric tridiagonal (a, off² = b2)."""
    n = a.shape[0]
    count = 0
    d = a[0] - x
    if d < 0.0:
        count += 1
    for i in range(1, n):
        if d == 0.0:
            d = 1e-300
        d = a[i] - x - b2[i - 1] / d
        if d < 0.0:
            count += 1
    return count


def _top_two_py(a, b2, lo, hi, tol, out):  # pragma: no cover
    """The ``out.shape[1]`` (one or two) largest eigenvalues per column by bisection on Sturm
    counts (a: (ncol, n)), to an absolute accuracy ``tol[j]``."""
    ncol, n = a.shape
    for j in range(ncol):
        for r in range(out.shape[1]):   # r = 0: largest, r = 1: second largest
            left, right = lo[j], hi[j]
            for _ in range(200):
                mid = 0.5 * (left + right)
                if mid <= left or mid >= right or right - left <= tol[j]:
                    break
                if n - _sturm_count(a[j], b2[j], mid) > r:   # more than r eigenvalues ≥ mid
                    left = mid
                else:
                    right = mid
            out[j, r] = 0.5 * (left + right)


def _top_vec_py(a, b2, lo, hi, tol, r):
    """The (r+1)-th largest eigenvalue per column by bisection on Sturm counts, all columns
    at once: a (n, ncol), b2 = off² (n−1, ncol), brackets lo, hi and accuracies tol (ncol,).
    Each column takes the same midpoints as in :func:`_top_two_py` (a column whose bracket
    is resolved keeps it), so the results agree bit for bit; the Sturm recurrence runs over
    contiguous columns in its inner loop, where the compiled division vectorises (the per
    column recurrence is a chain of dependent divisions)."""
    n, ncol = a.shape
    left = lo.copy()
    right = hi.copy()
    mid = np.empty(ncol)
    live = np.empty(ncol)
    d = np.empty(ncol)
    below = np.empty(ncol)
    for _ in range(200):
        nlive = 0.0
        for j in range(ncol):
            m = 0.5 * (left[j] + right[j])
            mid[j] = m
            go = not (m <= left[j] or m >= right[j] or right[j] - left[j] <= tol[j])
            live[j] = go
            nlive += go
        if nlive == 0.0:
            break
        for j in range(ncol):
            x = a[0, j] - mid[j]
            d[j] = x
            below[j] = x < 0.0
        for p in range(1, n):
            for j in range(ncol):
                x = d[j]
                x = x + (x == 0.0) * 1e-300
                x = a[p, j] - mid[j] - b2[p - 1, j] / x
                d[j] = x
                below[j] += x < 0.0
        for j in range(ncol):
            if live[j] != 0.0:
                if n - below[j] > r:          # more than r eigenvalues ≥ mid
                    left[j] = mid[j]
                else:
                    right[j] = mid[j]
    out = np.empty(ncol)
    for j in range(ncol):
        out[j] = 0.5 * (left[j] + right[j])
    return out


def _normalise_step_py(xn, x, tol, by_sum, absolute):
    """One step of the Perron iteration's bookkeeping, per column j of xn (n, ncol), in place:
    xn ← |xn| (if ``absolute``), then xn_j /= Σ xn_j (``by_sum``) or max xn_j; returns
    done_j = [|xn − x| ≤ tol·xn everywhere in column j]. One pass per part instead of six
    numpy temporaries; the sums run row after row (numpy's pairwise sums differ in the last
    bits for n ≥ 8, so the Perron vectors differ from the earlier numpy version at round-off,
    ~1e-15 relative)."""
    n, ncol = xn.shape
    scale = np.zeros(ncol)
    if absolute:
        for p in range(n):
            for j in range(ncol):
                xn[p, j] = abs(xn[p, j])
    if by_sum:
        for p in range(n):
            for j in range(ncol):
                scale[j] += xn[p, j]
    else:
        for j in range(ncol):
            scale[j] = xn[0, j]
        for p in range(1, n):
            for j in range(ncol):
                scale[j] = max(scale[j], xn[p, j])
    bad = np.zeros(ncol)
    for p in range(n):
        for j in range(ncol):
            v = xn[p, j] / scale[j]
            xn[p, j] = v
            bad[j] += not (abs(v - x[p, j]) <= tol * v)
    done = np.empty(ncol, dtype=np.bool_)
    for j in range(ncol):
        done[j] = bad[j] == 0.0
    return done


def normalise_step(xn, x, tol: float, by_sum: bool, absolute: bool = False) -> np.ndarray:
    """:func:`_normalise_step_py` (xn C-contiguous float64, changed in place)."""
    return (_normalise_step_nb if HAVE_NUMBA else _normalise_step_py)(
        xn, np.ascontiguousarray(x, dtype=np.float64), float(tol), bool(by_sum), bool(absolute))


def _gibbs_sums_py(g, pi, weight, q, a, s):
    """Per column j of g (n, ncol): q_j = Σ_{g>0} g²/π (inf where π = 0 < g), a_j = Σ|g|,
    s_j = Σ weight·g (one pass; the sums of ``ColumnPropagator._near_gibbs``)."""
    n, ncol = g.shape
    for j in range(ncol):
        q[j] = 0.0
        a[j] = 0.0
        s[j] = 0.0
    for p in range(n):
        for j in range(ncol):
            x = g[p, j]
            if x > 0.0:
                if pi[p, j] > 0.0:
                    q[j] += x * x / pi[p, j]
                else:
                    q[j] = np.inf
            a[j] += abs(x)
            s[j] += weight[p, j] * x


def gibbs_sums(g, pi, weight):
    """(q, a, s) of :func:`_gibbs_sums_py`."""
    g, pi, weight = (np.ascontiguousarray(x, dtype=np.float64) for x in (g, pi, weight))
    ncol = g.shape[1]
    q, a, s = np.empty(ncol), np.empty(ncol), np.empty(ncol)
    (_gibbs_sums_nb if HAVE_NUMBA else _gibbs_sums_py)(g, pi, weight, q, a, s)
    return q, a, s


if HAVE_NUMBA:
    _top_vec_nb = numba.njit(cache=True, nogil=True, error_model="numpy")(_top_vec_py)
    _banded_series_nb = numba.njit(cache=True, nogil=True)(_banded_series_py)
    _gth_solve_nb = numba.njit(cache=True, nogil=True, error_model="numpy")(
        _gth_solve_py)
    _gibbs_sums_nb = numba.njit(cache=True, nogil=True)(_gibbs_sums_py)
    _normalise_step_nb = numba.njit(cache=True, nogil=True, error_model="numpy")(
        _normalise_step_py)


def banded_series(stay: np.ndarray, pu: np.ndarray, pd: np.ndarray, puw: np.ndarray,
                  pdw: np.ndarray, periodic: bool, w: np.ndarray,
                  v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(Σ_k w_k P^k, Σ_k v_k P^k) per column, shape (ncol, n, n) each.

    ``stay`` (ncol, n), ``pu``/``pd`` (ncol, n−1) and ``puw``/``pdw`` (ncol,) are the entries
    of P (diagonal, i → i+1, i+1 → i, and the periodic wrap); ``w``/``v`` are (K+1, ncol).
    """
    ncol, n = stay.shape
    out_w = np.empty((ncol, n, n))
    out_v = np.empty((ncol, n, n))
    args = [np.ascontiguousarray(a, dtype=np.float64) for a in (stay, pu, pd, puw, pdw)]
    w = np.ascontiguousarray(w, dtype=np.float64)
    v = np.ascontiguousarray(v, dtype=np.float64)
    if HAVE_NUMBA:
        _banded_series_nb(*args, bool(periodic), w, v, out_w, out_v)
        return out_w, out_v
    # numpy fallback: the same series on full matrices, vectorised over columns
    x = np.broadcast_to(np.eye(n), (ncol, n, n)).copy()
    out_w[:] = w[0][:, None, None] * x
    out_v[:] = v[0][:, None, None] * x
    s, u, d = (a[:, :, None] for a in args[:3])
    for k in range(1, w.shape[0]):
        y = s * x
        y[:, 1:] += u * x[:, :-1]
        y[:, :-1] += d * x[:, 1:]
        if periodic:
            y[:, 0] += args[3][:, None] * x[:, -1]
            y[:, -1] += args[4][:, None] * x[:, 0]
        x = y
        out_w += w[k][:, None, None] * x
        out_v += v[k][:, None, None] * x
    return out_w, out_v


def gth_solve(up: np.ndarray, down: np.ndarray, kill: np.ndarray, b: np.ndarray,
              transpose: bool = False) -> np.ndarray:
    """x with (diag(kill) − G) x = b per column (``transpose``: (diag(kill) − G)ᵀ x = b).

    All arrays are laid out (ncol, ·): ``up``/``down`` (ncol, n−1) are the birth–death rates of
    G, ``kill`` (ncol, n) ≥ 0 with at least one positive entry per column, ``b`` (ncol, n).
    The kernel runs on the transposed layout of :func:`gth_solve_cols`: an argument that is the
    transpose of a C-contiguous (·, ncol) array, as the solver's are, is used without a copy,
    and the result is returned as such a transpose.
    """
    return gth_solve_cols(*(np.asarray(a).T for a in (up, down, kill, b)), transpose).T


def gth_solve_cols(up: np.ndarray, down: np.ndarray, kill: np.ndarray, b: np.ndarray,
                   transpose: bool = False) -> np.ndarray:
    """:func:`gth_solve` in the solver's layout: ``up``/``down`` (n−1, ncol), ``kill`` and
    ``b`` (n, ncol); returns x (n, ncol), C-contiguous."""
    up, down, kill, b = (np.ascontiguousarray(a, dtype=np.float64) for a in (up, down, kill, b))
    return (_gth_solve_nb if HAVE_NUMBA else _gth_solve_py)(up, down, kill, b, bool(transpose))


def top_two_eigenvalues(diag: np.ndarray, off: np.ndarray, rtol: float = 1e-12,
                        count: int = 2) -> np.ndarray:
    """The two largest eigenvalues (λ₀ ≥ λ₁) of symmetric tridiagonal matrices, per row of
    ``diag`` (ncol, n) and ``off`` (ncol, n−1), by bisection on Sturm counts from the
    Gershgorin bracket, to ``rtol`` times the width of that bracket. Returns (ncol, 2), or
    (ncol, 1) with λ₀ alone for ``count=1``. (:func:`top_eigenvalues_cols` in the solver's
    layout, with optional bounds.)"""
    return top_eigenvalues_cols(np.asarray(diag).T, np.asarray(off).T, rtol, count)


def top_eigenvalues_cols(diag: np.ndarray, off: np.ndarray, rtol: float = 1e-12,
                         count: int = 2, lower: np.ndarray | None = None,
                         upper: np.ndarray | None = None) -> np.ndarray:
    """:func:`top_two_eigenvalues` in the solver's layout: ``diag`` (n, ncol) and ``off``
    (n−1, ncol); returns (ncol, count).

    All columns are bisected at once, one eigenvalue after the other: the same midpoints as
    the column-by-column bisection (so the same values bit for bit), with the Sturm recurrence
    vectorised over the columns (15× faster at 128²).

    ``lower`` (ncol, count) and ``upper`` (ncol,) narrow the brackets where the caller knows
    bounds (λ_r ≥ lower[:, r], λ₀ ≤ upper, and then λ₁ ≤ λ₀ as well): fewer bisection steps
    to the same accuracy (the midpoints, and the last bits, differ). A column whose result
    lands on a narrowed end (a bound that did not hold) is bisected again from the Gershgorin
    bracket."""
    a = np.ascontiguousarray(diag, dtype=np.float64)
    off = np.asarray(off, dtype=np.float64)
    b2 = np.ascontiguousarray(off * off)
    radius = np.zeros_like(a)
    radius[1:] += np.abs(off)
    radius[:-1] += np.abs(off)
    lo = (a - radius).min(axis=0) - 1e-300
    hi = (a + radius).max(axis=0) + 1e-300
    span = hi - lo
    lo, hi = lo - 1e-12 * span, hi + 1e-12 * span
    out = np.empty((a.shape[1], count))
    tol = rtol * (hi - lo)
    if not HAVE_NUMBA and count == 2:    # pragma: no cover - without numba
        _top_two_py(np.ascontiguousarray(a.T), np.ascontiguousarray(b2.T), lo, hi, tol, out)
        return out
    kernel = _top_vec_nb if HAVE_NUMBA else _top_vec_py
    narrow = lower is not None or upper is not None
    # resolved columns still run the recurrence at their last midpoint, which in the
    # plain-Python kernel must not trip numpy's error settings
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        for r in range(count):
            if not narrow:
                out[:, r] = kernel(a, b2, lo, hi, tol, r)
                continue
            hi_r = hi
            if upper is not None or r > 0:
                # 4 tol above the bound: an eigenvalue on the bound itself (λ₀ = 0 on a
                # constant-d column) is not mistaken for a bound that failed
                top = np.asarray(upper, dtype=float) if r == 0 else out[:, 0]
                hi_r = np.clip(top + 4.0 * tol, lo, hi)
            lo_r = lo if lower is None else np.clip(np.asarray(lower, dtype=float)[:, r],
                                                    lo, hi_r)
            out[:, r] = kernel(a, b2, lo_r, hi_r, tol, r)
            # a bound that did not hold leaves the result at the narrowed end
            redo = np.flatnonzero(((out[:, r] - lo_r <= tol) & (lo_r > lo))
                                  | ((hi_r - out[:, r] <= tol) & (hi_r < hi)))
            if redo.size:
                out[redo, r] = kernel(np.ascontiguousarray(a[:, redo]),
                                      np.ascontiguousarray(b2[:, redo]), lo[redo], hi[redo],
                                      tol[redo], r)
    return out


def matvec(M: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Column j of the result is M[j] @ x[:, j] (M stacked (k, n, n), x of shape (n, k))."""
    xt = np.ascontiguousarray(x.T)
    with one_blas_thread():
        if hasattr(np, "matvec"):          # numpy ≥ 2.2: a batched matrix-vector product
            return np.matvec(M, xt).T
        return np.matmul(M, xt[:, :, None])[:, :, 0].T


def warm_up() -> None:
    """Load (or compile) the compiled kernels once, so that timings exclude it."""
    from .._kernels import uniformised_series
    x = np.ones((2, 3))
    banded_series(x, x[:, :2], x[:, :2], x[:, 0], x[:, 0], False, x[:1], x[:1])
    gth_solve(x[:, :2], x[:, :2], x, x)
    normalise_step(np.ones((3, 2)), np.ones((3, 2)), 1e-14, True)
    top_two_eigenvalues(-x, x[:, :2])
    top_two_eigenvalues(-x, x[:, :2], count=1)
    y = np.ones((3, 2))
    uniformised_series(y, y, y[:2], y[:2], y[0], y[0], 0.0, False, False, np.ones(2), y.copy())
    # the fallbacks' Poisson weights are kept read-only: a signature of their own
    ro = np.ones(2)
    ro.setflags(write=False)
    uniformised_series(y, y, y[:2], y[:2], y[0], y[0], 0.0, False, False, ro, y.copy())
    R = RationalFactors(y[:2], y[:2], -2 * y, np.ones((1, 2)) + 1j, np.ones(1) + 0j)
    R.apply(y, np.zeros_like(y))
    gibbs_sums(y, y, y)
    one = np.ones(2)
    parts = rational_split(y, y, np.ones(2, dtype=bool), one, 2, 1e-14, 1e-12, 1e-13, one)
    rational_finish(np.ones_like(y), y, parts[1], *parts[2:5], np.ones(2, dtype=bool),
                    one, one, parts[5], 1e-12)
    shifted_solves(x[:, :2], x[:, :2], 4 * x, np.ones((1, 2)), x)
