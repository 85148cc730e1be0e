"""Time stepping of the joint equation that is second order in Δt for every ε, down to ε = 0.

Splitting selection from the fast θ-dynamics is only first order once ε ≪ Δt: a selection
sub-step on the instantaneous fitness F, applied to a density already relaxed to ρπ_h, sees the
tilted average (1/κτ) log E_π e^{κτF} instead of F̄ = E_π F. This module composes the steps so
that the fast dynamics act *inside* every selection step.

**Replicator selection (and no selection).** The equation is linear after normalisation,
∂_t u = G u + D Δ_h u with G = 𝓛_ε + κ F acting on each h-column separately. Per column,
exp(τ G_j) is computed exactly (:mod:`pde_popdyn.fast.columns`: uniformisation, squaring or
its rank-one stiff limit e^{τλ₀} r₀ l₀ᵀ, with λ₀ → κF̄(h_j) as ε → 0), and only mutation is
split off, in the middle:

    f ← N[ exp(½Δt G) · exp(Δt D Δ_h) · exp(½Δt G) f ],       N[u] = u / ∫u.

Mutation acts on h alone, so it commutes with integrating over θ; as ε → 0 the h-marginal is
advanced by e^{½Δt κF̄} e^{Δt DΔ_h} e^{½Δt κF̄}, the Strang scheme of the reduced equation
∂_t ρ = κ(F̄ − ⟨F̄⟩)ρ + DΔ_h ρ. Putting mutation in the middle (not outside) matters for
intermediate ε: the off-manifold part it creates then relaxes within the same step while being
weighted by the selection, at the midpoint, which removes an O(εΔt) error of the other
ordering. Consecutive half steps merge into exp(Δt G) between saved states.

**Jump selection (Boltzmann, truncation).** With the loss −λf moved into the linear part,
∂_t f = (𝓛_ε − λ) f + λ M[f], where the gain M[f] ≥ 0 has the mass of f (M[f] = K_σ(ωf)/⟨ω⟩_f
for Boltzmann, f − B[f] + K_σ G[f] for truncation). The step is the exponential midpoint rule
with the exact fast propagator E(t) = e^{t𝓛_ε} and its integral Φ(t) = ∫_0^t e^{−λs} E(s) ds
(λΦ(t) is 1 − e^{−λt} times a column-stochastic matrix):

    f_½ = e^{−λΔt/2} E(½Δt) f + λ Φ(½Δt) M[f],
    f   ← e^{−λΔt} E(Δt) f + λ Φ(Δt) M[f_½].

Every term is non-negative and the masses add to exactly one. Both stages see M applied to a
state the fast dynamics have acted on, so as ε → 0 the h-marginal follows the exponential
midpoint rule of the reduced jump equation ∂_t ρ = λ(𝓜[ρ] − ρ) (second order), and Φ keeps
the O(ε) part of copies made less than ~ε ago, which are not yet relaxed. A stationary state of
the semi-discrete equation (M[f] = f − 𝓛_ε f/λ) is a fixed point of the step for every Δt.
Diffusive mutation with a jump rule is split around this step (Strang).

What holds for every Δt and ε: f ≥ 0, unit mass, and with selection and mutation off the
discrete Gibbs state ρπ_h does not move. The entry point is :func:`make_joint_stepper`, which
:class:`~pde_popdyn.equations.JointSystem` calls for ``integrator="ap"``, the default of
:func:`pde_popdyn.solve`.

Known limits, measured by ``python -m benchmarks ap``:

* the error is below C·Δt² with one C for every ε; from data on the slow manifold (ρ0·π_h)
  the fitted order is 2 at every ε. From data off it, mutation acts during the initial layer
  (the first O(ε) of time, while the θ-profiles relax) on profiles that a step with Δt ≫ ε
  sees relaxed at its midpoint. The slow projection of that missed term is l₀ᵀ D∂²_h X with X
  the layer's time integral (O(ε), l₀ᵀX = 0) and l₀ = 1 + O(εκ) the left Perron vector, so it
  is O(ε²κD): an error of about 0.02·ε² in E[h] for D = 0.01, κ = 1 (measured: ε²-scaling from
  ε = 3e-3 to 3e-4, linear in D) that Δt does not reduce while Δt ≫ ε. It lowers the fitted
  slope over Δt ∈ [0.006, 0.1] to about 1.6 at ε = 1e-2 … 1e-3 only;
* replicator: at the end of a step the θ-profiles lack the O(εD) part by which mutation keeps
  them out of local equilibrium (it is created in the middle of the step and has relaxed by the
  end); the h-marginal is not affected, the whole density's error stops falling at O(εD) once
  Δt ≫ ε;
* jump rules: from data far from local equilibrium the first step does not see the selection
  acting during the O(ε) initial layer (an O(λε) error that Δt does not reduce while Δt ≫ ε);
  with λΔt ≳ 0.1 the error constant grows with λ (a concern only for very fast jumps, such as
  the weak-selection limit λ → ∞);
* grids with several θ-axes keep the Strang splitting of selection, mutation and fast steps.
"""

from __future__ import annotations

import numpy as np

from .fast.columns import ColumnGenerator, ColumnPropagator
from .fast.spectral import SpectralColumnPropagator
from .run import SPLITTINGS, compose

_COST_STEPS = 100         # run length assumed by the cost model (not the actual one: see below)


def supports(model, grid, scheme: str, splitting: str, fitness, setting) -> bool:
    """True when :func:`make_joint_stepper` serves this run: one θ-axis, finite volumes on a
    grid of cells or the spectral scheme, and a selection rule that is linear (replicator
    copying (θ, h)), of the jump form λ(M[f] − f), acting at generation times only, or off.
    Continuous mutation is split around the step."""
    if splitting not in SPLITTINGS or grid.ndim_theta != 1:
        return False
    if not ((scheme == "fv" and grid.nodes == "cells") or scheme == "spectral"):
        return False
    sel = model.selection if model.selection_active else None
    return (sel is None or sel.interval is not None or sel.linear_rate is not None
            or sel.jump_form(fitness, setting) is not None)


def make_joint_stepper(op, model, grid, setting, fitness, dt: float, *,
                       splitting: str = "strang", spectral: bool = False):
    """The time step of the joint equation of ``model`` on ``grid`` (module docstring), built
    on the fast operator ``op`` (Scharfetter–Gummel or spectral) for the step ``dt``.

    Returns a stepper: ``stepper(f, dt)`` advances one step (``dt`` must be the step it was
    built for), ``stepper.advance(f, dt, n)`` advances n steps and merges the half steps
    between them. The per-column choice between uniformisation and dense propagators assumes a
    run of 100 steps whatever its length, so that it depends on (model, grid, Δt) only: a run
    and any part of it, or its continuation, do the same arithmetic.
    """
    if splitting not in SPLITTINGS:
        raise ValueError(f"splitting={splitting!r} is not known; use 'strang' (order 2, the "
                         f"default) or 'lie' (order 1)")
    sel = model.selection if model.selection_active else None
    n_app = _COST_STEPS
    dt = float(dt)
    mutation = model.mutation_steps(setting)
    jump = None if sel is None or sel.interval is not None else \
        sel.jump_form(fitness, setting)
    if jump is not None:
        lam, mapping = jump
        prop = (SpectralColumnPropagator(op, 0.5 * dt, lam=lam) if spectral else
                ColumnPropagator(ColumnGenerator(op), 0.5 * dt, lam=lam,
                                 n_applications=(4 if splitting == "strang" else 2) * n_app))
        return JumpStepper(prop, grid, lam, mapping, mutation, dt, splitting)
    kappa = 0.0 if sel is None or sel.interval is not None else sel.linear_rate
    d = kappa * np.asarray(fitness).reshape(grid.n_theta, -1) if kappa > 0 else None
    prop = (SpectralColumnPropagator(op, 0.5 * dt, diag=d) if spectral else
            ColumnPropagator(ColumnGenerator(op, d), 0.5 * dt, n_applications=n_app))
    return LinearStepper(prop, grid, mutation, dt, splitting)


class _Stepper:
    """Shared checks: the step size is fixed at build time."""

    def _check_dt(self, dt: float) -> None:
        if abs(dt - self.dt) > 1e-12 * self.dt:
            raise ValueError(f"this stepper was built for dt={self.dt!r}, got dt={dt!r}; build "
                             f"another one with make_joint_stepper(..., dt)")

    def __call__(self, f: np.ndarray, dt: float) -> np.ndarray:
        return self.advance(f, dt, 1)


class LinearStepper(_Stepper):
    """Replicator (κ ≥ 0) with diffusive mutation (D ≥ 0): exp(½Δt G) e^{ΔtDΔ_h} exp(½Δt G),
    normalised; Lie: e^{ΔtDΔ_h} exp(Δt G).

    With u_n = exp(½Δt G) f_n the Strang steps read v_n = e^{ΔtDΔ_h} u_n,
    f_{n+1} = exp(½Δt G) v_n and u_{n+1} = exp(Δt G) v_n: one fast application per step. The
    stepper remembers v_n for the density it returned last (returned read-only), so a call
    that continues from it, one step or many at a time, runs exactly the same arithmetic.
    """

    def __init__(self, prop, grid, mutation: list, dt: float, splitting: str):
        self.grid, self.dt, self.splitting, self.prop = grid, dt, splitting, prop
        self.weights = grid.weights
        self.mutation = compose(mutation, "lie") if mutation else None
        self._last = None          # (the density returned last, its v_n)

    def _fast(self, f: np.ndarray, k: int) -> np.ndarray:
        g = self.prop.apply(f.reshape(f.shape[0], -1), k).reshape(f.shape)
        return g * (1.0 / (g * self.weights).sum())

    def _mutate(self, f: np.ndarray) -> np.ndarray:
        return f if self.mutation is None else self.mutation(f, self.dt)

    def advance(self, f: np.ndarray, dt: float, n: int) -> np.ndarray:
        """n steps; between them the two half steps exp(½Δt G) are taken as one exp(Δt G)."""
        self._check_dt(dt)
        if n < 1:
            return f
        mass = (f * self.weights).sum()
        if self.splitting == "lie":
            for _ in range(n):
                f = self._mutate(self._fast(f, 2))
            return f * mass
        last = self._last
        if last is not None and f is last[0]:       # continue the chain (and its mass)
            u, mass = self._fast(last[1], 2), last[2]
        else:
            u = self._fast(f, 1)
        for i in range(n):
            v = self._mutate(u)
            if i < n - 1:
                u = self._fast(v, 2)
        out = self._fast(v, 1) * mass
        out.setflags(write=False)
        self._last = (out, v, mass)
        return out

    def restart(self) -> None:
        """Start the next call afresh from the density it is given (no half step carried
        over): the run loop calls this at every saved state, so that a run resumed from a
        saved state does the same arithmetic as the uninterrupted run."""
        self._last = None

    @property
    def summary(self) -> dict:
        return {"scheme": "exp(dt/2 (L+kF)) exp(dt D Lap_h) exp(dt/2 (L+kF))"
                if self.splitting == "strang" else "exp(dt D Lap_h) exp(dt (L+kF))",
                **self.prop.summary}


class JumpStepper(_Stepper):
    """Boltzmann or truncation jumps: the exponential midpoint rule with the exact fast
    propagator (module docstring); diffusive mutation, if any, split around it."""

    def __init__(self, prop, grid, lam: float, mapping, mutation: list, dt: float,
                 splitting: str):
        self.grid, self.dt, self.splitting, self.prop = grid, dt, splitting, prop
        self.lam = float(lam)
        self.mapping = mapping
        # the jump maps act on masses f·w (they equal f on a uniform finite-volume grid)
        self.weights = None if all(a.uniform for a in grid.theta_axes) else grid.weights
        self.mutation = compose(mutation, "lie") if mutation else None

    def _map(self, f: np.ndarray) -> np.ndarray:
        if self.weights is None:
            return self.mapping(f)
        return self.mapping(f * self.weights) / self.weights

    def _E(self, f: np.ndarray, k: int) -> np.ndarray:
        return self.prop.apply(f.reshape(f.shape[0], -1), k).reshape(f.shape)

    def _lamPhi(self, g: np.ndarray, k: int) -> np.ndarray:
        return self.lam * self.prop.integral(g.reshape(g.shape[0], -1), k).reshape(g.shape)

    def _jump(self, f: np.ndarray) -> np.ndarray:
        h = self.dt
        if self.splitting == "lie":        # exponential Euler: first order
            out = np.exp(-self.lam * h) * self._E(f, 2) + self._lamPhi(self._map(f), 2)
        else:
            a = np.exp(-0.5 * self.lam * h)
            u = self._E(f, 1)
            f_half = a * u + self._lamPhi(self._map(f), 1)
            out = a * a * self._E(u, 1) + self._lamPhi(self._map(f_half), 2)
        w = self.grid.weights
        return out * ((f * w).sum() / (out * w).sum())

    def advance(self, f: np.ndarray, dt: float, n: int) -> np.ndarray:
        self._check_dt(dt)
        for _ in range(n):
            if self.mutation is None:
                f = self._jump(f)
            elif self.splitting == "lie":
                f = self.mutation(self._jump(f), dt)
            else:
                f = self.mutation(self._jump(self.mutation(f, 0.5 * dt)), 0.5 * dt)
        return f

    @property
    def summary(self) -> dict:
        return {"scheme": "exponential midpoint with exact fast propagator"
                if self.splitting == "strang" else "exponential Euler", **self.prop.summary}


__all__ = ["make_joint_stepper", "supports", "LinearStepper", "JumpStepper", "SPLITTINGS"]
