"""Compiled complex-shifted tridiagonal solves per h-column (numba when importable, else plain
Python): the rational approximation of exp used by :mod:`pde_popdyn.fast.rational`
(:class:`RationalFactors` with the input split and finish around it), which also gives the
shifted solves of the initial-layer correction (:func:`shifted_solves`, :mod:`pde_popdyn.ap`).

All loops run over contiguous h-columns innermost, in real arithmetic. The kernels allocate their
own workspace and outputs and keep the running row of each sweep in separate vectors: the
compiler then knows that no array overlaps another and vectorises the column loops (passing the
workspace in, or reading the previous row back from it, left them scalar: 1.5–2× slower).

Measured at 128² against this layout (numba, one core) and left out: pivots recomputed inside
the sweeps instead of stored (the pivot recurrence alone costs half an application), column
blocks, as index ranges or as a free (n, nblocks, B) reshape (1.3–4× slower: the shorter
loops lose more than the cache gains), FMA contraction (no gain) and two poles per sweep.
The application sits near the balance of its loads and its arithmetic.
"""

from __future__ import annotations

import numpy as np

try:  # numba is a dependency, but the package must work where it cannot be installed
    import numba

    HAVE_NUMBA = True
except ImportError:  # pragma: no cover - exercised only without numba
    numba = None
    HAVE_NUMBA = False


def _rational_factor_py(sub, sup, diag, sr, si):
    """Inverse Thomas pivots of T_j − s_kj for every pole k and column j (layout (n, ncol):
    the inner loops run over contiguous columns). T has ``diag`` (n, ncol), ``sub`` T[p+1, p]
    and ``sup`` T[p, p+1] (n−1, ncol); the shifts s = sr + i·si are (K, ncol). Returns the
    real and imaginary parts of 1/pivot, (K, n, ncol) each, and the number of zero pivots
    (the caller raises on any: compiled, the division is left unchecked so that the column
    loops vectorise, 3× faster); the multipliers are sup[p]/pivot[p], recomputed when applied
    (half the memory traffic)."""
    K = sr.shape[0]
    n, ncol = diag.shape
    ivr = np.empty((K, n, ncol))
    ivi = np.empty((K, n, ncol))
    qr = np.empty(ncol)            # the previous row's pivot reciprocal
    qi = np.empty(ncol)
    zero = 0.0
    for k in range(K):
        for j in range(ncol):
            dr = diag[0, j] - sr[k, j]
            di = -si[k, j]
            m = dr * dr + di * di
            zero += m == 0.0
            a = dr / m
            b = -di / m
            ivr[k, 0, j] = a
            ivi[k, 0, j] = b
            qr[j] = a
            qi[j] = b
        for p in range(1, n):
            for j in range(ncol):
                c = sub[p - 1, j] * sup[p - 1, j]
                dr = diag[p, j] - sr[k, j] - c * qr[j]
                di = -si[k, j] - c * qi[j]
                m = dr * dr + di * di
                zero += m == 0.0
                a = dr / m
                b = -di / m
                ivr[k, p, j] = a
                ivi[k, p, j] = b
                qr[j] = a
                qi[j] = b
    return ivr, ivi, zero


def _rational_apply_py(sub, sup, ivr, ivi, gr, gi, x, out):
    """out += Σ_k Re[(gr_k + i gi_k) (T − s_k)⁻¹ x] per column, with the pivots of
    :func:`_rational_factor_py`; x and out (n, ncol).

    The workspace is allocated here, and the running row of each sweep is kept in its own
    vectors (yr, yi): compiled, the inner loops over columns then vectorise. (With the
    workspace passed in, or the previous row read back from the (n, ncol) workspace, the
    compiler cannot rule out that the arrays overlap and runs them scalar: 1.6× slower at
    128².)"""
    K, n, ncol = ivr.shape
    wr = np.empty((n, ncol))
    wi = np.empty((n, ncol))
    yr = np.empty(ncol)
    yi = np.empty(ncol)
    for k in range(K):
        # forward elimination w_p = (x_p − sub_{p−1} w_{p−1}) / pivot_p
        for j in range(ncol):
            a = x[0, j] * ivr[k, 0, j]
            b = x[0, j] * ivi[k, 0, j]
            wr[0, j] = a
            wi[0, j] = b
            yr[j] = a
            yi[j] = b
        for p in range(1, n):
            for j in range(ncol):
                tr = x[p, j] - sub[p - 1, j] * yr[j]
                ti = -sub[p - 1, j] * yi[j]
                a = tr * ivr[k, p, j] - ti * ivi[k, p, j]
                b = tr * ivi[k, p, j] + ti * ivr[k, p, j]
                yr[j] = a
                yi[j] = b
                wr[p, j] = a
                wi[p, j] = b
        # back substitution x_p = w_p − (sup_p / pivot_p) x_{p+1}, accumulated into out
        a, b = gr[k], gi[k]
        for j in range(ncol):
            out[n - 1, j] += a * yr[j] - b * yi[j]
        for p in range(n - 2, -1, -1):
            for j in range(ncol):
                cr = sup[p, j] * ivr[k, p, j]
                ci = sup[p, j] * ivi[k, p, j]
                ur = wr[p, j] - (cr * yr[j] - ci * yi[j])
                ui = wi[p, j] - (cr * yi[j] + ci * yr[j])
                yr[j] = ur
                yi[j] = ui
            for j in range(ncol):
                out[p, j] += a * yr[j] - b * yi[j]


def _rational_split_py(x, pi, ipi, isflat, gout, ncol_total, delta, tol, tail_tol, rinf):
    """The input split of the rational branch (see :class:`~pde_popdyn.fast.rational
    .RationalColumns`), per column j of x (n, ncol). ``gout`` is the factor by which column j's
    output scales (e^{kτλ₀} times the propagator's shift), ``shift`` enters through it only.

    base_j = Σx_j on constant-d columns (else 0), x̃ = x − base π, y = min(x̃, cap_j π),
    z = x̃ − y, zm_j = Σz_j; the output scale is s_j = max(g_j|Σx_j|, Σ_i g_i|Σx_i| /
    ncol_total) (the column's output mass, or the mean one for a nearly empty column), and
    ok_j = [g_j δ‖y_j‖ ≤ tol s_j and zm_j ≤ tail_tol s_j / g_j'] with ‖y‖² = Σy²/π and
    g_j' = e^{kτ(d̂_j−D)} folded in by the caller through ``tail_tol``; the cap is
    cap_j = (tol s_j / (δ g_j))² / Σ|x̃_j| (so that the first test holds when y ≥ 0).
    Returns (y, z, base, zm, ok, scale, out) with ``scale`` = s_j and ``out`` the first term
    r_∞ y of the rational sum; ``ipi`` is 1/π (0 where π = 0: there y ≠ 0 makes ‖y‖ infinite).
    The results are allocated here, which lets the compiled loops vectorise (the compiler knows
    they overlap no input)."""
    n, ncol = x.shape
    y = np.empty((n, ncol))
    z = np.empty((n, ncol))
    out = np.empty((n, ncol))
    base = np.empty(ncol)
    zm = np.empty(ncol)
    scale = np.empty(ncol)
    ok = np.empty(ncol, dtype=np.bool_)
    col = np.zeros(ncol)
    mass = np.zeros(ncol)
    q = np.zeros(ncol)
    bad = np.zeros(ncol)
    for p in range(n):
        for j in range(ncol):
            col[j] += x[p, j]
    tot = 0.0
    for j in range(ncol):
        tot += gout[j] * abs(col[j])
        base[j] = col[j] if isflat[j] else 0.0
        zm[j] = 0.0
    mean = tot / ncol_total
    for j in range(ncol):
        scale[j] = max(gout[j] * abs(col[j]), mean)
    for p in range(n):
        for j in range(ncol):
            mass[j] += abs(x[p, j] - base[j] * pi[p, j])
    for j in range(ncol):
        a = tol * scale[j] / (delta * max(gout[j], 1e-300))
        c = a * a / max(mass[j], 1e-300)
        mass[j] = c if c < 1e300 else 1e300            # now the cap coefficient
    for p in range(n):               # (branch-free, so that it vectorises)
        for j in range(ncol):
            pij = pi[p, j]
            xt = x[p, j] - base[j] * pij
            yy = min(xt, mass[j] * pij)
            y[p, j] = yy
            out[p, j] = rinf * yy
            d = xt - yy
            z[p, j] = d
            zm[j] += d
            q[j] += yy * yy * ipi[p, j]
            bad[j] += abs(yy) * (pij == 0.0)
    for j in range(ncol):
        if bad[j] > 0.0:
            q[j] = np.inf
        ok[j] = ((gout[j] * delta * np.sqrt(q[j]) <= tol * scale[j])
                 and (zm[j] * tail_tol[1, j] <= tail_tol[0, j] * scale[j]))
    return y, z, base, zm, ok, scale, out


def _rational_finish_py(x, pi, z, base, zm, ok, isflat, growth, shift, scale, tol, res):
    """Returns out = (growth_j x + base_j π) shift_j + ½(z + π zm_j) growth_j shift_j on the
    columns that passed (ok; the others hold garbage); there, negative entries within the error
    bound (−v ≤ tol·scale_j, round-off in the far tails) are set to zero and counted in res[0],
    and a constant-d column whose mass is off its exact value base_j shift_j by round-off only
    is rescaled to it; res[1] += the tail mass carried. Larger negative values (signed inputs)
    are left alone. (``out`` is allocated here so that the compiled loops vectorise.)"""
    n, ncol = x.shape
    out = np.empty((n, ncol))
    tot = np.zeros(ncol)
    clip = np.zeros(ncol)
    a = np.empty(ncol)          # growth·shift
    b = np.empty(ncol)          # base·shift
    c = np.empty(ncol)          # ½ growth·shift where the tail is carried, else 0
    lim = np.empty(ncol)        # the clip bound tol·scale, −1 where nothing is clipped
    for j in range(ncol):
        a[j] = growth[j] * shift[j]
        b[j] = base[j] * shift[j]
        carry = ok[j] and zm[j] > 0.0
        c[j] = 0.5 * a[j] if carry else 0.0
        lim[j] = tol * scale[j] if ok[j] else -1.0
        if carry:
            res[1] += zm[j]
    for p in range(n):               # (branch-free, so that it vectorises)
        for j in range(ncol):
            pij = pi[p, j]
            v = a[j] * x[p, j] + b[j] * pij + c[j] * (z[p, j] + pij * zm[j])
            m = (v < 0.0) * (-v <= lim[j])
            clip[j] -= v * m
            v = v * (1.0 - m)
            out[p, j] = v
            tot[j] += v
    for j in range(ncol):
        res[0] += clip[j]
    rescale = False
    for j in range(ncol):
        target = base[j] * shift[j]
        if (ok[j] and isflat[j] and target > 0.0 and tot[j] > 0.0
                and abs(tot[j] - target) <= 1e-9 * target):
            tot[j] = target / tot[j]
            rescale = True
        else:
            tot[j] = 1.0
    if rescale:                 # (a factor 1 leaves a column unchanged: skipped)
        for p in range(n):
            for j in range(ncol):
                out[p, j] *= tot[j]
    return out


def rational_split(x, pi, isflat, gout, ncol_total, delta, tol, tail_tol, tail_shift):
    """(y, z, base, zm, ok, scale) of :func:`_rational_split_py`; the tail test is
    zm_j · tail_shift_j ≤ tail_tol · s_j."""
    tt = np.empty((2, np.shape(x)[1]))
    tt[0] = tail_tol
    tt[1] = tail_shift
    pi = np.ascontiguousarray(pi, dtype=np.float64)
    return rational_split_into(
        np.ascontiguousarray(x, dtype=np.float64), pi, inverse_gibbs(pi),
        np.ascontiguousarray(isflat, dtype=np.bool_),
        np.ascontiguousarray(gout, dtype=np.float64), ncol_total, delta, tol, tt)[:6]


def inverse_gibbs(pi: np.ndarray) -> np.ndarray:
    """1/π where π > 0, else 0 (the weights of ‖y‖² = Σy²/π in the split)."""
    with np.errstate(divide="ignore"):
        return np.ascontiguousarray(np.where(pi > 0, 1.0 / np.where(pi > 0, pi, 1.0), 0.0))


def rational_split_into(x, pi, ipi, isflat, gout, ncol_total, delta, tol, tt, r_inf=0.0):
    """:func:`rational_split` on arrays already float64 (bool for ``isflat``) and C-contiguous,
    with ``ipi`` = :func:`inverse_gibbs` of π and the tail test's (tail_tol, tail_shift) stacked
    in ``tt`` (2, ncol); returns (y, z, base, zm, ok, scale, r_inf·y)."""
    return (_rational_split_nb if HAVE_NUMBA else _rational_split_py)(
        x, pi, ipi, isflat, gout, float(ncol_total), float(delta), float(tol), tt, float(r_inf))


def rational_finish(x, pi, z, base, zm, ok, isflat, growth, shift, scale,
                    tol) -> tuple[np.ndarray, float, float]:
    """:func:`_rational_finish_py` of ``x``: returns (out, clipped, tail mass)."""
    res = np.zeros(2)
    out = (_rational_finish_nb if HAVE_NUMBA else _rational_finish_py)(
        x, np.ascontiguousarray(pi, dtype=np.float64), z, base, zm, ok,
        np.ascontiguousarray(isflat, dtype=np.bool_),
        np.ascontiguousarray(growth, dtype=np.float64),
        np.ascontiguousarray(shift, dtype=np.float64), scale, float(tol), res)
    return out, float(res[0]), float(res[1])


class RationalFactors:
    """x ↦ Σ_k Re[γ_k (T_j − s_kj)⁻¹ x_j] per column j, T_j tridiagonal (real), by Thomas
    elimination without pivoting (the shifted matrices must be column diagonally dominant, as
    T − s is for a generator T when Re s ≥ 0).

    The pivots of all K poles (2K doubles a cell) are computed and kept from application
    ``keep_after`` + 1 on; the ones before eliminate pole by pole, with one pole's pivots at a
    time. A fresh array costs more in first-touch page faults than its arithmetic (filling
    1.8 MB takes 1–1.7 ms on a virtual machine, the factorisation 0.1 ms at 128² and 7 poles),
    so a solve used once or twice (the initial layer's, or exp(τG) at the two ends of a
    stepper call) does not pay for the storage.

    ``sub``/``sup`` (n−1, ncol), ``diag`` (n, ncol), ``shifts`` complex (K, ncol), ``gamma``
    complex (K,); ``keep_after``: the number of applications made pole by pole before the
    pivots are kept (0 for an operator applied at every step)."""

    def __init__(self, sub, sup, diag, shifts, gamma, keep_after: int = 2):
        self.keep_after = int(keep_after)
        self.sub, self.sup, self.diag = (np.ascontiguousarray(a, dtype=np.float64)
                                         for a in (sub, sup, diag))
        shifts = np.asarray(shifts, dtype=np.complex128)
        self.sr = np.ascontiguousarray(shifts.real)
        self.si = np.ascontiguousarray(shifts.imag)
        self.gr = np.ascontiguousarray(np.real(gamma), dtype=np.float64)
        self.gi = np.ascontiguousarray(np.imag(gamma), dtype=np.float64)
        self.iv = None
        self.applications = 0

    def _factor(self, k: slice):
        # (the plain-Python kernel divides numpy scalars: the count decides, not numpy's
        # error settings)
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            ivr, ivi, zero = (_rational_factor_nb if HAVE_NUMBA else _rational_factor_py)(
                self.sub, self.sup, self.diag, self.sr[k], self.si[k])
        if zero:
            raise ZeroDivisionError(
                f"RationalFactors: {int(zero)} zero pivot(s) (|pivot|² is 0 in double "
                "precision): a shifted tridiagonal matrix is singular, or nearly so, without "
                "pivoting")
        return ivr, ivi

    def apply(self, x: np.ndarray, out: np.ndarray) -> np.ndarray:
        """out += the rational sum applied to x (both (n, ncol), float64, C-contiguous).
        On a zero pivot (ZeroDivisionError) ``out`` may already hold some poles' terms."""
        kernel = _rational_apply_nb if HAVE_NUMBA else _rational_apply_py
        self.applications += 1
        if self.iv is None and self.applications > self.keep_after:
            self.iv = self._factor(slice(None))
        if self.iv is not None:
            kernel(self.sub, self.sup, *self.iv, self.gr, self.gi, x, out)
        else:
            for k in range(self.sr.shape[0]):
                kernel(self.sub, self.sup, *self._factor(slice(k, k + 1)),
                       self.gr[k:k + 1], self.gi[k:k + 1], x, out)
        return out


def shifted_solves(sub, sup, diag, shifts, rhs) -> np.ndarray:
    """Σ_k c_k Re[(T − i a_k)⁻¹ rhs] per column, T tridiagonal with ``diag``, ``sub`` T[p+1, p]
    and ``sup`` T[p, p+1] (T − ia column diagonally dominant, as for the initial layer's
    λ − G); arrays laid out (ncol, ·), ``shifts`` a (K, 2) array of (a_k, c_k). The
    :class:`RationalFactors` of the shifts i·a_k and weights c_k."""
    # the kernels run on the transposed layout (n, ncol): rhs.T is contiguous when rhs is a
    # transposed (n, ncol) array, as the caller's is
    sub, sup, diag, rhs = (np.ascontiguousarray(np.asarray(x, dtype=np.float64).T)
                           for x in (sub, sup, diag, rhs))
    shifts = np.asarray(shifts, dtype=np.float64)
    z = np.broadcast_to(1j * shifts[:, :1], (shifts.shape[0], rhs.shape[1]))
    return RationalFactors(sub, sup, diag, z, shifts[:, 1]).apply(rhs, np.zeros_like(rhs)).T


if HAVE_NUMBA:
    _rational_factor_nb = numba.njit(cache=True, nogil=True, error_model="numpy")(
        _rational_factor_py)
    _rational_apply_nb = numba.njit(cache=True, nogil=True)(_rational_apply_py)
    _rational_split_nb = numba.njit(cache=True, nogil=True)(_rational_split_py)
    _rational_finish_nb = numba.njit(cache=True, nogil=True)(_rational_finish_py)
