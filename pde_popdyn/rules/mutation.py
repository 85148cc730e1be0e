"""Mutation ("explore") rules: diffusion in h, and the kernels applied at each copy."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import scipy.fft as sfft

from .._validate import _short, positive_float
from ..slow.agents import apply_boundary
from ..slow.explore import (HeatKernel, MatrixKernel, PriorKernel, gaussian_clip_matrix,
                            shift_matrix)
from ..slow.mutation import HDiffusion, spectral_eigenvalues
from .base import MutationRule, Setting

KERNEL_BOUNDARIES = (None, "reflecting", "clip")


def _check_boundary(rule: str, boundary: Any) -> Any:
    if boundary not in KERNEL_BOUNDARIES:
        raise ValueError(f"{rule}(boundary={boundary!r}) is not known; use None (the h-axis' "
                         f"own rule: reflecting, or periodic on a periodic axis), 'reflecting', "
                         f"or 'clip' (clip to the h-box, as the reference PBT code does)")
    return boundary


def _axis_boundary(axis, boundary) -> str:
    return "periodic" if axis.periodic else (boundary or "reflecting")


@dataclass(frozen=True)
class Diffusion(MutationRule):
    """Diffusive mutation of h: the term D Δ_h f, reflecting (Neumann) at the edges of the
    h-box, or periodic on a periodic h-axis. Agents: h ← h + √(2Dτ) ξ, then the boundary rule.

    The sub-step is exact for the finite-volume Laplacian (DCT-II, or FFT when periodic): its
    eigenvalues 2(1 − cos(kπ/M))/Δh² make it positive and second order in Δh; with
    ``scheme="spectral"`` the continuum eigenvalues (kπ/ℓ)² are used instead.
    """

    coefficient: float = 0.01

    continuous = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "coefficient", positive_float(
            "Diffusion coefficient", self.coefficient, allow_zero=True))

    @property
    def diffusion_coefficient(self) -> float:
        return self.coefficient

    def grid_step(self, setting: Setting):
        if self.coefficient == 0:
            return None
        return HDiffusion(self.coefficient, setting.grid, spectral=setting.spectral,
                          ledger=setting.ledger)

    @property
    def particle_brownian(self) -> float:
        return self.coefficient

    def particle_mutate(self, h, tau, rng, box, boundary):
        if self.coefficient == 0:
            return h
        h += np.sqrt(2.0 * self.coefficient * tau) * rng.standard_normal(h.shape)
        if box is not None:
            apply_boundary(h, *box, boundary)
        return h

    def boundary_rate(self, rho: np.ndarray, grid, spectral: bool) -> np.ndarray:
        """The flux term B of d/dt E[h] = (selection) + B for ρ normalised to unit mass
        (rows: saved states; one column per h-axis with several).

        Summation by parts with the finite-volume Laplacian (ghost cells equal to the edge
        cells) gives Σ_i h_i (Δ_h ρ)_i Δh = −(ρ_M − ρ_1), so B = −D (ρ_M − ρ_1) (reflecting);
        B = D (ℓ/Δh)(ρ_1 − ρ_M) on a periodic axis read on [h_lo, h_hi); with continuum
        eigenvalues B = D Σ_i h_i (Δ_spec ρ)_i Δh. With several h-axes the part of Δ_h along
        the other axes integrates to zero, so B of axis i is the one-axis formula applied to
        the marginal density of h_i.
        """
        D = self.coefficient
        n = rho.shape[0]
        k = grid.ndim_h
        if D == 0:
            return np.zeros(n) if k == 1 else np.zeros((n, k))
        out = []
        for i, ax in enumerate(grid.h_axes):
            marg = rho
            for j in reversed(range(k)):               # integrate out the other h-axes
                if j != i:
                    marg = np.tensordot(marg, grid.h_axes[j].weights, axes=([1 + j], [0]))
            if spectral:
                lam = spectral_eigenvalues(ax.cells, ax.width, ax.periodic)
                if ax.periodic:
                    lap = sfft.irfft(-lam * sfft.rfft(marg, axis=-1), n=ax.cells, axis=-1)
                else:
                    lap = sfft.idct(-lam * sfft.dct(marg, type=2, axis=-1, norm="ortho"),
                                    type=2, axis=-1, norm="ortho")
                out.append(D * (lap * ax.centres).sum(-1) * ax.width)
            elif ax.periodic:
                out.append(D * (ax.length / ax.width) * (marg[:, 0] - marg[:, -1]))
            else:
                out.append(-D * (marg[:, -1] - marg[:, 0]))
        return out[0] if k == 1 else np.stack(out, axis=-1)


@dataclass(frozen=True)
class GaussianJump(MutationRule):
    """Explore by a Gaussian jump: each copied h becomes h + σξ, ξ ~ N(0, 1) (per h-axis).

    ``boundary``: None (default) or 'reflecting' — reflecting at the edges of the h-box
    (periodic on a periodic axis); on the grid the kernel is the heat kernel at time σ²/2,
    exact in variance. 'clip' — clipped to the box, as the reference PBT code does: the
    mass beyond an edge lands in the edge cell.
    """

    std: float = 0.1
    boundary: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "std", positive_float("GaussianJump std", self.std))
        object.__setattr__(self, "boundary", _check_boundary("GaussianJump", self.boundary))

    def kernel(self, setting: Setting):
        grid = setting.grid
        if self.boundary != "clip":
            return HeatKernel(grid, self.std, spectral=setting.spectral, ledger=setting.ledger)
        return MatrixKernel([_periodic_gauss(ax, self.std) if ax.periodic else
                             gaussian_clip_matrix(ax.centres, ax.edges, self.std)
                             for ax in grid.h_axes])

    def particle_explore(self, h, rng, box, boundary):
        out = h + self.std * rng.standard_normal(h.shape)
        if box is not None:
            apply_boundary(out, *box, self.boundary or boundary)
        return out


def _periodic_gauss(ax, std: float) -> np.ndarray:
    """Wrapped Gaussian from the centres of a periodic axis (column-stochastic)."""
    d = ax.centres[:, None] - ax.centres[None, :]
    k = np.arange(-6, 7)[:, None, None] * ax.length
    w = np.exp(-0.5 * ((d[None] + k) / std) ** 2).sum(axis=0)
    return w / w.sum(axis=0, keepdims=True)


@dataclass(frozen=True)
class Perturb(MutationRule):
    """Explore by a multiplicative perturbation: each copied hyperparameter is multiplied by a
    factor c drawn uniformly from ``factors`` (PBT's usual ×0.8 / ×1.2).

    ``scale="log"`` (default): h is the logarithm of the hyperparameter (e.g. h = log η), so
    the perturbation is the jump h ← h + log c (±log 1.2 for factors 0.8, 1.2 up to the
    asymmetry of log 0.8). ``scale="linear"``: h itself is multiplied, h ← c·h.
    ``boundary``: None/'reflecting' folds images back into the h-box, 'clip' clips them.
    On the grid each image point is shared linearly between its two neighbouring cells
    (mass- and mean-preserving in the interior).
    """

    factors: tuple = (0.8, 1.2)
    scale: str = "log"
    boundary: str | None = None

    def __post_init__(self) -> None:
        try:
            fac = tuple(float(c) for c in self.factors)
        except (TypeError, ValueError):
            raise TypeError(f"Perturb factors must be a sequence of positive numbers, got "
                            f"{_short(self.factors)}") from None
        if not fac or any(not np.isfinite(c) or c <= 0 for c in fac):
            raise ValueError(f"Perturb factors must be finite and > 0, got {self.factors!r}; "
                             f"e.g. factors=(0.8, 1.2)")
        object.__setattr__(self, "factors", fac)
        if self.scale not in ("log", "linear"):
            raise ValueError(f"Perturb(scale={self.scale!r}) is not known; use 'log' (h is the "
                             f"log of the hyperparameter) or 'linear'")
        object.__setattr__(self, "boundary", _check_boundary("Perturb", self.boundary))

    def kernel(self, setting: Setting):
        return MatrixKernel([shift_matrix(ax.centres, ax.low, ax.high, self.factors,
                                          self.scale, _axis_boundary(ax, self.boundary))
                             for ax in setting.grid.h_axes])

    def particle_explore(self, h, rng, box, boundary):
        c = np.asarray(self.factors)[rng.integers(0, len(self.factors), h.shape)]
        out = h + np.log(c) if self.scale == "log" else h * c
        if box is not None:
            apply_boundary(out, *box, self.boundary or boundary)
        return out


@dataclass(frozen=True)
class PriorResample(MutationRule):
    """Explore by resampling: with probability p each copied h is redrawn from a prior p₀ on
    the h-box (otherwise kept): K = (1 − p) δ + p · p₀.

    ``prior``: 'uniform' (default), a callable p₀(h) of the h-centres (a density on the box:
    finite, ≥ 0, positive mass; it is normalised), or an array of cell values on the h-grid.
    """

    probability: float = 0.25
    prior: Any = "uniform"

    def __post_init__(self) -> None:
        p = positive_float("PriorResample probability", self.probability)
        if p > 1:
            raise ValueError(f"PriorResample probability must be in (0, 1], got {p}")
        object.__setattr__(self, "probability", p)
        if not (self.prior == "uniform" if isinstance(self.prior, str) else
                callable(self.prior) or isinstance(self.prior, (np.ndarray, list, tuple))):
            raise TypeError(f"PriorResample prior must be 'uniform', a callable p0(h) or an "
                            f"array on the h-grid, got {_short(self.prior)}")

    def masses(self, grid) -> np.ndarray:
        """The prior's cell masses on ``grid``'s h-cells (shape ``grid.h_shape``, sum 1)."""
        w = grid.h_weights
        if isinstance(self.prior, str):
            vals = np.ones(grid.h_shape)
        elif callable(self.prior):
            with np.errstate(all="ignore"):
                vals = np.asarray(self.prior(grid.h_mesh()), dtype=float)
            vals = np.broadcast_to(vals, grid.h_shape) if vals.size in (1, w.size) else vals
        else:
            vals = np.asarray(self.prior, dtype=float)
        if np.shape(vals) != grid.h_shape:
            raise ValueError(f"PriorResample prior has shape {np.shape(vals)} on the h-grid, "
                             f"which needs {grid.h_shape}")
        if not np.all(np.isfinite(vals)) or (vals < 0).any() or (vals * w).sum() <= 0:
            raise ValueError("PriorResample prior is not a density on the h-box: it must be "
                             "finite and >= 0 with positive mass on the grid's h-cells")
        m = vals * w
        return m / m.sum()

    def kernel(self, setting: Setting):
        return PriorKernel(self.probability, self.masses(setting.grid), setting.h_ndim)

    def sampler(self, box) -> Callable[[int, np.random.Generator], np.ndarray]:
        """Draws from the prior on the box (lo, hi): uniform, or by inverse CDF of the
        callable on 4096 cells."""
        lo, hi = box
        if isinstance(self.prior, str):
            return lambda n, rng: lo + (hi - lo) * rng.random(n)
        if not callable(self.prior):
            raise ValueError("PriorResample with an array prior needs a grid; on agents give "
                             "a callable prior p0(h) or 'uniform'")
        edges = np.linspace(lo, hi, 4097)
        mids = 0.5 * (edges[1:] + edges[:-1])
        vals = np.asarray(self.prior(mids), dtype=float)
        if not np.all(np.isfinite(vals)) or (vals < 0).any() or vals.sum() <= 0:
            raise ValueError("PriorResample prior is not a density on the h-box: it must be "
                             "finite and >= 0 with positive mass")
        cdf = np.concatenate([[0.0], np.cumsum(vals)])
        cdf /= cdf[-1]
        return lambda n, rng: np.interp(rng.random(n), cdf, edges)

    def particle_explore(self, h, rng, box, boundary):
        if box is None:
            raise ValueError("PriorResample on agents needs an h-box: pass h_box=(low, high) "
                             "or grid= to simulate_particles")
        out = h.copy()
        redraw = np.flatnonzero(rng.random(h.shape) < self.probability)
        if redraw.size:
            out[redraw] = self.sampler(box)(redraw.size, rng)
        return out


def check_mutations(mutation: Any) -> tuple:
    """``mutation`` (None, a rule, or a sequence of rules) as a tuple of mutation rules."""
    if mutation is None:
        return ()
    items = tuple(mutation) if isinstance(mutation, (list, tuple)) else (mutation,)
    for m in items:
        if not isinstance(m, MutationRule):
            raise TypeError(f"mutation must be pp.Diffusion(D), pp.GaussianJump(std), "
                            f"pp.Perturb(factors), pp.PriorResample(p), a list of them, or "
                            f"None; got {_short(m)}")
    return items


__all__ = ["Diffusion", "GaussianJump", "Perturb", "PriorResample", "check_mutations"]
