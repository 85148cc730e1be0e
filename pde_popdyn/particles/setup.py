"""The checked set-up of a particle run: arguments validated, the settings a resumed run takes
from its file, the fast step chosen, the schedule laid out and the simulator options built,
for :func:`~pde_popdyn.particles.simulate_particles` and its sharded driver alike."""

from __future__ import annotations

import numbers
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from .._validate import _short, positive_float
from ..grid import Grid
from ..model import Model
from ..run import Schedule, plan_resume
from ..slow.agents import BOUNDARIES, apply_boundary
from .ensemble import Ensemble
from .fast import check_declarations
from .fused import fused_support
from .options import (_DEFAULTS, _MAX_SNAPSHOT_BYTES, _RESUMABLE, ENGINES, FAST_METHODS,
                      FITNESS_MODES, REPLICATOR_SCHEMES, RESAMPLING, SPLITTINGS, WINDOW_KINDS,
                      _check_choice, _check_int, _check_positive_field, _make_rng,
                      _resolve_effective, sample_density)


@dataclass
class RunSetup:
    """Everything a particle run needs once its arguments are checked."""

    model: Model
    n: int
    grid: Grid | None
    t0: float
    schedule: Schedule
    opts: dict
    rng: np.random.Generator
    seed_info: Any
    d: int
    theta: np.ndarray | None = None            # the initial agents (unsharded runs)
    h: np.ndarray | None = None
    draw: Callable | None = None               # draw(n, rng) -> (θ, h) for sharded runs
    resume_state: dict = field(default_factory=dict)
    plan: Any = None
    fbar_desc: Any = None
    engine_note: str | None = None
    summary_every: int | None = None
    options_record: dict = field(default_factory=dict)
    init_ensemble: Ensemble | None = None


def _draw_from(init: Any, grid: Grid | None) -> Callable:
    """A function draw(n, rng) -> (θ, h) for a density ``init`` on ``grid`` or a sampler."""
    if callable(init):
        def draw(n, rng):
            out = init(n, rng)
            if not (isinstance(out, tuple) and len(out) == 2):
                raise TypeError(f"init(n, rng) must return a tuple (theta, h), got "
                                f"{_short(out)}")
            theta, h = np.array(out[0], dtype=float), np.array(out[1], dtype=float)
            if theta.ndim not in (1, 2) or theta.shape[0] != n or h.shape != (n,):
                raise ValueError(f"init(n, rng) must return theta of shape ({n},) or ({n}, d) "
                                 f"and h of shape ({n},), got {theta.shape} and {h.shape}")
            return theta, h
        return draw
    if grid is None:
        raise ValueError("init is a density array, so grid= is needed to sample it; or pass "
                         "init=(theta, h) arrays or a sampler init(n, rng)")
    return lambda n, rng: sample_density(grid, init, n, rng)


def prepare(model, n, init, t_final, dt, *, seed, save_every, summary_every, fitness_mode,
            window, window_kind, effective_fitness, bandwidth, grid, replicator, resampling,
            ess_threshold, jump_order, boundary, h_box, fast, substeps, gradient, noise,
            splitting, check, output, resume, engine, materialize=True) -> RunSetup:
    """Check the arguments of a particle run and lay it out (see ``simulate_particles``).
    ``materialize=False`` (sharded runs) leaves density and sampler initial states undrawn:
    each shard draws its own agents with ``setup.draw``."""
    plan = None
    if resume is not None:
        plan = plan_resume(resume, "ensemble", model=model, grid=grid, t_final=t_final,
                           dt=dt, output=output, save_every=save_every, initial_key="none")
        stored = {k: plan.attrs[k] for k in _RESUMABLE + ("engine",) if k in plan.attrs}
        if stored.get("fitness_mode") == "window":
            raise ValueError(f"{resume} is a run with windowed fitness, whose per-agent memory "
                             f"is not stored in the file; continue it in the session with "
                             f"ensemble.continue_to(t_final)")
        n_stored = plan.states["particle_h"].shape[1]
        if n is not None and n != n_stored:
            raise ValueError(f"n={n} differs from the {n_stored} agents stored in {resume}; "
                             f"pass n=None")
        n, dt = n_stored, plan.schedule.dt
        if save_every is None:          # the stored one: the same saves, the same stream
            save_every = plan.schedule.save_every
        grid = grid if grid is not None else plan.grid
        given = dict(zip(_RESUMABLE, (fitness_mode, window, window_kind, bandwidth, replicator,
                                      resampling, ess_threshold, jump_order, boundary, h_box,
                                      fast, substeps, noise, splitting)))
        for key, value in stored.items():        # settings not given are the stored ones
            if key in given and given[key] == _DEFAULTS[key]:
                given[key] = tuple(value) if key == "h_box" and value else value
        (fitness_mode, window, window_kind, bandwidth, replicator, resampling, ess_threshold,
         jump_order, boundary, h_box, fast, substeps, noise, splitting) = (
            given[k] for k in _RESUMABLE)
        if stored.get("engine") in ("fused", "numpy") and engine == "auto":
            engine = stored["engine"]
    # -- validate the arguments ----------------------------------------------------------------
    if not isinstance(model, Model):
        raise TypeError(f"model must be a pp.Model, got {type(model).__name__}")
    if isinstance(n, bool) or not isinstance(n, (numbers.Integral, np.integer)):
        raise TypeError(f"n must be a positive integer number of agents, got {_short(n)}")
    if n < 1:
        raise ValueError(f"n must be >= 1 agent, got {n}")
    n = int(n)
    dt = positive_float("dt", dt)
    t_final = positive_float("t_final", t_final, allow_zero=True, off_hint=False)
    if grid is not None and not isinstance(grid, Grid):
        raise TypeError(f"grid must be a pp.Grid or None, got {type(grid).__name__}")
    if save_every is not None:
        save_every = _check_int("save_every", save_every)
    if summary_every is not None:
        summary_every = _check_int("summary_every", summary_every)
    _check_choice("fitness_mode", fitness_mode, FITNESS_MODES)
    _check_choice("window_kind", window_kind, WINDOW_KINDS)
    _check_choice("replicator", replicator, REPLICATOR_SCHEMES)
    _check_choice("resampling", resampling, RESAMPLING)
    _check_choice("fast", fast, FAST_METHODS)
    _check_choice("splitting", splitting, SPLITTINGS)
    _check_choice("engine", engine, ENGINES)
    substeps = _check_int("substeps", substeps)
    jump_order = _check_int("jump_order", jump_order)
    if jump_order not in (1, 2):
        raise ValueError(f"jump_order must be 1 or 2, got {jump_order}")
    ess_threshold = positive_float("ess_threshold", ess_threshold)
    if ess_threshold > 1:
        raise ValueError(f"ess_threshold must be in (0, 1], got {ess_threshold}; 1 resamples "
                         f"at every step, 0.5 when the effective sample size halves")
    if bandwidth is not None:
        bandwidth = positive_float("bandwidth", bandwidth)
    if fitness_mode == "window":
        if window is None:
            raise ValueError("fitness_mode='window' needs window=<averaging time > 0>")
        window = positive_float("window", window)
    sel = model.selection if model.selection_active else None
    if fitness_mode != "instantaneous" and sel is None:
        raise ValueError(f"fitness_mode={fitness_mode!r} only matters for selection, and the "
                         f"model has none")

    # -- the h-box and the boundary rule -------------------------------------------------------
    box = None
    if h_box is not None:
        try:
            lo, hi = (float(v) for v in h_box)
        except (TypeError, ValueError):
            raise TypeError(f"h_box must be a pair (low, high), got {_short(h_box)}") from None
        if not (np.isfinite(lo) and np.isfinite(hi) and hi > lo):
            raise ValueError(f"h_box=(low, high) needs finite low < high, got {h_box!r}")
        box = (lo, hi)
    elif grid is not None:
        box = (float(grid.h_edges[0]), float(grid.h_edges[-1]))
    if boundary is None:
        boundary = "periodic" if (grid is not None and "h" in grid.periodic) else "reflecting"
    _check_choice("boundary", boundary, BOUNDARIES)
    if boundary != "reflecting" and box is None:
        raise ValueError(f"boundary={boundary!r} needs a box: give h_box=(low, high) or grid=")

    # -- the random generator and the initial state --------------------------------------------
    t0 = 0.0
    resume_state: dict = {}
    theta = h = draw = None
    init_ens = None
    if plan is not None:
        init = Ensemble.from_snapshots(t=plan.t[-1:], theta=plan.states["particle_theta"][-1:],
                                       h=plan.states["particle_h"][-1:], model=model, grid=grid,
                                       info={"rng_state": plan.rng_state, "dt": dt,
                                             "seed": plan.attrs.get("seed")})
        n = init.n
    if isinstance(init, Ensemble):
        if init.n != n:
            raise ValueError(f"init is an Ensemble of {init.n} agents but n={n}; pass "
                             f"n={init.n}")
        init_ens = init
        t0 = float(init.t[-1])
        if seed is None:
            if "rng" not in init.state:
                raise ValueError("this Ensemble has no stored generator state; pass seed=")
            rng = np.random.Generator(getattr(np.random, init.state["rng"]["bit_generator"])())
            rng.bit_generator.state = init.state["rng"]
            seed_info = init.info.get("seed")
        else:
            rng, seed_info = _make_rng(seed)
        resume_state = init.state
        theta = np.array(init.theta[-1], dtype=float)
        h = np.array(init.h[-1], dtype=float)
    else:
        rng, seed_info = _make_rng(seed)
        if isinstance(init, tuple):
            if len(init) != 2:
                raise ValueError(f"init as a tuple must be (theta, h), got {len(init)} items")
            theta = np.array(init[0], dtype=float)
            h = np.array(init[1], dtype=float)
            if theta.ndim not in (1, 2) or theta.shape[0] != n or h.shape != (n,):
                raise ValueError(f"init=(theta, h) must have theta of shape ({n},) or ({n}, d) "
                                 f"and h of shape ({n},) for n={n}, got {theta.shape} and "
                                 f"{h.shape}")
            if not (np.all(np.isfinite(theta)) and np.all(np.isfinite(h))):
                raise ValueError("init=(theta, h) contains NaN or inf")
        elif isinstance(init, (np.ndarray, list)) or callable(init):
            draw = _draw_from(init, grid)
            if materialize:
                theta, h = draw(n, rng)
        else:
            raise TypeError(f"init must be a density array on grid, a tuple (theta, h), a "
                            f"sampler init(n, rng) or an Ensemble, got {type(init).__name__}")
    if t_final < t0:
        raise ValueError(f"t_final={t_final} is before the start time {t0}")
    # a few agents stand in for the population in the checks below when none is drawn yet
    probe_theta, probe_h = (theta, h) if theta is not None else \
        draw(min(n, 16), np.random.default_rng(0))
    if box is not None and h is not None:
        apply_boundary(h, *box, boundary)
    theta_box = None
    if grid is not None and "theta" in grid.periodic:
        if probe_theta.ndim != 1:
            raise ValueError("a periodic θ-axis needs θ ∈ R (d = 1)")
        theta_box = (float(grid.theta_edges[0]), float(grid.theta_edges[-1]))

    # -- the fast step and its gradient --------------------------------------------------------
    if fast == "auto":
        fast = "ou" if model.quadratic is not None else "euler"
    if fast == "ou" and model.quadratic is None:
        raise ValueError("fast='ou' needs a quadratic loss declared with "
                         "pp.Model(..., quadratic=(K, center)); use fast='euler' or 'mala'")
    if not (gradient is None or gradient == "central" or callable(gradient)):
        raise ValueError(f"gradient={gradient!r} is not known; use None, 'central' or a "
                         f"callable gradient(theta, h, rng)")
    if gradient is not None and fast == "ou":
        raise ValueError(f"gradient={gradient!r} is not used by fast='ou' (the exact "
                         f"Ornstein–Uhlenbeck step of the declared quadratic loss); pass "
                         f"fast='euler' to step with that gradient, or leave gradient=None")
    grad_source = None
    if fast in ("euler", "mala"):
        if gradient is None:
            if model.loss_grad is not None:
                grad_source = "model"
            elif model.quadratic is not None:
                grad_source = "quadratic"
            else:
                raise ValueError(
                    f"fast={fast!r} needs ∇_θL, but the model has no loss_grad and its loss "
                    f"is not declared quadratic; give pp.Model(..., loss_grad=...), or "
                    f"simulate_particles(..., gradient='central') for central differences, "
                    f"or gradient=callable(theta, h, rng) for a (stochastic) gradient")
        elif gradient == "central":
            grad_source = "central"
        elif callable(gradient):
            grad_source = "user"
            if fast == "mala":
                raise ValueError("fast='mala' needs the exact gradient and loss; a user "
                                 "gradient callable may be stochastic, use fast='euler'")
        else:
            raise ValueError(f"gradient={gradient!r} is not known; use None, 'central' or a "
                             f"callable gradient(theta, h, rng)")
        if fast == "mala" and not noise:
            raise ValueError("fast='mala' is a Metropolis-adjusted Langevin step and needs its "
                             "noise; noise=False is for plain (stochastic) gradient descent "
                             "with fast='euler'")
    if check:
        check_declarations(model, probe_theta, probe_h, grad_source if fast != "ou" else None)
    for name in ("temperature", "mobility"):
        value = getattr(model, name)
        if callable(value):
            _check_positive_field(name, value(probe_h), probe_h.shape[0])

    # -- fitness mode --------------------------------------------------------------------------
    fbar, fbar_desc = None, None
    if fitness_mode == "effective":
        fbar, fbar_desc = _resolve_effective(model, effective_fitness, grid)
        test = np.asarray(fbar(probe_h[:8]), dtype=float)
        if test.shape != probe_h[:8].shape or not np.all(np.isfinite(test)):
            raise ValueError(f"effective_fitness(h) must return finite values of h's shape; "
                             f"got {test!r} for h of shape {probe_h[:8].shape}")

    # -- the schedule and memory -------------------------------------------------------------
    interval = sel.interval if sel is not None else None
    prev_dt = float(init.info["dt"]) if isinstance(init, Ensemble) and "dt" in init.info \
        else None
    span = t_final - t0
    if prev_dt is not None and abs(prev_dt - dt) <= 1e-12 * dt and span > 0 and \
            abs(span / prev_dt - round(span / prev_dt)) < 1e-9:      # keep the exact stored step
        steps = int(round(span / prev_dt))
        schedule = Schedule(t0=t0, dt=prev_dt, n_steps=steps,
                            save_every=save_every or max(1, steps), interval=interval)
    else:
        # by default only the first and the last positions are kept (and generation times)
        schedule = Schedule.make(t0, t_final, dt, save_every, interval)
        if save_every is None:
            schedule.save_every = max(1, schedule.n_steps)
    d = 1 if probe_theta.ndim == 1 else probe_theta.shape[1]
    nbytes = len(schedule.saved_steps()) * n * (d + 1) * 8
    if nbytes > _MAX_SNAPSHOT_BYTES and materialize:
        raise ValueError(f"saving {len(schedule.saved_steps())} snapshots of {n} agents needs "
                         f"{nbytes / 1e9:.1f} GB; pass a larger save_every= (e.g. "
                         f"{schedule.n_steps}) to keep only a few states")
    window_len = max(1, int(round(window / schedule.dt))) if fitness_mode == "window" else None
    if window_len is not None and window_kind == "running" and window_len * n * 8 > 2e9:
        raise ValueError(f"the running window keeps {window_len} values per agent "
                         f"({window_len * n * 8 / 1e9:.1f} GB); use window_kind='exponential'")

    opts = dict(fast=fast, substeps=substeps, grad_source=grad_source,
                gradient=gradient if callable(gradient) else None, noise=bool(noise),
                fitness_mode=fitness_mode, window=window, window_kind=window_kind,
                window_len=window_len, fbar=fbar, bandwidth=bandwidth, replicator=replicator,
                resampling=resampling, ess_threshold=ess_threshold, jump_order=jump_order,
                boundary=boundary, h_box=box, theta_box=theta_box, splitting=splitting)
    why = fused_support(model, opts, probe_theta.ndim)
    if engine == "fused" and why is not None:
        raise ValueError(f"engine='fused' does not cover this run: {why}; use engine='auto' "
                         f"or 'numpy'")
    opts["engine"] = "fused" if engine != "numpy" and why is None else "numpy"
    if sel is not None:
        sel.check_particles(n, opts)
    record = {k: (list(v) if isinstance(v, tuple) else v)
              for k, v in zip(_RESUMABLE, (fitness_mode, window, window_kind, bandwidth,
                                           replicator, resampling, ess_threshold, jump_order,
                                           boundary, box, fast, substeps, bool(noise),
                                           splitting))}
    record["engine"] = opts["engine"]
    return RunSetup(model=model, n=n, grid=grid, t0=t0, schedule=schedule, opts=opts, rng=rng,
                    seed_info=seed_info, d=d, theta=theta, h=h, draw=draw,
                    resume_state=resume_state, plan=plan, fbar_desc=fbar_desc,
                    engine_note=why, summary_every=summary_every, options_record=record,
                    init_ensemble=init_ens)


__all__ = ["RunSetup", "prepare"]
