"""Scharfetter–Gummel finite volumes for the fast operator 𝓛_ε, and its exact step.

For each h-column the fast operator

    𝓛_ε f = (1/ε) ∂_θ( m(h) T(h) [ ∂_θ f + f ∂_θ Φ ] ),   Φ = L/T,

is discretised on the cell-centred θ-grid with the Scharfetter–Gummel flux through the face
i+½ (ΔΦ = Φ_{i+1} − Φ_i, B(x) = x/(eˣ − 1), r = m T / (ε Δθ²))

    G_{i+½} = r [ B(−ΔΦ) f_{i+1} − B(ΔΦ) f_i ],      df_i/dt = G_{i+½} − G_{i−½},

and zero flux at both ends. The matrix A of this system is the generator of a birth–death
chain: the jump rates i→i+1 (``up``) and i+1→i (``down``) are positive and every column sums to
zero, so mass is conserved and e^{τA} is a stochastic matrix. Since B(−x) = eˣ B(x), detailed
balance holds for π_i ∝ e^{−Φ_i}: the discrete Gibbs state is exactly stationary.

The step f ← e^{τA} f is computed without any symmetrisation (which would multiply round-off
by e^{ΔΦ/2}) and in non-negative arithmetic only, column by column, by the cheapest of

* **projection** f ← π̂ Σ_i f_i, when τ·gap ≥ 37 + ΔΦ_max/2. Then e^{τA} equals the projection
  onto the discrete Gibbs state to round-off (the bound ‖e^{τA} − Π‖ ≤ e^{ΔΦ/2} e^{−τ·gap}
  accounts for the non-normality). This is the ε → 0 regime and it makes the step
  asymptotic-preserving;
* **uniformisation**: e^{τA} = Σ_n Poisson(n; cτ) Pⁿ with the stochastic matrix P = I + A/c,
  truncated where the Poisson tail is below 1e-17 and renormalised, for moderate cτ;
* **dense squaring**: e^{τA} = (e^{τA/2^s})^{2^s} with the small step by uniformisation, for the
  intermediate regime, stopping early once a column has reached the projection.

Every branch is positive, conserves the mass of each column to round-off and leaves π fixed.
"""

from __future__ import annotations

import warnings

import numpy as np
from scipy.linalg import eigvalsh_tridiagonal
from scipy.special import gammaln

_PROJ_MARGIN = 37.0      # e^{-37} ≈ 1e-16
_POISSON_TAIL = 1e-17    # uniformisation truncation
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


def _poisson_terms(ctau: np.ndarray) -> int:
    """Number of uniformisation terms K so that P(Poisson(cτ) > K) < 1e-17 for every column."""
    lam = float(np.max(ctau)) if np.size(ctau) else 0.0
    return int(np.ceil(lam + 9.0 * np.sqrt(lam) + 25.0))


def _poisson_weights(ctau: np.ndarray, kmax: int) -> np.ndarray:
    """Normalised Poisson weights, shape (kmax+1, ncols), computed in the log domain."""
    n = np.arange(kmax + 1)[:, None]
    lam = np.maximum(ctau, 1e-300)[None, :]
    lw = n * np.log(lam) - lam - gammaln(n + 1)
    w = np.exp(lw - lw.max(axis=0, keepdims=True))
    return w / w.sum(axis=0, keepdims=True)


class SGOperator:
    """Scharfetter–Gummel generator of 𝓛_ε on every h-column of a grid.

    Parameters
    ----------
    phi:
        Φ = L/T on the cell centres, shape ``(n_theta, n_h)``.
    rate:
        r = m(h) T(h) / (ε Δθ²) per column, shape ``(n_h,)``.
    periodic:
        True for a periodic θ-axis: the face between the last and the first cell carries the
        flux too (Φ must then be periodic). False: zero flux at both ends.
    """

    def __init__(self, phi: np.ndarray, rate: np.ndarray, periodic: bool = False):
        self.phi = np.asarray(phi, dtype=float)
        self.rate = np.asarray(rate, dtype=float)
        self.periodic = bool(periodic)
        dphi = np.diff(self.phi, axis=0)
        self.up = self.rate[None, :] * bernoulli(dphi)     # i → i+1, shape (n-1, n_h)
        self.down = self.rate[None, :] * bernoulli(-dphi)  # i+1 → i
        wrap = self.phi[0] - self.phi[-1]                  # the face between cells n-1 and 0
        on = 1.0 if self.periodic else 0.0
        self.up_wrap = on * self.rate * bernoulli(wrap)     # n-1 → 0
        self.down_wrap = on * self.rate * bernoulli(-wrap)  # 0 → n-1
        n = self.phi.shape[0]
        out = np.zeros_like(self.phi)
        out[:-1] += self.up
        out[1:] += self.down
        out[-1] += self.up_wrap
        out[0] += self.down_wrap
        self.out_rate = out                               # −diag(A), shape (n, n_h)
        self.n = n
        logpi = -(self.phi - self.phi.min(axis=0, keepdims=True))
        pi = np.exp(logpi)
        self.gibbs = pi / pi.sum(axis=0, keepdims=True)   # columns sum to 1 (cell sums)
        self.phi_span = np.minimum(np.ptp(self.phi, axis=0), 2 * _PHI_STEP_MAX)

    @classmethod
    def from_model(cls, model, grid, *, check_gibbs: bool = True,
                   h_mass: np.ndarray | None = None) -> "SGOperator":
        """The operator of ``model`` on ``grid``; ``check_gibbs`` runs
        :func:`check_gibbs_on_box`, with ``h_mass`` (the mass of each h-column of the initial
        density) to let columns without mass be cut by the θ-box with a warning."""
        # several h-axes: every h-node is a column; f is reshaped to (n_theta, n_h) per step
        L = model.loss_on(grid).reshape(grid.n_theta, -1)
        T = model.temperature_on(grid.h_mesh()).reshape(-1)
        m = model.mobility_on(grid.h_mesh()).reshape(-1)
        phi = L / T[None, :]
        periodic = grid.theta_axis.periodic
        if check_gibbs:
            check_gibbs_on_box(phi, grid, periodic=periodic, h_mass=h_mass)
        rate = m * T / (model.eps * grid.dtheta ** 2)
        return cls(phi, rate, periodic=periodic)

    def apply(self, f: np.ndarray) -> np.ndarray:
        """A f: the semi-discrete right-hand side (for method-of-lines baselines)."""
        g = -self.out_rate * f
        g[1:] += self.up * f[:-1]
        g[:-1] += self.down * f[1:]
        if self.periodic:
            g[0] += self.up_wrap * f[-1]
            g[-1] += self.down_wrap * f[0]
        return g

    def sparse(self):
        """A as a scipy.sparse CSR matrix acting on ``f.ravel()`` (C order, θ slowest)."""
        import scipy.sparse as sp
        n, nh = self.phi.shape
        idx = np.arange(n * nh).reshape(n, nh)
        rows = [idx.ravel(), idx[1:].ravel(), idx[:-1].ravel()]
        cols = [idx.ravel(), idx[:-1].ravel(), idx[1:].ravel()]
        vals = [-self.out_rate.ravel(), self.up.ravel(), self.down.ravel()]
        if self.periodic:
            rows += [idx[0], idx[-1]]
            cols += [idx[-1], idx[0]]
            vals += [self.up_wrap, self.down_wrap]
        return sp.csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
                             shape=(n * nh, n * nh))

    def spectral_gap(self) -> np.ndarray:
        """−λ₁ per column: the relaxation rate to the Gibbs state (from the symmetric form)."""
        d = -self.out_rate.T                               # (n_h, n)
        e = np.sqrt(self.up * self.down).T                 # (n_h, n-1)
        n = self.n
        if not self.periodic:
            lam = eigvalsh_tridiagonal(d, e, select="i", select_range=(n - 2, n - 2))
            return np.maximum(-np.asarray(lam).reshape(-1), 0.0)
        S = np.zeros((d.shape[0], n, n))
        i = np.arange(n)
        S[:, i, i] = d
        S[:, i[:-1], i[1:]] = S[:, i[1:], i[:-1]] = e
        S[:, 0, -1] = S[:, -1, 0] = np.sqrt(self.up_wrap * self.down_wrap)
        lam = np.linalg.eigvalsh(S)[:, -2]
        return np.maximum(-lam, 0.0)

    def propagator(self, tau: float, *, dense_above: int | None = None,
                   n_steps: int | None = None) -> "FastPropagator":
        return FastPropagator(self, tau, dense_above=dense_above, n_steps=n_steps)


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
    logpi = -(phi - phi.min(axis=0, keepdims=True))
    pi = np.exp(logpi)
    pi /= pi.sum(axis=0, keepdims=True)
    th = grid.theta[:, None]
    mean = (pi * th).sum(0)
    std = np.sqrt(np.maximum((pi * (th - mean) ** 2).sum(0), 0.0))
    j = int(np.argmin(std))
    if std[j] < 0.5 * grid.dtheta:
        raise ValueError(
            f"loss: the Gibbs weight exp(-L/T) underflows outside a single cell at "
            f"h={_h_label(grid, j)} (Gibbs width {std[j]:.3g} < half a cell {grid.dtheta:.3g}). "
            f"Use a narrower theta-box or more theta-cells, or a higher temperature")


class FastPropagator:
    """The exact step f ← e^{τA} f of an :class:`SGOperator`, for a fixed τ (see module doc)."""

    def __init__(self, op: SGOperator, tau: float, *, dense_above: int | None = None,
                 n_steps: int | None = None):
        self.op = op
        self.tau = float(tau)
        n, nh = op.phi.shape
        c = op.out_rate.max(axis=0) * 1.000001 + 1e-300   # uniformisation rate per column
        ctau = c * self.tau
        gap = op.spectral_gap()
        proj = self.tau * gap >= _PROJ_MARGIN + 0.5 * op.phi_span
        kcol = np.ceil(ctau + 9.0 * np.sqrt(ctau) + 25.0)
        if dense_above is None:
            dense_above = self._dense_threshold(n, ctau, n_steps)
        dense = ~proj & (kcol > dense_above)
        unif = ~proj & ~dense
        self.proj_cols = np.flatnonzero(proj)
        self.unif_cols = np.flatnonzero(unif)
        self.dense_cols = np.flatnonzero(dense)
        self.gap = gap
        # uniformisation data
        cu = c[unif]
        self._stay = 1.0 - op.out_rate[:, unif] / cu
        self._pu = op.up[:, unif] / cu
        self._pd = op.down[:, unif] / cu
        self._puw = op.up_wrap[unif] / cu
        self._pdw = op.down_wrap[unif] / cu
        self.n_terms = _poisson_terms(ctau[unif]) if unif.any() else 0
        self._w = _poisson_weights(ctau[unif], self.n_terms) if unif.any() else None
        # dense data
        self._E = self._dense(c[dense], dense) if dense.any() else None

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
        about 3 for a projected column, 8 per uniformisation term, 2 n_theta for a dense one."""
        n, nh = self.op.phi.shape
        work = (3.0 * self.proj_cols.size + 8.0 * (self.n_terms + 1) * self.unif_cols.size
                + 2.0 * n * self.dense_cols.size)
        return work / nh

    @property
    def summary(self) -> dict:
        return {"projection": int(self.proj_cols.size), "uniformisation": int(self.unif_cols.size),
                "dense": int(self.dense_cols.size), "uniformisation_terms": self.n_terms,
                "work_per_cell": self.work_per_cell}

    def _step_p(self, x: np.ndarray) -> np.ndarray:
        y = self._stay * x
        y[1:] += self._pu * x[:-1]
        y[:-1] += self._pd * x[1:]
        if self.op.periodic:
            y[0] += self._puw * x[-1]
            y[-1] += self._pdw * x[0]
        return y

    def _dense(self, c: np.ndarray, cols: np.ndarray) -> np.ndarray:
        op = self.op
        n = op.n
        s = int(np.ceil(np.log2(max(float(np.max(c * self.tau)), 1.0))))
        tau0 = self.tau / 2 ** s
        stay = (1.0 - op.out_rate[:, cols] / c).T[:, :, None]       # (nd, n, 1)
        pu = (op.up[:, cols] / c).T[:, :, None]
        pd = (op.down[:, cols] / c).T[:, :, None]
        puw = (op.up_wrap[cols] / c)[:, None]                         # (nd, 1)
        pdw = (op.down_wrap[cols] / c)[:, None]
        kmax = _poisson_terms(c * tau0)
        w = _poisson_weights(c * tau0, kmax)                          # (k, nd)
        x = np.broadcast_to(np.eye(n), (cols.sum(), n, n)).copy()
        E = w[0][:, None, None] * x
        for k in range(1, kmax + 1):
            y = stay * x
            y[:, 1:, :] += pu * x[:, :-1, :]
            y[:, :-1, :] += pd * x[:, 1:, :]
            if op.periodic:
                y[:, 0, :] += puw * x[:, -1, :]
                y[:, -1, :] += pdw * x[:, 0, :]
            x = y
            E += w[k][:, None, None] * x
        pi = op.gibbs[:, cols].T[:, :, None]                          # (nd, n, 1)
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
        """Return e^{τA} f for f of shape ``(n_theta, *h_shape)`` (a new array)."""
        if f.ndim > 2:
            return self(f.reshape(f.shape[0], -1)).reshape(f.shape)
        out = np.empty_like(f)
        if self.proj_cols.size:
            cols = self.proj_cols
            out[:, cols] = self.op.gibbs[:, cols] * f[:, cols].sum(axis=0, keepdims=True)
        if self.unif_cols.size:
            cols = self.unif_cols
            x = f[:, cols]
            acc = self._w[0] * x
            for k in range(1, self.n_terms + 1):
                x = self._step_p(x)
                acc += self._w[k] * x
            out[:, cols] = acc
        if self.dense_cols.size:
            cols = self.dense_cols
            out[:, cols] = np.matmul(self._E, f[:, cols].T[:, :, None])[:, :, 0].T
        return out




class SGOperatorND:
    """Scharfetter–Gummel generator of 𝓛_ε on a θ-grid of several axes, per h-column.

    The flux of every θ-axis a is the one-dimensional Scharfetter–Gummel flux in Φ = L/T with
    rate r_a = m T/(ε Δθ_a²); the sum is again the generator of a Markov chain (nearest-
    neighbour jumps along each axis) in detailed balance with π ∝ e^{−Φ}, so mass, positivity
    and the exact stationarity of the discrete Gibbs state carry over from one axis. The step
    e^{τA} is taken by projection (stiff columns) or uniformisation; there is no dense branch,
    so in the intermediate regime the cost of a step grows like τ·max rate.

    ``phi`` has shape ``(*theta_shape, n_cols)``.
    """

    def __init__(self, phi: np.ndarray, rates: list[np.ndarray], periodic: list[bool]):
        self.phi = np.asarray(phi, dtype=float)
        self.d = self.phi.ndim - 1
        self.periodic = list(periodic)
        self.up, self.down, self.up_wrap, self.down_wrap = [], [], [], []
        out = np.zeros_like(self.phi)
        for a in range(self.d):
            dphi = np.diff(self.phi, axis=a)
            up = rates[a] * bernoulli(dphi)
            down = rates[a] * bernoulli(-dphi)
            self.up.append(up)
            self.down.append(down)
            lo = [slice(None)] * (self.d + 1)
            hi = [slice(None)] * (self.d + 1)
            lo[a], hi[a] = slice(0, -1), slice(1, None)
            out[tuple(lo)] += up
            out[tuple(hi)] += down
            first = np.take(self.phi, 0, axis=a)
            last = np.take(self.phi, -1, axis=a)
            on = 1.0 if self.periodic[a] else 0.0
            uw = on * rates[a] * bernoulli(first - last)      # last → first
            dw = on * rates[a] * bernoulli(last - first)      # first → last
            self.up_wrap.append(uw)
            self.down_wrap.append(dw)
            idx_last = [slice(None)] * (self.d + 1)
            idx_first = [slice(None)] * (self.d + 1)
            idx_last[a], idx_first[a] = -1, 0
            out[tuple(idx_last)] += uw
            out[tuple(idx_first)] += dw
        self.out_rate = out
        flat = self.phi.reshape(-1, self.phi.shape[-1])
        pi = np.exp(-(flat - flat.min(axis=0, keepdims=True)))
        self.gibbs = (pi / pi.sum(axis=0, keepdims=True)).reshape(self.phi.shape)
        self.phi_span = np.minimum(np.ptp(flat, axis=0), 2 * _PHI_STEP_MAX)

    @classmethod
    def from_model(cls, model, grid, *, check_gibbs: bool = True,
                   h_mass: np.ndarray | None = None) -> "SGOperatorND":
        tshape = grid.theta_shape
        L = model.loss_on(grid).reshape(*tshape, -1)
        T = model.temperature_on(grid.h_mesh()).reshape(-1)
        m = model.mobility_on(grid.h_mesh()).reshape(-1)
        phi = L / T
        if check_gibbs:
            check_gibbs_nd(phi, grid, h_mass=h_mass)
        rates = [m * T / (model.eps * a.width ** 2) for a in grid.theta_axes]
        return cls(phi, rates, [a.periodic for a in grid.theta_axes])

    def apply(self, f: np.ndarray) -> np.ndarray:
        """A f for f of shape ``(*theta_shape, n_cols)``."""
        return self._apply(f, -self.out_rate, self.up, self.down, self.up_wrap, self.down_wrap)

    def _apply(self, x, diag, up, down, uw, dw):
        y = diag * x
        for a in range(self.d):
            lo = [slice(None)] * x.ndim
            hi = [slice(None)] * x.ndim
            lo[a], hi[a] = slice(0, -1), slice(1, None)
            lo, hi = tuple(lo), tuple(hi)
            y[hi] += up[a] * x[lo]
            y[lo] += down[a] * x[hi]
            if self.periodic[a]:
                first = [slice(None)] * x.ndim
                last = [slice(None)] * x.ndim
                first[a], last[a] = 0, -1
                y[tuple(first)] += uw[a] * x[tuple(last)]
                y[tuple(last)] += dw[a] * x[tuple(first)]
        return y

    def spectral_gap(self) -> np.ndarray:
        """−λ₁ per column, from the symmetrised generator by shift-invert Lanczos."""
        import scipy.sparse as sp
        from scipy.sparse.linalg import LinearOperator, eigsh, splu
        ncols = self.phi.shape[-1]
        gaps = np.empty(ncols)
        for j in range(ncols):
            S = self._assemble(j, symmetric=True)
            shift = 1e-6 * abs(S.diagonal()).max()
            lu = splu((S - shift * sp.identity(S.shape[0])).tocsc())
            op = LinearOperator(S.shape, matvec=lu.solve, dtype=float)
            vals = eigsh(S, k=2, sigma=shift, which="LM", OPinv=op,
                         return_eigenvectors=False)
            gaps[j] = max(-np.min(vals), 0.0)
        return gaps

    def _assemble(self, j: int, symmetric: bool = False):
        """Sparse A of column j on the flattened θ-grid (C order); ``symmetric=True`` gives
        the similar symmetric matrix with off-diagonal entries √(A_ij A_ji) (detailed
        balance), built without dividing by π."""
        import scipy.sparse as sp
        shape = self.phi.shape[:-1]
        n = int(np.prod(shape))
        idx = np.arange(n).reshape(shape)
        rows, cols, vals = [idx.ravel()], [idx.ravel()], [-self.out_rate[..., j].ravel()]
        for a in range(self.d):
            src_lo = np.take(idx, np.arange(shape[a] - 1), axis=a).ravel()
            src_hi = np.take(idx, np.arange(1, shape[a]), axis=a).ravel()
            up, down = self.up[a][..., j].ravel(), self.down[a][..., j].ravel()
            if symmetric:
                up = down = np.sqrt(up * down)
            rows += [src_hi, src_lo]
            cols += [src_lo, src_hi]
            vals += [up, down]
            if self.periodic[a]:
                first = np.take(idx, 0, axis=a).ravel()
                last = np.take(idx, shape[a] - 1, axis=a).ravel()
                uw, dw = self.up_wrap[a][..., j].ravel(), self.down_wrap[a][..., j].ravel()
                if symmetric:
                    uw = dw = np.sqrt(uw * dw)
                rows += [first, last]
                cols += [last, first]
                vals += [uw, dw]
        return sp.csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
                             shape=(n, n))

    def propagator(self, tau: float, **_ignored) -> "FastPropagatorND":
        return FastPropagatorND(self, tau)


class FastPropagatorND:
    """e^{τA} for :class:`SGOperatorND`: projection where τ·gap ≥ 37 + ΔΦ/2, else
    uniformisation (non-negative arithmetic, mass-exact, Gibbs-exact)."""

    def __init__(self, op: SGOperatorND, tau: float):
        self.op = op
        self.tau = float(tau)
        c = op.out_rate.reshape(-1, op.phi.shape[-1]).max(axis=0) * 1.000001 + 1e-300
        ctau = c * self.tau
        gap = op.spectral_gap()
        proj = self.tau * gap >= _PROJ_MARGIN + 0.5 * op.phi_span
        self.proj_cols = np.flatnonzero(proj)
        self.unif_cols = np.flatnonzero(~proj)
        u = self.unif_cols
        cu = c[u]
        self._diag = 1.0 - op.out_rate[..., u] / cu
        self._up = [x[..., u] / cu for x in op.up]
        self._down = [x[..., u] / cu for x in op.down]
        self._uw = [x[..., u] / cu for x in op.up_wrap]
        self._dw = [x[..., u] / cu for x in op.down_wrap]
        self.n_terms = _poisson_terms(ctau[u]) if u.size else 0
        self._w = _poisson_weights(ctau[u], self.n_terms) if u.size else None

    @property
    def summary(self) -> dict:
        ncols = self.op.phi.shape[-1]
        work = (3.0 * self.proj_cols.size
                + 4.0 * (1 + 2 * self.op.d) * (self.n_terms + 1) * self.unif_cols.size) / ncols
        return {"projection": int(self.proj_cols.size),
                "uniformisation": int(self.unif_cols.size),
                "uniformisation_terms": self.n_terms, "work_per_cell": work}

    def __call__(self, f: np.ndarray) -> np.ndarray:
        d = self.op.d
        shape = f.shape
        f = f.reshape(*shape[:d], -1)
        out = np.empty_like(f)
        if self.proj_cols.size:
            cols = self.proj_cols
            mass = f[..., cols].sum(axis=tuple(range(d)), keepdims=True)
            out[..., cols] = self.op.gibbs[..., cols] * mass
        if self.unif_cols.size:
            x = f[..., self.unif_cols]
            acc = self._w[0] * x
            for k in range(1, self.n_terms + 1):
                x = self.op._apply(x, self._diag, self._up, self._down, self._uw, self._dw)
                acc += self._w[k] * x
            out[..., self.unif_cols] = acc
        return out.reshape(shape)


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
    flat = phi.reshape(-1, phi.shape[-1])
    pi = np.exp(-(flat - flat.min(axis=0, keepdims=True))).reshape(phi.shape)
    pi /= pi.sum(axis=tuple(range(d)), keepdims=True)
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


__all__ = ["SGOperator", "FastPropagator", "SGOperatorND", "FastPropagatorND", "bernoulli",
           "check_gibbs_on_box", "check_gibbs_nd"]
