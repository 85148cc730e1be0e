"""The joint and the reduced equations as systems of sub-steps, assembled from the model's rules.

Joint equation, for f(t, θ, h) on the grid:

    ∂_t f = 𝓛_ε f + (selection term of the rule) + (mutation terms),
    𝓛_ε f = (1/ε) ∇_θ·( m(h) [ T(h) ∇_θ f + f ∇_θ L ] ),

split into the selection sub-step (asked of the selection rule), the mutation sub-steps
(asked of each continuous mutation rule) and the fast θ-step e^{τ𝓛_ε} (exact, from
:mod:`pde_popdyn.fast`). Rules acting at discrete times (PBT) contribute a generation map
instead, applied by the run loop at the generation times. Copies are perturbed by the explore
kernel K that the model's explore rules compose.

Reduced equation (ε → 0), for ρ(t, h): each rule's reduced face gives the sub-step on ρ (the
replicator on F̄, Boltzmann jumps on F̄_α, ranking rules on F̄ or on the law of F under
ρ π_h); the mutation sub-steps are the same as for the joint equation, acting on ρ.

:class:`JointSystem` and :class:`ReducedSystem` are the systems the run loop
(:mod:`pde_popdyn.run`) advances; nothing here branches on the type of a rule.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from . import ap
from ._validate import _short, field_on_grid
from .fast.fv import SGOperator
from .fast.spectral import SpectralOperator
from .gibbs import GibbsAverages
from .grid import Grid
from .model import Model
from .rules import Setting
from .run import PropagatorStep, compose
from .slow.clip import ClipLedger
from .unsplit import UnsplitStep

SCHEMES = ("fv", "spectral")
INTEGRATORS = ("ap", "split", "uniformisation")


class MassStep:
    """Runs a sub-step on cell masses f·w instead of nodal values f (non-uniform θ-nodes): the
    selection and copy rules are statements about mass, the fast step about densities."""

    def __init__(self, step, weights: np.ndarray):
        self.step = step
        self.weights = weights

    def __call__(self, f: np.ndarray, tau: float) -> np.ndarray:
        return self.step(f * self.weights, tau) / self.weights


class _MassMap:
    """A generation map acting on masses (non-uniform θ-nodes)."""

    def __init__(self, mapping, weights: np.ndarray):
        self.mapping = mapping
        self.weights = weights

    def __call__(self, f: np.ndarray) -> np.ndarray:
        return self.mapping(f * self.weights) / self.weights


def check_scheme(scheme: Any, grid: Grid) -> str:
    """Validate ``scheme`` against the grid's nodes and θ-axes."""
    if scheme not in SCHEMES:
        raise ValueError(f"scheme={scheme!r} is not known; use 'fv' (finite volumes, default) "
                         f"or 'spectral'")
    if scheme == "spectral" and grid.ndim_theta > 1:
        raise ValueError(f"scheme='spectral' cannot serve a grid with {grid.ndim_theta} "
                         f"theta-axes; use scheme='fv'")
    if scheme == "fv" and grid.nodes != "cells":
        raise ValueError("scheme='fv' needs a grid of cells, but this grid has spectral nodes; "
                         "use scheme='spectral' or pp.Grid(..., nodes='cells')")
    return scheme


class _DensitySystem:
    """What the joint and the reduced systems share as systems of the run loop: a composed
    step, an optional generation map, nothing pending between steps, copies as snapshots."""

    generation = None
    ledger: ClipLedger

    @property
    def has_events(self) -> bool:
        return self.generation is not None

    def prepare(self, dt: float, n_steps: int) -> None:
        """Build what depends on Δt before the run (set-up cost)."""

    _time: float | None = None

    def set_time(self, t: float) -> None:
        """The run's time at the start of the next step(s): a stepper whose first steps after
        the initial data differ (the AP step's initial-layer correction) reads it."""
        self._time = float(t)

    def _pass_time(self, dt: float, n: int) -> None:
        """Give the stepper the time of the steps it is about to take, and move on by them."""
        if hasattr(self._step, "time"):
            self._step.time = self._time
        if self._time is not None:
            self._time += n * dt

    def step(self, f: np.ndarray, dt: float) -> np.ndarray:
        if self._step is None:
            self.prepare(dt, 0)
        self._pass_time(dt, 1)
        return self._step(f, dt)

    def advance(self, f: np.ndarray, dt: float, n: int) -> np.ndarray:
        """n steps at once (a stepper that merges the half steps between them does so)."""
        if self._step is None:
            self.prepare(dt, n)
        self._pass_time(dt, n)
        advance = getattr(self._step, "advance", None)
        if advance is not None:
            return advance(f, dt, n)
        for _ in range(n):
            f = self._step(f, dt)
        return f

    def event(self, f: np.ndarray) -> np.ndarray:
        return self.generation(f)

    def settle(self, f: np.ndarray) -> np.ndarray:
        """At a saved state: a stepper that carries a half step over between calls starts
        afresh from it (so that a run resumed from this state repeats this arithmetic)."""
        restart = getattr(getattr(self, "_step", None), "restart", None)
        if restart is not None:
            restart()
        return f

    def snapshot(self, f: np.ndarray) -> np.ndarray:
        return f.copy()

    def summary(self) -> dict:
        """What the run's info records about the steps taken."""
        return {"clipped_mass": self.ledger.summary()}


class JointSystem(_DensitySystem):
    """The joint equation on ``grid`` as a time step for the run loop (module docstring).

    Parameters
    ----------
    integrator:
        'ap' (default): selection folded into the exact fast step (:mod:`pde_popdyn.ap`), second
        order in Δt for every ε down to ε → 0, with mutation split around it by ``splitting``;
        where it does not apply (several θ-axes, the replicator copying h only) 'split' runs
        instead and ``info["integrator"]`` says so. 'split': the selection, mutation and fast
        sub-steps composed by ``splitting`` ('strang' or 'lie'), first order once ε ≪ Δt.
        'uniformisation': the linearised replicator–mutator equation integrated without
        splitting (:mod:`pde_popdyn.unsplit`; replicator selection, or a rule acting at
        generation times, and diffusive mutation only).
    h_mass:
        The initial h-marginal, so that the Gibbs check only refuses a θ-box that cuts the
        Gibbs state where the population has mass.
    """

    def __init__(self, model: Model, grid: Grid, *, scheme: str = "fv",
                 splitting: str = "strang", integrator: str = "split",
                 check_gibbs: bool = True, h_mass: np.ndarray | None = None):
        t0 = time.perf_counter()
        check_scheme(scheme, grid)
        if integrator not in INTEGRATORS:
            raise ValueError(f"integrator={integrator!r} is not known; use 'ap' (default), "
                             f"'split' or 'uniformisation'")
        self.model, self.grid = model, grid
        self.scheme, self.splitting, self.integrator = scheme, splitting, integrator
        self.ledger = ClipLedger()
        setting = Setting(grid, grid.ndim_h, joint=True, spectral=scheme == "spectral",
                          ledger=self.ledger, averages=GibbsAverages(model, grid))
        setting.explore = model.explore_kernel(setting)
        self.setting = setting
        sel = model.selection if model.selection_active else None
        self.fitness = model.fitness_on(grid) if sel is not None else None
        if scheme == "spectral":
            self.op = SpectralOperator.from_model(model, grid)
        else:
            self.op = SGOperator.from_model(model, grid, check_gibbs=check_gibbs, h_mass=h_mass)
        self.fast = PropagatorStep(self.op.propagator)
        uniform = all(a.uniform for a in grid.theta_axes)
        if integrator == "ap" and not ap.supports(model, grid, scheme, splitting,
                                                  self.fitness, setting):
            integrator = self.integrator = "split"
        if integrator == "uniformisation":
            self._step = self._unsplit(model, sel)
            self.substeps = [self._step]
        elif integrator == "ap":
            self._step = None                  # built for Δt by prepare(), set-up cost
            self.substeps = []
        else:
            steps = []
            if sel is not None and sel.interval is None:
                s = sel.grid_step(self.fitness, setting)
                if s is not None:
                    steps.append(s)
            steps += model.mutation_steps(setting)
            if not uniform:
                steps = [MassStep(s, grid.weights) for s in steps]
            self.substeps = steps + [self.fast]
            self._step = compose(self.substeps, splitting)
        gen = sel.generation_map(self.fitness, setting) if sel is not None and \
            sel.interval is not None else None
        self.generation = gen if gen is None or uniform else _MassMap(gen, grid.weights)
        self.interval = sel.interval if sel is not None else None
        self.setup_seconds = time.perf_counter() - t0

    def _unsplit(self, model: Model, sel) -> UnsplitStep:
        # between generations a rule acting at discrete times leaves only the linear part
        events_only = sel is not None and sel.interval is not None
        kappa = 0.0 if sel is None or events_only else sel.linear_rate
        if kappa is None or any(not m.continuous for m in model.mutations) and not events_only:
            raise ValueError("integrator='uniformisation' integrates the linearised replicator "
                             "equation: it needs selection=pp.Replicator (or None, or a rule "
                             "acting at generation times such as pp.PBT) and "
                             "mutation=pp.Diffusion (or None); use the default "
                             "integrator='ap' (or 'split') for other rules")
        if self.scheme != "fv" or self.grid.ndim_theta != 1:
            raise ValueError("integrator='uniformisation' needs scheme='fv' and one "
                             "theta-axis; use the default integrator='ap' (or 'split')")
        return UnsplitStep(self.op, self.grid, self.fitness, kappa, model.diffusion_coefficient)

    def prepare(self, dt: float, n_steps: int) -> None:
        """Build the fast propagator for ``dt`` now (it is set-up cost), or check the unsplit
        integrator's budget."""
        t0 = time.perf_counter()
        if self.integrator == "uniformisation":
            self._step.check_budget(n_steps * dt)
        elif self.integrator == "ap":
            self._dt = dt
            self._step = ap.make_joint_stepper(self.op, self.model, self.grid, self.setting,
                                               self.fitness, dt, splitting=self.splitting,
                                               spectral=self.scheme == "spectral")
            if hasattr(self._step, "event_interval") and self.model.selection_active:
                self._step.event_interval = self.model.selection.interval
            self.substeps = [self._step]
        elif n_steps:
            kw = {"n_steps": n_steps} if self.scheme == "fv" else {}
            self.fast.cache[dt] = self.op.propagator(dt, **kw)
        self.setup_seconds += time.perf_counter() - t0

    def summary(self) -> dict:
        if self.integrator == "uniformisation":
            fast = {"exact": self._step.summary}
        elif self.integrator == "ap":
            fast = {} if self._step is None else {f"{self._dt:g}": self._step.summary}
        else:
            fast = {f"{tau:g}": p.summary for tau, p in self.fast.cache.items()}
        return {"fast_step": fast, **super().summary()}


# --------------------------------------------------------------------------------------------
# the reduced equation
# --------------------------------------------------------------------------------------------
def resolve_fitness(grid: Grid, fitness: Any) -> np.ndarray | None:
    """A user's reduced fitness (None, an array on grid.h or a callable of h) as an array."""
    if fitness is None:
        return None
    if callable(fitness):
        return field_on_grid("fitness", fitness, (grid.h_mesh(),), grid.h_shape, "fitness(h)")
    try:
        arr = np.array(fitness, dtype=float)
    except (TypeError, ValueError):
        raise TypeError(f"fitness must be None, an array on grid.h or a callable of h, got "
                        f"{_short(fitness)}") from None
    if arr.shape != grid.h_shape:
        raise ValueError(f"fitness has shape {arr.shape} but the reduced equation needs its "
                         f"values on grid.h, shape {grid.h_shape}; pass a callable fitness(h) "
                         f"or pp.effective_fitness(model, grid)")
    if not np.all(np.isfinite(arr)):
        raise ValueError("fitness contains NaN or inf values")
    return arr


class ReducedSystem(_DensitySystem):
    """The reduced equation for ρ(t, h) on ``grid.h`` as a time step for the run loop.

    The state is ρ as densities on the h-cells (shape ``grid.h_shape``); the sub-steps act on
    them (masses and densities differ by the constant cell size of the uniform h-grid).
    """

    def __init__(self, model: Model, grid: Grid, *, fitness: Any = None, scheme: str = "fv",
                 splitting: str = "strang"):
        t0 = time.perf_counter()
        if scheme not in SCHEMES:
            raise ValueError(f"scheme={scheme!r} is not known; use 'fv' (default) or "
                             f"'spectral'")
        self.model, self.grid, self.scheme = model, grid, scheme
        self.ledger = ClipLedger()
        setting = Setting(grid, grid.ndim_h, joint=False, spectral=scheme == "spectral",
                          ledger=self.ledger)
        setting.explore = model.explore_kernel(setting)
        self.setting = setting
        self.ctx = GibbsAverages(model, grid, setting, resolve_fitness(grid, fitness))
        setting.averages = self.ctx
        sel = model.selection if model.selection_active else None
        steps = []
        self.fitness = None
        self.fitness_kind = "none"
        if sel is not None:
            self.fitness = np.asarray(sel.reduced_fitness(self.ctx), dtype=float)
            self.fitness_kind = "user" if fitness is not None else sel.reduced_fitness_name
            if sel.interval is None:
                s = sel.reduced_step(self.ctx)
                if s is not None:
                    steps.append(s)
        steps += model.mutation_steps(setting)
        self._step = compose(steps, splitting) if steps else (lambda f, dt: f)
        self.generation = sel.reduced_generation_map(self.ctx) if sel is not None and \
            sel.interval is not None else None
        self.interval = sel.interval if sel is not None else None
        self.setup_seconds = time.perf_counter() - t0


__all__ = ["JointSystem", "ReducedSystem", "MassStep", "check_scheme",
           "resolve_fitness", "SCHEMES", "INTEGRATORS"]
