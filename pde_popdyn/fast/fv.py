"""Scharfetter–Gummel finite volumes for the fast operator 𝓛_ε, and its exact step.

For each h-column the fast operator

    𝓛_ε f = (1/ε) ∇_θ·( m(h) T(h) [ ∇_θ f + f ∇_θ Φ ] ),   Φ = L/T,

is discretised on the cell-centred θ-grid (one or several θ-axes) with the Scharfetter–Gummel
flux through each face. Along θ-axis a, through the face between cells i and i+1
(ΔΦ = Φ_{i+1} − Φ_i, B(x) = x/(eˣ − 1), r_a = m T / (ε Δθ_a²)):

    G_{i+½} = r_a [ B(−ΔΦ) f_{i+1} − B(ΔΦ) f_i ],      df_i/dt = Σ_a (G_{i+½} − G_{i−½}),

with zero flux at the box's edges (or the wrap-around face on a periodic axis). The matrix A of
this system is the generator of a nearest-neighbour Markov chain: the jump rates i→i+1
(``ups[a]``) and i+1→i (``downs[a]``) are positive and every column sums to zero, so mass is
conserved and e^{τA} is a stochastic matrix. Since B(−x) = eˣ B(x), detailed balance holds for
π_i ∝ e^{−Φ_i}: the discrete Gibbs state is exactly stationary, for any number of θ-axes.

The step f ← e^{τA} f is computed without any symmetrisation (which would multiply round-off
by e^{ΔΦ/2}) and in non-negative arithmetic only, column by column, by the cheapest of

* **projection** f ← π̂ Σ_i f_i, when τ·gap ≥ 37 + ΔΦ_max/2. Then e^{τA} equals the projection
  onto the discrete Gibbs state to round-off (the bound ‖e^{τA} − Π‖ ≤ e^{ΔΦ/2} e^{−τ·gap}
  accounts for the non-normality). This is the ε → 0 regime and it makes the step
  asymptotic-preserving;
* **uniformisation** (:mod:`pde_popdyn.fast.uniformisation`): e^{τA} = Σ_n Poisson(n; cτ) Pⁿ
  with the stochastic matrix P = I + A/c, for moderate cτ;
* **dense squaring**: e^{τA} = (e^{τA/2^s})^{2^s} with the small step by uniformisation, for the
  intermediate regime, stopping early once a column has reached the projection.

Every branch is positive, conserves the mass of each column to round-off and leaves π fixed.
"""

from __future__ import annotations

import warnings

import numpy as np
import scipy.sparse as sp
from scipy.linalg import eigvalsh_tridiagonal
from scipy.sparse.linalg import LinearOperator, eigsh, splu

from .blas import one_blas_thread
from .uniformisation import poisson_terms, poisson_weights

_PROJ_MARGIN = 37.0      # e^{-37} ≈ 1e-16
_PHI_STEP_MAX = 700.0    # larger potential jumps between neighbours make the rates underflow
NO_MASS = 1e-10          # an h-column with a smaller fraction of the mass "holds no mass"


def bernoulli(x: np.ndarray) -> np.ndarray:
    """B(x) = x / (eˣ − 1), with B(0) = 1; accurate for small |x|, no overflow for large |x|."""
    x = np.asarray(x, dtype=float)
    out = np.ones_like(x)
    nz = x != 0
    with np.errstate(over="ignore"):
        out[nz] = x[nz] / np.expm1(x[nz])
    return out


def gibbs_state(phi: np.ndarray, ndim_theta: int = 1,
                weights: np.ndarray | None = None) -> np.ndarray:
    """The discrete Gibbs state π ∝ e^{−Φ} of each column, in the log domain.

    ``phi`` has the θ-axes first (``ndim_theta`` of them) and any column axes after. Each
    column is normalised to Σ_i w_i π_i = 1 with the θ-quadrature weights ``weights`` (shape of
    the θ-axes), or to Σ_i π_i = 1 (cell sums) without. This is the state the
    Scharfetter–Gummel generator leaves exactly invariant, and the one home of that formula.
    """
    axes = tuple(range(ndim_theta))
    p = np.exp(-(phi - phi.min(axis=axes, keepdims=True)))
    if weights is None:
        return p / p.sum(axis=axes, keepdims=True)
    w = np.asarray(weights, dtype=float).reshape(np.shape(weights) + (1,) * (phi.ndim - ndim_theta))
    return p / (w * p).sum(axis=axes, keepdims=True)


def _face(nd: int, axis: int, part) -> tuple:
    """Index of the lower (part=slice(0, -1)), upper (slice(1, None)) or an end (0, -1) face
    along ``axis`` of an ``nd``-dimensional array."""
    idx = [slice(None)] * nd
    idx[axis] = part
    return tuple(idx)


def stencil_apply(x: np.ndarray, diag, ups, downs, up_wraps, down_wraps, periodic) -> np.ndarray:
    """y = diag·x + Σ_a (nearest-neighbour jumps along θ-axis a): the action of a generator, or
    of a uniformised stochastic matrix, given its per-face coefficients.

    The θ-axes are the leading ``len(ups)`` axes of ``x``; trailing axes (columns, and any batch
    axis the coefficients broadcast over) follow.
    """
    y = diag * x
    nd = x.ndim
    lo, hi = slice(0, -1), slice(1, None)
    for a, (up, down) in enumerate(zip(ups, downs)):
        y[_face(nd, a, hi)] += up * x[_face(nd, a, lo)]
        y[_face(nd, a, lo)] += down * x[_face(nd, a, hi)]
        if periodic[a]:
            y[_face(nd, a, 0)] += up_wraps[a] * x[_face(nd, a, -1)]
            y[_face(nd, a, -1)] += down_wraps[a] * x[_face(nd, a, 0)]
    return y


class SGOperator:
    """Scharfetter–Gummel generator of 𝓛_ε on every h-column of a grid.

    Parameters
    ----------
    phi:
        Φ = L/T on the cell centres, shape ``(*theta_shape, n_columns)`` (the h-nodes
        flattened into columns).
    rates:
        r_a = m(h) T(h) / (ε Δθ_a²) per column: an array of shape ``(n_columns,)`` for one
        θ-axis, or a list of such arrays, one per θ-axis.
    periodic:
        Per θ-axis (a bool for one axis): True for a periodic axis, whose wrap-around face
        carries the flux too (Φ must then be periodic); False for zero flux at both ends.
    """

    def __init__(self, phi: np.ndarray, rates, periodic=False):
        self.phi = np.asarray(phi, dtype=float)
        self.d = self.phi.ndim - 1
        if not isinstance(rates, (list, tuple)):
            rates = [rates]
        rates = [np.asarray(r, dtype=float) for r in rates]
        if isinstance(periodic, (bool, np.bool_)):
            periodic = [bool(periodic)] * self.d
        self.periodic = tuple(bool(p) for p in periodic)
        if len(rates) != self.d or len(self.periodic) != self.d:
            raise ValueError(f"SGOperator: phi has {self.d} theta-axes but {len(rates)} rates "
                             f"and {len(self.periodic)} periodic flags were given")
        nd = self.phi.ndim
        self.ups, self.downs, self.up_wraps, self.down_wraps = [], [], [], []
        out = np.zeros_like(self.phi)
        for a, r in enumerate(rates):
            dphi = np.diff(self.phi, axis=a)
            up, down = r * bernoulli(dphi), r * bernoulli(-dphi)
            self.ups.append(up)                               # i → i+1
            self.downs.append(down)                           # i+1 → i
            out[_face(nd, a, slice(0, -1))] += up
            out[_face(nd, a, slice(1, None))] += down
            on = 1.0 if self.periodic[a] else 0.0
            wrap = np.take(self.phi, 0, axis=a) - np.take(self.phi, -1, axis=a)
            uw, dw = on * r * bernoulli(wrap), on * r * bernoulli(-wrap)
            self.up_wraps.append(uw)                          # last → first
            self.down_wraps.append(dw)                        # first → last
            out[_face(nd, a, -1)] += uw
            out[_face(nd, a, 0)] += dw
        self.out_rate = out                                   # −diag(A)
        self.theta_shape = self.phi.shape[:-1]
        self.n = int(np.prod(self.theta_shape))               # θ-cells per column
        self.gibbs = gibbs_state(self.phi, self.d)            # columns sum to 1 (cell sums)
        flat = self.phi.reshape(self.n, -1)
        self.phi_span = np.minimum(np.ptp(flat, axis=0), 2 * _PHI_STEP_MAX)

    # one θ-axis: the face rates as plain arrays (used by the compiled unsplit sweep)
    @property
    def up(self) -> np.ndarray:
        return self.ups[0]

    @property
    def down(self) -> np.ndarray:
        return self.downs[0]

    @property
    def up_wrap(self) -> np.ndarray:
        return self.up_wraps[0]

    @property
    def down_wrap(self) -> np.ndarray:
        return self.down_wraps[0]

    @classmethod
    def from_model(cls, model, grid, *, check_gibbs: bool = True,
                   h_mass: np.ndarray | None = None) -> "SGOperator":
        """The operator of ``model`` on ``grid`` (several h-axes: every h-node is a column).

        ``check_gibbs`` raises where exp(−L/T) is not resolved or not confined on the θ-box
        (:func:`check_gibbs_on_box`); ``h_mass``, the mass of each h-column of the initial
        density, lets columns without mass be cut by the θ-box with a warning.
        """
        tshape = grid.theta_shape
        L = model.loss_on(grid).reshape(*tshape, -1)
        T = model.temperature_on(grid.h_mesh()).reshape(-1)
        m = model.mobility_on(grid.h_mesh()).reshape(-1)
        phi = L / T
        if check_gibbs:
            if grid.ndim_theta == 1:
                check_gibbs_on_box(phi, grid, periodic=grid.theta_axis.periodic, h_mass=h_mass)
            else:
                check_gibbs_nd(phi, grid, h_mass=h_mass)
        rates = [m * T / (model.eps * a.width ** 2) for a in grid.theta_axes]
        return cls(phi, rates, [a.periodic for a in grid.theta_axes])

    def apply(self, f: np.ndarray) -> np.ndarray:
        """A f: the semi-discrete right-hand side (for method-of-lines baselines); ``f`` has
        the operator's shape ``(*theta_shape, n_columns)``."""
        return stencil_apply(f, -self.out_rate, self.ups, self.downs, self.up_wraps,
                             self.down_wraps, self.periodic)

    def _triplets(self, symmetric: bool = False):
        """(rows, cols, values) of A on ``f.ravel()`` (C order, θ-axes slowest); with
        ``symmetric`` the similar symmetric matrix, off-diagonals √(A_ij A_ji)."""
        idx = np.arange(self.phi.size).reshape(self.phi.shape)
        nd = self.phi.ndim
        rows, cols, vals = [idx.ravel()], [idx.ravel()], [-self.out_rate.ravel()]
        pairs = [(self.ups[a], self.downs[a], idx[_face(nd, a, slice(0, -1))],
                  idx[_face(nd, a, slice(1, None))]) for a in range(self.d)]
        pairs += [(self.up_wraps[a], self.down_wraps[a], np.take(idx, -1, axis=a),
                   np.take(idx, 0, axis=a)) for a in range(self.d) if self.periodic[a]]
        for up, down, lo, hi in pairs:          # up: lo → hi, down: hi → lo
            if symmetric:
                up = down = np.sqrt(up * down)
            rows += [hi.ravel(), lo.ravel()]
            cols += [lo.ravel(), hi.ravel()]
            vals += [np.ravel(up), np.ravel(down)]
        return np.concatenate(rows), np.concatenate(cols), np.concatenate(vals)

    def sparse(self, symmetric: bool = False) -> sp.csr_matrix:
        """A as a scipy.sparse CSR matrix acting on ``f.ravel()`` (C order, θ slowest)."""
        r, c, v = self._triplets(symmetric)
        return sp.csr_matrix((v, (r, c)), shape=(self.phi.size, self.phi.size))

    def spectral_gap(self) -> np.ndarray:
        """−λ₁ per column: the relaxation rate to the Gibbs state (from the symmetric form,
        which is used for eigenvalues only, never to step)."""
        ncols = self.phi.shape[-1]
        if self.d == 1 and not self.periodic[0]:
            d = -self.out_rate.T
            e = np.sqrt(self.up * self.down).T
            lam = eigvalsh_tridiagonal(d, e, select="i", select_range=(self.n - 2, self.n - 2))
            return np.maximum(-np.asarray(lam).reshape(-1), 0.0)
        S = self.sparse(symmetric=True).tocsc()
        if self.n <= 400:                       # small blocks: dense eigenvalues per column
            gaps = np.empty(ncols)
            for j in range(ncols):
                sel = np.arange(j, self.phi.size, ncols)
                lam = np.linalg.eigvalsh(S[sel][:, sel].toarray())
                gaps[j] = max(-lam[-2], 0.0)
            return gaps
        gaps = np.empty(ncols)
        for j in range(ncols):
            sel = np.arange(j, self.phi.size, ncols)
            Sj = S[sel][:, sel]
            shift = 1e-6 * abs(Sj.diagonal()).max()
            lu = splu((Sj - shift * sp.identity(Sj.shape[0])).tocsc())
            opinv = LinearOperator(Sj.shape, matvec=lu.solve, dtype=float)
            vals = eigsh(Sj, k=2, sigma=shift, which="LM", OPinv=opinv,
                         return_eigenvectors=False)
            gaps[j] = max(-np.min(vals), 0.0)
        return gaps

    def propagator(self, tau: float, *, dense_above: float | None = None,
                   n_steps: int | None = None) -> "FastPropagator":
        return FastPropagator(self, tau, dense_above=dense_above, n_steps=n_steps)


class FastPropagator:
    """The exact step f ← e^{τA} f of an :class:`SGOperator`, for a fixed τ (see module doc).

    ``n_steps`` (the number of steps the run will take) lets the cost model decide which
    columns are worth a dense propagator; ``dense_above`` overrides it (uniformisation terms
    above which a column goes dense; ``float('inf')`` never).
    """

    def __init__(self, op: SGOperator, tau: float, *, dense_above: float | None = None,
                 n_steps: int | None = None):
        self.op = op
        self.tau = float(tau)
        ncols = op.phi.shape[-1]
        out = op.out_rate.reshape(op.n, ncols)
        c = out.max(axis=0) * 1.000001 + 1e-300               # uniformisation rate per column
        ctau = c * self.tau
        gap = op.spectral_gap()
        proj = self.tau * gap >= _PROJ_MARGIN + 0.5 * op.phi_span
        kcol = np.where(proj, 0, poisson_terms(np.where(proj, 0.0, ctau)))
        if dense_above is None:
            dense_above = self._dense_threshold(op.n, ctau[~proj], n_steps)
        dense = ~proj & (kcol > dense_above)
        unif = ~proj & ~dense
        self.proj_cols = np.flatnonzero(proj)
        self.unif_cols = np.flatnonzero(unif)
        self.dense_cols = np.flatnonzero(dense)
        self.gap = gap
        u = self.unif_cols
        cu = c[u]
        self._coef = self._uniformised(u, cu)
        self._w = poisson_weights(ctau[u]) if u.size else None
        self.n_terms = self._w.shape[0] - 1 if u.size else 0
        if dense.any():
            with one_blas_thread():
                self._E = self._dense(c[dense], self.dense_cols)
        else:
            self._E = None

    def _uniformised(self, cols: np.ndarray, c: np.ndarray, batch: bool = False) -> tuple:
        """Coefficients of P = I + A/c restricted to ``cols`` (a trailing singleton axis added
        with ``batch``, so they broadcast over the identity's columns in the dense set-up)."""
        op = self.op
        ex = (lambda a: a[..., None]) if batch else (lambda a: a)
        pick = (lambda a: ex(a[..., cols] / c))
        return (ex(1.0 - op.out_rate[..., cols] / c), [pick(x) for x in op.ups],
                [pick(x) for x in op.downs], [pick(x) for x in op.up_wraps],
                [pick(x) for x in op.down_wraps])

    @staticmethod
    def _dense_threshold(n: int, ctau: np.ndarray, n_steps: int | None) -> float:
        """Uniformisation terms above which a dense propagator is cheaper over the run.

        Cost model, in units of one matrix-multiply flop (BLAS runs ~10× faster per flop than
        numpy's elementwise passes): uniformisation costs 10·8·(K+1)·n per column and step;
        the dense propagator 10·8·k₀·n² (its small step) + 2n³ per squaring once, then 4n² per
        step. Without a step count the run is assumed to take 100 steps.
        """
        steps = 100 if n_steps is None else max(int(n_steps), 1)
        squarings = np.log2(np.maximum(ctau, 1.0)).max() if np.size(ctau) else 0.0
        dense = 10 * 8 * 36 * n * n + 2.0 * n ** 3 * (squarings + 1) + steps * 4.0 * n * n
        return max(dense / (steps * 10 * 8 * n) - 1, 64)

    @property
    def work_per_cell(self) -> float:
        """Floating-point operations per grid cell of one step (a machine-independent cost):
        about 3 for a projected column, (4 + 4d) per uniformisation term, 2 n for a dense one."""
        op = self.op
        ncols = op.phi.shape[-1]
        work = (3.0 * self.proj_cols.size
                + 4.0 * (1 + op.d) * (self.n_terms + 1) * self.unif_cols.size
                + 2.0 * op.n * self.dense_cols.size)
        return work / ncols

    @property
    def summary(self) -> dict:
        return {"projection": int(self.proj_cols.size), "uniformisation": int(self.unif_cols.size),
                "dense": int(self.dense_cols.size), "uniformisation_terms": self.n_terms,
                "work_per_cell": self.work_per_cell}

    def _dense(self, c: np.ndarray, cols: np.ndarray) -> np.ndarray:
        """e^{τA} of the columns ``cols`` as dense (n_cols, n, n) matrices: uniformisation of a
        small step τ/2^s applied to the identity, then s squarings (renormalised to stochastic
        after each, and stopped per column once it equals the projection)."""
        op = self.op
        n = op.n
        s = int(np.ceil(np.log2(max(float(np.max(c * self.tau)), 1.0))))
        tau0 = self.tau / 2 ** s
        coef = self._uniformised(cols, c, batch=True)
        w = poisson_weights(c * tau0)                                 # (k, nd)
        x = np.broadcast_to(np.eye(n).reshape(*op.theta_shape, 1, n),
                            (*op.theta_shape, cols.size, n)).copy()
        E = w[0][:, None] * x
        for k in range(1, w.shape[0]):
            x = stencil_apply(x, *coef, op.periodic)
            E += w[k][:, None] * x
        E = np.moveaxis(E.reshape(n, cols.size, n), 1, 0)             # (nd, n_out, n_in)
        pi = op.gibbs.reshape(n, -1)[:, cols].T[:, :, None]           # (nd, n, 1)
        active = np.ones(E.shape[0], dtype=bool)
        for _ in range(s):
            idx = np.flatnonzero(active)
            if idx.size == 0:
                break
            Ea = E[idx]
            Ea = np.matmul(Ea, Ea)
            Ea /= Ea.sum(axis=1, keepdims=True)
            E[idx] = Ea
            done = np.abs(Ea - pi[idx]).max(axis=(1, 2)) <= 1e-17
            active[idx[done]] = False
        return E

    def __call__(self, f: np.ndarray) -> np.ndarray:
        """Return e^{τA} f for f with the θ-axes first and the h-axes after (a new array)."""
        op = self.op
        shape = f.shape
        f = f.reshape(*op.theta_shape, -1)
        out = np.empty_like(f)
        if self.proj_cols.size:
            cols = self.proj_cols
            mass = f[..., cols].sum(axis=tuple(range(op.d)), keepdims=True)
            out[..., cols] = op.gibbs[..., cols] * mass
        if self.unif_cols.size:
            x = f[..., self.unif_cols]
            acc = self._w[0] * x
            for k in range(1, self.n_terms + 1):
                x = stencil_apply(x, *self._coef, op.periodic)
                acc += self._w[k] * x
            out[..., self.unif_cols] = acc
        if self.dense_cols.size:
            cols = self.dense_cols
            flat = f.reshape(op.n, -1)[:, cols]
            with one_blas_thread():
                res = np.matmul(self._E, flat.T[:, :, None])[:, :, 0].T
            out.reshape(op.n, -1)[:, cols] = res
        return out.reshape(shape)


def _h_label(grid, j: int) -> str:
    """The h-coordinates of column j (flattened h-nodes), for messages."""
    idx = np.unravel_index(j, grid.h_shape)
    vals = [a.centres[i] for a, i in zip(grid.h_axes, idx)]
    return f"{vals[0]:.4g}" if len(vals) == 1 else "(" + ", ".join(f"{v:.4g}" for v in vals) + ")"


def _h_ranges(grid, cols: np.ndarray) -> str:
    """The h-values of the flattened columns ``cols``: contiguous ranges on one h-axis."""
    cols = np.sort(cols)
    if grid.ndim_h > 1:
        return (f"{len(cols)} h-nodes from h={_h_label(grid, int(cols[0]))} to "
                f"h={_h_label(grid, int(cols[-1]))}")
    runs = np.split(cols, np.flatnonzero(np.diff(cols) > 1) + 1)
    return "h in " + " and ".join(f"[{_h_label(grid, int(r[0]))}, {_h_label(grid, int(r[-1]))}]"
                                  for r in runs)


def _mass_fractions(h_mass, n_cols: int) -> np.ndarray | None:
    if h_mass is None:
        return None
    m = np.asarray(h_mass, dtype=float).reshape(-1)
    if m.size != n_cols:
        raise ValueError(f"h_mass must have {n_cols} entries (the mass of each h-column), got "
                         f"{m.size}")
    total = m.sum()
    if not np.isfinite(total) or total <= 0 or (m < 0).any():
        raise ValueError("h_mass must be non-negative with a positive sum")
    return m / total


def _edge_cut(bad: np.ndarray, frac: np.ndarray | None, grid, edge: str, theta_edge: float,
              what: str) -> np.ndarray:
    """Refuse a column whose Gibbs state the θ-box cuts (``bad``) unless ``frac`` says it
    holds no mass; return the columns passed over that way."""
    if not bad.any():
        return np.zeros(0, dtype=int)
    cut = np.flatnonzero(bad)
    heavy = cut if frac is None else cut[frac[cut] >= NO_MASS]
    if heavy.size:
        j = int(heavy[0])
        held = "" if frac is None else f", which holds a fraction {frac[j]:.2g} of the mass"
        raise ValueError(
            f"loss: the Gibbs weight exp(-L/T) grows toward the {edge} edge of the "
            f"{what} (theta={theta_edge:.4g}) at h={_h_label(grid, j)}{held}: the loss is not "
            f"confining on this box. Use a wider theta-box that contains the minimum of L, or "
            f"pass check_gibbs=False if a boundary-truncated Gibbs state is meant")
    return cut


def _warn_cut(grid, cut: np.ndarray, frac: np.ndarray) -> None:
    if cut.size:
        cut = np.unique(cut)
        warnings.warn(
            f"the theta-box cuts the Gibbs state exp(-L/T) at {_h_ranges(grid, cut)} "
            f"({cut.size} of {frac.size} h-columns), where the loss is not confining on the "
            f"box; these h-values hold no mass (a fraction {frac[cut].sum():.1e} of it), so "
            f"the run goes on, but it is right only while the population stays away from "
            f"them. Use a wider theta-box that contains the minimum of L there to silence "
            f"this", UserWarning, stacklevel=4)


def check_gibbs_on_box(phi: np.ndarray, grid, periodic: bool = False,
                       h_mass: np.ndarray | None = None) -> None:
    """Raise if exp(−Φ) under- or overflows on the θ-box, naming the fix. Φ has shape
    (n_theta, n_h) with the h-nodes flattened into columns.

    A column whose Gibbs state grows toward an edge of the θ-box (the box cuts it) is refused,
    unless ``h_mass`` (the mass of each column, e.g. of the initial density) says it holds
    no mass (a fraction below ``NO_MASS``): such columns are named in a ``UserWarning``.
    """
    dphi = np.abs(np.diff(phi, axis=0))
    if dphi.max() > _PHI_STEP_MAX:
        i, j = np.unravel_index(np.argmax(dphi), dphi.shape)
        raise ValueError(
            f"loss: the Gibbs weight exp(-L/T) underflows between neighbouring cells: L/T "
            f"jumps by {dphi[i, j]:.3g} between theta={grid.theta[i]:.4g} and "
            f"{grid.theta[i + 1]:.4g} at h={_h_label(grid, j)}. Use a narrower theta-box or "
            f"more theta-cells, or a higher temperature")
    frac = _mass_fractions(h_mass, phi.shape[1])
    interior = phi[1:-1].min(axis=0)
    scale = 1e-9 * np.maximum(1.0, np.abs(interior))
    cut = [_edge_cut(phi[row] < interior - scale, frac, grid, edge,
                     float(grid.theta[row]), "theta-box")
           for edge, row in (() if periodic else (("lower", 0), ("upper", -1)))]
    if frac is not None and cut:
        _warn_cut(grid, np.concatenate(cut), frac)
    pi = gibbs_state(phi, 1)
    th = grid.theta[:, None]
    mean = (pi * th).sum(0)
    std = np.sqrt(np.maximum((pi * (th - mean) ** 2).sum(0), 0.0))
    j = int(np.argmin(std))
    if std[j] < 0.5 * grid.dtheta:
        raise ValueError(
            f"loss: the Gibbs weight exp(-L/T) underflows outside a single cell at "
            f"h={_h_label(grid, j)} (Gibbs width {std[j]:.3g} < half a cell {grid.dtheta:.3g}). "
            f"Use a narrower theta-box or more theta-cells, or a higher temperature")


def check_gibbs_nd(phi: np.ndarray, grid, h_mass: np.ndarray | None = None) -> None:
    """The checks of :func:`check_gibbs_on_box` for several θ-axes (``phi``: (*θ, n_cols))."""
    d = phi.ndim - 1
    for a, ax in enumerate(grid.theta_axes):
        dphi = np.abs(np.diff(phi, axis=a))
        if dphi.max() > _PHI_STEP_MAX:
            raise ValueError(
                f"loss: the Gibbs weight exp(-L/T) underflows between neighbouring cells along "
                f"{ax.name} (L/T jumps by {dphi.max():.3g}). Use a narrower box or more cells, "
                f"or a higher temperature")
    frac = _mass_fractions(h_mass, phi.shape[-1])
    pi = gibbs_state(phi, d)
    cut = []
    for a, ax in enumerate(grid.theta_axes):
        shape = [1] * (d + 1)
        shape[a] = ax.cells
        x = ax.centres.reshape(shape)
        mean = (pi * x).sum(axis=tuple(range(d)))
        var = (pi * x * x).sum(axis=tuple(range(d))) - mean ** 2
        if np.sqrt(max(var.min(), 0.0)) < 0.5 * ax.width:
            raise ValueError(
                f"loss: the Gibbs weight exp(-L/T) underflows outside a single cell along "
                f"{ax.name}. Use a narrower box or more cells, or a higher temperature")
        if not ax.periodic:
            inner = np.take(phi, np.arange(1, ax.cells - 1), axis=a).min(axis=a)
            interior = np.min(inner.reshape(-1, phi.shape[-1]), axis=0)
            for edge, row in (("lower", 0), ("upper", ax.cells - 1)):
                edge_vals = np.min(np.take(phi, row, axis=a).reshape(-1, phi.shape[-1]), axis=0)
                bad = edge_vals < interior - 1e-9 * np.maximum(1.0, np.abs(interior))
                cut.append(_edge_cut(bad, frac, grid, edge, float(ax.centres[row]),
                                     f"{ax.name}-box"))
    if frac is not None and cut:
        _warn_cut(grid, np.concatenate(cut), frac)


__all__ = ["SGOperator", "FastPropagator", "bernoulli", "gibbs_state", "stencil_apply",
           "check_gibbs_on_box", "check_gibbs_nd"]
