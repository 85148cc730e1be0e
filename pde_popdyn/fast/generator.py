"""The per-column generators G_j = A_j + diag(d_j) of the joint solver's fast step, and their
spectral data: the gap and the top eigenvalue (bisection on the symmetric form) and the Perron
vectors (inverse iteration by GTH elimination). See :mod:`pde_popdyn.fast.columns`."""

from __future__ import annotations

import warnings

import numpy as np

from ._column_kernels import gth_solve_cols, normalise_step, top_eigenvalues_cols

_PERRON_TOL = 1e-14        # inverse iteration: relative change of every entry
_PERRON_ITER = 200
#: the eigenvalues are bisected to 1e-12 of a column's spectral range; beyond this ratio of
#: the selection term's spread to the fast rates their error exceeds 10 % of those rates
_SPREAD_RATIO_MAX = 1e11


class ColumnGenerator:
    """G_j = A_j + diag(d_j) on every h-column of an :class:`~pde_popdyn.fast.fv.SGOperator`.

    Parameters
    ----------
    op:
        The fast operator (columns = flattened h-nodes).
    diag:
        d of shape ``op.phi.shape`` (e.g. κF), or None for d = 0.
    """

    def __init__(self, op, diag: np.ndarray | None = None):
        self.op = op
        n, ncol = op.phi.shape
        self.n, self.ncol = n, ncol
        d = np.zeros((n, ncol)) if diag is None else np.asarray(diag, dtype=float)
        self.dmax = d.max(axis=0)                       # d̂ per column
        self.dp = d - self.dmax                         # shifted diagonal, ≤ 0
        self.flat = ~(self.dp < 0).any(axis=0)          # constant d: Perron data (π, 1, d̂)
        self.out = op.out_rate - self.dp                # −diag(G − d̂) ≥ 0
        self.c = self.out.max(axis=0) * 1.000001 + 1e-300   # uniformisation rate per column
        ratio = float(np.max((-self.dp).max(axis=0) / (op.out_rate.max(axis=0) + 1e-300),
                             initial=0.0))
        if ratio > _SPREAD_RATIO_MAX:
            warnings.warn(
                f"the selection term's spread in an h-column, κ·(max F − min F), is "
                f"{ratio:.1e} times the fast dynamics' largest rate: the fast step's "
                f"eigenvalues are then computed more coarsely than those rates (to 1e-12 of "
                f"the spread), and the result may be wrong. Rescale the fitness or lower the "
                f"selection rate (a spread up to {_SPREAD_RATIO_MAX:.0e} times the fast rates "
                f"is fine; beyond it selection is complete within any step anyway)",
                RuntimeWarning, stacklevel=2)
        self.periodic = op.periodic[0]
        self._gap = self._top_only = self._gap_bound = self._ritz_values = None

    # -- spectral data ---------------------------------------------------------------------
    def gap(self) -> np.ndarray:
        """λ₀ − λ₁ per column (from the similar symmetric matrix, eigenvalues only)."""
        if self._gap is None:
            op = self.op
            diag = -self.out                     # the symmetric form, (n, ncol)
            off = np.sqrt(op.up * op.down)
            if not self.periodic:
                # brackets [μ_r, 0] from the Ritz values of gap_bound (λ_r ≥ μ_r, λ₀ ≤ 0):
                # fewer bisection steps than from the Gershgorin bracket, the same accuracy
                mu, ok = self._ritz()
                width = np.abs(diag).max(axis=0) + 2.0 * np.abs(off).max(axis=0, initial=0.0)
                lower = np.where(ok[:, None], mu - 1e-9 * np.abs(mu) - 1e-10 * width[:, None],
                                 -np.inf)
                lam = top_eigenvalues_cols(diag, off, lower=lower,
                                           upper=np.zeros(self.ncol))[:, ::-1]
            else:
                S = np.zeros((self.ncol, self.n, self.n))
                i = np.arange(self.n)
                S[:, i, i] = diag.T
                S[:, i[:-1], i[1:]] = S[:, i[1:], i[:-1]] = off.T
                S[:, 0, -1] = S[:, -1, 0] = np.sqrt(op.up_wrap * op.down_wrap)
                lam = np.linalg.eigvalsh(S)[:, -2:]
            self._gap = np.maximum(lam[:, 1] - lam[:, 0], 0.0)
            self._top = np.where(self.flat, 0.0, np.minimum(lam[:, 1], 0.0))   # λ₀ ≤ 0
            self._top_tol = 4e-12 * (self.out.max(axis=0) + 1.0)
        return self._gap

    def gap_bound(self) -> np.ndarray:
        """An upper bound of λ₀ − λ₁ per column, cheap (O(n) per column, no bisection).

        With S the symmetric form of G − d̂ (negative semi-definite, so λ₀ ≤ 0) and
        V = [√π, (p − p̄)√π] (π the Gibbs state, p the cell index, p̄ its π-mean; the two
        columns are orthogonal), the Ritz values μ₀ ≥ μ₁ of S on span V interlace with its
        eigenvalues, λ₁ ≥ μ₁ (Courant–Fischer), so λ₀ − λ₁ ≤ −μ₁. It is close where the
        first θ-mode is nearly linear (a quadratic loss), and +inf where it cannot be formed
        (periodic θ, a Gibbs state on one cell). :class:`~pde_popdyn.fast.columns.
        ColumnPropagator` uses it to skip :meth:`gap` when no column can be stiff enough to
        matter."""
        if self._gap_bound is None:
            mu, ok = self._ritz()
            bound = -mu[:, 1] * (1.0 + 1e-9)
            self._gap_bound = np.where(ok, np.maximum(bound, 0.0), np.inf)
        return self._gap_bound

    def _ritz(self) -> tuple[np.ndarray, np.ndarray]:
        """(μ, ok): the Ritz values μ₀ ≥ μ₁ (ncol, 2) of the symmetric form S of G − d̂ on
        span[√π, (p − p̄)√π] (:meth:`gap_bound`), lower bounds of λ₀ and λ₁ where ``ok``."""
        if self._ritz_values is not None:
            return self._ritz_values
        if self.periodic:
            self._ritz_values = (np.full((self.ncol, 2), -np.inf), np.zeros(self.ncol, bool))
            return self._ritz_values
        op = self.op
        pi = op.gibbs
        a = -self.out                                   # diagonal of S
        b = np.sqrt(op.up * op.down)                    # off-diagonal of S, (n − 1, ncol)
        p = np.arange(self.n, dtype=float)[:, None]
        pbar = (pi * p).sum(axis=0)
        var = (pi * (p - pbar) ** 2).sum(axis=0)
        v1 = np.sqrt(pi)
        v2 = (p - pbar) * v1

        def s_times(v):
            out = a * v
            out[:-1] += b * v[1:]
            out[1:] += b * v[:-1]
            return out

        s1, s2 = s_times(v1), s_times(v2)
        with np.errstate(divide="ignore", invalid="ignore"):
            sd = np.sqrt(var)
            b11 = (v1 * s1).sum(axis=0)
            b12 = (v1 * s2).sum(axis=0) / sd
            b22 = (v2 * s2).sum(axis=0) / var
            root = np.sqrt((b11 - b22) ** 2 + 4.0 * b12 ** 2)
            mu = np.stack([0.5 * (b11 + b22 + root), 0.5 * (b11 + b22 - root)], axis=1)
        ok = np.isfinite(mu).all(axis=1) & (var > 1e-12)
        self._ritz_values = (mu, ok)
        return self._ritz_values

    def top(self) -> np.ndarray:
        """λ₀ of G − d̂ per column (the largest eigenvalue, ≤ 0): from :meth:`gap` when it
        has been computed, else by bisection for λ₀ alone to 1e-10 of the Gershgorin width
        (0 exactly on constant-d columns)."""
        if self._gap is not None:
            return self._top
        if self._top_only is None:
            top = np.zeros(self.ncol)
            self._top_tol = np.zeros(self.ncol)
            work = np.flatnonzero(~self.flat)
            if work.size and not self.periodic:
                op = self.op
                top[work] = top_eigenvalues_cols(-self.out[:, work],
                                                 np.sqrt(op.up[:, work] * op.down[:, work]),
                                                 rtol=1e-10, count=1)[:, 0]
                # the bisection's accuracy: 1e-10 of the Gershgorin width (≤ 4 out_max)
                self._top_tol[work] = 4e-10 * (self.out[:, work].max(axis=0) + 1.0)
            elif work.size:
                self.gap()
                return self._top
            self._top_only = np.minimum(top, 0.0)
        return self._top_only

    def perron(self, cols: np.ndarray, tol: float = _PERRON_TOL, shifted: bool = False
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(r₀, l₀, λ₀ − d̂, converged) on ``cols``: r₀ sums to 1, l₀ᵀr₀ = 1, shape (n, k).

        Constant-d columns are exact (π, 1, 0). Others: inverse iteration x ← (−G')⁻¹x with
        G' = G − d̂ (a non-singular M-matrix when d is not constant), by GTH elimination. With
        ``shifted`` (for loose ``tol``), a few first iterations use (σ − G')⁻¹ with σ just above
        the top eigenvalue (the bisection of :meth:`gap`), which converge at the rate
        (σ − λ₀)/(σ − λ₁) instead of λ₀/λ₁; the unshifted iteration then finishes the job.
        """
        cols = np.asarray(cols, dtype=int)
        r = self.op.gibbs[:, cols].copy()
        l = np.ones_like(r)
        ok = np.ones(cols.size, dtype=bool)
        work = np.flatnonzero(~self.flat[cols])
        if work.size and not self.periodic:
            # in the solver's layout (n, k): no transposed copies between the iterations
            wc = cols[work]
            up, down, kill, x, z = (np.ascontiguousarray(a) for a in (
                self.op.up[:, wc], self.op.down[:, wc], -self.dp[:, wc], r[:, work],
                l[:, work]))
            done = np.zeros(work.size, dtype=bool)
            if shifted:
                top = self.top()[wc]
                # σ above λ₀ by more than the bisection's accuracy: rate (σ − λ₀)/(σ − λ₁)
                sigma = top + np.maximum(1e-3 * np.abs(top), 10.0 * self._top_tol[wc])
                kill_s = kill + sigma[None, :]      # may be < 0: plain elimination then
                for _ in range(2):
                    xn = gth_solve_cols(up, down, kill_s, x)
                    normalise_step(xn, x, tol, by_sum=True, absolute=True)
                    zn = gth_solve_cols(up, down, kill_s, z, transpose=True)
                    normalise_step(zn, z, tol, by_sum=False, absolute=True)
                    x, z = xn, zn
            for _ in range(_PERRON_ITER):
                # x ← x/Σx and z ← z/max z, with the test |new − old| ≤ tol·new per entry
                xn = gth_solve_cols(up, down, kill, x)
                done = normalise_step(xn, x, tol, by_sum=True)
                zn = gth_solve_cols(up, down, kill, z, transpose=True)
                done &= normalise_step(zn, z, tol, by_sum=False)
                x, z = xn, zn
                if done.all():
                    break
            r[:, work], l[:, work] = x, z
            ok[work] = done
        elif work.size:                       # periodic θ: left to the dense branch
            ok[work] = False
        l /= (l * r).sum(axis=0, keepdims=True)
        lam0 = (self.dp[:, cols] * r).sum(axis=0)
        return r, l, lam0, ok

    def stay_up_down(self, cols: np.ndarray, c: np.ndarray):
        """Entries of P = I + (G − d̂)/c on ``cols``, laid out (k, ·) for the kernels."""
        op = self.op
        return ((1.0 - self.out[:, cols] / c).T, (op.up[:, cols] / c).T,
                (op.down[:, cols] / c).T, op.up_wrap[cols] / c, op.down_wrap[cols] / c)


__all__ = ["ColumnGenerator"]
