"""The one run loop shared by the joint solver, the reduced solver and the particle simulator.

It owns, once for all three: the time grid (:class:`Schedule`: equal steps, save times,
generation times of rules acting at discrete times), the splitting table (:func:`compose`),
the save policy, the trackers (:mod:`pde_popdyn.trackers`), the progress bar, interrupts and
``stop_reason``, and the planning of a resumed run (:func:`plan_resume`).

A *system* (:mod:`pde_popdyn.equations`, :mod:`pde_popdyn.particles`) provides

* ``step(state, dt) -> state`` — one time step of its composed sub-steps;
* ``event(state) -> state`` — the generation map, applied at the generation times (systems
  whose selection rule acts at discrete times; ``has_events`` tells);
* ``settle(state) -> state`` — complete any half-step the system keeps pending (the particle
  simulator merges consecutive replicator half-steps); called before a state is saved or the
  run stops;
* ``snapshot(state)`` — a copy of the state to keep in memory.

Splittings. For sub-steps S_1 … S_k of one time step (the last one the fast θ-part, the
expensive one to build):

* Lie (order 1):     S_k(Δt) ∘ … ∘ S_1(Δt)
* Strang (order 2):  S_1(Δt/2) ∘ … ∘ S_{k−1}(Δt/2) ∘ S_k(Δt) ∘ S_{k−1}(Δt/2) ∘ … ∘ S_1(Δt/2)

Putting the fast part in the middle means only one fast propagator, e^{Δt A}, is ever built.

Interrupts. While a run goes, the first Ctrl-C (SIGINT) is caught: the loop finishes the step
it is in, saves that state, closes the output file as ``status="interrupted"`` and returns the
result so far with ``stop_reason="interrupted"``; a second Ctrl-C interrupts at once. (Where
signals cannot be caught, outside the main thread, a ``KeyboardInterrupt`` is handled the same
way, keeping the last completed step.) :func:`pde_popdyn.resume` continues such a file.
"""

from __future__ import annotations

import bisect
import json
import math
import numbers
import signal
import threading
import time
import warnings
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from . import io
from .rules import rule_from_dict
from .trackers import ProgressTracker, as_trackers

SPLITTINGS = ("strang", "lie")
STOP_REASONS = ("t_final", "steady_state", "tracker", "guard", "interrupted")


# --------------------------------------------------------------------------------------------
# the splitting table
# --------------------------------------------------------------------------------------------
def compose(substeps: Sequence[Callable], splitting: str) -> Callable[[Any, float], Any]:
    """One time step of the chosen splitting of ``substeps`` (see the module docstring)."""
    if splitting not in SPLITTINGS:
        raise ValueError(f"splitting={splitting!r} is not known; use 'strang' (order 2, the "
                         f"default) or 'lie' (order 1)")
    steps = list(substeps)
    if not steps:
        return lambda f, dt: f
    if splitting == "lie":
        table = [(s, 1.0) for s in steps]
    else:
        *outer, middle = steps
        table = [(s, 0.5) for s in outer] + [(middle, 1.0)] + [(s, 0.5) for s in outer[::-1]]

    def step(f, dt: float):
        for s, frac in table:
            f = s(f, frac * dt)
        return f
    return step


class PropagatorStep:
    """Adapts a builder ``tau -> propagator`` to the sub-step protocol, caching each τ."""

    def __init__(self, build: Callable[[float], Callable[[np.ndarray], np.ndarray]]):
        self.build = build
        self.cache: dict[float, Callable[[np.ndarray], np.ndarray]] = {}

    def __call__(self, f: np.ndarray, tau: float) -> np.ndarray:
        prop = self.cache.get(tau)
        if prop is None:
            prop = self.cache[tau] = self.build(tau)
        return prop(f)


class FunctionSystem:
    """A plain step function ``step(f, dt) -> f`` as a system of the run loop (no events,
    nothing pending), for studies that compose their own sub-steps."""

    has_events = False

    def __init__(self, step: Callable[[Any, float], Any]):
        self.step = step

    def event(self, state):
        return state

    def settle(self, state):
        return state

    def snapshot(self, state):
        return np.array(state, copy=True)


# --------------------------------------------------------------------------------------------
# the time grid
# --------------------------------------------------------------------------------------------
@dataclass
class Schedule:
    """``n_steps`` equal steps of size ``dt`` from ``t0``, saving every ``save_every`` steps
    (and always the first and the last state); ``interval`` (if any) is the time between
    generations, which fall at t = τ, 2τ, … and are always saved (after the map)."""

    t0: float
    dt: float
    n_steps: int
    save_every: int
    interval: float | None = None

    @classmethod
    def make(cls, t0: float, t_final: float, dt: float, save_every: int | None,
             interval: float | None = None) -> "Schedule":
        """Equal steps reaching ``t_final``; ``dt`` is shortened slightly if needed. With a
        generation ``interval`` τ the step is τ/⌈τ/dt⌉, so that every generation time is a
        step boundary, and ``t_final − t0`` must then be a whole number of such steps."""
        span = t_final - t0
        if interval is None:
            n = max(int(np.ceil(span / dt * (1 - 1e-12))), 1) if span > 0 else 0
            dt_eff = span / n if n else dt
        else:
            per = max(int(np.ceil(interval / dt * (1 - 1e-9))), 1)
            dt_eff = interval / per
            n = int(round(span / dt_eff))
            if span > 0 and abs(n * dt_eff - span) > 1e-9 * max(span, dt_eff):
                lo = t0 + math.floor(span / dt_eff) * dt_eff
                raise ValueError(
                    f"t_final={t_final!r}: with generations every interval={interval!r} the "
                    f"step is interval/{per} = {dt_eff:.6g} (so that every generation time is "
                    f"a step boundary), and t_final - t0 = {span:.6g} is not a whole number of "
                    f"such steps; use t_final={lo:.12g} or {lo + dt_eff:.12g}, or a dt that "
                    f"divides both")
            if abs(t0 / dt_eff - round(t0 / dt_eff)) > 1e-9 * max(1.0, t0 / dt_eff):
                raise ValueError(f"the run starts at t0={t0!r}, which is not on the step grid "
                                 f"interval/{per}; resume from a generation time")
            if span > 0 and math.floor(t_final / interval * (1 + 1e-12)) * interval \
                    <= t0 + 1e-12 * max(1.0, abs(t0)):
                warnings.warn(f"no generation falls in this run: generations come every "
                              f"interval={interval!r} and the run goes from t={t0:g} to "
                              f"t={t_final:g}, so selection never acts; take a longer t_final "
                              f"or a shorter interval", UserWarning, stacklevel=4)
        if save_every is None:
            save_every = max(1, n // 100)
        return cls(t0=t0, dt=dt_eff, n_steps=n, save_every=int(save_every), interval=interval)

    def time(self, k: int) -> float:
        return self.t0 + k * self.dt

    def event_steps(self) -> set[int]:
        """The steps k ≥ 1 at whose end a generation falls (t_k = mτ, m ≥ 1)."""
        if self.interval is None or self.n_steps == 0:
            return set()
        per = self.interval / self.dt
        first = math.floor(self.t0 / self.interval + 1e-9) + 1
        out = set()
        m = first
        while True:
            k = int(round((m * self.interval - self.t0) / self.dt))
            if k > self.n_steps:
                break
            if k >= 1:
                out.add(k)
            m += 1
            if per <= 0:
                break
        return out

    def saved_steps(self) -> list[int]:
        steps = set(range(0, self.n_steps + 1, self.save_every)) | {self.n_steps}
        return sorted(steps | self.event_steps())


# --------------------------------------------------------------------------------------------
# the loop
# --------------------------------------------------------------------------------------------
@dataclass
class RunRecord:
    """What a run produced: the saved times and states, why it stopped, and how long it took."""

    t: list[float] = field(default_factory=list)
    states: list[Any] = field(default_factory=list)
    stop_reason: str = "t_final"
    steps_done: int = 0
    wall_seconds: float = 0.0
    final: Any = None


@contextmanager
def _deferred_sigint():
    """Turn the first SIGINT into a flag checked between steps (main thread only)."""
    flag = {"hit": False}
    if threading.current_thread() is not threading.main_thread():
        yield flag
        return
    previous = signal.getsignal(signal.SIGINT)

    def handler(signum, frame):
        if flag["hit"]:                      # second Ctrl-C: stop at once
            signal.signal(signal.SIGINT, previous if callable(previous) else
                          signal.default_int_handler)
            raise KeyboardInterrupt
        flag["hit"] = True

    try:
        signal.signal(signal.SIGINT, handler)
    except ValueError:                       # not allowed here (e.g. embedded interpreters)
        yield flag
        return
    try:
        yield flag
    finally:
        signal.signal(signal.SIGINT, previous)


def run(system, state, schedule: Schedule, *, trackers: Any = None, writer=None,
        progress: bool | None = None, desc: str = "pde_popdyn") -> RunRecord:
    """Advance ``state`` through ``schedule`` with ``system`` (module docstring).

    ``trackers`` are :class:`~pde_popdyn.trackers.Tracker` objects or callables
    ``fn(t, state)`` (called every step; returning True stops the run). ``writer`` is called
    as ``writer(t, state)`` at every saved time; if the run fails it is closed with
    ``status="failed"`` (its snapshots kept), otherwise :func:`finish_output` closes it.
    The system's ``prepare(dt, n_steps)`` (set-up that depends on Δt) runs first.
    """
    try:
        if hasattr(system, "prepare"):
            system.prepare(schedule.dt, schedule.n_steps)
        return _loop(system, state, schedule, trackers, writer, progress, desc)
    except BaseException:
        if writer is not None:
            writer.close(status="failed")
        raise


class NonFiniteStateError(FloatingPointError, ValueError):
    """The state of a run became NaN or infinite; the snapshots saved before are kept."""


def _all_finite(state) -> bool:
    """Whether a density array, or the agents' positions of a particle state, are finite
    (other states are not checked)."""
    if isinstance(state, np.ndarray):
        return bool(np.isfinite(state).all())
    return all(bool(np.isfinite(np.asarray(getattr(state, n))).all())
               for n in ("theta", "h") if hasattr(state, n))


def _non_finite(t_last: float, t: float) -> NonFiniteStateError:
    return NonFiniteStateError(
        f"the state became NaN or infinite between t={t_last:g} and t={t:g} (the snapshots up "
        f"to t={t_last:g} are kept). Usual causes: exp overflows because the selection rate "
        f"times the spread of the fitness times dt is in the hundreds (rescale the fitness or "
        f"take a smaller dt), or the temperature or 1/eps is so large that the rates overflow; "
        f"pass trackers=[pp.GuardTracker()] to stop such a run with a warning instead")


def _loop(system, state, schedule: Schedule, trackers, writer, progress, desc) -> RunRecord:
    tracks = as_trackers(trackers)
    if progress is not False:
        tracks.insert(0, ProgressTracker(progress, total=schedule.n_steps, desc=desc))
    saves = sorted(set(schedule.saved_steps()) - {0})
    save_set = set(saves)
    events = schedule.event_steps()
    rec = RunRecord()
    advance = getattr(system, "advance", None)

    def save(k: int, st) -> None:
        t = schedule.time(k)
        rec.t.append(t)
        rec.states.append(system.snapshot(st))
        if writer is not None:
            writer(t, st)

    def next_stop(k: int) -> int:
        """The next step at which something happens: a save, a generation or a tracker; the
        steps in between are taken at once (a system may merge their half steps)."""
        nxt = saves[bisect.bisect_right(saves, k)]       # the saves include every event
        for tr in tracks:
            nxt = min(nxt, tr.next_due(k, schedule))
        return max(nxt, k + 1)

    t_start = time.perf_counter()
    k = 0
    stop = None
    saved_last = -1
    try:
        with _deferred_sigint() as flag:
            save(0, state)
            saved_last = 0
            for tr in tracks:
                tr.start(schedule.t0, state, schedule)
            set_time = getattr(system, "set_time", None)
            while k < schedule.n_steps:
                target = next_stop(k)
                if set_time is not None:
                    set_time(schedule.time(k))
                if advance is not None:
                    state = advance(state, schedule.dt, target - k)
                else:
                    for _ in range(target - k):
                        state = system.step(state, schedule.dt)
                k = target
                if k in events:
                    state = system.event(state)
                t = schedule.time(k)
                for tr in tracks:
                    reason = tr.observe(k, t, state)
                    if reason:
                        stop = reason
                if flag["hit"]:
                    stop = "interrupted"
                if stop is not None or k in save_set:
                    state = system.settle(state)
                    if stop is None and not _all_finite(state):
                        raise _non_finite(rec.t[-1], t)
                    save(k, state)
                    saved_last = k
                if stop is not None:
                    break
    except KeyboardInterrupt:
        # a second Ctrl-C, or one outside the main thread: the step in flight may be half done.
        # The record (rec.t, rec.states, steps_done, and so any file) ends at the last saved
        # state; rec.final and the trackers' finish() see the state as the interrupt left it.
        stop = "interrupted"
    rec.stop_reason = stop or "t_final"
    rec.steps_done = saved_last
    rec.wall_seconds = time.perf_counter() - t_start
    rec.final = state
    for tr in tracks:
        tr.finish(rec.t[-1] if rec.t else schedule.t0, state, rec.stop_reason)
    return rec


# --------------------------------------------------------------------------------------------
# output files and resuming
# --------------------------------------------------------------------------------------------
def open_output(output, overwrite: bool, **kwargs):
    """A :class:`~pde_popdyn.io.SnapshotWriter` for ``output`` (None: no file)."""
    if output is None:
        return None
    return io.SnapshotWriter(output, overwrite=overwrite, **kwargs)


def finish_output(writer, rec: RunRecord, info: dict) -> None:
    """Close the run's file with its status ('interrupted' after Ctrl-C, else 'complete') and
    closing attributes, and record its path in ``info``."""
    if writer is None:
        return
    writer.close(status="interrupted" if rec.stop_reason == "interrupted" else "complete",
                 **io.closing_attributes(np.asarray(rec.t), info))
    info["output"] = str(writer.path)


@dataclass
class ResumePlan:
    """Everything an entry point needs to continue the run stored in ``path``."""

    path: Any
    kind: str
    attrs: dict
    grid: Any
    t: np.ndarray                    # the stored times
    states: dict                     # stored arrays by name (density, particle_theta/_h)
    schedule: Schedule               # from the last stored time, with the stored Δt
    rng_state: dict | None = None
    extra: dict = field(default_factory=dict)

    @property
    def last(self) -> np.ndarray:
        """The last stored density (joint/reduced)."""
        return self.states["density"][-1]

    def join(self, t: np.ndarray, new: np.ndarray, key: str = "density"
             ) -> tuple[np.ndarray, np.ndarray]:
        """The stored run followed by the continuation (whose first state is the stored
        last one)."""
        return (np.concatenate([self.t[:-1], t]),
                np.concatenate([self.states[key][:-1], new]))

    def writer(self, *, model: Any = None, rng=None, fitness=None):
        """A writer appending to the file; it skips the first (already stored) state."""
        return io.SnapshotWriter.append(self.path, skip_first=True, rng=rng, model=model,
                                        fitness=fitness)


def _same_rules(stored: Any, rules: tuple) -> bool:
    """Whether a stored rule description (one, a list, or None) rebuilds ``rules`` (the
    first version's descriptions lack later defaults, e.g. ``copy``)."""
    items = [] if stored is None else stored if isinstance(stored, list) else [stored]
    try:
        return tuple(rule_from_dict(d) for d in items) == rules
    except (TypeError, ValueError):
        return False


def _model_mismatch(model: Any, stored: Any) -> list[str]:
    """The keys in which ``model.describe()`` differs from a stored description."""
    if not isinstance(stored, dict) or not hasattr(model, "describe"):
        return []
    now = json.loads(io.schema.dumps(model.describe()))
    out = []
    for k in sorted(set(now) | set(stored)):
        if k == "selection":
            same = _same_rules(stored.get(k), () if model.selection is None
                               else (model.selection,))
        elif k == "mutation":
            same = _same_rules(stored.get(k), model.mutations)
        elif k == "quadratic" and isinstance(now.get(k), list) and \
                isinstance(stored.get(k), list) and len(now[k]) == len(stored[k]):
            # a centre stored as "<lambda>" (files written before AffineCenter existed, or a
            # lambda) matches any callable centre: a lambda's name says nothing more
            same = all(a == b or (b == "<lambda>" and isinstance(a, str))
                       for a, b in zip(now[k], stored[k]))
        else:
            same = now.get(k) == stored.get(k)
        if not same:
            out.append(k)
    return out


def _same(name: str, given: Any, stored: Any, path) -> None:
    if given is not None and stored is not None and given != stored:
        raise ValueError(f"{name}={given!r} differs from the {name} of {path} ({stored!r}); "
                         f"resume with {name}={stored!r} or None")


def plan_resume(path, kind: str, *, model: Any = None, grid: Any = None, t_final: float,
                dt: float | None = None, f0: Any = None, output: Any = None,
                save_every: int | None = None, settings: dict | None = None,
                initial_key: str = "density") -> ResumePlan:
    """Check that the run in ``path`` can be continued to ``t_final`` with these arguments.

    The continuation uses exactly the stored Δt and a whole number of steps, so that it
    repeats the arithmetic of an uninterrupted run. ``grid``, ``dt`` and ``f0`` may be None
    (taken from the file) or what the first run was given: the grid must equal the stored
    one, ``dt`` the stored step or the step the first run asked for, and ``f0`` (normalised)
    the first stored state. ``settings`` (scheme, splitting, …) must agree with the file where
    both say something. A file whose writer was killed is repaired first.
    """
    p = Path(path)
    if output is not None and Path(output).resolve() != p.resolve():
        raise ValueError(f"output={output!r} differs from resume={str(path)!r}; a resumed run "
                         f"appends to the file it resumes")
    stored_kind = io.read_attributes(p).get("kind")
    if stored_kind != kind:
        raise io.SnapshotFileError(f"{p} holds a {stored_kind} run; it cannot be resumed as a "
                                   f"{kind} run")
    io.repair(p)                        # a killed writer: keep every complete snapshot
    record = io.read(p)                 # (a cleanly closed file is left alone)
    if len(record.t) == 0:
        raise io.SnapshotFileError(f"{p} holds no snapshot to resume from")
    attrs, data = record.attrs, record.fields
    stored_grid = record.grid
    if grid is not None and stored_grid is not None and grid != stored_grid:
        raise ValueError(f"grid={grid!r} differs from the grid of {p} ({stored_grid!r}); pass "
                         f"grid=None to use the file's")
    for name, given in (settings or {}).items():
        stored = attrs.get(name)
        if name == "splitting" and stored == "exact":     # the first version's name
            stored = None
        _same(name, given, stored, p)
    if model is not None:
        diff = _model_mismatch(model, attrs.get("model"))
        if diff:
            raise ValueError(f"the model differs from the one stored in {p} in {diff}; resume "
                             f"with the same model, or start a new file from "
                             f"pp.load({str(p)!r}).f[-1]")
    stored_dt = attrs.get("dt")
    if stored_dt is None:
        raise io.SnapshotFileError(f"{p} does not record its time step 'dt'; it cannot be "
                                   f"resumed")
    stored_dt = float(stored_dt)
    asked = attrs.get("dt_requested")
    if dt is not None and abs(float(dt) - stored_dt) > 1e-12 * stored_dt and not (
            asked is not None and abs(float(dt) - float(asked)) <= 1e-12 * float(asked)):
        raise ValueError(f"dt={dt!r} differs from the time step of {p} ({stored_dt!r}); a "
                         f"resumed run keeps the stored step: pass dt=None or the first "
                         f"run's dt")
    if f0 is not None and initial_key in data and len(data[initial_key]):
        first = np.asarray(data[initial_key][0], dtype=float)
        given = np.asarray(f0, dtype=float)
        if given.shape != first.shape:
            raise ValueError(f"f0 has shape {given.shape} but the run in {p} started from a "
                             f"state of shape {first.shape}; pass f0=None to resume")
        w = stored_grid.weights if kind == "joint" else stored_grid.h_weights
        given = given / (given * w).sum()
        if not np.allclose(given, first, rtol=1e-10, atol=1e-12 * np.abs(first).max()):
            raise ValueError(f"f0 differs from the initial state stored in {p}; resume with "
                             f"f0=None (or the first run's f0), or start a new run")
    t_last = float(record.t[-1])
    if isinstance(t_final, bool) or not isinstance(t_final, numbers.Real) \
            or not math.isfinite(t_final):
        raise ValueError(f"t_final must be a finite number (the time to continue the run to), "
                         f"got {t_final!r}")
    span = float(t_final) - t_last
    if not np.isfinite(span) or span < -1e-9 * stored_dt:
        raise ValueError(f"t_final={t_final!r} is before the last time {t_last!r} stored in "
                         f"{p}; give a later t_final")
    n = max(int(round(span / stored_dt)), 0)
    if abs(n * stored_dt - span) > 1e-6 * stored_dt:
        lo = t_last + np.floor(span / stored_dt) * stored_dt
        raise ValueError(f"t_final={t_final!r} is not a whole number of stored steps "
                         f"dt={stored_dt!r} after t={t_last!r}; use t_final={lo:.12g} or "
                         f"{lo + stored_dt:.12g}")
    save = save_every if save_every is not None else int(attrs.get("save_every", 1))
    interval = attrs.get("interval")
    schedule = Schedule(t0=t_last, dt=stored_dt, n_steps=n, save_every=int(save),
                        interval=None if interval is None else float(interval))
    rng_state = record.rng_states[-1] if record.rng_states else None
    return ResumePlan(path=p, kind=kind, attrs=attrs, grid=stored_grid, t=record.t,
                      states=dict(data), schedule=schedule, rng_state=rng_state,
                      extra={"agent_fields": record.agent_fields,
                             "diagnostics": record.diagnostics,
                             "rng_states": record.rng_states})


__all__ = ["Schedule", "compose", "PropagatorStep", "run", "RunRecord", "SPLITTINGS",
           "FunctionSystem",
           "STOP_REASONS", "plan_resume", "open_output", "finish_output", "ResumePlan"]
