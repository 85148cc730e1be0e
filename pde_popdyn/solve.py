"""Entry point :func:`solve` for the joint density f(t, θ, h), returning a :class:`Solution`."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from ._validate import density_array, flag, positive_float
from . import io
from .equations import INTEGRATORS, JointSystem, check_scheme
from .grid import Grid
from .model import Model
from .run import SPLITTINGS, Schedule, finish_output, open_output, plan_resume, run
from .solution import Solution


def check_common(model: Any, grid: Any, t_final: Any, dt: Any,
                 progress: Any = None) -> tuple[float, float]:
    """The checks every grid entry point makes of its model, grid, final time, step and
    ``progress`` flag."""
    flag("progress", progress, allow_none=True)
    if not isinstance(model, Model):
        raise TypeError(f"model must be a pp.Model, got {type(model).__name__}")
    if not isinstance(grid, Grid):
        raise TypeError(f"grid must be a pp.Grid, got {type(grid).__name__}")
    t_final = positive_float("t_final", t_final, allow_zero=True, off_hint=False)
    dt = positive_float("dt", dt)
    return t_final, dt


def check_save_every(save_every: Any) -> int | None:
    if save_every is None:
        return None
    if isinstance(save_every, bool) or not isinstance(save_every, (int, np.integer)) \
            or save_every < 1:
        raise ValueError(f"save_every must be a positive integer number of steps or None, "
                         f"got {save_every!r}")
    return int(save_every)


def check_splitting(splitting: Any, integrator: Any) -> tuple[str, str]:
    """Validate ``splitting`` and ``integrator``; the first version's ``splitting='exact'``
    still works (with a warning) and means ``integrator='uniformisation'``."""
    if splitting == "exact":
        warnings.warn("splitting='exact' is now integrator='uniformisation' (splitting= names "
                      "splittings only)", DeprecationWarning, stacklevel=3)
        return "strang", "uniformisation"
    if splitting not in SPLITTINGS:
        raise ValueError(f"splitting={splitting!r} is not known; use 'strang' (order 2, "
                         f"default) or 'lie' (order 1)")
    if integrator not in INTEGRATORS:
        raise ValueError(f"integrator={integrator!r} is not known; use 'ap' (default), 'split' "
                         f"or 'uniformisation'")
    return splitting, integrator


def stored_settings(attrs: dict) -> dict:
    """scheme, splitting and integrator of a stored run (the first version wrote the unsplit
    integrator as splitting='exact')."""
    splitting = attrs.get("splitting") or "strang"
    integrator = attrs.get("integrator") or "split"
    if splitting == "exact":
        splitting, integrator = "strang", "uniformisation"
    return {"scheme": attrs.get("scheme") or "fv", "splitting": splitting,
            "integrator": integrator}


def solve(model: Model, grid: Grid, f0: Any, t_final: float, dt: float, *,
          splitting: str | None = None, scheme: str | None = None,
          integrator: str | None = None,
          save_every: int | None = None, progress: bool | None = None,
          check_gibbs: bool = True, output: str | None = None, overwrite: bool = False,
          resume: str | None = None, trackers: Any = None) -> Solution:
    """Solve the joint equation for f(t, θ, h) from ``f0`` up to ``t_final``.

    For replicator selection with diffusive mutation it is

        ∂_t f = (1/ε) ∂_θ( m [T ∂_θ f + f ∂_θ L] ) + κ (F − ⟨F⟩_f) f + D ∂²_h f

    with zero flux in θ and reflecting boundaries in h; the model's selection and mutation
    rules give the other forms (docs/model.md). The fast θ-part (an exact, positive,
    Gibbs-preserving step, uniform in ε) is split from the selection and mutation steps; rules
    acting at discrete times (PBT) are applied at their generation times.

    Parameters
    ----------
    f0:
        Initial density, an array of shape ``grid.shape`` (non-negative, positive mass); it is
        normalised to unit mass.
    t_final, dt:
        Final time (≥ 0) and time step (> 0). The step is shortened slightly if needed so that
        a whole number of steps reaches ``t_final`` (and, with generations every τ, so that
        every generation time is a step boundary). Any Δt/ε is allowed.
    splitting:
        'strang' (second order, default) or 'lie' (first order) splitting of the fast and slow
        parts. (None: the default, or the stored one when resuming; likewise for ``scheme``
        and ``integrator``.)
    scheme:
        'fv' (default): Scharfetter–Gummel finite volumes in θ, exact finite-volume mutation
        by DCT/FFT in h; positive, mass-exact, Gibbs-exact.
        'spectral': Chebyshev (bounded θ, needs ``pp.Grid(..., nodes="spectral")``) or Fourier
        (periodic θ) collocation in θ, continuum-eigenvalue DCT/FFT in h; exponentially
        accurate for smooth problems and mass-exact; the Gibbs state is stationary and f
        positive only up to that (spectral) accuracy.
    integrator:
        'ap' (default): selection acts inside the exact per-column fast propagator (replicator)
        or through the exponential midpoint rule with the exact fast propagator (jump rules),
        with mutation split around it by ``splitting`` (:mod:`pde_popdyn.ap`): second order in
        Δt for every ε down to ε → 0, where it becomes a second-order scheme of the reduced
        equation; positive, mass-exact, Gibbs-exact. Where it does not apply (several θ-axes,
        the replicator copying h only) the split scheme runs and ``info["integrator"]`` says
        so. 'split': selection, mutation and fast sub-steps composed by ``splitting`` (first
        order in Δt once ε ≪ Δt). 'uniformisation': the linearised replicator–mutator
        equation integrated exactly without splitting (:mod:`pde_popdyn.unsplit`), so Δt only
        sets the save times; fast at moderate ε (replicator selection, or a rule acting at
        generation times, with diffusive mutation); its cost grows like t/ε, so it refuses
        very stiff runs.
    save_every:
        Save every this many steps (the first and last states, and generation times, are
        always saved). Default: about 100 snapshots.
    progress:
        True/False to show/hide a progress bar; None shows it on a terminal or in Jupyter.
    check_gibbs:
        Check that the Gibbs measure exp(−L/T) is resolved and confined on the θ-box where the
        population has mass.
    output:
        An HDF5 file to write the snapshots to as they are saved (format: :mod:`pde_popdyn.io`),
        each flushed at once, so that a killed run leaves every snapshot written before it.
    overwrite:
        Replace ``output`` if it exists (otherwise that is an error).
    resume:
        A snapshot file of an earlier run of this ``model`` to continue up to ``t_final``,
        appending to it. ``f0``, ``grid`` and ``dt`` may be None (taken from the file) or the
        values of the first run (checked against the file). The run continues from the last
        snapshot with exactly the stored Δt, so it equals the uninterrupted run.
    trackers:
        Trackers (:mod:`pde_popdyn.trackers`) or callables ``fn(t, f)`` returning True to stop.

    Returns
    -------
    Solution
        with ``.t`` (n_saved,), ``.f`` (n_saved, n_theta, n_h) and ``.stop_reason``
        ('t_final', 'steady_state', 'tracker', 'guard' or 'interrupted'); after ``resume``,
        the whole run, stored snapshots included.

    Raises
    ------
    pde_popdyn.run.NonFiniteStateError
        if the density becomes NaN or infinite (an overflowing rate): the file keeps the
        snapshots saved before, with status 'failed'. A ``pp.GuardTracker()`` in ``trackers``
        stops such a run with a warning instead.
    """
    plan = None
    if resume is not None:
        if splitting == "exact":
            splitting, integrator = check_splitting(splitting, integrator)
        plan = plan_resume(resume, "joint", model=model, grid=grid, t_final=t_final, dt=dt,
                           f0=f0, output=output, save_every=save_every,
                           settings={"scheme": scheme, "splitting": splitting,
                                     "integrator": integrator})
        grid, dt = plan.grid, plan.schedule.dt
        stored = stored_settings(plan.attrs)
        scheme = scheme or stored["scheme"]
        splitting = splitting or stored["splitting"]
        integrator = integrator or stored["integrator"]
    splitting, integrator = check_splitting(splitting or "strang", integrator or "ap")
    scheme = scheme or "fv"
    t_final, dt = check_common(model, grid, t_final, dt, progress)
    check_scheme(scheme, grid)
    save_every = check_save_every(save_every)
    if plan is None:
        f = density_array("f0", f0, grid.shape)
        f = f / grid.mass(f)
    else:  # not renormalised: the resumed run repeats the uninterrupted run's arithmetic
        f = plan.last
    interval = model.selection.interval if model.selection_active else None
    system = JointSystem(model, grid, scheme=scheme, splitting=splitting,
                         integrator=integrator, check_gibbs=check_gibbs,
                         h_mass=grid.marginal(f, "h"))
    schedule = plan.schedule if plan is not None else \
        Schedule.make(0.0, t_final, dt, save_every, interval)
    # 'ap' falls back to 'split' where it does not apply: record what runs
    settings = {"scheme": scheme, "splitting": splitting, "integrator": system.integrator,
                "dt": schedule.dt, "dt_requested": dt, "save_every": schedule.save_every,
                "interval": interval}
    writer = plan.writer(model=model) if plan is not None else open_output(
        output, overwrite, kind="joint", grid=grid, model=model,
        attrs=io.run_attributes("joint", settings))
    rec = run(system, f, schedule, trackers=trackers, writer=writer, progress=progress,
              desc="pde_popdyn")
    info = {**settings, "n_steps": rec.steps_done, "setup_seconds": system.setup_seconds,
            "run_seconds": rec.wall_seconds, "stop_reason": rec.stop_reason,
            **system.summary()}
    finish_output(writer, rec, info)
    t, fs = np.asarray(rec.t), np.stack(rec.states)
    if plan is not None:
        t, fs = plan.join(t, fs)
        info["resumed_at"] = float(plan.schedule.t0)
    return Solution(t=t, f=fs, grid=grid, model=model, info=info,
                    stop_reason=rec.stop_reason)


__all__ = ["solve", "check_common", "check_save_every", "check_splitting"]
