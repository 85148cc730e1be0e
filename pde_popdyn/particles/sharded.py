"""Sharded particle runs: ``simulate_particles(..., shards=S, client=C)``.

The N agents are split into S shards of N/S agents (±1), one per worker of the
dask.distributed client C (without one: one local process per shard; ``client="inline"``
runs them in this process), each with its own random stream spawned from the seed
(``SeedSequence(seed).spawn(S + 1)``: one per shard, the last for the client). The shards keep
their agents in memory from step to step and run the mutation and fast sub-steps on them
(the fused step where it applies). Selection needs the whole population; each selection
rule says what global information it needs through its sharded face (the rules' module
:mod:`pde_popdyn.rules.base` and :class:`~pde_popdyn.particles.shardctx.ShardContext`):

* the replicator: the shards' normalisers Σ e^{κτF} are combined and the N offspring are
  allocated to the shards as one systematic resampling of the whole population would
  (each shard then resamples its own agents);
* jump rules (Boltzmann, truncation): jumpers are drawn on each shard; Boltzmann donors are
  allocated to the shards by a multinomial draw on their weights Σ e^{αF}, truncation finds
  the global q- and (1 − q)-quantiles of F exactly (histogram rounds), and the donors travel
  through a pool that the client shuffles;

so a run needs one round trip per step for the replicator (the resampling instructions go
out with the next step's request) and a handful for jump rules. Only these summaries (and
donors and the few agents that rebalancing moves) travel; positions reach the client only
at the saved times when ``gather`` is true.

Offspring change the shards' sizes; when a shard is more than 2 % off its share, the client
moves agents from the largest to the smallest shards (and at every saved time, exactly).
The same seed and the same number of shards reproduce a run bit for bit, whichever backend
runs it; different numbers of shards give different (statistically equivalent) runs.

Checkpoints: ``checkpoint=DIR`` writes, every ``checkpoint_every`` steps, at the end and on
interruption, one particle snapshot file per shard (``DIR/shard-0000.h5`` …: the shard's
positions and its generator's state, the format of :mod:`pde_popdyn.io`) and then
``DIR/manifest.json`` (time, step, sizes, the client generator's state, the settings), each
written to a temporary name and renamed, so a killed run leaves the last complete
checkpoint. ``simulate_particles(model, None, None, t_final, None, resume=DIR, client=C)``
continues it, bit for bit as the uninterrupted run that checkpointed at the same steps.

Memory per shard: its agents with 5 % spare capacity, plus the weights during selection
(and the fitness, unless the fused step computes the weights in its own pass, as it does
for the replicator with instantaneous fitness: :meth:`Shard.advance
<pde_popdyn.particles.shard.Shard.advance>`).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from ..run import Schedule, run
from .backends import make_backend
from .ensemble import Ensemble
from .setup import prepare
from .shardctx import ShardContext
from .summaries import SummaryRecorder
from .system import combine_summaries

MANIFEST = "manifest.json"
#: a shard further than this from its share is rebalanced
TOLERANCE = 0.02


class _Schedule(Schedule):
    """A schedule whose saved steps are the position saves and the checkpoints."""

    extra: frozenset = frozenset()

    def saved_steps(self) -> list[int]:
        return sorted(set(super().saved_steps()) | set(self.extra))


class ShardedSystem:
    """The sharded population as a system of the run loop (:func:`pde_popdyn.run.run`)."""

    def __init__(self, ctx: ShardContext, model, opts: dict, schedule, positions: set,
                 gather: bool):
        self.ctx = ctx
        self.sel = model.selection if model.selection_active else None
        self.strang = opts["splitting"] == "strang"
        self.merge = self.sel is None or self.sel.linear_rate is not None
        self.owed = 0.0
        self.schedule = schedule
        self.positions = positions
        self.gather = gather
        self.saved: list[tuple] = []
        self.rebalanced = 0
        self.k = 0                                  # steps done (the saved step's number)

    @property
    def has_events(self) -> bool:
        return self.sel is not None and self.sel.interval is not None

    def _continuous(self) -> bool:
        return self.sel is not None and self.sel.interval is None

    def step(self, state, dt: float):
        self.k += 1
        ctx, sel = self.ctx, self._continuous()
        if self.strang:
            tau = self.owed + 0.5 * dt
            self.owed = 0.0
            if sel:
                self.sel.sharded_step(ctx, tau)
            ctx.apply("advance", dt, kind="shard")
            if sel:
                if self.merge:
                    self.owed = 0.5 * dt
                else:
                    self.sel.sharded_step(ctx, 0.5 * dt)
        else:
            ctx.apply("advance", dt, kind="shard")
            if sel:
                self.sel.sharded_step(ctx, dt)
        off = max(abs(s - t) / max(t, 1) for s, t in zip(ctx.sizes, ctx.targets))
        if off > TOLERANCE:
            self.rebalanced += ctx.rebalance()
        return state

    def settle(self, state):
        if self.owed:
            self.sel.sharded_step(self.ctx, self.owed)
            self.owed = 0.0
        if self.sel is not None:
            self.sel.sharded_flush(self.ctx)
        self.rebalanced += self.ctx.rebalance()
        if not all(self.ctx.gather("check_finite", kind="shard")):
            raise FloatingPointError("agents became non-finite; reduce dt or use a stabler "
                                     "fast step")
        return state

    def event(self, state):
        self.sel.sharded_generation(self.ctx)
        return state

    def snapshot(self, state):
        if self.gather and self.k in self.positions:
            parts = self.ctx.gather("positions", kind="shard")
            self.saved.append((np.concatenate([p[0] for p in parts]),
                               np.concatenate([p[1] for p in parts])))
        return None

    def summarize(self, state, grid, with_fitness: bool) -> dict:
        pending = self.sel is not None and self.ctx.options["ess_threshold"] < 1
        parts = self.ctx.gather("summary", self.owed, pending, kind="shard")
        return combine_summaries(parts, grid, with_fitness)


class CheckpointWriter:
    """The run loop's writer: at checkpoint steps, every shard writes its file, then the
    client writes the manifest (module docstring)."""

    def __init__(self, ctx: ShardContext, system: ShardedSystem, path: Path, steps: set,
                 meta: dict):
        self.ctx, self.system, self.path, self.steps, self.meta = ctx, system, path, steps, meta
        self.path.mkdir(parents=True, exist_ok=True)
        self.written = 0
        self.seconds = 0.0
        self.last = None

    def __call__(self, t: float, state) -> None:
        k = self.system.k
        if k and (k in self.steps or k == self.system.schedule.n_steps):
            self.write(t, k)

    def close(self, **status) -> None:
        """Nothing to close: every checkpoint is complete once written (the run loop closes
        its writer when a run fails)."""

    def write(self, t: float, k: int) -> None:
        if self.last == k:
            return
        self.last = k
        t0 = time.perf_counter()
        # the run's settings as individual root attributes, as a particle file stores them
        attrs = dict(self.meta["options"], dt=self.system.schedule.dt,
                     shards=self.ctx.shards, n_agents_total=self.ctx.n)
        files = self.ctx.gather("write_checkpoint", str(self.path), float(t), attrs,
                                kind="shard")
        manifest = dict(self.meta, t=float(t), step=int(self.meta["step0"] + k),
                        sizes=self.ctx.sizes, files=[Path(f).name for f in files],
                        client_rng=self.ctx.rng.bit_generator.state,
                        written=time.strftime("%Y-%m-%dT%H:%M:%S"))
        manifest.pop("step0", None)
        tmp = self.path / (MANIFEST + ".tmp")
        tmp.write_text(json.dumps(manifest, default=_jsonable, indent=1))
        os.replace(tmp, self.path / MANIFEST)
        self.written += 1
        self.seconds += time.perf_counter() - t0


def _jsonable(v: Any):
    if isinstance(v, (np.integer,)):
        return int(v)
    if isinstance(v, (np.floating,)):
        return float(v)
    if isinstance(v, np.ndarray):
        return v.tolist()
    return str(v)


def read_manifest(path) -> dict:
    """The manifest of a sharded checkpoint directory."""
    p = Path(path) / MANIFEST
    if not p.exists():
        raise FileNotFoundError(f"{path} holds no {MANIFEST}; it is not a sharded checkpoint "
                                f"(or its first checkpoint was never completed)")
    return json.loads(p.read_text())


def _check_shards(shards: Any, n: int) -> int:
    if isinstance(shards, bool) or not isinstance(shards, (int, np.integer)) or shards < 1:
        raise ValueError(f"shards must be a positive integer number of shards, got {shards!r}")
    if shards > n:
        raise ValueError(f"shards={shards} is more than the {n} agents; use at most n shards")
    return int(shards)


def simulate_sharded(model, n, init, t_final, dt, args: dict, *, shards, client, checkpoint,
                     checkpoint_every, gather, resume, progress, trackers, output) -> Ensemble:
    """The sharded run of :func:`~pde_popdyn.particles.simulate_particles` (module docstring)."""
    if trackers is not None:
        raise ValueError("trackers are not available in sharded runs (the agents live on the "
                         "workers); use summary_every= for moments over time")
    if output is not None:
        raise ValueError("output= streams positions from one process; a sharded run writes "
                         "per-shard files with checkpoint=DIR instead")
    if checkpoint_every is not None and (isinstance(checkpoint_every, bool) or not isinstance(
            checkpoint_every, (int, np.integer)) or checkpoint_every < 1):
        raise ValueError(f"checkpoint_every must be a positive integer number of steps, got "
                         f"{checkpoint_every!r}")
    manifest = None
    if resume is not None:
        manifest = read_manifest(resume)
        if n is not None and n != manifest["n"]:
            raise ValueError(f"n={n} differs from the {manifest['n']} agents of {resume}; pass "
                             f"n=None")
        if shards is not None and shards != manifest["shards"]:
            raise ValueError(f"shards={shards} differs from the {manifest['shards']} shards of "
                             f"{resume}; a checkpoint resumes with its own number of shards "
                             f"(pass shards=None)")
        if dt is not None and abs(dt - manifest["dt"]) > 1e-12 * manifest["dt"]:
            raise ValueError(f"dt={dt!r} differs from the time step of {resume} "
                             f"({manifest['dt']!r}); pass dt=None")
        n, shards, dt = manifest["n"], manifest["shards"], manifest["dt"]
        checkpoint = checkpoint if checkpoint is not None else resume
        for k, v in manifest["options"].items():
            if k in args and k != "engine":
                args[k] = tuple(v) if k == "h_box" and v is not None else v
        args["seed"] = None
    if shards is None:
        shards = 1
    seed = args.get("seed")
    if isinstance(seed, np.random.Generator):
        raise TypeError("a sharded run needs seed= as an integer (or None), from which each "
                        "shard's stream is spawned")
    if manifest is None:
        setup = prepare(model, n, init, t_final, dt, output=None, resume=None,
                        materialize=False, **args)
    else:
        setup = _setup_from_manifest(model, manifest, t_final, args)
    n = setup.n
    shards = _check_shards(shards, n)
    opts = setup.opts
    if opts["fitness_mode"] == "window":
        raise ValueError("fitness_mode='window' keeps per-agent memory, which sharded runs do "
                         "not carry; use it without shards")
    sel = model.selection if model.selection_active else None
    if sel is not None:
        sel.check_sharded(opts)
    targets = [n // shards + (1 if s < n % shards else 0) for s in range(shards)]
    # -- the random streams -------------------------------------------------------------------
    if manifest is None:
        ss = np.random.SeedSequence(seed)
        seed_info = ss.entropy if seed is None else int(seed)
        children = ss.spawn(shards + 1)
        client_rng = np.random.default_rng(children[-1])
    else:
        seed_info = manifest.get("seed")
        client_rng = np.random.Generator(getattr(np.random, manifest["client_rng"][
            "bit_generator"])())
        client_rng.bit_generator.state = manifest["client_rng"]
    specs = []
    for s in range(shards):
        spec = {"rank": s, "model": model, "opts": opts, "grid": setup.grid,
                "target": targets[s]}
        if manifest is not None:
            spec.update(from_file=str(Path(resume) / manifest["files"][s]), t=manifest["t"],
                        target=targets[s])
        else:
            spec["seed_seq"] = children[s]
            if setup.theta is not None:
                lo = sum(targets[:s])
                spec.update(theta=setup.theta[lo:lo + targets[s]],
                            h=setup.h[lo:lo + targets[s]])
            else:
                spec["draw"] = setup.draw
        specs.append(spec)
    setup.theta = setup.h = None
    # -- the schedule -----------------------------------------------------------------------------
    base = setup.schedule
    pos_steps = set(Schedule(t0=base.t0, dt=base.dt, n_steps=base.n_steps,
                             save_every=base.save_every, interval=base.interval).saved_steps())
    cp_steps = set(range(checkpoint_every, base.n_steps + 1, checkpoint_every)) \
        if checkpoint is not None and checkpoint_every else set()
    schedule = _Schedule(t0=base.t0, dt=base.dt, n_steps=base.n_steps,
                         save_every=base.save_every, interval=base.interval)
    schedule.extra = frozenset(cp_steps)
    if gather is None:
        gather = len(pos_steps) * n * (setup.d + 1) * 8 <= 2e9
    t_wall = time.perf_counter()
    backend = make_backend(specs, client)
    t_start = time.perf_counter() - t_wall
    try:
        ctx = ShardContext(backend, n, targets, client_rng, opts)
        system = ShardedSystem(ctx, model, opts, schedule, pos_steps, bool(gather))
        use_grid = setup.grid if setup.grid is not None and setup.d == 1 and \
            setup.grid.ndim_h == 1 else None
        tracks = []
        recorder = None
        if setup.summary_every is not None:
            recorder = SummaryRecorder(lambda st: system.summarize(
                st, use_grid, model.fitness is not None), setup.summary_every)
            tracks.append(recorder)
        cpw = None
        if checkpoint is not None:
            meta = {"n": n, "shards": shards, "dt": base.dt, "seed": seed_info, "d": setup.d,
                    "options": setup.options_record, "model": model.describe(),
                    "preset": getattr(model, "preset", None),
                    "step0": manifest["step"] if manifest else 0,
                    "save_every": base.save_every, "summary_every": setup.summary_every,
                    "checkpoint_every": checkpoint_every}
            cpw = CheckpointWriter(ctx, system, Path(checkpoint), cp_steps, meta)
        rec = run(system, None, schedule, trackers=tracks, writer=cpw, progress=progress,
                  desc=f"particles ({shards} shards)")
        # an interrupted run checkpoints its last saved state, unless a second Ctrl-C left
        # the shards past it (then the last complete checkpoint stands)
        if cpw is not None and rec.stop_reason == "interrupted" and system.k == rec.steps_done:
            cpw.write(rec.t[-1], system.k)
        busy, busy_cpu = zip(*ctx.gather("timings", kind="shard"))
        stats = backend.stats
    finally:
        backend.close()
    wall = rec.wall_seconds
    steps = rec.steps_done
    info = {
        "seed": seed_info, "t0": base.t0, "dt": base.dt, "n_steps": steps, "n_agents": n,
        "d": setup.d, "shards": shards, "shard_sizes": ctx.sizes, "backend": backend.name,
        "engine": opts["engine"], "engine_note": setup.engine_note,
        "splitting": opts["splitting"], "save_every": base.save_every,
        "summary_every": setup.summary_every, "selection": None if sel is None else
        type(sel).__name__, "run_seconds": wall, "startup_seconds": t_start,
        "agent_steps_per_second": n * steps / wall if wall > 0 else None,
        "round_trips": stats.round_trips, "round_trip_seconds": stats.seconds,
        "client_cpu_seconds_in_round_trips": stats.client_cpu_seconds,
        "shard_busy_seconds": list(busy), "shard_cpu_seconds": list(busy_cpu),
        "bytes_to_shards": stats.bytes_out or None, "bytes_from_shards": stats.bytes_in or None,
        "agents_rebalanced": system.rebalanced, "positions_gathered": bool(gather),
        "checkpoint": None if checkpoint is None else str(checkpoint),
        "checkpoints_written": 0 if cpw is None else cpw.written,
        "checkpoint_seconds": 0.0 if cpw is None else cpw.seconds,
    }
    if manifest is not None:
        info["resumed_at"] = float(manifest["t"])
    t_saved = np.array([base.t0 + k * base.dt for k in sorted(pos_steps)
                        if k <= steps] if rec.stop_reason == "t_final" else rec.t)
    if gather and system.saved:
        theta = np.stack([s[0] for s in system.saved])
        h = np.stack([s[1] for s in system.saved])
        t_saved = t_saved[:theta.shape[0]]
    else:
        theta = np.zeros((len(t_saved), 0))
        h = np.zeros((len(t_saved), 0))
    return Ensemble(t=t_saved, theta=theta, h=h, model=model, grid=setup.grid, info=info,
                    state={"client_rng": client_rng.bit_generator.state},
                    stop_reason=rec.stop_reason,
                    summaries=recorder.result() if recorder is not None else {})


def _setup_from_manifest(model, manifest: dict, t_final, args: dict):
    """The set-up of a run resumed from a sharded checkpoint: the stored settings, from the
    stored time, with a stand-in initial state (the shards read their own files)."""
    d = int(manifest.get("d") or 1)

    def blank(n, rng):
        return (np.zeros(n) if d == 1 else np.zeros((n, d))), np.zeros(n)
    t0, dt = float(manifest["t"]), float(manifest["dt"])
    steps = int(round((t_final - t0) / dt))
    if steps < 0 or abs(t0 + steps * dt - t_final) > 1e-6 * dt:
        raise ValueError(f"t_final={t_final!r} is not a whole number (≥ 0) of stored steps "
                         f"dt={dt!r} after t={t0!r}; use t_final={t0 + max(steps, 0) * dt!r}")
    setup = prepare(model, int(manifest["n"]), blank, max(steps, 1) * dt, dt, output=None,
                    resume=None, materialize=False, **dict(args, seed=0, check=False))
    save_every = args.get("save_every") or manifest.get("save_every") or max(1, steps)
    setup.schedule = Schedule(t0=t0, dt=dt, n_steps=steps, save_every=int(save_every),
                              interval=setup.schedule.interval)
    setup.t0 = t0
    setup.summary_every = args.get("summary_every") or manifest.get("summary_every")
    return setup


__all__ = ["simulate_sharded", "ShardedSystem", "CheckpointWriter", "read_manifest"]
