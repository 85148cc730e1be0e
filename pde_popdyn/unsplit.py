"""Exact time integration of the linearised replicator–mutator equation, without splitting.

For replicator selection with diffusive mutation, f = u/∫u where u solves the *linear* equation

    ∂_t u = G u + κ F u,     G = 𝓛_ε (Scharfetter–Gummel in θ) + D Δ_h (finite volumes in h).

G is the generator of a Markov chain on the grid (non-negative jump rates, zero column sums) and
κ(F − F_max) ≤ 0 a killing rate, so with c ≥ max(out-rate + κ(F_max − F)) the matrix
P = I + (G + κ(F − F_max))/c is non-negative and

    e^{τ(G + κF)} u = e^{κ F_max τ} Σ_n Poisson(n; cτ) Pⁿ u       (uniformisation).

Every term is non-negative, so the step is positive; the series is cut where the Poisson tail is
below 1e-17 (:mod:`pde_popdyn.fast.uniformisation`), so the step is exact in time to round-off: the only error left is the spatial one,
and Δt only sets how often states are saved. Renormalising u gives f, mass-exact. With selection
and mutation off, P π = π column by column, so the discrete Gibbs state stays fixed.

The cost of a step is about cτ sweeps of the grid and c grows like 1/ε: with no splitting error
a few large steps suffice at moderate ε, while the default integrator (``integrator="ap"``) is
asymptotic-preserving, its cost does not grow as ε falls, and it is the one to use for small ε.
:class:`UnsplitStep` refuses runs that would need more than ``max_sweeps`` sweeps and names the
default integrator instead.
"""

from __future__ import annotations

import numpy as np

from ._kernels import uniformised_series
from .fast.uniformisation import NEGLIGIBLE_WEIGHT, poisson_weights

_MAX_DECAY = 50.0           # κ (F_max − F_min) τ per sub-step: no underflow of the series


class UnsplitStep:
    """The exact step u ← e^{τ(G + κF)} u (then normalised) on a grid with one θ-axis.

    Parameters
    ----------
    op:
        The :class:`~pde_popdyn.fast.fv.SGOperator` of the fast part (columns = h-nodes).
    grid:
        The grid (its h-axes give the mutation's neighbours and boundaries).
    fitness, kappa:
        F on the grid and the replicator rate κ (``kappa=0`` for no selection).
    D:
        Mutation coefficient (0 for none).
    max_sweeps:
        Refuse (``ValueError``) a run whose total number of sweeps would exceed this.
    """

    def __init__(self, op, grid, fitness: np.ndarray | None, kappa: float, D: float,
                 max_sweeps: float = 2e5):
        self.grid = grid
        self.shape = grid.shape
        nt = grid.n_theta
        hs = grid.h_shape
        self.kappa = float(kappa)
        F = np.zeros(self.shape) if fitness is None or kappa == 0 else np.asarray(fitness)
        self.f_max = float(F.max())
        kill = self.kappa * (self.f_max - F)
        self.span = float(kill.max())
        out = op.out_rate.reshape((nt,) + hs) + kill
        self.h_rates = []
        for k, ax in enumerate(grid.h_axes):
            r = D / ax.width ** 2 if D > 0 else 0.0
            self.h_rates.append(r)
            if r == 0.0:
                continue
            n_out = np.full(ax.cells, 2.0)
            if not ax.periodic:
                n_out[0] = n_out[-1] = 1.0
            shape = [1] * (1 + len(hs))
            shape[1 + k] = ax.cells
            out = out + r * n_out.reshape(shape)
        self.c = float(out.max()) * (1 + 1e-9) + 1e-300
        c = self.c
        self.stay = 1.0 - out / c
        self.pu = (op.up / c).reshape((nt - 1,) + hs)
        self.pd = (op.down / c).reshape((nt - 1,) + hs)
        self.periodic_theta = op.periodic[0]
        self.puw = (op.up_wrap / c).reshape(hs)
        self.pdw = (op.down_wrap / c).reshape(hs)
        self.ph = [r / c for r in self.h_rates]
        self._hs = self._h_slices()
        # one θ-axis and one h-axis: the fused, compiled series of pde_popdyn._kernels
        self._compiled = len(hs) == 1
        if self._compiled:
            self.stay, self.pu, self.pd = (np.ascontiguousarray(a) for a in
                                           (self.stay, self.pu, self.pd))
            self.puw, self.pdw = np.ascontiguousarray(self.puw), np.ascontiguousarray(self.pdw)
        self.max_sweeps = float(max_sweeps)
        self._weights: dict[float, np.ndarray] = {}
        self.sweeps = 0

    def check_budget(self, t_span: float) -> None:
        """Raise if integrating over ``t_span`` would need more than ``max_sweeps`` sweeps."""
        need = self.c * t_span
        if need > self.max_sweeps:
            raise ValueError(
                f"integrator='uniformisation' would need about {need:.3g} sweeps of the grid for "
                f"this run (its cost grows like t/ε and 1/Δθ²); use the default "
                f"integrator='ap', which is asymptotic-preserving and takes any Δt/ε")

    def _h_slices(self):
        """Per mutating h-axis: (rate, lo, hi, first, last) index tuples for the sweep."""
        out = []
        nd = 1 + self.grid.ndim_h
        for k, (p, ax) in enumerate(zip(self.ph, self.grid.h_axes)):
            if p == 0.0:
                continue
            a = 1 + k
            lo = [slice(None)] * nd
            hi = [slice(None)] * nd
            first = [slice(None)] * nd
            last = [slice(None)] * nd
            lo[a], hi[a], first[a], last[a] = slice(0, -1), slice(1, None), 0, -1
            out.append((p, tuple(lo), tuple(hi), tuple(first), tuple(last), ax.periodic))
        return out

    def _sweep(self, x: np.ndarray, y: np.ndarray, tmp: np.ndarray) -> None:
        """y ← P x, in preallocated buffers (no allocation per sweep)."""
        np.multiply(self.stay, x, out=y)
        t = tmp[:-1]
        np.multiply(self.pu, x[:-1], out=t)
        y[1:] += t
        np.multiply(self.pd, x[1:], out=t)
        y[:-1] += t
        if self.periodic_theta:
            y[0] += self.puw * x[-1]
            y[-1] += self.pdw * x[0]
        for p, lo, hi, first, last, periodic in self._hs:
            t = tmp[lo]
            np.multiply(x[lo], p, out=t)
            y[hi] += t
            np.multiply(x[hi], p, out=t)
            y[lo] += t
            if periodic:
                y[first] += p * x[last]
                y[last] += p * x[first]

    def _substep(self, f: np.ndarray, tau: float) -> np.ndarray:
        w = self._weights.get(tau)
        if w is None:
            w = self._weights[tau] = poisson_weights(self.c * tau)
        if self._compiled:
            acc = w[0] * f
            uniformised_series(f, self.stay, self.pu, self.pd, self.puw, self.pdw,
                               self.ph[0], self.periodic_theta, self.grid.h_axes[0].periodic,
                               w, acc)
            self.sweeps += w.size - 1
            return acc * ((f * self.grid.weights).sum() / (acc * self.grid.weights).sum())
        x = np.array(f, dtype=float)
        y = np.empty_like(x)
        tmp = np.empty_like(x)
        acc = w[0] * x
        for wk in w[1:]:
            self._sweep(x, y, tmp)
            x, y = y, x
            if wk > NEGLIGIBLE_WEIGHT:      # far below the Poisson bulk a term cannot change acc
                np.multiply(x, wk, out=tmp)
                acc += tmp
        self.sweeps += w.size - 1
        mass = (acc * self.grid.weights).sum()
        return acc * ((f * self.grid.weights).sum() / mass)

    def __call__(self, f: np.ndarray, tau: float) -> np.ndarray:
        n = max(1, int(np.ceil(self.span * tau / _MAX_DECAY)))
        for _ in range(n):
            f = self._substep(f, tau / n)
        return f

    @property
    def summary(self) -> dict:
        return {"uniformisation_rate": self.c, "sweeps": self.sweeps}
