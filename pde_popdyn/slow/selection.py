"""Selection sub-steps (the slow h-part).

Replicator: the exact solution over τ of ∂_t f = κ (F − ⟨F⟩_f) f is

    f ← f e^{κτF} / ∫∫ f e^{κτF},

computed in the log domain (the exponent is shifted by its maximum over the support of f),
so it neither overflows nor loses all mass to underflow. It is positive and conserves mass for
any τ. Equivalently it is the exact step of the linear equation ∂_t u = κ F u followed by
normalisation, which is why splitting the replicator equation is splitting a linear equation.
"""

from __future__ import annotations

import numpy as np

from .clip import ClipLedger

try:  # numba is a dependency, but the package must work where it cannot be installed
    import numba
except ImportError:  # pragma: no cover - exercised only without numba
    numba = None


class ReplicatorStep:
    """Exact replicator step for fitness values ``fitness`` (any shape matching f)."""

    def __init__(self, fitness: np.ndarray, rate: float, weights: np.ndarray | float):
        self.fitness = np.asarray(fitness, dtype=float)
        self.rate = float(rate)
        self.weights = weights

    def __call__(self, f: np.ndarray, tau: float) -> np.ndarray:
        if self.rate == 0.0 or tau == 0.0:
            return f
        expo = (self.rate * tau) * self.fitness
        support = f > 0
        top = expo[support].max() if support.any() else 0.0
        # cells outside the support may have expo > top; the clip keeps 0 * inf out
        g = f * np.exp(np.minimum(expo - top, 0.0))
        mass_before = (f * self.weights).sum()
        return g * (mass_before / (g * self.weights).sum())


def _log_weights(log_w: np.ndarray, f: np.ndarray) -> np.ndarray:
    """e^{log_w − max}, the max taken over the support of f (log domain, no overflow)."""
    support = f > 0
    top = log_w[support].max() if support.any() else 0.0
    return np.exp(np.minimum(log_w - top, 0.0))


def _copy_h(receivers: np.ndarray, donors: np.ndarray, h_ndim: int) -> np.ndarray:
    """Copying h only: the receivers' θ-law times the donors' h-law (both unnormalised),
    r^θ(θ) · d^h(h), with θ the leading and h the last ``h_ndim`` axes."""
    h_axes = tuple(range(receivers.ndim - h_ndim, receivers.ndim))
    th_axes = tuple(range(donors.ndim - h_ndim))
    return receivers.sum(axis=h_axes, keepdims=True) * donors.sum(axis=th_axes, keepdims=True)


class JumpStep:
    """Step of a jump process ∂_t f = λ (M[f] − f), where M maps a density to a density of the
    same mass (positive, mass-preserving, possibly nonlinear through ⟨ω⟩_f or quantiles).

    ``order=2`` (default) is the exponential midpoint rule

        f_½ = e^{−λτ/2} f + (1 − e^{−λτ/2}) M[f],
        f ← e^{−λτ} f + (1 − e^{−λτ}) M[f_½],

    second order in τ (local error O(λ²τ³)); ``order=1`` is f ← e^{−λτ} f + (1 − e^{−λτ}) M[f].
    Both are convex combinations of densities, so they are positive and conserve mass for every
    τ, and tend to f ← M[·] as λτ → ∞.
    """

    def __init__(self, mapping, rate: float, order: int = 2):
        self.mapping = mapping
        self.rate = float(rate)
        if order not in (1, 2):
            raise ValueError(f"order must be 1 or 2, got {order!r}")
        self.order = order

    def __call__(self, f: np.ndarray, tau: float) -> np.ndarray:
        if self.rate == 0.0 or tau == 0.0:
            return f
        mf = self.mapping(f)
        if self.order == 2:
            a = np.exp(-0.5 * self.rate * tau)
            mf = self.mapping(a * f + (1 - a) * mf)
        a = np.exp(-self.rate * tau)
        return a * f + (1 - a) * mf


class BoltzmannMap:
    """M[f] for Boltzmann jump selection with donor weights ω = e^{αF} (docs/model.md, "Boltzmann jump").

    ``copy="both"``: M[f] = K_σ *_h (ω f) / ⟨ω⟩_f.
    ``copy="h"``:    M[f] = f^θ(θ) · K_σ *_h (∫ ω f dθ) / ⟨ω⟩_f, with f^θ = ∫ f dh.
    The last axis of f is h; for ``copy="h"`` the first axis is θ. ``kernel`` applies K_σ along
    h (or is None for no mutation at copies). Works for the reduced equation too (1-D ρ(h) and
    ω = W = e^{αF̄_α}).
    """

    def __init__(self, fitness: np.ndarray, pressure: float, copy: str, kernel=None,
                 h_ndim: int = 1):
        self.log_w = pressure * np.asarray(fitness, dtype=float)
        self.copy = copy
        self.kernel = kernel
        self.h_ndim = h_ndim

    def __call__(self, f: np.ndarray) -> np.ndarray:
        mass = f.sum()
        wf = _log_weights(self.log_w, f) * f
        if self.copy == "both":
            g = wf
        else:
            g = _copy_h(f, wf, self.h_ndim) / mass
        if self.kernel is not None:
            g = self.kernel(g)
        return g * (mass / g.sum())


class TruncationMap:
    """M[f] = f − B[f] + K_σ *_h G[f] for truncation selection (the PBT exploit rule).

    B[f] = f 1{F ≤ φ_q[f]} is the bottom fraction q of the mass and G[f] = f 1{F ≥ φ_{1−q}[f]}
    the top fraction q. ``copy="h"``: the bottom agents keep their θ and take the top agents'
    h, so G is replaced by B^θ(θ) · K_σ(∫ G dθ)(h)/q.
    Then ∂_t f = λ (M[f] − f) = λ (K_σ G[f] − B[f]) moves mass λ q per unit time.

    The sets are resolved inside the cells: within a cell the density is taken uniform and F
    linear, F_c + Σ_k s_k u_k with u_k ∈ [−1, 1] and s_k = |F_{k+1} − F_{k−1}|/4 the half
    variation of F across the cell along axis k (one-sided at the ends), so the part of a cell
    above a level φ is the distribution function of a sum of uniforms (for more than two axes
    the smaller variations are merged into one uniform of the same variance, √(Σ s_k²)). The
    level is found by regula falsi so that each set holds exactly mass q; cells tied at it (F
    constant) are taken fractionally. Taking whole cells by their centre values instead would
    misplace every boundary of the set but one by up to half a cell: an O(Δ) error, irregular
    in the grid, wherever F has an interior maximum or varies along several axes.
    """

    #: the band of cells straddling the bracket is narrowed with it once it has more cells
    _NARROW_ABOVE = 256

    def __init__(self, fitness: np.ndarray, fraction: float, copy: str, kernel=None,
                 h_ndim: int = 1, ledger: ClipLedger | None = None):
        self.ledger = ledger if ledger is not None else ClipLedger()
        self.h_ndim = h_ndim
        self.fitness = np.asarray(fitness, dtype=float)
        bad = int(np.isnan(self.fitness).sum())
        if bad:
            raise ValueError(f"TruncationMap: the fitness is NaN on {bad} of "
                             f"{self.fitness.size} cells; give every cell a number (-inf for "
                             f"cells that must never rank in the top set)")
        self.q = float(fraction)
        self.copy = copy
        self.kernel = kernel
        self._order = np.argsort(self.fitness, axis=None, kind="stable")
        self._a, self._b = _half_variations(self.fitness)

    def _fractional_set(self, f: np.ndarray, target: float, top: bool) -> np.ndarray:
        """χ ∈ [0, 1] per cell: the fraction of each cell's mass in the top (or bottom) set of
        mass ``target`` (class docstring)."""
        sign = 1.0 if top else -1.0
        F = sign * self.fitness.ravel()
        masses = f.ravel()
        # the level of the centre values bounds the true one to within the largest variation
        order = self._order[::-1] if top else self._order
        cum = np.cumsum(masses[order])
        k = min(int(np.searchsorted(cum, target * (1 - 1e-14))), masses.size - 1)
        phi0 = F[order[k]]
        live = masses > 0
        a, b = self._a, self._b
        reach = a + b
        chi = np.zeros(masses.size)
        if np.isfinite(phi0):
            R = float(reach[live].max()) if live.any() else 0.0
            lo, hi = phi0 - R, phi0 + R
            lo -= 1e-12 * max(1.0, abs(lo))
            hi += 1e-12 * max(1.0, abs(hi))
            # cells wholly above the bracket are in, wholly below it out; the band is resolved
            sure = live & (F - reach > hi)
            band = np.flatnonzero(live & ~sure & (F + reach > lo))
            lo, hi, sure, band, m_sure = self._level(F, masses, reach, sure, band, lo, hi, R,
                                                     target)
            chi_hi, chi_lo = (_above(phi, F[band], a[band], b[band]) for phi in (hi, lo))
        else:
            # the level sits on cells of infinite F (no bracket around ±inf): those tied at it
            # are the band, taken by the common fraction below, the cells beyond it whole
            sure = live & (F > phi0)
            band = np.flatnonzero(live & (F == phi0))
            chi_hi, chi_lo = np.zeros(band.size), np.ones(band.size)
            m_sure = float(masses[sure].sum())
        # the set between the bracket's ends: S(hi) ≤ target ≤ S(lo), interpolated (a cell
        # tied at the level, F constant across it, is taken by this common fraction)
        mb = masses[band]
        short = target - m_sure - float(mb @ chi_hi)
        gap = float(mb @ (chi_lo - chi_hi))
        t = min(max(short / gap, 0.0), 1.0) if gap > 0 else 0.0
        chi[sure] = 1.0
        chi[band] = chi_hi + t * (chi_lo - chi_hi)
        return chi.reshape(f.shape)

    def _level(self, F, masses, reach, sure, band, lo, hi, R, target):
        """Narrow [lo, hi] around the level φ with S(φ) = target, S(φ) the mass above φ:
        regula falsi with the Illinois halving and a bisection step every fourth; the band of
        cells straddling the bracket shrinks with it (those now wholly above it join ``sure``),
        so a wide first bracket (one steep cell) costs a few passes over the grid, not one
        per step. ``sure`` is updated in place. Returns (lo, hi, sure, band, mass of sure)."""
        a, b = self._a, self._b
        m_sure = float(masses[sure].sum())
        Fb, ab, bb, mb, rb = F[band], a[band], b[band], masses[band], reach[band]

        def excess(phi):                        # S(φ) − target
            return m_sure + _mass_above(float(phi), Fb, ab, bb, mb) - target

        s_lo, s_hi = excess(lo), excess(hi)
        side = 0
        tol = 1e-15 * max(target, 1e-300)
        # (R = 0: every cell a step, the level is phi0 and the tie resolves it; the width is
        # also measured against R, so that a level at a step at 0 does not run 100 steps)
        width = 1e-15 * R
        for it in range(100 if R > 0 else 0):
            if s_lo <= tol or -s_hi <= tol or not hi - lo > 1e-15 * max(abs(lo), abs(hi)) + width:
                break
            mid = hi - s_hi * (hi - lo) / (s_hi - s_lo) if it % 4 != 3 else 0.5 * (lo + hi)
            if not lo < mid < hi:
                mid = 0.5 * (lo + hi)
            s_mid = excess(mid)
            if s_mid >= 0:
                lo, s_lo = mid, s_mid
                if side == -1:
                    s_hi *= 0.5
                side = -1
            else:
                hi, s_hi = mid, s_mid
                if side == 1:
                    s_lo *= 0.5
                side = 1
            if it % 4 == 1 and band.size > self._NARROW_ABOVE:
                keep = Fb + rb > lo
                up = keep & (Fb - rb > hi)
                keep &= ~up
                if not keep.all():
                    sure[band[up]] = True
                    m_sure += float(mb[up].sum())
                    band, Fb, ab, bb, mb, rb = (x[keep] for x in (band, Fb, ab, bb, mb, rb))
        return lo, hi, sure, band, m_sure

    def __call__(self, f: np.ndarray) -> np.ndarray:
        mass = f.sum()
        target = self.q * mass
        bottom = f * self._fractional_set(f, target, top=False)
        top = f * self._fractional_set(f, target, top=True)
        #: the fractions of the mass in the bottom and top sets at the last call (both q)
        self.last_moved = (float(bottom.sum() / mass), float(top.sum() / mass))
        if self.copy == "both":
            gain = top
        else:
            gain = _copy_h(bottom, top, self.h_ndim) / target
        if self.kernel is not None:
            gain = self.kernel(gain)
        out = f - bottom + gain * (target / gain.sum())
        # f − bottom ≥ 0 up to round-off (the fractional set takes at most f); the ledger
        # records what the clip removes, so negativity cannot hide behind it
        return self.ledger.clip("selection", out, mass)


def _half_variations(F: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(a, b), flattened, a ≥ b: the largest half variation of F across each cell over the
    axes, and the others merged into one (:class:`TruncationMap`); 0 where F is not finite
    nearby."""
    F = np.asarray(F, dtype=float)
    parts = []
    for ax in range(F.ndim):
        if F.shape[ax] > 1:
            with np.errstate(invalid="ignore"):
                d = 0.5 * np.abs(np.gradient(F, axis=ax))   # central inside, one-sided at ends
            parts.append(np.where(np.isfinite(d), d, 0.0).ravel())
    if not parts:
        return np.zeros(F.size), np.zeros(F.size)
    s = np.sort(np.stack(parts), axis=0)
    # the rest merged into one uniform of the same variance, √(Σ s_k²) (the sum Σ s_k keeps the
    # range but not the law, an O(1) error in every boundary cell: first order with 3 axes);
    # it can exceed the largest, and :func:`_cell_above_py` needs a ≥ b
    a, b = s[-1], np.sqrt((s[:-1] ** 2).sum(axis=0))
    return np.maximum(a, b), np.minimum(a, b)


def _cell_above_py(x, a, b):
    """P(a u + b v > x) for u, v uniform on [−1, 1] and a ≥ b ≥ 0 (for a = 0: 1 if x < 0,
    else 0): the part of a cell above a level x above its centre value, F − F_c = a u + b v
    inside it. The law of a u + b v is a trapezoid on [−(a+b), a+b]: quadratic pieces on
    [−(a+b), −(a−b)] and [a−b, a+b], linear in between."""
    ab = a + b
    if x >= ab:
        return 0.0
    if x < -ab:
        return 1.0
    # here ab > 0, so a > 0 (a ≥ b); with b = 0 (one axis, or F flat along the others) the
    # trapezoid is a rectangle: no quadratic pieces, and no 0/0 at x = −a
    den = 8.0 * a * b
    if den > 0.0 and x <= b - a:
        below = (x + ab) * (x + ab) / den
    elif den <= 0.0 or x <= a - b:
        below = (x + a) / (2.0 * a)
    else:
        below = 1.0 - (ab - x) * (ab - x) / den
    return 1.0 - min(max(below, 0.0), 1.0)


def _mass_above_py(phi, F, a, b, m):
    """Σ_i m_i P(F_i + a_i u + b_i v > φ) (:func:`_cell_above_py` per cell, one pass)."""
    total = 0.0
    for i in range(F.shape[0]):
        total += m[i] * _cell_above(phi - F[i], a[i], b[i])
    return total


def _above_py(phi, F, a, b, out):
    """out_i = P(F_i + a_i u + b_i v > φ) (:func:`_cell_above_py` per cell)."""
    for i in range(F.shape[0]):
        out[i] = _cell_above(phi - F[i], a[i], b[i])
    return out


if numba is not None:
    _cell_above = numba.njit(cache=True, nogil=True, inline="always")(_cell_above_py)
    _mass_above = numba.njit(cache=True, nogil=True)(_mass_above_py)
    _above_nb = numba.njit(cache=True, nogil=True)(_above_py)
else:  # pragma: no cover - exercised only without numba
    _cell_above, _mass_above, _above_nb = _cell_above_py, _mass_above_py, _above_py


def _above(phi: float, F: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """P(F_i + a_i u + b_i v > φ) per cell (a new array)."""
    return _above_nb(float(phi), F, a, b, np.empty(F.shape[0]))
