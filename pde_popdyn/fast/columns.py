"""Exact per-column propagators of the fast operator with a diagonal term folded in.

For every h-column j the Scharfetter–Gummel generator A_j (see :mod:`pde_popdyn.fast.fv`) is a
birth–death matrix: non-negative off-diagonal rates, zero column sums, the discrete Gibbs state
π_j in its kernel. This module builds, for a step τ,

    E_j(τ) = exp(τ G_j),   G_j = A_j + diag(d_j),

with d_j a per-column diagonal (``d = κ F(·, h_j)`` folds replicator selection into the fast
step, ``d = 0`` gives the plain fast step), and, for a loss rate λ > 0,

    Φ_j(τ) = ∫_0^τ e^{−λs} exp(s A_j) ds,

the integral the exponential (Duhamel) formula of a jump process needs. G_j is a Metzler
matrix, so E_j(τ) and Φ_j(τ) are entrywise non-negative; with d = 0, E_j is column-stochastic
and fixes π_j, and λΦ_j(τ) is (1 − e^{−λτ}) times a column-stochastic matrix.

Each column is served by the cheapest exact representation, chosen per column:

* **uniformisation** (small cτ): E = e^{τ d̂} Σ_n Poisson(n; cτ) Pⁿ with P = I + (G − d̂)/c ≥ 0,
  d̂ = max d, applied to the vector at every step (Φ likewise, with the non-negative weights
  (1/μ)(c/μ)ⁿ P[Poisson(μτ) ≥ n+1], μ = c + λ);
* **dense**: E(τ/2^s) by a banded uniformisation series, then s squarings (and the doubling
  Φ(2t) = Φ(t) + e^{−λt} E(t) Φ(t)); each column stops squaring as soon as its matrix has
  become rank one to round-off, which happens after ≈ log₂(c/gap) squarings whatever ε is;
* **rational** (non-periodic θ, no integral): E(τ)x = e^{τλ₀} r(τ(G − λ₀))x with the rational
  approximation r of :mod:`pde_popdyn.fast.rational` (K complex tridiagonal solves, factored
  once): its cost does not grow with cτ. Its error is at most δ‖x‖ with ‖x‖² = Σx²/π, tested on
  every input column (1e-12 of the mass); a column far in the tails of π that fails goes to
  uniformisation for that step (``rational_fallbacks``). Entries of relative size δ below
  zero are set to zero and recorded, and a constant-d column keeps its exact mass;
* **rank one** (stiff columns): E(τ) = e^{τλ₀} r₀ l₀ᵀ with the Perron eigenvalue λ₀ and the
  right/left Perron vectors of G (l₀ᵀ r₀ = 1). They come from the converged dense matrix (row
  and column sums) or, without any dense work, from inverse iteration with the
  Grassmann–Taksar–Heyman elimination of :func:`~pde_popdyn.fast._column_kernels.gth_solve`
  (high relative accuracy in every entry) once τ·gap ≥ 37 + ½ log(max/min of r₀∘l₀), the bound
  under which exp(τG) equals its rank-one limit to 1e-16 (the same test as the projection
  branch of :class:`~pde_popdyn.fast.fv.FastPropagator`, with the non-normality measured on
  r₀∘l₀). Then λ₀ = ⟨d⟩_{r₀} exactly, because the columns of A sum to zero. With d = 0 this is
  the projection r₀ = π, l₀ = 1, which leaves the Gibbs state exactly fixed. For such columns
  Φ(τ)g = (λ − A)⁻¹ g − e^{−λτ} π Σg / λ, the resolvent solved by the same elimination;
  round-off can leave entries of relative size 1e-16 below zero in the far tails: they are set
  to zero, the column mass restored, and the removed mass is recorded (``clipped_mass``).

Everything runs in non-negative arithmetic except that resolvent subtraction and the rational
branch; the dense kernels run with single-threaded BLAS (threadpoolctl), so the set-up does not
depend on the load of the machine.
"""

from __future__ import annotations

import numpy as np

from ._column_kernels import HAVE_NUMBA, banded_series, gibbs_sums, gth_solve_cols, warm_up
from ._column_kernels import matvec as _matvec
from .blas import one_blas_thread as blas_single_thread
from .fv import _PHI_STEP_MAX, _PROJ_MARGIN
from .generator import ColumnGenerator
from .rational import RationalColumns, exp_nodes
from ._uniformised import Uniformised as _Uniformised
from ._uniformised import phi_weights as _phi_weights
from .uniformisation import poisson_weights

_DENSE_LEAD = 2.0          # cτ of the banded series that starts the squaring
_CONVERGED = 1e-14         # rank-one test of a squared matrix (relative to its scale)
_COND_MARGIN = 3.0         # conditional rank one from τ·gap ≥ 37 + 3 (then tested per input)
_PROJ_TOL = 1e-14          # the per-input rank-one test (relative to the density's size)
_RELAX = 1.0               # a far-from-equilibrium input is first relaxed by δ with δ·gap = 1
_DENSE_BYTES = 2e9         # memory budget of the dense branch (squaring workspace included)
_RAT_APPLY = 1e-8          # seconds per cell and node of a rational application (one core)
_RAT_FACTOR = 1.3e-8       # seconds per cell and node of its factorisation

def _costs(n: int, ct, uses: float, per: float):
    """Seconds per column (one core) of ``uses`` applications of a uniformisation series
    (~2.2 ns per cell and term, ct + 6√ct + 12 terms) and of a dense propagator (banded
    series, squarings of ~2n³ flops, ``per`` matrices, a matvec per use), for cτ = ``ct``."""
    unif = uses * 2.2e-9 * n * (np.ceil(ct + 6.0 * np.sqrt(ct) + 12.0) + 1)
    squarings = np.ceil(np.log2(np.maximum(ct / _DENSE_LEAD, 1.0)))
    return unif, 8e-9 * n * 25 ** 2 + squarings * per * 2 * n ** 3 * 5e-11 + uses * 1.5e-9 * n * n


def _rel_gap(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """max |a − b| per column matrix, relative to the largest entry of a (stacked (k, n, n))."""
    return np.abs(a - b).max(axis=(1, 2)) / np.maximum(np.abs(a).max(axis=(1, 2)), 1e-300)


class ColumnPropagator:
    """E(τ), E(2τ) (and Φ(τ), Φ(2τ) when ``lam`` is given) of a :class:`ColumnGenerator`.

    ``apply(f, k)`` returns e^{kτ(d̂_j − D)} E_j(kτ) f_j per column (f of shape (n, ncol)),
    with D = max_j d̂_j, so the factors never overflow (a common scalar e^{kτD} is left out:
    it cancels in any normalisation); ``integral(g, k)`` returns Φ_j(kτ) g_j (d must be 0).

    Stiff columns are rank one either for every input (τ·gap ≥ 37 + ½ log(max/min r₀∘l₀), or
    verified on the squared matrix) or *conditionally* (τ·gap ≥ 40): exp(tG) differs from its
    rank-one limit by at most e^{−t·gap} ‖g‖ in the norm ‖g‖² = Σ g²/π (by the symmetry of G
    in the π-weighted inner product), and ‖x‖₁ ≤ ‖x‖ (Cauchy–Schwarz, Σπ = 1), so each step
    checks e^{−t·gap} ‖g‖ ≤ 1e-16 |l₀ᵀg| for the actual input g. This holds for densities
    near ρπ_h; an input far from it (a first step from arbitrary data) is first advanced by a
    short exact step (uniformisation over δ with δ·gap = 1, then 2, 4, 8: about c/gap terms
    each, whatever ε is) and tested again with the time left; only if that fails too is a dense propagator built
    for those columns (``fallback_builds`` counts it).

    ``n_applications`` (calls per step times steps) sizes the cost model that picks
    uniformisation or a dense matrix for each non-stiff column; ``branch`` forces one of them
    ('uniformisation' or 'dense'; stiff rank-one columns are kept either way); ``cols``
    restricts the propagator to some columns (then f has one column per entry of ``cols``).
    """

    def __init__(self, gen: ColumnGenerator, tau: float, *, lam: float | None = None,
                 n_applications: int = 100, branch: str = "auto",
                 cols: np.ndarray | None = None, project: bool = True):
        if branch not in ("auto", "uniformisation", "dense", "rational"):
            raise ValueError(f"branch={branch!r}: use 'auto', 'uniformisation', 'dense' or "
                             f"'rational'")
        if branch == "rational" and (gen.periodic or (lam is not None and lam > 0)):
            raise ValueError("branch='rational' needs a non-periodic θ-axis and no integral "
                             "(lam=None); use branch='auto'")
        self.gen, self.tau, self.branch = gen, float(tau), branch
        self.lam = None if lam is None or lam <= 0 else float(lam)
        if self.lam is not None and not gen.flat.all():
            raise ValueError("the integral Φ needs d = 0")
        self.cols = np.arange(gen.ncol) if cols is None else np.asarray(cols, dtype=int)
        m, n = self.cols.size, gen.n
        self.shift = np.exp(np.minimum(self.tau * (gen.dmax[self.cols] - gen.dmax.max()), 0.0))
        self.gibbs = gen.op.gibbs[:, self.cols]
        self.clipped_mass = 0.0
        self.fallback_builds = 0
        self.relaxed_inputs = 0                    # column inputs sent through _far_apply
        self.rational_fallbacks = 0                # column inputs the rational bound refused
        self.rat_cols = np.zeros(0, dtype=int)
        self._rat = None
        self._fallback = None
        self.certain = np.zeros(m, dtype=bool)     # rank one for every input
        self.cond = np.zeros(m, dtype=bool)        # rank one for inputs near ρπ (tested)
        self.r, self.lvec = np.zeros((n, m)), np.zeros((n, m))
        self.rate = np.zeros(m)                    # λ₀ − d̂ of the rank-one columns
        self.t_conv = np.zeros(m)                  # > 0: rank one verified on E(t_conv)
        self.phi_tail = np.zeros((2, m))
        self._E = self._Phi = self._u = None
        self._phi_cols = np.zeros(0, dtype=int)
        with blas_single_thread():
            self._setup(n_applications, project)

    # -- set-up ---------------------------------------------------------------------------
    def _setup(self, n_app: int, project: bool) -> None:
        gen, tau, cols = self.gen, self.tau, self.cols
        n = gen.n
        ctau = gen.c[cols] * tau
        # the gap is at most 2c, and at most gen.gap_bound(): skip the eigenvalues when no
        # column can be near rank one (τ·gap ≥ 37 here, t·gap ≥ 30 with t ≤ 2τ in the dense
        # squaring)
        self._stiff = (4.0 * float(ctau.max()) >= 30.0
                       and bool((tau * gen.gap_bound()[cols] >= 15.0).any()))
        self.gap = gen.gap()[cols] if self._stiff else np.zeros(cols.size)
        if project and not (self.lam is not None and gen.periodic):   # resolvent: no wrap
            span = np.minimum(np.ptp(gen.op.phi[:, cols], axis=0), 2 * _PHI_STEP_MAX)
            sure = tau * self.gap >= _PROJ_MARGIN + 0.5 * span
            cand = np.flatnonzero(sure | (tau * self.gap >= _PROJ_MARGIN + _COND_MARGIN))
            if cand.size:
                r, l, rate, ok = gen.perron(cols[cand])
                with np.errstate(divide="ignore"):
                    span_q = np.minimum(np.ptp(np.log(r * l), axis=0), 2 * _PHI_STEP_MAX)
                sure_q = tau * self.gap[cand] >= _PROJ_MARGIN + 0.5 * span_q
                self.r[:, cand], self.lvec[:, cand], self.rate[cand] = r, l, rate
                self.certain[cand] = ok & sure_q
                self.cond[cand] = ok & ~sure_q
        rest = np.flatnonzero(~(self.certain | self.cond))
        # cost model (seconds per column, measured on one core): the compiled uniformisation
        # series (~2.2 ns per cell and term, about 2cτ + 6√(2cτ) + 12 terms for E(2τ)) against
        # the banded series, the squarings (~2n³ flops each) and a dense matvec per use
        per = 1.0 if self.lam is None else 2.0
        unif, dense = _costs(n, 2 * ctau[rest], n_app * per, per)
        # the rational branch (fast.rational): K shifted solves per application, whatever cτ
        K = exp_nodes()[0].size
        # (its loops are compiled; without numba the plain-Python loops would not pay)
        rat_ok = (not gen.periodic and self.lam is None
                  and (HAVE_NUMBA or self.branch == "rational"))
        rat = np.full(rest.size, np.inf) if not rat_ok else np.full(
            rest.size, n_app * _RAT_APPLY * K * n + 2 * _RAT_FACTOR * K * n)
        choice = {"auto": np.argmin(np.stack([unif, dense, rat]), axis=0),
                  "uniformisation": np.zeros(rest.size, dtype=int),
                  "dense": np.ones(rest.size, dtype=int),
                  "rational": np.full(rest.size, 2)}[self.branch]
        # memory: the squaring holds about four n×n matrices per dense column (six with Φ),
        # the rational factors 4Kn numbers; beyond the budget the columns that gain least
        # over uniformisation give theirs up
        per_col = np.array([0.0, (6 if self.lam is not None else 4) * 8.0 * n * n,
                            32.0 * K * n])[choice]
        if self.branch == "auto" and per_col.sum() > _DENSE_BYTES:
            gain = unif - np.stack([unif, dense, rat])[choice, np.arange(rest.size)]
            order = np.argsort(gain)[::-1]
            over = np.cumsum(per_col[order]) > _DENSE_BYTES
            choice[order[over]] = 0
        self.unif_cols, self.dense_cols = rest[choice == 0], rest[choice == 1]
        self.rat_cols = rest[choice == 2]
        self._build_unif()
        self._build_dense()
        self._build_rational()
        # then rat_cols is every column, in order (apply's shortcut)
        self._all_rational = bool(self.rat_cols.size == self.cols.size)

    def _build_unif(self) -> None:
        loc = self.unif_cols
        if not loc.size:
            return
        u = _Uniformised(self.gen, self.cols[loc])
        self._u = (u, [u.weights(k * self.tau, self.lam) for k in (1, 2)])

    def _build_dense(self) -> None:
        """Banded series for E(τ/2^s), then squarings up to E(2τ) (Φ by doubling alongside).

        Before each squaring E(t) is tested for rank one (only where t·gap ≥ 30 makes that
        possible): a stochastic column against π 1ᵀ, any other against E(2t) ∝ E(t). A column
        that passes keeps its rank-one form for every later time and leaves the squaring.
        """
        loc = self.dense_cols
        if not loc.size:
            return
        gen, tau, lam = self.gen, self.tau, self.lam
        c = gen.c[self.cols[loc]]
        s = int(max(np.ceil(np.log2(max(float(np.max(c * tau)) / _DENSE_LEAD, 1.0))), 0))
        t = tau / 2 ** s
        w = poisson_weights(c * t)                  # Poisson tail below 1e-17 per column
        kmax = w.shape[0] - 1
        v = _phi_weights(c, lam, t, kmax) if lam is not None else np.zeros_like(w)
        E, Phi = banded_series(*gen.stay_up_down(self.cols[loc], c), gen.periodic, w, v)
        Phi = Phi if lam is not None else None
        flat = gen.flat[self.cols[loc]]
        gibbs = self.gibbs[:, loc].T[:, :, None]
        live = np.arange(loc.size)                 # positions (in loc) still squaring
        dense_E: list = [None, None]
        dense_Phi: list = [None, None]
        for it in range(s + 1):                    # the last squaring gives E(2τ)
            En = np.matmul(E, E)
            fl = flat[live]
            if fl.any():                           # a stochastic column: keep its mass exact
                En[fl] /= En[fl].sum(axis=1, keepdims=True)
            test = np.flatnonzero(t * self.gap[loc[live]] >= 30.0)
            conv = np.zeros(live.size, dtype=bool)
            if test.size:
                Et, Ent, ft = E[test], En[test], fl[test]
                ratio = Ent.sum(axis=(1, 2)) / Et.sum(axis=(1, 2))
                ref = np.where(ft[:, None, None], np.broadcast_to(gibbs[live[test]], Et.shape),
                               Ent / ratio[:, None, None])
                conv[test] = _rel_gap(Et, ref) <= _CONVERGED
            if conv.any():
                done = loc[live[conv]]
                self._mark_rank1(done, E[conv], flat[live[conv]], t)
                if lam is not None:
                    self._keep_phi(done, Phi[conv], Phi[conv], t)
                keep = ~conv
                live, E, En = live[keep], E[keep], En[keep]
                Phi = Phi[keep] if Phi is not None else None
            if it == s:
                dense_E[0], dense_Phi[0] = E, Phi
            if lam is not None and live.size:
                Phi = Phi + np.exp(-lam * t) * np.matmul(E, Phi)
            E = En
            t *= 2
            if not live.size:
                break
        self.dense_cols = loc[live]
        if live.size:
            self._E = [dense_E[0], E]
            if lam is not None:
                self._keep_phi(self.dense_cols, dense_Phi[0], Phi, None)

    def _build_rational(self) -> None:
        """The rational propagators of the rational columns (:mod:`~pde_popdyn.fast.rational`)."""
        loc = self.rat_cols
        if loc.size:
            self._rat = RationalColumns(self.gen, self.tau, self.cols[loc], self.shift[loc],
                                        self.cols.size)

    def _rational(self, loc, g, k) -> np.ndarray:
        """E(kτ)g (shifted as in apply) on the rational columns (``loc`` is all of them); a
        column the rational branch refuses (:meth:`RationalColumns.apply`) is advanced by
        exact uniformisation instead (``rational_fallbacks``)."""
        x = np.ascontiguousarray(g, dtype=float)
        out, ok, clipped = self._rat.apply(x, k)
        self.clipped_mass += clipped
        if not ok.all():
            bad = np.flatnonzero(~ok)
            self.rational_fallbacks += bad.size
            # one uniformisation against building the column's dense propagator (kept for
            # later steps): a column that fails often (metastable data) and has a long series
            # gets the dense one; the choice depends on the column only, not on the history
            unif, dense = _costs(self.gen.n, self.gen.c[self.cols[loc[bad]]] * k * self.tau, 1, 1)
            for j in bad[unif > dense]:
                out[:, j] = self._fallback_prop(loc[[j]]).apply(x[:, [j]], k)[:, 0]
            cheap = bad[unif <= dense]
            if cheap.size:
                u = _Uniformised(self.gen, self.cols[loc[cheap]])
                out[:, cheap] = (u.run(x[:, cheap], u.weights(k * self.tau)[0])
                                 * self.shift[loc[cheap]] ** k)
        return out

    def _keep_phi(self, loc, phi1, phi2, tc) -> None:
        """Collect dense Φ matrices; after E(t_c) = π1ᵀ, Φ(kτ) = Φ(t_c) + the rank-one tail
        (e^{−λt_c} − e^{−λkτ}) π 1ᵀ / λ."""
        if tc is not None:
            for k in (1, 2):
                kt = k * self.tau
                self.phi_tail[k - 1, loc] = (np.exp(-self.lam * min(tc, kt))
                                             - np.exp(-self.lam * kt)) / self.lam
        if self._Phi is None:
            self._Phi, self._phi_cols = [phi1, phi2], loc
        else:
            self._Phi = [np.concatenate([a, b]) for a, b in zip(self._Phi, (phi1, phi2))]
            self._phi_cols = np.concatenate([self._phi_cols, loc])

    def _mark_rank1(self, loc, Et, flat, t) -> None:
        """Store the rank-one form of converged dense columns: E(t) ∝ r̂ l̂ᵀ with r̂ the
        normalised row sums and l̂ the column sums scaled to l̂ᵀr̂ = 1; λ₀ = ⟨d − d̂⟩_r̂."""
        rsum, csum = Et.sum(axis=2), Et.sum(axis=1)
        rnorm = rsum / rsum.sum(axis=1, keepdims=True)
        lnorm = csum / (csum * rnorm).sum(axis=1, keepdims=True)
        r = np.where(flat[:, None], self.gibbs[:, loc].T, rnorm)
        self.r[:, loc] = r.T
        self.lvec[:, loc] = np.where(flat[:, None], 1.0, lnorm).T
        self.rate[loc] = np.where(flat, 0.0, (self.gen.dp[:, self.cols[loc]].T * r).sum(axis=1))
        self.certain[loc] = True
        self.t_conv[loc] = t

    def _fallback_prop(self, loc: np.ndarray) -> "ColumnPropagator":
        """An exact propagator (no rank-one shortcut) for the conditional columns ``loc``
        (built when first needed, kept for later steps)."""
        key = tuple(loc.tolist())
        if self._fallback is None:
            self._fallback = {}
        if key not in self._fallback:
            self._fallback[key] = ColumnPropagator(     # its set-up limits BLAS itself
                self.gen, self.tau, lam=self.lam, branch="dense", cols=self.cols[loc],
                project=False)
            self.fallback_builds += 1
        return self._fallback[key]

    def _near_gibbs(self, loc, g, t, weight) -> np.ndarray:
        """The per-input test ‖E(t)g − rank-one part‖₁ ≤ 1e-14 max(|weight·g|, mean over
        columns), with the bound min(e^{−t·gap} (Σ g²/π)^{1/2}, 2 Σg): the second (both
        maps are contractions in L1) lets a column through whose mass is negligible, the
        first one any column near its Gibbs state. Errors are measured against the whole
        density, as every error is."""
        q, a, s = gibbs_sums(g, self.gibbs[:, loc], np.broadcast_to(weight, g.shape))
        return self._gibbs_ok(loc, q, a, s, t)

    def _gibbs_ok(self, loc, q, a, s, t) -> np.ndarray:
        """The test of :meth:`_near_gibbs` from the sums q = Σg²/π, a = Σ|g|, s = Σ weight·g
        of the columns ``loc``."""
        with np.errstate(over="ignore", invalid="ignore"):
            bound = np.minimum(np.exp(-t * self.gap[loc]) * np.sqrt(q), 2.0 * a)
        size = np.abs(s)
        return bound <= _PROJ_TOL * np.maximum(size, size.sum() / self.cols.size)

    # -- application ----------------------------------------------------------------------
    def apply(self, f: np.ndarray, k: int = 1) -> np.ndarray:
        """e^{kτ(d̂_j − D)} E_j(kτ) f_j for f of shape (n, ncol) (a new array)."""
        if self._all_rational and f.dtype == np.float64:
            # every column in the rational branch: no gather into / scatter from a copy
            return self._rational(self.rat_cols, f, k)
        if (f.dtype == np.float64 and f.flags.c_contiguous and not self.unif_cols.size
                and not self.dense_cols.size and not self.rat_cols.size
                and (self.certain | self.cond).all()):
            return self._apply_rank1(f, k)
        out = np.empty_like(f)
        kt = k * self.tau
        rank1 = self.certain.copy()
        cond = np.flatnonzero(self.cond)
        if cond.size:
            ok = self._near_gibbs(cond, f[:, cond], kt, self.lvec[:, cond])
            rank1[cond[ok]] = True
            if not ok.all():
                bad = cond[~ok]
                out[:, bad] = self._far_apply(bad, f[:, bad], k)
        loc = np.flatnonzero(rank1)
        if loc.size:
            out[:, loc] = self._rank1(loc, f[:, loc], kt)
        if self.unif_cols.size:
            loc = self.unif_cols
            u, weights = self._u
            out[:, loc] = u.run(f[:, loc], weights[k - 1][0]) * self.shift[loc] ** k
        if self.dense_cols.size:
            loc = self.dense_cols
            out[:, loc] = _matvec(self._E[k - 1], f[:, loc]) * self.shift[loc] ** k
        if self.rat_cols.size:
            loc = self.rat_cols
            out[:, loc] = self._rational(loc, f[:, loc], k)
        return out

    def _apply_rank1(self, f: np.ndarray, k: int) -> np.ndarray:
        """:meth:`apply` where every column is rank one (certain, or conditional on the input):
        the sums l₀ᵀf of the rank-one map are those of the near-Gibbs test, taken in one pass
        over f without gathering columns."""
        kt = k * self.tau
        q, a, s = gibbs_sums(f, self.gibbs, self.lvec)
        out = self.r * ((np.exp(kt * self.rate) * self.shift ** k) * s)
        cond = np.flatnonzero(self.cond)
        if cond.size:
            ok = self._gibbs_ok(cond, q[cond], a[cond], s[cond], kt)
            if not ok.all():
                bad = cond[~ok]
                out[:, bad] = self._far_apply(bad, f[:, bad], k)
        return out

    def _rank1(self, loc, g, t) -> np.ndarray:
        """e^{t(d̂ − D)} e^{tλ₀'} r₀ l₀ᵀ g on rank-one columns, for any t ≥ their t_conv."""
        scale = np.exp(t * self.rate[loc]) * self.shift[loc] ** (t / self.tau)
        return self.r[:, loc] * (scale * (self.lvec[:, loc] * g).sum(0))

    def _relax(self, loc, g, t, phi: bool = False):
        """E(t)g (shifted as in apply) and, if asked, Φ(t)g, by uniformisation for a short t
        (t·gap of a few units: a few c/gap terms whatever ε is)."""
        u = _Uniformised(self.gen, self.cols[loc])
        w, v = u.weights(t, self.lam if phi else None)
        Eg = u.run(g, w) * self.shift[loc] ** (t / self.tau)
        return Eg, (u.run(g, *v) if phi else None)

    def _far_apply(self, loc, g, k) -> np.ndarray:
        """E(kτ)g for conditional columns whose input failed the test: relax the input by a
        short exact step E(δ) (uniformisation), then test again with the time left; what
        still fails (rarely) goes to the dense fallback."""
        out = np.empty_like(g)
        self.relaxed_inputs += loc.size
        todo, x, t_left = np.arange(loc.size), g, k * self.tau
        for attempt in range(4):      # δ·gap = 1, 2, 4, 8: the fast modes go first
            delta = min(0.5 * t_left, _RELAX * 2 ** attempt / float(self.gap[loc[todo]].min()))
            x = self._relax(loc[todo], x, delta)[0]
            t_left -= delta
            ok = self._near_gibbs(loc[todo], x, t_left, self.lvec[:, loc[todo]])
            out[:, todo[ok]] = self._rank1(loc[todo[ok]], x[:, ok], t_left)
            todo, x = todo[~ok], x[:, ~ok]
            if not todo.size:
                return out
        out[:, todo] = self._fallback_prop(loc[todo]).apply(g[:, todo], k)
        return out

    def integral(self, g: np.ndarray, k: int = 1) -> np.ndarray:
        """Φ_j(kτ) g_j for g ≥ 0 of shape (n, ncol): ∫_0^{kτ} e^{−λs} e^{sA_j} g_j ds."""
        out = np.empty_like(g)
        if self.unif_cols.size:
            loc = self.unif_cols
            u, weights = self._u
            out[:, loc] = u.run(g[:, loc], *weights[k - 1][1])
        if self._Phi is not None and self._phi_cols.size:
            loc = self._phi_cols
            h = _matvec(self._Phi[k - 1], g[:, loc])
            out[:, loc] = h + self.gibbs[:, loc] * (self.phi_tail[k - 1, loc] * g[:, loc].sum(0))
        loc = np.flatnonzero((self.certain & (self.t_conv == 0)) | self.cond)
        if loc.size:
            x, ok = self._resolvent(loc, g[:, loc], k * self.tau)
            if not ok.all():
                # a conditional column whose input is far from equilibrium: Φ(t)g =
                # Φ(δ)g + e^{−λδ} Φ(t − δ)E(δ)g with a short exact first piece
                bad = np.flatnonzero(~ok)
                self.relaxed_inputs += bad.size
                delta = min(0.5 * k * self.tau, 4 * _RELAX / float(self.gap[loc[bad]].min()))
                Eg, Pg = self._relax(loc[bad], g[:, loc[bad]], delta, phi=True)
                y, ok2 = self._resolvent(loc[bad], Eg, k * self.tau - delta)
                x[:, bad] = Pg + np.exp(-self.lam * delta) * y
                if not ok2.all():
                    worst = bad[~ok2]
                    x[:, worst] = self._fallback_prop(loc[worst]).integral(g[:, loc[worst]], k)
            out[:, loc] = x
        return out

    def _resolvent(self, loc, g, t):
        """Φ(t)g = y − e^{−λt} E(t) y with y = (λ − A)⁻¹ g and E(t)y = π Σy on rank-one
        columns; returns it and whether each conditional column passed its test on y."""
        lam = self.lam
        op = self.gen.op
        cols = self.cols[loc]
        mass = g.sum(axis=0)
        kill = np.full((self.gen.n, loc.size), lam)
        y = gth_solve_cols(op.up[:, cols], op.down[:, cols], kill, g)
        x = y - self.gibbs[:, loc] * (np.exp(-lam * t) * y.sum(axis=0))
        ok = np.ones(loc.size, dtype=bool)
        sub = np.flatnonzero(self.cond[loc])
        if sub.size:
            ok[sub] = self._near_gibbs(loc[sub], y[:, sub], t, 1.0)
        neg = x < 0
        if neg.any():
            # round-off of the subtraction in the far tails (relative size 1e-16): removed,
            # recorded, and the exact column mass (1 − e^{−λt}) Σg / λ restored
            self.clipped_mass += float(-x[neg].sum())
            x[neg] = 0.0
            total = x.sum(axis=0)
            target = -np.expm1(-lam * t) * mass / lam
            x *= np.divide(target, total, out=np.ones_like(total), where=total > 0)
        return x, ok

    @property
    def rational_tail_mass(self) -> float:
        """Tail mass the rational branch carried by its positive map (each ≤ 1e-13 s)."""
        return self._rat.tail_mass if self._rat is not None else 0.0

    @property
    def summary(self) -> dict:
        """Columns per branch, uniformisation terms and the cost per cell of one application."""
        n, m = self.gen.n, self.cols.size
        kt = self._u[1][1][0].size - 1 if self._u is not None else 0
        rank1 = int((self.certain | self.cond).sum())
        K = exp_nodes()[0].size if self.rat_cols.size else 0
        work = (3.0 * rank1 + 8.0 * (kt + 1) * self.unif_cols.size
                + 2.0 * n * self.dense_cols.size + 20.0 * K * self.rat_cols.size) / m
        return {"projection": rank1, "projection_tested": int(self.cond.sum()),
                "uniformisation": int(self.unif_cols.size), "dense": int(self.dense_cols.size),
                "rational": int(self.rat_cols.size), "rational_fallbacks": self.rational_fallbacks,
                "rational_tail_mass": self.rational_tail_mass,
                "uniformisation_terms": int(kt),
                "rank_one_after_squaring": int((self.t_conv > 0).sum()),
                "relaxed_inputs": self.relaxed_inputs, "fallback_builds": self.fallback_builds,
                "work_per_cell": work,
                "clipped_mass": self.clipped_mass}


__all__ = ["ColumnGenerator", "ColumnPropagator", "blas_single_thread", "warm_up"]
