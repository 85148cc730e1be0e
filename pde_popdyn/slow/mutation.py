"""Mutation sub-steps (the slow h-part).

Diffusive mutation solves ∂_t f = D ∂²_h f with reflecting (Neumann) boundaries. On the
cell-centred grid the finite-volume Laplacian is diagonalised exactly by the DCT-II, with
eigenvalues λ_k = 2(1 − cos(kπ/M))/Δh², k = 0..M−1, so the step

    f ← IDCT( e^{−Dτλ_k} DCT(f) )

is the exact solution of the semi-discrete equation. Its matrix e^{τDΔ_h} is non-negative and
column-stochastic; the FFT's round-off (at most ~1e-16 of the maximum) is clipped and the mass
restored, so the step is positive and mass-exact to round-off.
"""

from __future__ import annotations

import numpy as np
import scipy.fft as sfft
import scipy.sparse as sp

from .clip import ClipLedger


def neumann_eigenvalues(cells: int, width: float) -> np.ndarray:
    """Eigenvalues 2(1 − cos(kπ/M))/Δh² of −Δ_h (cell-centred finite volumes, Neumann)."""
    k = np.arange(cells)
    return 2.0 * (1.0 - np.cos(np.pi * k / cells)) / width ** 2


def periodic_eigenvalues(cells: int, width: float) -> np.ndarray:
    """Eigenvalues 2(1 − cos(2πk/M))/Δh² of −Δ_h on a periodic cell-centred grid (rfft order)."""
    k = np.arange(cells // 2 + 1)
    return 2.0 * (1.0 - np.cos(2 * np.pi * k / cells)) / width ** 2


def spectral_eigenvalues(cells: int, width: float, periodic: bool) -> np.ndarray:
    """Eigenvalues of −∂²_h on the continuum: (kπ/ℓ)² for the cosine (Neumann) modes,
    (2πk/ℓ)² for the periodic ones, ℓ = cells·Δh."""
    ell = cells * width
    if periodic:
        return (2 * np.pi * np.arange(cells // 2 + 1) / ell) ** 2
    return (np.pi * np.arange(cells) / ell) ** 2


class DiffusionStep:
    """Exact step of D ∂²_h on the last axis of f: reflecting boundaries by the DCT-II, or
    periodic ones by the real FFT (``periodic=True``).

    ``spectral=False`` (default) uses the finite-volume eigenvalues: the step is the exact
    solution of the semi-discrete equation, positive and second order in Δh.
    ``spectral=True`` uses the continuum eigenvalues (kπ/ℓ)²: the step is the exact heat flow
    of the cosine (or Fourier) interpolant, spectrally accurate for smooth data; its matrix is
    not non-negative, and the (spectrally small) negative undershoot is clipped too.
    """

    def __init__(self, coefficient: float, cells: int, width: float, axis: int = -1,
                 periodic: bool = False, spectral: bool = False,
                 ledger: ClipLedger | None = None, name: str = "mutation"):
        self.ledger = ledger if ledger is not None else ClipLedger()
        self.name = name
        self.coefficient = float(coefficient)
        self.width = float(width)
        self.periodic = bool(periodic)
        self.spectral = bool(spectral)
        self.cells = cells
        if spectral:
            self.lam = spectral_eigenvalues(cells, width, periodic)
        else:
            self.lam = (periodic_eigenvalues if periodic else neumann_eigenvalues)(cells, width)
        self.axis = axis
        self._cache: dict[float, np.ndarray] = {}

    def _factor(self, tau: float, ndim: int) -> np.ndarray:
        """e^{−Dτλ_k}, shaped to broadcast along ``self.axis`` of an ndim-array."""
        key = (tau, ndim)
        fac = self._cache.get(key)
        if fac is None:
            fac = np.exp(-self.coefficient * tau * self.lam)
            shape = [1] * ndim
            shape[self.axis] = fac.size
            fac = self._cache[key] = fac.reshape(shape)
        return fac

    def __call__(self, f: np.ndarray, tau: float) -> np.ndarray:
        if self.coefficient == 0.0 or tau == 0.0:
            return f
        mass = f.sum()
        g = self._diagonal(f, self._factor(tau, f.ndim))
        # clip the round-off (FV) or the spectrally small undershoot (spectral), recording
        # what it removed, and restore the mass; for smooth data this leaves the spectral
        # convergence rate intact
        self.ledger.clip(self.name, g, mass)
        return g * (mass / g.sum())


    def _diagonal(self, f: np.ndarray, mult: np.ndarray) -> np.ndarray:
        """f with its modes (DCT-II, or real FFT when periodic) multiplied by ``mult``."""
        if self.periodic:
            return sfft.irfft(sfft.rfft(f, axis=self.axis) * mult, n=self.cells, axis=self.axis)
        return sfft.idct(sfft.dct(f, type=2, axis=self.axis, norm="ortho") * mult, type=2,
                         axis=self.axis, norm="ortho")

    def generator(self, f: np.ndarray) -> np.ndarray:
        """D ∂²_h f with the step's eigenvalues, for signed f (no clipping, no mass fix): the
        derivative of the step at τ = 0."""
        if self.coefficient == 0.0:
            return np.zeros_like(f)
        shape = [1] * f.ndim
        shape[self.axis] = self.lam.size
        return self._diagonal(f, (-self.coefficient * self.lam).reshape(shape))


def neumann_laplacian(cells: int, width: float, periodic: bool = False) -> sp.csr_matrix:
    """The cell-centred finite-volume Laplacian on one h-axis as a sparse symmetric matrix:
    zero flux at the edges (ghost cells equal to the edge cells, the operator whose eigenvalues
    are :func:`neumann_eigenvalues`) or periodic."""
    main = np.full(cells, -2.0)
    if not periodic:
        main[[0, -1]] = -1.0
    off = np.ones(cells - 1)
    A = sp.diags([off, main, off], [-1, 0, 1], format="lil")
    if periodic:
        A[0, cells - 1] += 1.0
        A[cells - 1, 0] += 1.0
    return (A / width ** 2).tocsr()


class HDiffusion:
    """The exact step of D Δ_h over every h-axis of ``grid`` (the last ``grid.ndim_h`` axes of
    the array): the per-axis exact steps commute, so their product is exact."""

    def __init__(self, coefficient: float, grid, *, spectral: bool = False,
                 ledger: ClipLedger | None = None, name: str = "mutation"):
        n = grid.ndim_h
        self.steps = [DiffusionStep(coefficient, a.cells, a.width, axis=k - n,
                                    periodic=a.periodic, spectral=spectral, ledger=ledger,
                                    name=name) for k, a in enumerate(grid.h_axes)]

    def __call__(self, f: np.ndarray, tau: float) -> np.ndarray:
        for s in self.steps:
            f = s(f, tau)
        return f

    def generator(self, f: np.ndarray) -> np.ndarray:
        """D Δ_h f for signed f (the sum of the axes' generators)."""
        return sum(s.generator(f) for s in self.steps)
