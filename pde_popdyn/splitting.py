"""Operator splitting and the time loop.

A sub-step is a callable ``step(f, tau) -> f`` that advances its own part of the equation
by τ (exactly, or by an L-stable method). For sub-steps S_1 … S_k (the last one being the
fast θ-part, whose propagator is the expensive one to build):

* Lie (order 1):     f ← S_k(Δt) ∘ … ∘ S_1(Δt) f
* Strang (order 2):  f ← S_1(Δt/2) ∘ … ∘ S_{k−1}(Δt/2) ∘ S_k(Δt) ∘ S_{k−1}(Δt/2) ∘ … ∘ S_1(Δt/2) f

Putting the fast part in the middle means only one fast propagator, e^{Δt A}, is ever built.
The time loop (:func:`integrate`) is shared by the joint and the reduced solvers.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Iterable, Literal, Sequence

import numpy as np

from ._progress import progress_enabled

SubStep = Callable[[np.ndarray, float], np.ndarray]
Splitting = Literal["lie", "strang"]
SPLITTINGS = ("lie", "strang")


def compose(substeps: Sequence[SubStep], splitting: str) -> Callable[[np.ndarray, float], np.ndarray]:
    """One time step of the chosen splitting of ``substeps`` (see the module docstring)."""
    if splitting not in SPLITTINGS:
        raise ValueError(f"splitting={splitting!r} is not known; use 'strang' (order 2, the "
                         f"default) or 'lie' (order 1)")
    steps = list(substeps)
    if not steps:
        return lambda f, dt: f
    if splitting == "lie":
        def lie(f: np.ndarray, dt: float) -> np.ndarray:
            for s in steps:
                f = s(f, dt)
            return f
        return lie
    *outer, middle = steps

    def strang(f: np.ndarray, dt: float) -> np.ndarray:
        for s in outer:
            f = s(f, 0.5 * dt)
        f = middle(f, dt)
        for s in reversed(outer):
            f = s(f, 0.5 * dt)
        return f
    return strang


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


@dataclass
class Schedule:
    """``n_steps`` equal steps of size ``dt`` from ``t0``, saving every ``save_every`` steps
    (and always the first and the last state)."""

    t0: float
    dt: float
    n_steps: int
    save_every: int

    @classmethod
    def make(cls, t0: float, t_final: float, dt: float, save_every: int | None) -> "Schedule":
        span = t_final - t0
        n = max(int(np.ceil(span / dt * (1 - 1e-12))), 1) if span > 0 else 0
        dt_eff = span / n if n else dt
        if save_every is None:
            save_every = max(1, n // 100)
        return cls(t0=t0, dt=dt_eff, n_steps=n, save_every=int(save_every))

    def saved_steps(self) -> list[int]:
        steps = list(range(0, self.n_steps + 1, self.save_every))
        if steps[-1] != self.n_steps:
            steps.append(self.n_steps)
        return steps


@dataclass
class RunRecord:
    t: list[float] = field(default_factory=list)
    f: list[np.ndarray] = field(default_factory=list)


def integrate(step: Callable[[np.ndarray, float], np.ndarray], f0: np.ndarray,
              schedule: Schedule, *, progress: bool | None = None,
              observers: Iterable[Callable[[float, np.ndarray], None]] = (),
              desc: str = "pde_popdyn") -> tuple[np.ndarray, np.ndarray]:
    """Advance ``f0`` through ``schedule`` with ``step``; return saved times and states.

    ``observers`` are called as ``obs(t, f)`` at every saved time (e.g. a snapshot writer).
    ``progress``: True shows a tqdm bar, False hides it, None shows it on a terminal or in Jupyter.
    """
    from tqdm.auto import tqdm

    observers = list(observers)
    saves = set(schedule.saved_steps())
    rec = RunRecord()

    def save(k: int, f: np.ndarray) -> None:
        t = schedule.t0 + k * schedule.dt
        rec.t.append(t)
        rec.f.append(f.copy())
        for obs in observers:
            obs(t, f)

    f = f0
    save(0, f)
    disable = not progress_enabled(progress)
    with tqdm(total=schedule.n_steps, disable=disable, desc=desc, unit="step",
              leave=False) as bar:
        for k in range(1, schedule.n_steps + 1):
            f = step(f, schedule.dt)
            if k in saves:
                save(k, f)
            bar.update(1)
    return np.asarray(rec.t), np.stack(rec.f)
