"""Proportional imitation copying h only: the kinetic gain–loss term on the joint grid.

Agents: each ordered pair (i, j) fires at rate (κ/N)(F_j − F_i)⁺ and i takes h_j, keeping its
θ_i. With cell masses p (Σ p = 1), the mean-field term is

    ∂_t p(θ,h) = κ Σ_{h'} p(θ,h') Σ_{θ''} p(θ'',h) (F(θ'',h) − F(θ,h'))⁺          (gain)
               − κ p(θ,h) Σ_{c'} p_{c'} (F_{c'} − F(θ,h))⁺                           (loss).

Gain and loss have the same total (each firing moves one agent), so mass is conserved. Both
are evaluated through piecewise-linear functions of the threshold x: with S₀(x) = Σ_{F'>x} p'
and S₁(x) = Σ_{F'>x} p'F', the sum Σ p'(F' − x)⁺ = S₁(x) − x S₀(x), from cumulative sums over
F sorted once (F does not change), so a step costs O(n_θ n_h²) without sorting.

Integrating over θ shows that as ε → 0 (f = ρ π_h) the term becomes κ (F̄ − ⟨F̄⟩_ρ) ρ: the
same reduced equation as the replicator copying (θ, h).

The step is the exponential midpoint rule for p' = R[p] − a[p] p with R ≥ 0 and a ≥ 0,

    p_½ = e^{−aτ/2} p + (1 − e^{−aτ/2}) R/a,   p ← e^{−a_½τ} p + (1 − e^{−a_½τ}) R_½/a_½,

(a, R evaluated at p, then at p_½), second order in τ and positive for every τ; the mass of
the result is restored exactly (the continuous flow conserves it).
"""

from __future__ import annotations

import numpy as np

from ..grid import Grid


def _tail_sums(F_sorted: np.ndarray, p_sorted: np.ndarray, axis: int = -1):
    """S₀, S₁ at each sorted position k: sums over the entries strictly after k (ties aside)."""
    c0 = np.flip(np.cumsum(np.flip(p_sorted, axis), axis), axis)
    c1 = np.flip(np.cumsum(np.flip(p_sorted * F_sorted, axis), axis), axis)
    pad = [(0, 0)] * p_sorted.ndim
    pad[axis] = (0, 1)
    return np.pad(c0, pad), np.pad(c1, pad)


class ImitationStep:
    """The sub-step of the kinetic imitation term (module docstring) on the joint grid."""

    def __init__(self, fitness: np.ndarray, rate: float, grid: Grid):
        self.rate = float(rate)
        self.shape = grid.shape
        self.weights = grid.weights
        nt, nh = grid.n_theta, grid.n_h
        F = np.asarray(fitness, dtype=float).reshape(nt, nh)
        self.F = F
        # loss: all cells sorted by F; the rank of each cell among them
        self.order_all = np.argsort(F, axis=None, kind="stable")
        self.F_all = F.ravel()[self.order_all]
        self.pos_all = np.searchsorted(self.F_all, F.ravel(), side="right")
        # gain: per h-column, θ sorted by F(·, h); rank of each query F(θ, h') in column h
        self.order_col = np.argsort(F, axis=0, kind="stable")               # (nt, nh)
        self.F_col = np.take_along_axis(F, self.order_col, axis=0)          # (nt, nh)
        self.pos_col = np.stack([np.searchsorted(self.F_col[:, h], F, side="right")
                                 for h in range(nh)])                        # (nh, nt, nh)
        self._cols = np.arange(nh)[:, None, None]

    def _rates(self, p: np.ndarray):
        """(a, R): the loss rate per cell and the gain, for masses p of shape (nt, nh)."""
        F = self.F
        p_all = p.ravel()[self.order_all]
        s0, s1 = _tail_sums(self.F_all, p_all)
        a = self.rate * (s1[self.pos_all] - F.ravel() * s0[self.pos_all]).reshape(F.shape)
        p_col = np.take_along_axis(p, self.order_col, axis=0)
        c0, c1 = _tail_sums(self.F_col, p_col, axis=0)                      # (nt+1, nh)
        # G[h, θ, h'] = Σ_θ'' p(θ'',h) (F(θ'',h) − F(θ,h'))⁺
        G = c1.T[self._cols, self.pos_col] - F[None] * c0.T[self._cols, self.pos_col]
        R = self.rate * np.einsum("tk,htk->th", p, G)
        return np.maximum(a, 0.0), np.maximum(R, 0.0)

    @staticmethod
    def _advance(p, a, R, tau):
        z = a * tau
        decay = np.exp(-z)
        with np.errstate(divide="ignore", invalid="ignore"):
            phi = np.where(z > 1e-12, -np.expm1(-z) / np.where(a > 0, a, 1.0), tau)
        return decay * p + phi * R

    def __call__(self, f: np.ndarray, tau: float) -> np.ndarray:
        if self.rate == 0.0 or tau == 0.0:
            return f
        p = (f * self.weights).reshape(self.F.shape)
        mass = p.sum()
        a, R = self._rates(p)
        half = self._advance(p, a, R, 0.5 * tau)
        a, R = self._rates(half)
        out = self._advance(p, a, R, tau)
        out *= mass / out.sum()
        return out.reshape(self.shape) / self.weights


__all__ = ["ImitationStep"]
