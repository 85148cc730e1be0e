"""Entry point :func:`solve_reduced` for the reduced (ε → 0) equation for ρ(t, h), and the
steady state of its replicator form.

As ε → 0, f(t,θ,h) = ρ(t,h) π_h(θ) + O(ε) and ρ solves, rule by rule (each rule's reduced face,
docs/model.md),

* Replicator:      ∂_t ρ = κ (F̄ − ⟨F̄⟩_ρ) ρ + D ∂²_h ρ,
* Boltzmann jump:  ∂_t ρ = λ ( K * (W ρ)/⟨W⟩_ρ − ρ ),  W = e^{α F̄_α},
* Truncation:      ∂_t ρ = λ ( K * (ρ 1{F̄ ≥ φ_{1−q}}) − ρ 1{F̄ ≤ φ_q} ), quantiles of F̄ under ρ,
* PBT:             the reduced generation map at t = τ, 2τ, …, ranking on the law of F under
                   ρ π_h (instantaneous) or on F̄ (effective),

with reflecting (or periodic) boundaries in h. For the jump rules copying h only and copying
(θ, h) give the same reduced equation (the copied θ relaxes to π_h at once). The sub-steps are
the joint solver's, composed by the same splitting and run loop (:mod:`pde_popdyn.run`).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np
import scipy.sparse as sp
from scipy.sparse.linalg import eigsh, splu

from . import io
from ._validate import density_array
from .equations import ReducedSystem, resolve_fitness
from .gibbs import effective_fitness
from .grid import Grid
from .model import Model
from .run import Schedule, finish_output, open_output, plan_resume, run
from .slow.mutation import neumann_laplacian
from .solution import Solution
from .solve import check_common, check_save_every, check_splitting

SCHEMES = ("fv", "spectral")


def _rho0(rho0: Any, grid: Grid) -> np.ndarray:
    try:
        shape = np.shape(rho0)
    except Exception:  # noqa: BLE001 - reported below by density_array
        shape = None
    if shape is not None and shape != grid.h_shape:
        hint = (" It has the joint grid's shape: pass its h-marginal grid.marginal(f0, 'h')."
                if shape == grid.shape else "")
        raise ValueError(f"rho0 has shape {shape} but the reduced equation needs a density on "
                         f"grid.h, shape {grid.h_shape}.{hint}")
    rho = density_array("rho0", rho0, grid.h_shape)
    return rho / (rho * grid.h_weights).sum()


def solve_reduced(model: Model, grid: Grid, rho0: Any, t_final: float, dt: float,
                  fitness: Any = None, *, splitting: str | None = None,
                  scheme: str | None = None, save_every: int | None = None,
                  progress: bool | None = None, output: str | None = None,
                  overwrite: bool = False, resume: str | None = None,
                  trackers: Any = None) -> Solution:
    """Solve the reduced equation for ρ(t, h) on ``grid.h`` (see the module docstring).

    For replicator selection with diffusive mutation this is

        ∂_t ρ = κ (F̄ − ⟨F̄⟩_ρ) ρ + D ∂²_h ρ,   ∂_h ρ = 0 on the edges of the h-box,

    split (Strang or Lie) into the exact replicator step ρ ← ρ e^{κτF̄}/∫ρ e^{κτF̄} and the exact
    mutation step e^{τD∂²_h} (DCT-II). The jump and truncation rules use the joint solver's
    positive, mass-exact jump steps with F̄_α or F̄; PBT applies its reduced generation map.

    Parameters
    ----------
    rho0:
        Initial density on grid.h, shape ``grid.h_shape``, non-negative with positive mass;
        normalised to ∫ρ dh = 1. With ``scheme="fv"`` it holds cell averages, with
        ``"spectral"`` point values at the cell centres.
    fitness:
        None (default): the fitness the rule's reduced form selects on (F̄ by quadrature over
        the grid's θ-box; F̄_α for Boltzmann jumps). Or an array on grid.h, or a callable
        ``fitness(h)``, used instead.
    splitting:
        'strang' (order 2, default) or 'lie' (order 1).
    scheme:
        'fv' (default): ∂²_h is the finite-volume Laplacian (eigenvalues
        2(1 − cos(kπ/M))/Δh²); the mutation step is positive and the scheme second order in
        Δh. 'spectral': continuous eigenvalues (kπ/ℓ)², spectrally accurate for smooth data;
        positivity is then exact only up to that accuracy (undershoots are clipped, mass
        restored, and the clipped mass recorded in ``info["clipped_mass"]``).
    save_every, progress, output, overwrite, resume, trackers:
        As for :func:`pde_popdyn.solve` (a reduced snapshot file is written and resumed alike).

    Returns
    -------
    Solution
        ``kind="reduced"``, ``.f`` (= ``.rho``) of shape (n_saved, n_h);
        ``info["fitness"]`` holds the fitness on grid.h that selection used.
    """
    plan = None
    if resume is not None:
        plan = plan_resume(resume, "reduced", model=model, grid=grid, t_final=t_final, dt=dt,
                           f0=rho0, output=output, save_every=save_every,
                           settings={"scheme": scheme, "splitting": splitting})
        grid, dt = plan.grid, plan.schedule.dt
        scheme = scheme or plan.attrs.get("scheme")
        splitting = splitting or plan.attrs.get("splitting")
    splitting, _ = check_splitting(splitting or "strang", "split")
    scheme = scheme or "fv"
    t_final, dt = check_common(model, grid, t_final, dt, progress)
    save_every = check_save_every(save_every)
    rho = _rho0(rho0, grid) if plan is None else plan.last
    system = ReducedSystem(model, grid, fitness=fitness, scheme=scheme, splitting=splitting)
    interval = model.selection.interval if model.selection_active else None
    schedule = plan.schedule if plan is not None else \
        Schedule.make(0.0, t_final, dt, save_every, interval)
    settings = {"scheme": scheme, "splitting": splitting, "dt": schedule.dt,
                "dt_requested": dt, "save_every": schedule.save_every, "interval": interval,
                "fitness_kind": system.fitness_kind}
    writer = plan.writer(model=model, fitness=system.fitness) if plan is not None else \
        open_output(output, overwrite, kind="reduced", grid=grid, model=model,
                    fitness=system.fitness, attrs=io.run_attributes("reduced", settings))
    rec = run(system, rho, schedule, trackers=trackers, writer=writer, progress=progress,
              desc="pde_popdyn reduced")
    info = {**settings, "n_steps": rec.steps_done, "setup_seconds": system.setup_seconds,
            "run_seconds": rec.wall_seconds, "stop_reason": rec.stop_reason,
            "fitness": system.fitness, **system.summary()}
    finish_output(writer, rec, info)
    t, rhos = np.asarray(rec.t), np.stack(rec.states)
    if plan is not None:
        t, rhos = plan.join(t, rhos)
        info["resumed_at"] = float(plan.schedule.t0)
    return Solution(t=t, f=rhos, grid=grid, model=model, info=info, kind="reduced",
                    stop_reason=rec.stop_reason)


# --------------------------------------------------------------------------------------------
# steady state of the replicator form
# --------------------------------------------------------------------------------------------
class SteadyState(NamedTuple):
    """Principal eigenpair of D Δ_h + κ F̄ (and the spectral gap to the next eigenvalue)."""

    rho: np.ndarray          # positive, ∫ρ dh = 1, shape (n_h,)
    eigenvalue: float        # Λ₀ = κ ⟨F̄⟩_ρ∞
    gap: float               # Λ₀ − Λ₁: the rate at which ρ(t) approaches ρ∞


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
    sel = model.selection
    if sel is None or sel.linear_rate is None:
        raise ValueError(f"steady_state is for the replicator form (selection="
                         f"pp.Replicator(rate)); got selection={sel!r}")
    if any(not m.continuous for m in model.mutations):
        raise ValueError(f"steady_state needs diffusive mutation pp.Diffusion(D) or none; "
                         f"got mutation={model.mutation!r}")
    if not isinstance(grid, Grid):
        raise TypeError(f"grid must be a pp.Grid, got {type(grid).__name__}")
    user = resolve_fitness(grid, fitness)
    fbar = user if user is not None else np.asarray(effective_fitness(model, grid), float)
    kappa = sel.linear_rate
    D = model.diffusion_coefficient
    ax = grid.h_axis
    A = (D * neumann_laplacian(ax.cells, ax.width, ax.periodic)
         + sp.diags(kappa * fbar)).tocsc()
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


__all__ = ["solve_reduced", "steady_state", "SteadyState", "SCHEMES"]
