"""Entry point :func:`simulate_particles`: the N-agent system whose N → ∞ limit is the
mean-field PDE (the sub-steps: :mod:`pde_popdyn.particles.system`)."""

from __future__ import annotations

import numbers
from typing import Any, Callable

import numpy as np

from .._validate import _short, density_array, positive_float
from ..gibbs import effective_fitness as gibbs_effective_fitness
from ..grid import Grid
from ..model import Model
from .. import io
from ..run import Schedule, finish_output, open_output, plan_resume, run
from ..slow.agents import BOUNDARIES, apply_boundary
from .ensemble import Ensemble
from .fast import check_declarations
from .population import Population
from .system import Simulator

FAST_METHODS = ("auto", "ou", "euler", "mala")
FITNESS_MODES = ("instantaneous", "window", "effective", "estimated")
WINDOW_KINDS = ("exponential", "running")
REPLICATOR_SCHEMES = ("resample", "pairwise")
RESAMPLING = ("systematic", "multinomial")
SPLITTINGS = ("strang", "lie")
_MAX_SNAPSHOT_BYTES = 4e9
#: settings a particle file stores and a resumed run takes from it
_RESUMABLE = ("fitness_mode", "window", "window_kind", "bandwidth", "replicator",
              "resampling", "ess_threshold", "jump_order", "boundary", "h_box", "fast",
              "substeps", "noise", "splitting")
_DEFAULTS = dict(fitness_mode="instantaneous", window=None, window_kind="exponential",
                 bandwidth=None, replicator="resample", resampling="systematic",
                 ess_threshold=1.0, jump_order=2, boundary=None, h_box=None, fast="auto",
                 substeps=1, noise=True, splitting="strang")


def sample_density(grid: Grid, f: Any, n: int, rng: np.random.Generator
                   ) -> tuple[np.ndarray, np.ndarray]:
    """Draw n independent agents (θ_i, h_i) exactly from the piecewise-constant density whose
    cell averages are ``f``: a cell is chosen with probability ∝ f·weights, then a point
    uniformly inside it (on Chebyshev θ-nodes the 'cells' are the dual cells between the
    midpoints of the nodes)."""
    f = density_array("init", f, grid.shape)
    p = (f * grid.weights).ravel()
    c = np.cumsum(p)
    cell = np.searchsorted(c, rng.random(n) * c[-1], side="right")
    np.minimum(cell, p.size - 1, out=cell)
    it, ih = np.divmod(cell, grid.shape[1])
    te, he = grid.theta_edges, grid.h_edges
    theta = te[it] + (te[it + 1] - te[it]) * rng.random(n)
    h = he[ih] + (he[ih + 1] - he[ih]) * rng.random(n)
    return theta, h


def _check_choice(name: str, value: Any, choices: tuple) -> str:
    if value not in choices:
        raise ValueError(f"{name}={value!r} is not known; use one of {choices}")
    return value


def _check_int(name: str, value: Any, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, (numbers.Integral, np.integer)):
        raise TypeError(f"{name} must be an integer, got {_short(value)} of type "
                        f"{type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return int(value)


def _check_positive_field(name: str, out: Any, n: int) -> None:
    arr = np.asarray(out, dtype=float)
    if arr.ndim and arr.shape != (n,):
        raise ValueError(f"{name}(h) returned shape {arr.shape}; for particles it is called "
                         f"with h of shape ({n},) and must return shape ({n},)")
    if not np.all(np.isfinite(arr)) or np.any(arr <= 0):
        raise ValueError(f"{name}(h) must be finite and > 0 at every agent; min is "
                         f"{np.nanmin(arr):.3g}")


def _resolve_effective(model: Model, effective_fitness: Any, grid: Grid | None
                       ) -> tuple[Callable, str]:
    if effective_fitness is not None:
        if not callable(effective_fitness):
            raise TypeError(f"effective_fitness must be a callable F̄(h), got "
                            f"{_short(effective_fitness)}")
        return effective_fitness, getattr(effective_fitness, "__name__", "callable")
    if grid is None:
        raise ValueError("fitness_mode='effective' needs effective_fitness=callable F̄(h), or "
                         "grid= so that F̄ can be computed by quadrature on the grid's θ-box")
    values = np.asarray(gibbs_effective_fitness(model, grid), dtype=float)
    nodes = grid.h

    def fbar(h: np.ndarray) -> np.ndarray:
        return np.interp(h, nodes, values)
    return fbar, "gibbs.effective_fitness(quadrature) on the grid's h-nodes, linear interp."


def simulate_particles(model: Model, n: int, init: Any, t_final: float, dt: float, *,
                       seed: int | np.random.Generator | None = None,
                       save_every: int | None = None,
                       fitness_mode: str = "instantaneous", window: float | None = None,
                       window_kind: str = "exponential",
                       effective_fitness: Callable | None = None,
                       bandwidth: float | None = None,
                       grid: Grid | None = None, progress: bool | None = None,
                       replicator: str = "resample", resampling: str = "systematic",
                       ess_threshold: float = 1.0, jump_order: int = 2,
                       boundary: str | None = None, h_box: tuple | None = None,
                       fast: str = "auto", substeps: int = 1,
                       gradient: str | Callable | None = None, noise: bool = True,
                       splitting: str = "strang", check: bool = True,
                       output: str | None = None, overwrite: bool = False,
                       resume: str | None = None, trackers: Any = None) -> Ensemble:
    """Simulate N agents of ``model`` from ``init`` up to ``t_final`` (the equations each
    sub-step solves: :mod:`pde_popdyn.particles.system`, :mod:`pde_popdyn.particles.fast`
    and each rule's class docstring).

    Parameters
    ----------
    model:
        A :class:`pde_popdyn.Model`. Its callables are called per agent, with θ of shape (N,)
        (or (N, d)) and h of shape (N,); ``loss``/``fitness`` return shape (N,),
        ``loss_grad`` θ's shape; ``temperature``/``mobility``/``quadratic`` callables get h.
    n:
        Number of agents N ≥ 1.
    init:
        A density on ``grid`` (array of ``grid.shape``), sampled exactly from its cell
        averages; a tuple ``(theta, h)`` of arrays with N rows; or an :class:`Ensemble`, whose
        final state is continued from its final time (with its stored bit-generator state
        unless ``seed`` is given: bit for bit what the uninterrupted run gives when the
        continuation starts at one of its saved times with the same ``dt``).
    t_final, dt:
        Final time (absolute; ≥ the start time) and time step; the step is shortened slightly
        so that a whole number of steps reaches ``t_final``.
    seed:
        An int (or a numpy Generator) for ``np.random.default_rng``; None draws fresh entropy,
        which is stored in ``info["seed"]`` so the run can be repeated.
    save_every:
        Save every this many steps (first and last states always); default ~100 snapshots.
    fitness_mode:
        What selection sees: ``"instantaneous"`` F(θ_i, h_i); ``"window"`` a time average of
        it over ``window`` (``window_kind="exponential"``: F̃ ← e^{−Δt/w} F̃ + (1 − e^{−Δt/w})
        F each step; ``"running"``: the mean of the last round(w/Δt) values; copies carry the
        donor's memory, agents that take only h start afresh); ``"effective"`` F̄(h_i) from the
        callable ``effective_fitness`` or, if not given, from
        ``pde_popdyn.gibbs.effective_fitness`` by quadrature on ``grid`` (interpolated
        linearly between the h-nodes); ``"estimated"`` the Nadaraya–Watson regression of
        {(h_j, F_j)} over the population (:func:`kernel_regression`, Silverman's bandwidth
        unless ``bandwidth`` is given; binned, O(N)).
    grid:
        Optional :class:`Grid`: for a density ``init``, for the h-box (its h-edges) and its
        periodicity, for ``fitness_mode="effective"`` by quadrature, and stored with the
        result. A periodic θ-axis makes θ wrap into the θ-box (d = 1).
    replicator, resampling, ess_threshold:
        Replicator scheme ``"resample"`` (weights e^{κΔtF} then ``"systematic"`` or
        ``"multinomial"`` resampling; adaptive when ``ess_threshold`` < 1) or ``"pairwise"``.
    jump_order:
        2 (exponential midpoint, default, as the PDE's jump step) or 1, for BoltzmannJump and
        Truncation.
    boundary, h_box:
        ``"reflecting"`` (default), ``"periodic"`` (default if the grid's h-axis is periodic)
        or ``"clip"``, on the box ``h_box=(lo, hi)`` or, if not given, the grid's h-range.
        Without a box h lives on R.
    fast, substeps, gradient, noise:
        The fast step: ``"auto"`` (``"ou"`` if the model declares ``quadratic=``, else
        ``"euler"``), ``"ou"``, ``"euler"`` or ``"mala"``; ``substeps`` inner steps per Δt;
        ``gradient`` None (the model's), ``"central"`` or ``callable(theta, h, rng)``;
        ``noise=False`` drops the Langevin noise.
    splitting:
        ``"strang"`` (default, order 2) or ``"lie"`` (order 1).
    check:
        Check ``quadratic=`` and ``loss_grad`` against the loss on a few agents first.
    output, overwrite:
        A particle snapshot file (HDF5, :mod:`pde_popdyn.io`) to stream the saved states to
        (positions, the random generator's state, moments, and the histogram on ``grid`` if
        given), each flushed at once; ``overwrite`` replaces an existing file.
    resume:
        A particle snapshot file to continue up to ``t_final`` (``n``, ``init`` and ``dt`` may
        be None or the first run's values); the generator's stored state makes the result bit
        for bit the uninterrupted run's when the file ended at one of that run's saved times.
        Settings not given are the stored ones.
    trackers:
        Trackers (:mod:`pde_popdyn.trackers`) or callables ``fn(t, population)`` returning
        True to stop; the population has ``.theta`` and ``.h``.

    Returns
    -------
    Ensemble
        ``.t`` (n_saved,), ``.theta`` (n_saved, N) or (n_saved, N, d), ``.h`` (n_saved, N),
        ``.stop_reason``.
    """

    # -- a run continued from a file ---------------------------------------------------------
    plan = None
    if resume is not None:
        plan = plan_resume(resume, "ensemble", model=model, grid=grid, t_final=t_final,
                           dt=dt, output=output, save_every=save_every, initial_key="none")
        stored = {k: plan.attrs[k] for k in _RESUMABLE if k in plan.attrs}
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
    # -- validate the arguments ----------------------------------------------------------------
    if not isinstance(model, Model):
        raise TypeError(f"model must be a pp.Model, got {type(model).__name__}")
    if isinstance(n, bool) or not isinstance(n, (numbers.Integral, np.integer)):
        raise TypeError(f"n must be a positive integer number of agents, got {_short(n)}")
    if n < 1:
        raise ValueError(f"n must be >= 1 agent, got {n}")
    n = int(n)
    dt = positive_float("dt", dt)
    t_final = positive_float("t_final", t_final, allow_zero=True)
    if grid is not None and not isinstance(grid, Grid):
        raise TypeError(f"grid must be a pp.Grid or None, got {type(grid).__name__}")
    if save_every is not None:
        save_every = _check_int("save_every", save_every)
    _check_choice("fitness_mode", fitness_mode, FITNESS_MODES)
    _check_choice("window_kind", window_kind, WINDOW_KINDS)
    _check_choice("replicator", replicator, REPLICATOR_SCHEMES)
    _check_choice("resampling", resampling, RESAMPLING)
    _check_choice("fast", fast, FAST_METHODS)
    _check_choice("splitting", splitting, SPLITTINGS)
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
    resume_state = None
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
        elif isinstance(init, np.ndarray) or isinstance(init, list):
            if grid is None:
                raise ValueError("init is a density array, so grid= is needed to sample it; "
                                 "or pass init=(theta, h) arrays")
            theta, h = sample_density(grid, init, n, rng)
        else:
            raise TypeError(f"init must be a density array on grid, a tuple (theta, h) or an "
                            f"Ensemble, got {type(init).__name__}")
    if t_final < t0:
        raise ValueError(f"t_final={t_final} is before the start time {t0}")
    if box is not None:
        apply_boundary(h, *box, boundary)
    theta_box = None
    if grid is not None and "theta" in grid.periodic:
        if theta.ndim != 1:
            raise ValueError("a periodic θ-axis needs θ ∈ R (d = 1)")
        theta_box = (float(grid.theta_edges[0]), float(grid.theta_edges[-1]))

    # -- the fast step and its gradient --------------------------------------------------------
    if fast == "auto":
        fast = "ou" if model.quadratic is not None else "euler"
    if fast == "ou" and model.quadratic is None:
        raise ValueError("fast='ou' needs a quadratic loss declared with "
                         "pp.Model(..., quadratic=(K, center)); use fast='euler' or 'mala'")
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
        check_declarations(model, theta, h, grad_source if fast != "ou" else None)
    for name in ("temperature", "mobility"):
        value = getattr(model, name)
        if callable(value):
            _check_positive_field(name, value(h), n)

    # -- fitness mode --------------------------------------------------------------------------
    fbar, fbar_desc = None, None
    if fitness_mode == "effective":
        fbar, fbar_desc = _resolve_effective(model, effective_fitness, grid)
        test = np.asarray(fbar(h[:8]), dtype=float)
        if test.shape != h[:8].shape or not np.all(np.isfinite(test)):
            raise ValueError(f"effective_fitness(h) must return finite values of h's shape; "
                             f"got {test!r} for h of shape {h[:8].shape}")

    # -- the schedule and memory -------------------------------------------------------------
    interval = sel.interval if sel is not None else None
    prev_dt = float(init.info["dt"]) if isinstance(init, Ensemble) and "dt" in init.info \
        else None
    span = t_final - t0
    if prev_dt is not None and abs(prev_dt - dt) <= 1e-12 * dt and span > 0 and \
            abs(span / prev_dt - round(span / prev_dt)) < 1e-9:      # keep the exact stored step
        schedule = Schedule(t0=t0, dt=prev_dt, n_steps=int(round(span / prev_dt)),
                            save_every=1, interval=interval)
        schedule.save_every = save_every or max(1, schedule.n_steps // 100)
    else:
        schedule = Schedule.make(t0, t_final, dt, save_every, interval)
    dt, n_steps, save_every = schedule.dt, schedule.n_steps, schedule.save_every
    d = 1 if theta.ndim == 1 else theta.shape[1]
    nbytes = len(schedule.saved_steps()) * n * (d + 1) * 8
    if nbytes > _MAX_SNAPSHOT_BYTES:
        raise ValueError(f"saving {len(schedule.saved_steps())} snapshots of {n} agents needs "
                         f"{nbytes / 1e9:.1f} GB; pass a larger save_every= (e.g. "
                         f"{n_steps}) to keep only a few states")
    window_len = max(1, int(round(window / dt))) if fitness_mode == "window" else None
    if window_len is not None and window_kind == "running" and window_len * n * 8 > 2e9:
        raise ValueError(f"the running window keeps {window_len} values per agent "
                         f"({window_len * n * 8 / 1e9:.1f} GB); use window_kind='exponential'")

    opts = dict(fast=fast, substeps=substeps, grad_source=grad_source,
                gradient=gradient if callable(gradient) else None, noise=bool(noise),
                fitness_mode=fitness_mode, window=window, window_kind=window_kind,
                window_len=window_len, fbar=fbar, bandwidth=bandwidth, replicator=replicator,
                resampling=resampling, ess_threshold=ess_threshold, jump_order=jump_order,
                boundary=boundary, h_box=box, theta_box=theta_box, splitting=splitting)
    if sel is not None:
        sel.check_particles(n, opts)
    sim = Simulator(model, n, rng, opts)
    P = Population(theta, h)
    rng_state_start = rng.bit_generator.state
    if fitness_mode == "window":
        st = resume_state or {}
        if "window_avg" in st and window_kind == "exponential":
            P.wavg = np.array(st["window_avg"], dtype=float)
            sim.wpos = 0
        elif "window_buf" in st and window_kind == "running":
            P.wbuf = np.array(st["window_buf"], dtype=float)
            P.wsum = np.array(st["window_sum"], dtype=float)
            sim.wpos = int(st.get("window_pos", 0))
        else:
            sim.init_window(P)

    # -- the run -------------------------------------------------------------------------------
    settings = {
        "dt": dt, "dt_requested": dt, "save_every": save_every, "interval": interval,
        "t0": t0, "n_agents": n, "splitting": splitting, "fast": fast, "substeps": substeps,
        "gradient": {"model": "model.loss_grad", "quadratic": "quadratic declaration",
                     "central": "central", "user": "user callable"}.get(grad_source, None),
        "noise": bool(noise), "fitness_mode": fitness_mode, "window": window,
        "window_kind": window_kind, "effective_fitness": fbar_desc, "bandwidth": bandwidth,
        "replicator": replicator, "resampling": resampling, "ess_threshold": ess_threshold,
        "jump_order": jump_order, "boundary": boundary,
        "h_box": None if box is None else list(box),
        "selection": None if sel is None else type(sel).__name__,
        "bit_generator": type(rng.bit_generator).__name__}
    histogram = grid is not None and d == 1 and grid.ndim_theta == 1 and grid.ndim_h == 1
    writer = plan.writer(model=model, rng=rng) if plan is not None else open_output(
        output, overwrite, kind="ensemble", grid=grid, model=model, rng=rng, seed=seed_info,
        histogram=histogram, attrs=io.run_attributes("ensemble", settings))
    rec = run(sim, P, schedule, trackers=trackers, writer=writer, progress=progress,
              desc="particles")
    P = rec.final
    thetas, hs, rng_states = zip(*rec.states)
    run_seconds = rec.wall_seconds
    steps = rec.steps_done
    info = {
        **settings, "seed": seed_info, "rng_state_start": rng_state_start, "n_steps": steps,
        "d": d, "run_seconds": run_seconds, "stop_reason": rec.stop_reason,
        "agent_steps_per_second": n * steps / run_seconds if run_seconds > 0 else None,
        "resamples": sim.stats["resamples"], "copies": sim.stats["copies"],
        "generations": sim.stats["generations"],
        "pairwise_max_substeps": sim.stats["pairwise_max_substeps"],
        "mala_acceptance": (sim.stats["mala_accepted"] / sim.stats["mala_proposed"]
                            if sim.stats["mala_proposed"] else None),
        "last_bandwidth": sim.stats["last_bandwidth"],
    }
    finish_output(writer, rec, info)
    state: dict[str, Any] = {"rng": rng.bit_generator.state}
    if P.wavg is not None:
        state["window_avg"] = P.wavg.copy()
    if P.wbuf is not None:
        state.update(window_buf=P.wbuf.copy(), window_sum=P.wsum.copy(),
                     window_pos=sim.wpos)
    options = dict(seed=None, fitness_mode=fitness_mode, window=window,
                   window_kind=window_kind, effective_fitness=effective_fitness,
                   bandwidth=bandwidth, grid=grid, replicator=replicator,
                   resampling=resampling, ess_threshold=ess_threshold, jump_order=jump_order,
                   boundary=boundary, h_box=h_box, fast=fast, substeps=substeps,
                   gradient=gradient, noise=noise, splitting=splitting, check=False,
                   runner=simulate_particles)
    t_arr, theta_arr, h_arr = np.asarray(rec.t), np.stack(thetas), np.stack(hs)
    if plan is not None:
        _, theta_arr = plan.join(t_arr, theta_arr, "particle_theta")
        t_arr, h_arr = plan.join(t_arr, h_arr, "particle_h")
        info["resumed_at"] = float(plan.schedule.t0)
    stored_rng = list(rng_states)
    if plan is not None:
        stored_rng = list(plan.extra.get("rng_states") or [])[:-1] + stored_rng
    ens = Ensemble(t=t_arr, theta=theta_arr, h=h_arr, model=model,
                   grid=grid, info=info, state=state, _options=options,
                   stop_reason=rec.stop_reason, stored_rng_states=stored_rng or None)
    if writer is not None and histogram:        # what the file holds beside the positions
        ens.stored_density = ens.histogram(grid)
    return ens


def _make_rng(seed: Any) -> tuple[np.random.Generator, Any]:
    if isinstance(seed, np.random.Generator):
        return seed, None
    if seed is None:
        ss = np.random.SeedSequence()
        return np.random.default_rng(ss), ss.entropy
    if isinstance(seed, bool) or not isinstance(seed, (numbers.Integral, np.integer)) \
            or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, a numpy Generator or None, "
                         f"got {_short(seed)}")
    return np.random.default_rng(int(seed)), int(seed)


__all__ = ["simulate_particles", "sample_density"]
