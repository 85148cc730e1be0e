"""Entry point :func:`simulate_particles`: the N-agent system whose N → ∞ limit is the
mean-field PDE (the sub-steps: :mod:`pde_popdyn.particles.system`)."""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from ..grid import Grid
from ..model import Model
from .. import io
from .._validate import flag
from ..run import finish_output, open_output, run
from .ensemble import Ensemble
from .options import sample_density
from .population import Population
from .setup import RunSetup, prepare
from .summaries import SummaryRecorder
from .system import Simulator, combine_summaries


def simulate_particles(model: Model, n: int, init: Any, t_final: float, dt: float, *,
                       seed: int | np.random.Generator | None = None,
                       save_every: int | None = None, summary_every: int | None = None,
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
                       splitting: str = "strang", check: bool = True, engine: str = "auto",
                       shards: int | None = None, client: Any = None,
                       checkpoint: str | None = None, checkpoint_every: int | None = None,
                       gather: bool | None = None,
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
        averages; a tuple ``(theta, h)`` of arrays with N rows; a sampler ``init(n, rng)``
        returning such a tuple for n agents (a sharded run calls it once per shard, with the
        shard's generator); or an :class:`Ensemble`, whose
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
        Keep the agents' positions every this many steps (and always the first and the last
        state, and the generation times of rules acting at discrete times). Default: only the
        first and the last state, 2·N·(d + 1)·8 bytes (32 MB for 10⁶ agents with d = 1);
        each further saved state costs N·(d + 1)·8 bytes.
    summary_every:
        Record summaries every this many steps (and at the start): the moments of (θ₁, h),
        their covariance and ⟨F⟩, plus the histogram densities on ``grid`` when a grid is
        given (θ ∈ R), in ``ensemble.summaries``; (7 + n_θ·n_h)·8 bytes per record whatever
        N. Between saved states the population may carry a pending half selection step
        (Strang splitting merges consecutive ones); summaries weight the agents by it, so
        they describe the state a save would have produced. Kept in memory (the snapshot
        file of ``output`` holds the saved states). Default None: no summaries.
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
    engine:
        ``"auto"`` (default): the fused compiled step where it applies, else numpy;
        ``"fused"``: the compiled step (an error if the run is outside what it covers:
        :mod:`pde_popdyn.particles.fused`); ``"numpy"``: the step-by-step numpy path, which
        covers everything. For a fixed seed the two engines draw different normals, so their
        agents differ; both sample the same scheme exactly (``info["engine"]`` says which
        ran). Their resampling noise differs slightly: the numpy engine keeps an agent's
        copies next to it, which systematic resampling rewards, so at a fixed N its error of
        the means is about 7 % smaller. For a few hundred agents (a PBT population's size) the
        two take about the same time, so ``engine="numpy"`` gives the lower noise there for
        free; from 10³ agents up the fused engine is faster (about 3× at 10⁶).
    shards, client, checkpoint, checkpoint_every, gather:
        Run the population in ``shards`` pieces, one per worker of the dask.distributed
        ``client`` (without one: one local process per shard; ``client="inline"``: all in
        this process, for tests), each with its own random stream spawned from ``seed``
        (an int, or None for fresh entropy); only summaries travel to the client (on few
        cores, create the cluster under ``dask.config.set(pde_popdyn.particles.DASK_SETTINGS)``
        to keep dask's bookkeeping off the workers' cores). See
        :mod:`pde_popdyn.particles.sharded`, which also
        describes ``checkpoint`` (a directory of per-shard particle files written every
        ``checkpoint_every`` steps and at the end; pass it as ``resume=`` to continue a killed
        run) and ``gather`` (bring the saved positions to the client; default: when they take
        at most 2 GB).
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
        ``.summaries`` (``summary_every``), ``.stop_reason``.

    Memory: the run works in place on θ and h, which live in the last saved state; with the
    fused engine the peak is about (n_saved·(d + 1) + 2)·8 bytes per agent (48 bytes with the
    defaults and d = 1): the saved states, the fitness and the selection weights (the fitness
    function is called on chunks of 65536 agents, so its temporaries are small).
    """

    flag("progress", progress, allow_none=True)
    flag("overwrite", overwrite)
    args = dict(seed=seed, save_every=save_every, summary_every=summary_every,
                fitness_mode=fitness_mode, window=window, window_kind=window_kind,
                effective_fitness=effective_fitness, bandwidth=bandwidth, grid=grid,
                replicator=replicator, resampling=resampling, ess_threshold=ess_threshold,
                jump_order=jump_order, boundary=boundary, h_box=h_box, fast=fast,
                substeps=substeps, gradient=gradient, noise=noise, splitting=splitting,
                check=check, engine=engine)
    if shards is not None or client is not None or checkpoint is not None or \
            _is_sharded_checkpoint(resume):
        from .sharded import simulate_sharded
        return simulate_sharded(model, n, init, t_final, dt, args, shards=shards, client=client,
                                checkpoint=checkpoint, checkpoint_every=checkpoint_every,
                                gather=gather, resume=resume, progress=progress,
                                trackers=trackers, output=output)
    setup = prepare(model, n, init, t_final, dt, output=output, resume=resume, **args)
    return _run_local(setup, args, output=output, overwrite=overwrite, progress=progress,
                      trackers=trackers)


def _is_sharded_checkpoint(resume: Any) -> bool:
    if resume is None:
        return False
    from pathlib import Path
    return Path(resume).is_dir()


def _run_local(setup: RunSetup, args: dict, *, output, overwrite, progress, trackers
               ) -> Ensemble:
    """The run in this process (simulate_particles without shards)."""
    model, n, grid, rng, opts = setup.model, setup.n, setup.grid, setup.rng, setup.opts
    schedule, plan = setup.schedule, setup.plan
    sel = model.selection if model.selection_active else None
    sim = Simulator(model, n, rng, opts)
    P = Population(setup.theta, setup.h)
    setup.theta = setup.h = None               # the simulator's buffers hold the agents now
    P = sim.reserve_saves(len(schedule.saved_steps()), P)
    rng_state_start = rng.bit_generator.state
    if opts["fitness_mode"] == "window":
        st = setup.resume_state or {}
        if "window_avg" in st and opts["window_kind"] == "exponential":
            P.wavg = np.array(st["window_avg"], dtype=float)
            sim.wpos = 0
        elif "window_buf" in st and opts["window_kind"] == "running":
            P.wbuf = np.array(st["window_buf"], dtype=float)
            P.wsum = np.array(st["window_sum"], dtype=float)
            sim.wpos = int(st.get("window_pos", 0))
        else:
            sim.init_window(P)
    dt, save_every, interval = schedule.dt, schedule.save_every, schedule.interval
    o = opts
    settings = {
        "dt": dt, "dt_requested": dt, "save_every": save_every, "interval": interval,
        "t0": setup.t0, "n_agents": n, "splitting": o["splitting"], "engine": o["engine"],
        "summary_every": setup.summary_every, "fast": o["fast"], "substeps": o["substeps"],
        "gradient": {"model": "model.loss_grad", "quadratic": "quadratic declaration",
                     "central": "central", "user": "user callable"}.get(o["grad_source"]),
        "noise": o["noise"], "fitness_mode": o["fitness_mode"], "window": o["window"],
        "window_kind": o["window_kind"], "effective_fitness": setup.fbar_desc,
        "bandwidth": o["bandwidth"], "replicator": o["replicator"],
        "resampling": o["resampling"], "ess_threshold": o["ess_threshold"],
        "jump_order": o["jump_order"], "boundary": o["boundary"],
        "h_box": None if o["h_box"] is None else list(o["h_box"]),
        "selection": None if sel is None else type(sel).__name__,
        "bit_generator": type(rng.bit_generator).__name__}
    histogram = grid is not None and setup.d == 1 and grid.ndim_theta == 1 and \
        grid.ndim_h == 1
    tracks = list(trackers) if isinstance(trackers, (list, tuple)) else \
        ([] if trackers is None else [trackers])
    recorder = None
    if setup.summary_every is not None:
        use_grid = grid if histogram else None
        recorder = SummaryRecorder(lambda st: combine_summaries(
            [sim.summary_sums(st, use_grid)], use_grid, model.fitness is not None),
            setup.summary_every)
        tracks.append(recorder)
    writer = plan.writer(model=model, rng=rng) if plan is not None else open_output(
        output, overwrite, kind="ensemble", grid=grid, model=model, rng=rng,
        seed=setup.seed_info, histogram=histogram,
        attrs=io.run_attributes("ensemble", settings))
    rec = run(sim, P, schedule, trackers=tracks, writer=writer, progress=progress,
              desc="particles")
    P = rec.final
    steps, run_seconds = rec.steps_done, rec.wall_seconds
    info = {
        **settings, "seed": setup.seed_info, "rng_state_start": rng_state_start,
        "n_steps": steps, "d": setup.d, "engine_note": setup.engine_note,
        "run_seconds": run_seconds, "stop_reason": rec.stop_reason,
        "agent_steps_per_second": n * steps / run_seconds if run_seconds > 0 else None,
        "resamples": sim.stats["resamples"], "copies": sim.stats["copies"],
        "generations": sim.stats["generations"],
        "pairwise_max_substeps": sim.stats["pairwise_max_substeps"],
        "mala_acceptance": (sim.stats["mala_accepted"] / sim.stats["mala_proposed"]
                            if sim.stats["mala_proposed"] else None),
        "last_bandwidth": sim.stats["last_bandwidth"],
        "fused_pass": sim.stats.get("fused_pass"),
    }
    finish_output(writer, rec, info)
    state: dict[str, Any] = {"rng": rng.bit_generator.state}
    if P.wavg is not None:
        state["window_avg"] = P.wavg.copy()
    if P.wbuf is not None:
        state.update(window_buf=P.wbuf.copy(), window_sum=P.wsum.copy(),
                     window_pos=sim.wpos)
    options = {k: v for k, v in args.items() if k not in ("save_every", "summary_every")}
    options.update(seed=None, check=False, runner=simulate_particles)
    # one row per save: the positions (in the reserved buffers when every save fitted) and
    # the generator's state at that save
    saved = sim.saved()
    if saved is not None and saved[0].shape[0] == len(rec.states):
        theta_arr, h_arr = saved
    else:
        theta_arr = np.stack([s[0] for s in rec.states])
        h_arr = np.stack([s[1] for s in rec.states])
    stored_rng = [s[2] for s in rec.states]
    t_arr = np.asarray(rec.t)
    if plan is not None:
        _, theta_arr = plan.join(t_arr, theta_arr, "particle_theta")
        t_arr, h_arr = plan.join(t_arr, h_arr, "particle_h")
        stored_rng = list(plan.extra.get("rng_states") or [])[:-1] + stored_rng
        info["resumed_at"] = float(plan.schedule.t0)
    ens = Ensemble(t=t_arr, theta=theta_arr, h=h_arr, model=model,
                   grid=grid, info=info, state=state, _options=options,
                   stop_reason=rec.stop_reason,
                   stored_rng_states=stored_rng if len(stored_rng) == len(t_arr) else None,
                   summaries=recorder.result() if recorder is not None else {})
    if writer is not None and histogram:        # what the file holds beside the positions
        ens.stored_density = ens.histogram(grid)
    return ens


__all__ = ["simulate_particles", "sample_density"]
