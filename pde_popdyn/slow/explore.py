"""Explore kernels K on the h-grid: the law of a copied hyperparameter after its perturbation.

A copy event (Boltzmann jump, truncation, a PBT generation) moves mass g(h) of donors to
K g, where K is a column-stochastic, non-negative operator on the h-cells: K g ≥ 0 and
Σ K g = Σ g, so every rule that uses it stays positive and mass-exact. The kernels act along
the last ``h_ndim`` axes of an array (several h-axes: one factor per axis, applied in turn,
except the prior, which acts on the joint h-law).

* **Gaussian jump, reflecting or periodic** (:class:`HeatKernel`): h ← h + σξ with the
  reflecting (or periodic) boundary is the heat kernel at time σ²/2; on cells it is
  e^{(σ²/2)Δ_h} with the finite-volume Laplacian, applied exactly by the DCT-II (FFT), whose
  variance is exactly σ² (the random walk with rates 1/Δh² both ways).
* **Gaussian jump, clipped** (:func:`gaussian_clip_matrix`): as in the reference PBT code,
  h ← clip(h + σξ, box): the mass a donor at the centre h_j sends to cell i is
  Φ((e_{i+1} − h_j)/σ) − Φ((e_i − h_j)/σ), and what falls outside the box is put into the edge
  cells (atoms on the boundary, smeared over one cell).
* **Multiplicative perturbation** (:func:`shift_matrix`): h ← h + log c (``scale="log"``, h the
  log of a hyperparameter multiplied by c) or h ← c·h (``scale="linear"``), c drawn uniformly
  from the factors. The image point of each centre is shared between its two neighbouring
  centres in proportion to the distance (cloud-in-cell), which conserves mass and the mean
  exactly in the interior; points beyond the box are folded back (reflecting), wrapped
  (periodic) or put on the edge (clip).
* **Resampling from a prior** (:class:`PriorKernel`): with probability p the copied h is
  redrawn from a density p₀ on the h-box: K g = (1 − p) g + p · p₀ · Σ g.
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
from scipy.special import ndtr

from ..grid import Grid
from .mutation import HDiffusion

BOUNDARIES = ("reflecting", "clip", "periodic")


def _axis_apply(g: np.ndarray, matrix: np.ndarray, axis: int) -> np.ndarray:
    """Apply the (M, M) matrix along ``axis`` of g: out[..., i, ...] = Σ_j K_ij g[..., j, ...]."""
    moved = np.moveaxis(g, axis, -1)
    return np.moveaxis(moved @ matrix.T, -1, axis)


class HeatKernel:
    """K = e^{(σ²/2)Δ_h} over every h-axis: the reflecting (or periodic) Gaussian jump of
    standard deviation σ (the finite-volume heat kernel, or with ``spectral=True`` the heat
    flow of the cosine/Fourier interpolant)."""

    def __init__(self, grid: Grid, std: float, *, spectral: bool = False, ledger=None):
        self.half_var = 0.5 * float(std) ** 2
        self.heat = HDiffusion(1.0, grid, spectral=spectral, ledger=ledger, name="explore")

    def __call__(self, g: np.ndarray) -> np.ndarray:
        return self.heat(g, self.half_var)


class MatrixKernel:
    """K as one column-stochastic (M, M) matrix per h-axis, applied in turn."""

    def __init__(self, matrices: Sequence[np.ndarray]):
        self.matrices = [np.asarray(m, dtype=float) for m in matrices]

    def __call__(self, g: np.ndarray) -> np.ndarray:
        n = len(self.matrices)
        for k, m in enumerate(self.matrices):
            g = _axis_apply(g, m, k - n)
        return g


class PriorKernel:
    """K g = (1 − p) g + p · p₀ · Σ_h g: with probability p the copied h is redrawn from the
    prior p₀ (cell masses on the h-grid, summing to 1)."""

    def __init__(self, probability: float, prior_masses: np.ndarray, h_ndim: int):
        self.p = float(probability)
        self.prior = np.asarray(prior_masses, dtype=float)
        self.h_ndim = h_ndim

    def __call__(self, g: np.ndarray) -> np.ndarray:
        axes = tuple(range(g.ndim - self.h_ndim, g.ndim))
        total = g.sum(axis=axes, keepdims=True)
        return (1.0 - self.p) * g + self.p * total * self.prior


class Compose:
    """K₂ ∘ K₁ ∘ …: several explore kernels applied one after another."""

    def __init__(self, kernels: Sequence[Callable]):
        self.kernels = list(kernels)

    def __call__(self, g: np.ndarray) -> np.ndarray:
        for k in self.kernels:
            g = k(g)
        return g


def _fold(x: np.ndarray, lo: float, hi: float, boundary: str) -> np.ndarray:
    """Map points into [lo, hi]: reflect (fold, any number of times), wrap, or clip."""
    length = hi - lo
    if boundary == "reflecting":
        y = np.mod(x - lo, 2.0 * length)
        return lo + length - np.abs(length - y)
    if boundary == "periodic":
        return lo + np.mod(x - lo, length)
    return np.clip(x, lo, hi)


def _cic(points: np.ndarray, centres: np.ndarray, periodic: bool, length: float) -> np.ndarray:
    """(M, P) weights sharing each point between its two neighbouring centres linearly; points
    beyond the first/last centre go to that centre (or wrap, on a periodic axis)."""
    m = centres.size
    width = centres[1] - centres[0] if m > 1 else 1.0
    pos = (points - centres[0]) / width
    out = np.zeros((m, points.size))
    cols = np.arange(points.size)
    if periodic:
        pos = np.mod(pos, m)
        i0 = np.floor(pos).astype(np.int64) % m
        frac = pos - np.floor(pos)
        np.add.at(out, (i0, cols), 1.0 - frac)
        np.add.at(out, ((i0 + 1) % m, cols), frac)
        return out
    pos = np.clip(pos, 0.0, m - 1.0)
    i0 = np.minimum(np.floor(pos).astype(np.int64), max(m - 2, 0))
    frac = pos - i0
    np.add.at(out, (i0, cols), 1.0 - frac)
    if m > 1:
        np.add.at(out, (i0 + 1, cols), frac)
    return out


def shift_matrix(centres: np.ndarray, low: float, high: float, factors: Sequence[float],
                 scale: str, boundary: str) -> np.ndarray:
    """(M, M) column-stochastic matrix of the multiplicative perturbation (module docstring):
    column j holds the law of the image of h_j, one factor drawn uniformly."""
    m = centres.size
    out = np.zeros((m, m))
    for c in factors:
        img = centres + np.log(c) if scale == "log" else centres * c
        img = _fold(img, low, high, boundary)
        out += _cic(img, centres, boundary == "periodic", high - low)
    return out / len(factors)


def gaussian_clip_matrix(centres: np.ndarray, edges: np.ndarray, std: float) -> np.ndarray:
    """(M, M) matrix of h ← clip(h + σξ, box) from the centres: column j holds the Gaussian
    mass of each cell, with both tails added to the edge cells."""
    z = (edges[:, None] - centres[None, :]) / std           # (M+1, M)
    cdf = ndtr(z)
    cdf[0] = 0.0                                            # mass below the box → first cell
    cdf[-1] = 1.0                                           # mass above the box → last cell
    return np.diff(cdf, axis=0)


__all__ = ["BOUNDARIES", "HeatKernel", "MatrixKernel", "PriorKernel", "Compose",
           "shift_matrix", "gaussian_clip_matrix"]
