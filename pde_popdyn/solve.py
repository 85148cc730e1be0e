"""Entry point :func:`solve` for the joint density f(t, θ, h), returning a :class:`Solution`."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from ._validate import density_array, positive_float
from .fast.fv import SGOperator, SGOperatorND
from .fast.spectral import SpectralOperator
from .grid import Grid
from .io import SnapshotWriter, check_writable
from .model import BoltzmannJump, Diffusion, GaussianJump, Model, Replicator, Truncation
from .resume import prepare_resume
from .slow.mutation import DiffusionStep
from .slow.selection import BoltzmannMap, JumpStep, ReplicatorStep, TruncationMap
from .solution import Solution
from .splitting import SPLITTINGS, PropagatorStep, Schedule, compose, integrate

SCHEMES = ("fv", "spectral")


def _check_common(model: Any, grid: Any, t_final: Any, dt: Any) -> tuple[float, float]:
    if not isinstance(model, Model):
        raise TypeError(f"model must be a pp.Model, got {type(model).__name__}")
    if not isinstance(grid, Grid):
        raise TypeError(f"grid must be a pp.Grid, got {type(grid).__name__}")
    t_final = positive_float("t_final", t_final, allow_zero=True)
    dt = positive_float("dt", dt)
    return t_final, dt


def _check_save_every(save_every: Any) -> int | None:
    if save_every is None:
        return None
    if isinstance(save_every, bool) or not isinstance(save_every, (int, np.integer)) \
            or save_every < 1:
        raise ValueError(f"save_every must be a positive integer number of steps or None, "
                         f"got {save_every!r}")
    return int(save_every)


class MassStep:
    """Runs a sub-step on cell masses f·w instead of nodal values f (non-uniform θ-nodes): the
    selection and copy rules are statements about mass, the fast step about densities."""

    def __init__(self, step, weights: np.ndarray):
        self.step = step
        self.weights = weights

    def __call__(self, f: np.ndarray, tau: float) -> np.ndarray:
        return self.step(f * self.weights, tau) / self.weights


def h_diffusion(coefficient: float, grid: Grid, *, spectral: bool = False):
    """The exact step of D Δ_h over every h-axis (the last ``grid.ndim_h`` axes of the array):
    the per-axis exact steps commute, so their product is exact."""
    n = grid.ndim_h
    steps = [DiffusionStep(coefficient, a.cells, a.width, axis=k - n, periodic=a.periodic,
                           spectral=spectral) for k, a in enumerate(grid.h_axes)]
    if len(steps) == 1:
        return steps[0]

    def step(f: np.ndarray, tau: float) -> np.ndarray:
        for s in steps:
            f = s(f, tau)
        return f
    return step


def slow_substeps(selection, mutation, fitness: np.ndarray | None, grid: Grid, *,
                  spectral: bool = False, weights: np.ndarray | None = None) -> list:
    """Selection then mutation sub-steps acting on arrays whose last axes are the h-axes.

    Shared by the joint solver (f of shape ``grid.shape``, fitness F) and the reduced solver
    (ρ of shape ``grid.h_shape``, fitness F̄ or F̄_α). ``spectral`` switches the mutation (and
    the Gaussian-jump kernel) to continuum eigenvalues; ``weights`` (non-uniform θ-nodes) makes
    the selection step act on masses.
    """
    steps: list = []
    kernel = None
    if isinstance(mutation, GaussianJump):
        jump = h_diffusion(1.0, grid, spectral=spectral)
        half_var = 0.5 * mutation.std ** 2

        def kernel(g: np.ndarray) -> np.ndarray:
            # the reflecting Gaussian kernel K_σ is the Neumann heat kernel at time σ²/2
            return jump(g, half_var)
    hd = grid.ndim_h
    if isinstance(selection, Replicator) and selection.rate > 0:
        steps.append(ReplicatorStep(fitness, selection.rate, 1.0))
    elif isinstance(selection, BoltzmannJump) and selection.rate > 0:
        steps.append(JumpStep(BoltzmannMap(fitness, selection.pressure, selection.copy, kernel,
                                           h_ndim=hd), selection.rate))
    elif isinstance(selection, Truncation) and selection.rate > 0:
        steps.append(JumpStep(TruncationMap(fitness, selection.fraction, selection.copy, kernel,
                                            h_ndim=hd), selection.rate))
    if isinstance(mutation, Diffusion) and mutation.coefficient > 0:
        steps.append(h_diffusion(mutation.coefficient, grid, spectral=spectral))
    if weights is not None:
        steps = [MassStep(s, weights) for s in steps]
    return steps


def joint_substeps(model: Model, grid: Grid, *, check_gibbs: bool = True,
                   scheme: str = "fv") -> tuple[list, dict]:
    """The sub-steps [selection, mutation, fast] of the joint equation, and set-up info."""
    t0 = time.perf_counter()
    if scheme not in SCHEMES:
        raise ValueError(f"scheme={scheme!r} is not known; use one of {SCHEMES}")
    if grid.ndim_theta > 1:
        if scheme != "fv":
            raise ValueError(f"scheme={scheme!r} cannot serve a grid with "
                             f"{grid.ndim_theta} theta-axes; use scheme='fv'")
        op = SGOperatorND.from_model(model, grid, check_gibbs=check_gibbs)
    elif scheme == "fv":
        if grid.nodes != "cells":
            raise ValueError("scheme='fv' needs a grid of cells, but this grid has spectral "
                             "nodes; use scheme='spectral' or pp.Grid(..., nodes='cells')")
        op = SGOperator.from_model(model, grid, check_gibbs=check_gibbs)
    else:
        op = SpectralOperator.from_model(model, grid)
    uniform = all(a.uniform for a in grid.theta_axes)
    steps = slow_substeps(model.selection, model.mutation, model.fitness_on(grid)
                          if model.selection is not None else None, grid,
                          spectral=scheme == "spectral",
                          weights=None if uniform else grid.weights)
    fast = PropagatorStep(op.propagator)
    steps.append(fast)
    return steps, {"operator": op, "fast": fast, "setup_seconds": time.perf_counter() - t0}


def _unsplit(model: Model, grid: Grid, schedule: Schedule, scheme: str,
             check_gibbs: bool):
    """The unsplit exact integrator (:mod:`pde_popdyn.unsplit`) and its set-up info."""
    from .unsplit import UnsplitStep
    t0 = time.perf_counter()
    sel, mut = model.selection, model.mutation
    if sel is not None and not isinstance(sel, Replicator) or \
            mut is not None and not isinstance(mut, Diffusion):
        raise ValueError("splitting='exact' integrates the linearised replicator equation: it "
                         "needs selection=pp.Replicator (or None) and mutation=pp.Diffusion (or "
                         "None); use splitting='strang' for jump and truncation rules")
    if scheme != "fv" or grid.ndim_theta != 1:
        raise ValueError("splitting='exact' needs scheme='fv' and one theta-axis; use "
                         "splitting='strang'")
    op = SGOperator.from_model(model, grid, check_gibbs=check_gibbs)
    step = UnsplitStep(op, grid, model.fitness_on(grid) if sel is not None else None,
                       sel.rate if sel is not None else 0.0,
                       mut.coefficient if mut is not None else 0.0)
    step.check_budget(schedule.n_steps * schedule.dt)
    return step, {"fast": PropagatorStep(op.propagator),
                  "setup_seconds": time.perf_counter() - t0}


def solve(model: Model, grid: Grid, f0: Any, t_final: float, dt: float, *,
          splitting: str = "strang", scheme: str = "fv", save_every: int | None = None,
          progress: bool | None = None, check_gibbs: bool = True,
          output: str | None = None, overwrite: bool = False,
          resume: str | None = None) -> Solution:
    """Solve the joint equation for f(t, θ, h) from ``f0`` up to ``t_final``.

    Solves (MODEL.md §2, replicator selection with diffusive mutation)

        ∂_t f = (1/ε) ∂_θ( m [T ∂_θ f + f ∂_θ L] ) + κ (F − ⟨F⟩_f) f + D ∂²_h f

    with zero flux in θ and reflecting boundaries in h, by splitting the fast θ-part (an exact,
    positive, Gibbs-preserving step, uniform in ε) from the exact selection and mutation steps.

    Parameters
    ----------
    f0:
        Initial density, an array of shape ``grid.shape`` (non-negative, positive mass); it is
        normalised to unit mass.
    t_final, dt:
        Final time (≥ 0) and time step (> 0). The step is shortened slightly if needed so that
        a whole number of steps reaches ``t_final``. Any Δt/ε is allowed.
    splitting:
        'strang' (second order, default) or 'lie' (first order) splitting of the fast and slow
        parts; or 'exact': no splitting, the linearised replicator–mutator equation is
        integrated exactly by uniformisation (:mod:`pde_popdyn.unsplit`), so Δt only sets the
        save times. 'exact' is the fastest choice for moderate ε (replicator selection and
        diffusive mutation only); its cost grows like t/ε, so it refuses very stiff runs.
    scheme:
        'fv' (default): Scharfetter–Gummel finite volumes in θ, exact finite-volume mutation
        by DCT/FFT in h; positive, mass-exact, Gibbs-exact.
        'spectral': Chebyshev (bounded θ, needs ``pp.Grid(..., nodes="spectral")``) or Fourier
        (periodic θ) collocation in θ, continuum-eigenvalue DCT/FFT in h; exponentially
        accurate for smooth problems and mass-exact; the Gibbs state is stationary and f
        positive only up to that (spectral) accuracy.
    save_every:
        Save every this many steps (the first and last states are always saved). Default:
        about 100 snapshots.
    progress:
        True/False to show/hide a progress bar; None shows it on a terminal only.
    check_gibbs:
        Check that the Gibbs measure exp(−L/T) is resolved and confined on the θ-box.
    output:
        An HDF5 file to write the snapshots to as they are saved (format: :mod:`pde_popdyn.io`),
        each flushed at once, so that a killed run leaves every snapshot written before it.
    overwrite:
        Replace ``output`` if it exists (otherwise that is an error).
    resume:
        A snapshot file of an earlier run of this ``model`` to continue up to ``t_final``,
        appending to it. Pass ``f0=None`` and ``grid=None``/``dt=None`` (taken from the file):
        the run continues from the last snapshot with exactly the stored Δt, so it equals the
        uninterrupted run. For preset models ``pp.resume(path, t_final)`` does the same.

    Returns
    -------
    Solution
        with ``.t`` (n_saved,) and ``.f`` (n_saved, n_theta, n_h); after ``resume``, the whole
        run, stored snapshots included.
    """
    plan = None
    if resume is not None:  # continue the run in the file (pde_popdyn.resume.prepare_resume)
        if f0 is not None:
            raise ValueError("f0 must be None with resume=...: the run continues from the last "
                             "snapshot stored in the file")
        if output is not None and Path(output).resolve() != Path(resume).resolve():
            raise ValueError(f"output={output!r} differs from resume={resume!r}; a resumed run "
                             f"appends to the file it resumes")
        plan = prepare_resume(resume, kind="joint", model=model if isinstance(model, Model)
                              else None, grid=grid, t_final=t_final, dt=dt,
                              splitting=splitting, scheme=scheme, save_every=save_every)
        grid, dt = plan.grid, plan.schedule.dt
    t_final, dt = _check_common(model, grid, t_final, dt)
    if scheme not in SCHEMES:
        raise ValueError(f"scheme={scheme!r} is not known; use one of {SCHEMES}")
    if splitting not in SPLITTINGS + ("exact",):
        raise ValueError(f"splitting={splitting!r} is not known; use 'strang' (order 2, "
                         f"default), 'lie' (order 1) or 'exact' (no splitting)")
    save_every = _check_save_every(save_every)
    if plan is None:
        f = density_array("f0", f0, grid.shape)
        f = f / grid.mass(f)
        if output is not None:  # fail before the set-up, not after it
            check_writable(output, overwrite)
        schedule = Schedule.make(0.0, t_final, dt, save_every)
    else:  # not renormalised: the resumed run repeats the uninterrupted run's arithmetic
        f = plan.last
        schedule = plan.schedule
    if splitting == "exact":
        stepper, setup = _unsplit(model, grid, schedule, scheme, check_gibbs)
        fast = setup["fast"]
    else:
        steps, setup = joint_substeps(model, grid, check_gibbs=check_gibbs, scheme=scheme)
        fast = setup["fast"]
        stepper = compose(steps, splitting)
    if schedule.n_steps and splitting != "exact":  # build e^{Δt A} now: it is set-up cost
        t_build = time.perf_counter()
        fast.cache[schedule.dt] = (fast.build(schedule.dt, n_steps=schedule.n_steps)
                                   if scheme == "fv" and grid.ndim_theta == 1
                                   else fast.build(schedule.dt))
        setup["setup_seconds"] += time.perf_counter() - t_build
    writer = None
    if plan is not None:
        writer = plan.writer(model=model)
    elif output is not None:
        writer = SnapshotWriter(output, kind="joint", grid=grid, model=model,
                                overwrite=overwrite,
                                attrs={"scheme": scheme, "splitting": splitting,
                                       "dt": schedule.dt, "save_every": schedule.save_every})
    t_start = time.perf_counter()
    try:
        t, fs = integrate(stepper, f, schedule, progress=progress,
                          observers=[writer] if writer is not None else [])
    except BaseException:  # Ctrl-C included: leave a clean file with the snapshots so far
        if writer is not None:
            writer.close(status="interrupted")
        raise
    run_seconds = time.perf_counter() - t_start
    info = {"scheme": scheme, "splitting": splitting, "dt": schedule.dt,
            "n_steps": schedule.n_steps, "save_every": schedule.save_every,
            "setup_seconds": setup["setup_seconds"], "run_seconds": run_seconds,
            "fast_step": ({"exact": stepper.summary} if splitting == "exact" else
                          {f"{tau:g}": p.summary for tau, p in fast.cache.items()})}
    if writer is not None:
        writer.finish(run_seconds=run_seconds, t_final=float(t[-1]),
                      n_steps=int(round(float(t[-1]) / schedule.dt)))
        info["output"] = str(writer.path)
    if plan is not None:
        t = np.concatenate([plan.t[:-1], t])
        fs = np.concatenate([plan.states["density"][:-1], fs])
        info["resumed_at"] = float(plan.schedule.t0)
    return Solution(t=t, f=fs, grid=grid, model=model, info=info)
