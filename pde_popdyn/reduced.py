"""The reduced (ε → 0) equation for the h-marginal ρ(t, h), and its steady state.

As ε → 0, f(t,θ,h) = ρ(t,h) π_h(θ) + O(ε) and ρ solves (MODEL.md §3)

* Replicator:      ∂_t ρ = κ (F̄ − ⟨F̄⟩_ρ) ρ + D ∂²_h ρ,
* Boltzmann jump:  ∂_t ρ = λ ( K_σ * (W ρ)/⟨W⟩_ρ − ρ ),  W = e^{α F̄_α},
* Truncation:      ∂_t ρ = λ ( K_σ * (ρ 1{F̄ ≥ φ_{1−q}}) − ρ 1{F̄ ≤ φ_q} ), quantiles of F̄ under ρ,

with reflecting (or periodic) boundaries in h. For the jump rule copying h only and copying
(θ, h) give the same reduced equation (the copied θ relaxes to π_h instantly), so both are
solved with ``copy="both"``. The reduced truncation rule ranks agents by F̄: it is the limit of
a population whose selection sees the effective fitness, not of truncation on the
instantaneous F (which ranks by the θ-dependent F and has a different limit).

:func:`solve_reduced` uses exactly the selection and mutation sub-steps of the joint solver
(:func:`pde_popdyn.solve.slow_substeps`), composed by the same splitting and time loop.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any, Callable, NamedTuple

import numpy as np
import scipy.sparse as sp
from scipy.sparse.linalg import eigsh

from ._validate import _short, density_array, field_on_grid
from .gibbs import effective_fitness
from .grid import Grid
from .model import BoltzmannJump, Diffusion, Replicator, Truncation
from .slow.mutation import spectral_eigenvalues
from .solution import Solution
from .solve import _check_common, _check_save_every, slow_substeps
from .splitting import SPLITTINGS, Schedule, compose, integrate

SCHEMES = ("fv", "spectral")


# --------------------------------------------------------------------------------------------
# fitness on the h-grid
# --------------------------------------------------------------------------------------------
def default_fitness(model, grid: Grid) -> tuple[np.ndarray, str]:
    """The fitness the reduced equation of ``model`` selects on, on ``grid.h``.

    F̄_α by quadrature with α the pressure of a :class:`BoltzmannJump` rule, F̄ by quadrature
    otherwise. Returns (values, description).
    """
    if isinstance(model.selection, BoltzmannJump):
        a = model.selection.pressure
        return effective_fitness(model, grid, "quadrature", pressure=a), f"F̄_α (α={a:g})"
    return effective_fitness(model, grid, "quadrature"), "F̄"


def resolve_fitness(model, grid: Grid, fitness: Any) -> tuple[np.ndarray | None, str]:
    """``fitness`` (None, an array on grid.h or a callable of h) as an array on grid.h."""
    if fitness is None:
        if model.selection is None:
            return None, "none"
        return default_fitness(model, grid)
    if callable(fitness):
        h = grid.h.copy()
        return field_on_grid("fitness", fitness, (h,), h.shape, "fitness(h)"), \
            getattr(fitness, "__name__", "callable")
    try:
        arr = np.array(fitness, dtype=float)
    except (TypeError, ValueError):
        raise TypeError(f"fitness must be None, an array on grid.h or a callable of h, got "
                        f"{_short(fitness)}") from None
    if arr.shape != (grid.n_h,):
        raise ValueError(f"fitness has shape {arr.shape} but the reduced equation needs its "
                         f"values on grid.h, shape ({grid.n_h},); pass a callable fitness(h) "
                         f"or pp.effective_fitness(model, grid)")
    if not np.all(np.isfinite(arr)):
        raise ValueError("fitness contains NaN or inf values")
    return arr, "array"


def _rho0(rho0: Any, grid: Grid) -> np.ndarray:
    try:
        shape = np.shape(rho0)
    except Exception:  # noqa: BLE001 - reported below by density_array
        shape = None
    if shape is not None and shape != (grid.n_h,):
        hint = (" It has the joint grid's shape: pass its h-marginal grid.marginal(f0, 'h')."
                if shape == grid.shape else "")
        raise ValueError(f"rho0 has shape {shape} but the reduced equation needs a density on "
                         f"grid.h, shape ({grid.n_h},).{hint}")
    rho = density_array("rho0", rho0, (grid.n_h,))
    return rho / (rho.sum() * grid.dh)


# --------------------------------------------------------------------------------------------
# spectral eigenvalues
# --------------------------------------------------------------------------------------------
def continuous_eigenvalues(grid: Grid) -> np.ndarray:
    """Eigenvalues of −∂²_h on the h-box in the order of the DCT-II (Neumann: (kπ/ℓ)²,
    k = 0..M−1) or of the real FFT (periodic: (2πk/ℓ)², k = 0..M/2)."""
    ax = grid.h_axis
    return spectral_eigenvalues(ax.cells, ax.width, ax.periodic)


def reduced_substeps(model, grid: Grid, fitness: np.ndarray | None, scheme: str = "fv") -> list:
    """Selection and mutation sub-steps of the reduced equation acting on ρ of shape (n_h,)."""
    sel = model.selection
    if isinstance(sel, (BoltzmannJump, Truncation)) and sel.copy == "h":
        sel = dataclasses.replace(sel, copy="both")     # the same reduced equation
    return slow_substeps(sel, model.mutation, fitness, grid, spectral=scheme == "spectral")


# --------------------------------------------------------------------------------------------
# the solver
# --------------------------------------------------------------------------------------------
def solve_reduced(model, grid: Grid, rho0: Any, t_final: float, dt: float,
                  fitness: Any = None, *, splitting: str = "strang", scheme: str = "fv",
                  save_every: int | None = None, progress: bool | None = None) -> Solution:
    """Solve the reduced equation for ρ(t, h) on ``grid.h`` (see the module docstring).

    For replicator selection with diffusive mutation this is

        ∂_t ρ = κ (F̄ − ⟨F̄⟩_ρ) ρ + D ∂²_h ρ,   ∂_h ρ = 0 on the edges of the h-box,

    split (Strang or Lie) into the exact replicator step ρ ← ρ e^{κτF̄}/∫ρ e^{κτF̄} and the exact
    mutation step e^{τD∂²_h} (DCT-II). The jump and truncation rules use the joint solver's
    positive, mass-exact jump steps with F̄_α or F̄.

    Parameters
    ----------
    rho0:
        Initial density on grid.h, shape (n_h,), non-negative with positive mass; normalised
        to ∫ρ dh = 1. With ``scheme="fv"`` it holds cell averages, with ``"spectral"`` point
        values at the cell centres.
    fitness:
        None (default): F̄ of the model by quadrature over the grid's θ-box (F̄_α with α the
        pressure for BoltzmannJump). Or an array on grid.h, or a callable ``fitness(h)``.
    splitting:
        'strang' (order 2) or 'lie' (order 1).
    scheme:
        'fv': ∂²_h is the finite-volume Laplacian (eigenvalues 2(1 − cos(kπ/M))/Δh²); the
        mutation step is positive and the scheme second order in Δh. 'spectral': ∂²_h has the
        continuous eigenvalues (kπ/ℓ)², spectrally accurate for smooth data; positivity is then
        exact only up to that accuracy (negative undershoots are clipped, mass restored).
    save_every, progress:
        As for :func:`pde_popdyn.solve`.

    Returns
    -------
    Solution
        ``kind="reduced"``, ``.f`` (= ``.rho``) of shape (n_saved, n_h);
        ``info["fitness"]`` holds the fitness on grid.h that selection used.
    """
    t_final, dt = _check_common(model, grid, t_final, dt)
    if scheme not in SCHEMES:
        raise ValueError(f"scheme={scheme!r} is not known; use one of {SCHEMES}")
    if splitting not in SPLITTINGS:
        raise ValueError(f"splitting={splitting!r} is not known; use 'strang' (order 2, "
                         f"default) or 'lie' (order 1)")
    save_every = _check_save_every(save_every)
    rho = _rho0(rho0, grid)
    t0 = time.perf_counter()
    fbar, fdesc = resolve_fitness(model, grid, fitness)
    steps = reduced_substeps(model, grid, fbar, scheme)
    setup = time.perf_counter() - t0
    schedule = Schedule.make(0.0, t_final, dt, save_every)
    stepper = compose(steps, splitting)
    t_start = time.perf_counter()
    t, rhos = integrate(stepper, rho, schedule, progress=progress, desc="pde_popdyn reduced")
    info = {"scheme": scheme, "splitting": splitting, "dt": schedule.dt,
            "n_steps": schedule.n_steps, "save_every": schedule.save_every,
            "setup_seconds": setup, "run_seconds": time.perf_counter() - t_start,
            "fitness": fbar, "fitness_kind": fdesc}
    return Solution(t=t, f=rhos, grid=grid, model=model, info=info, kind="reduced")


# --------------------------------------------------------------------------------------------
# steady state of the replicator form
# --------------------------------------------------------------------------------------------
class SteadyState(NamedTuple):
    """Principal eigenpair of D Δ_h + κ F̄ (and the spectral gap to the next eigenvalue)."""

    rho: np.ndarray          # positive, ∫ρ dh = 1, shape (n_h,)
    eigenvalue: float        # Λ₀ = κ ⟨F̄⟩_ρ∞
    gap: float               # Λ₀ − Λ₁: the rate at which ρ(t) approaches ρ∞


def laplacian(grid: Grid) -> sp.csr_matrix:
    """The cell-centred finite-volume Laplacian Δ_h on grid.h (symmetric): zero flux at the
    edges (ghost cells equal to the edge cells) or periodic."""
    n, dh = grid.n_h, grid.dh
    main = np.full(n, -2.0)
    if not grid.h_axis.periodic:
        main[[0, -1]] = -1.0
    off = np.ones(n - 1)
    A = sp.diags([off, main, off], [-1, 0, 1], format="lil")
    if grid.h_axis.periodic:
        A[0, n - 1] += 1.0
        A[n - 1, 0] += 1.0
    return (A / dh ** 2).tocsr()


def steady_state(model, grid: Grid, fitness: Any = None) -> SteadyState:
    """Steady state of the reduced replicator–mutator equation,

        0 = κ (F̄ − ⟨F̄⟩_ρ) ρ + D Δ_h ρ   ⟺   (D Δ_h + κ F̄) ρ = Λ ρ,  Λ = κ ⟨F̄⟩_ρ,

    i.e. the positive principal eigenfunction of the symmetric matrix D Δ_h + κ diag(F̄) with
    the finite-volume Neumann (or periodic) Laplacian, found by ``scipy.sparse.linalg.eigsh``
    in shift-invert mode about σ > max κF̄ ≥ Λ₀ and polished by inverse iteration on the
    M-matrix (Λ₀ + δ)I − A, which keeps it positive even when Λ₀ and Λ₁ nearly coincide.
    Normalised to unit mass; the eigenvalue is its Rayleigh quotient. Summing the equation
    over the cells (Σ Δ_h ρ = 0) gives Λ₀ = κ⟨F̄⟩_ρ exactly in the discrete setting.

    ``fitness`` is as for :func:`solve_reduced` (default F̄ by quadrature). The model's
    selection must be :class:`Replicator` (κ) and the mutation :class:`Diffusion` (D) or None.
    """
    if not isinstance(model.selection, Replicator):
        raise ValueError(f"steady_state is for the replicator form (selection="
                         f"pp.Replicator(rate)); got selection={model.selection!r}")
    if model.mutation is not None and not isinstance(model.mutation, Diffusion):
        raise ValueError(f"steady_state needs diffusive mutation pp.Diffusion(D) or none; "
                         f"got mutation={model.mutation!r}")
    if not isinstance(grid, Grid):
        raise TypeError(f"grid must be a pp.Grid, got {type(grid).__name__}")
    fbar, _ = resolve_fitness(model, grid, fitness)
    kappa = model.selection.rate
    D = 0.0 if model.mutation is None else model.mutation.coefficient
    A = (D * laplacian(grid) + sp.diags(kappa * fbar)).tocsc()
    top = float(np.max(kappa * fbar))
    sigma = top + 1e-3 * max(1.0, abs(top)) + 1e-3 * D / grid.dh ** 2
    k = min(2, grid.n_h - 1)
    v0 = np.ones(grid.n_h)
    vals, vecs = eigsh(A, k=k, sigma=sigma, which="LM", v0=v0, tol=0)
    order = np.argsort(vals)[::-1]
    vals, vecs = vals[order], vecs[:, order]
    gap = float(vals[0] - vals[1]) if vals.size > 1 else float("nan")
    phi = _perron_polish(A, float(vals[0]), gap, np.abs(vecs[:, 0]))
    phi /= phi.sum() * grid.dh
    lam0 = float(phi @ (A @ phi) / (phi @ phi))
    return SteadyState(rho=phi, eigenvalue=lam0, gap=gap)


def _perron_polish(A: sp.spmatrix, lam0: float, gap: float, x: np.ndarray,
                   max_iter: int = 200) -> np.ndarray:
    """The positive (Perron) eigenvector of the symmetric Metzler matrix A by inverse iteration
    x ← (σI − A)⁻¹ x with σ slightly above λ₀.

    σI − A is then a nonsingular M-matrix, whose inverse is entrywise positive, so the iterates
    stay positive: this removes the sign ambiguity of an eigensolver's vector when λ₀ and λ₁
    nearly coincide (two fitness peaks with almost equal growth rates, as at the transition of
    "survival of the flattest"). The convergence factor per step is (σ − λ₀)/(σ − λ₁).
    """
    from scipy.sparse.linalg import splu

    n = A.shape[0]
    scale = float(abs(A).sum(axis=0).max()) + abs(lam0)
    delta = max(1e-12 * scale, 1e-3 * gap if np.isfinite(gap) else 0.0)
    lu = splu((delta + lam0) * sp.identity(n, format="csc") - A.tocsc())
    x = np.maximum(x, 0.0) + 1e-300
    x /= np.linalg.norm(x)
    for _ in range(max_iter):
        y = lu.solve(x)
        y = np.abs(y)   # exact arithmetic keeps y > 0; |·| only removes round-off signs
        y /= np.linalg.norm(y)
        if np.abs(y - x).max() <= 1e-15:
            return y
        x = y
    return x


# --------------------------------------------------------------------------------------------
# exact solution for quadratic F̄ (Mehler kernel)
# --------------------------------------------------------------------------------------------
def mehler_log_kernel(t: float, x: np.ndarray, y: np.ndarray, D: float, c: float) -> np.ndarray:
    """log K(t, x, y) of ∂_t u = D u_xx − c x² u on the line (c > 0, D > 0):

        K = √(λ / (2π sinh τ)) · exp(−λ [(x² + y²) cosh τ − 2 x y] / (2 sinh τ)),
        λ = √(c/D),  τ = 2 D λ t = 2√(cD) t.

    Derivation (checked by the tests): the imaginary-time harmonic oscillator; as c → 0 it
    tends to the heat kernel (4πDt)^{-1/2} e^{−(x−y)²/(4Dt)}, and the ground state e^{−λx²/2}
    is mapped to e^{−Dλt} e^{−λx²/2}. Written with coth and csch, and log sinh τ =
    τ + log(1 − e^{−2τ}) − log 2, so that no term overflows for large τ.
    """
    lam = np.sqrt(c / D)
    tau = 2.0 * np.sqrt(c * D) * t
    log_sinh = tau + np.log(-np.expm1(-2 * tau)) - np.log(2.0)
    coth = 1.0 / np.tanh(tau)
    csch = np.exp(-log_sinh)
    x = np.asarray(x, float)
    y = np.asarray(y, float)
    return (0.5 * (np.log(lam / (2 * np.pi)) - log_sinh)
            - 0.5 * lam * ((x * x + y * y) * coth - 2 * x * y * csch))


def mehler_solution(t: float, h: np.ndarray, rho0: Callable[[np.ndarray], np.ndarray],
                    box: tuple[float, float], *, g: float, hstar: float, kappa: float,
                    D: float, nodes: int = 4000) -> np.ndarray:
    """Exact ρ(t, h) of ∂_t ρ = κ(F̄ − ⟨F̄⟩)ρ + Dρ_hh on the line with F̄ = −(g/2)(h − h*)²,
    from the initial density ``rho0`` (a callable, supported in ``box``): ρ = u/∫u with
    u(t) = ∫ K(t, · − h*, y − h*) ρ0(y) dy (kernel of :func:`mehler_log_kernel`, c = κg/2),
    by composite Gauss–Legendre in y (log domain). The result is normalised on ``box``
    (by the same quadrature), matching a solution on the box whose density
    is negligible at its edges.
    """
    x, w = np.polynomial.legendre.leggauss(20)
    panels = max(1, nodes // 20)
    lo, hi = box
    width = (hi - lo) / panels
    mids = lo + (np.arange(panels) + 0.5) * width
    y = (mids[:, None] + 0.5 * width * x[None, :]).ravel()
    wy = np.tile(0.5 * width * w, panels)
    r0 = np.asarray(rho0(y), float)
    with np.errstate(divide="ignore"):
        logr0 = np.log(r0)
    h = np.asarray(h, float)
    if t == 0:
        return np.asarray(rho0(h), float) / (wy * r0).sum()
    c = 0.5 * kappa * g

    def logu(pts: np.ndarray) -> np.ndarray:
        lk = mehler_log_kernel(t, pts[:, None] - hstar, y[None, :] - hstar, D, c)
        a = lk + (np.log(wy) + logr0)[None, :]
        top = a.max(axis=1, keepdims=True)
        return top[:, 0] + np.log(np.exp(a - top).sum(axis=1))

    logu_nodes = logu(y)
    shift = logu_nodes.max()
    mass = (wy * np.exp(logu_nodes - shift)).sum()
    return np.exp(logu(h) - shift) / mass


__all__ = ["solve_reduced", "steady_state", "SteadyState", "default_fitness",
           "resolve_fitness", "reduced_substeps", "continuous_eigenvalues", "laplacian",
           "mehler_log_kernel", "mehler_solution", "SCHEMES"]
