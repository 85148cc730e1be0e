"""Diagnostics along a run, for joint solutions f(t,θ,h) and reduced ones ρ(t,h).

All functions take a :class:`~pde_popdyn.solution.Solution` and return arrays along its saved
times ``sol.t`` (the Solution exposes them as properties too).

* :func:`h_moments` — E[h] and Var[h] under ρ = ∫ f dθ.
* :func:`effective_fitness_on_grid` — the fitness the reduced dynamics select on: the one a
  reduced run used (``sol.info["fitness"]``), or, for a joint run, F̄ (F̄_α for a Boltzmann-jump
  rule) by quadrature on the grid's θ-box.
* :func:`mean_effective_fitness` — ⟨F̄⟩_ρ.  (⟨F⟩_f is ``sol.mean_fitness``.)
* :func:`cov_h_fitness` — Cov_ρ(h, F̄).
* :func:`price_residual` — the Price identity as a consistency check of the time integration:
  for replicator selection with diffusive mutation

      d/dt E[h] = κ Cov(h, F) + B(t),

  with Cov under f and the instantaneous F for a joint run (the exact identity of the joint
  equation: the fast θ-part does not move ρ), and under ρ with F̄ for a reduced run. B is the
  boundary term of the mutation: in the continuum, with zero flux, d/dt ∫ hρ = D∫ hρ'' =
  D[hρ'] − D[ρ] = −D(ρ(h_hi) − ρ(h_lo)). The discrete analogue, exactly consistent with the
  finite-volume Laplacian (ghost cells equal to the edge cells), follows from summation by
  parts, Σ_i h_i (Δ_hρ)_i Δh = −(ρ_M − ρ_1):

      B = −D (ρ_M − ρ_1)                     (reflecting),
      B = D (ℓ/Δh) (ρ_1 − ρ_M)               (periodic h, h read on [h_lo, h_hi)),

  with ρ_1, ρ_M the first and last cells (mass-normalised). For ``scheme="spectral"`` runs
  B = D Σ_i h_i (Δ_spec ρ)_i Δh with the Laplacian of the cosine/Fourier interpolant (the
  operator that run used). For the jump and truncation rules
  d/dt E[h] = λ (E_{M[f]}[h] − E_f[h]) with M the selection map (which includes the mutation
  kernel K_σ at copies); for a Boltzmann jump without kernel, E_{M[ρ]}[h] = m_α, the
  W-weighted mean. Each rule computes its own term (``price_rate``, the rule's Price face);
  rules acting at discrete times (PBT) contribute jumps at the generation times instead, so
  no residual is formed for them. The residual d/dt E[h] − (selection term) − B, with
  d/dt E[h] from the saved means by second-order differences (``np.gradient``), is
  O(Δt_save²) + the splitting error: save often when using it.
* :func:`distance_to_optimum` — |E[h] − h*| with h* = argmax F̄ (grid argmax refined by the
  parabola through the three best points, exact for a quadratic F̄).
* :func:`slow_manifold_distance` — for a joint run, ‖f − ρ π_h‖_{L¹} over (θ, h), with π_h the
  discrete Gibbs state of the grid (:func:`pde_popdyn.gibbs.gibbs`), which the fast step leaves
  exactly invariant: it measures how far the population is from the slow manifold.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .gibbs import GibbsAverages
from .rules import Setting


def _kind(sol) -> str:
    return getattr(sol, "kind", "joint")


def _haxes(grid) -> tuple[int, ...]:
    """The h-axes of an array whose last axes are the grid's h-axes."""
    return tuple(range(-grid.ndim_h, 0))


def _h_coords(grid) -> list[np.ndarray]:
    """The coordinate of each h-axis on the h-grid (arrays of shape ``grid.h_shape``)."""
    return list(np.meshgrid(*[a.centres for a in grid.h_axes], indexing="ij"))


def _per_axis(values: list[np.ndarray]) -> np.ndarray:
    """Per-h-axis values along t: (n_saved,) for one h-axis, (n_saved, k) for k axes."""
    return values[0] if len(values) == 1 else np.stack(values, axis=-1)


def _rho(sol) -> np.ndarray:
    """ρ(t, h) normalised to unit mass, shape (n_saved, *h_shape)."""
    rho = np.asarray(sol.rho, float)
    w = sol.grid.h_weights
    return rho / (rho * w).sum(axis=_haxes(sol.grid), keepdims=True)


def h_moments(sol) -> tuple[np.ndarray, np.ndarray]:
    """(E[h], Var[h]) under ρ over time: shape (n_saved,) each, or (n_saved, k) with k
    h-axes (the mean and variance of each coordinate)."""
    rho = _rho(sol)
    grid = sol.grid
    w, ax = grid.h_weights, _haxes(grid)
    means, variances = [], []
    for x in _h_coords(grid):
        m = (rho * x * w).sum(ax)
        dev = x - m.reshape(m.shape + (1,) * grid.ndim_h)
        means.append(m)
        variances.append((rho * dev ** 2 * w).sum(ax))
    return _per_axis(means), _per_axis(variances)


def effective_fitness_on_grid(sol) -> np.ndarray:
    """The fitness on grid.h that the reduced dynamics select on (see module docstring): the
    one a reduced run used, or what the selection rule's reduced face selects on (F̄, F̄_α)."""
    if _kind(sol) == "reduced" and sol.info.get("fitness") is not None:
        return np.asarray(sol.info["fitness"], float)
    model = sol.model
    if model is None or model.fitness is None:
        raise ValueError("this solution has no fitness on record and no model fitness, so F̄ "
                         "is not defined")
    ctx = GibbsAverages(model, sol.grid)
    if model.selection is None:
        return ctx.effective_fitness(None)
    return np.asarray(model.selection.reduced_fitness(ctx), float)


def mean_effective_fitness(sol) -> np.ndarray:
    """⟨F̄⟩_ρ over time."""
    fbar = sol.effective_fitness
    return (_rho(sol) * fbar * sol.grid.h_weights).sum(_haxes(sol.grid))


def cov_h_fitness(sol) -> np.ndarray:
    """Cov_ρ(h, F̄) over time (one column per h-axis with several)."""
    fbar = sol.effective_fitness
    rho = _rho(sol)
    grid = sol.grid
    w, ax, one = grid.h_weights, _haxes(grid), (1,) * grid.ndim_h
    m, _ = h_moments(sol)
    m = m.reshape(len(m), -1)
    fm = (rho * fbar * w).sum(ax)
    dfit = fbar[None] - fm.reshape(fm.shape + one)
    return _per_axis([(rho * (x - m[:, i].reshape((-1,) + one)) * dfit * w).sum(ax)
                      for i, x in enumerate(_h_coords(grid))])


def boundary_flux(sol) -> np.ndarray:
    """B(t): the contribution of the mutation terms to d/dt E[h] (module docstring): each
    mutation rule's boundary term (one column per h-axis with several)."""
    model = sol.model
    n = len(sol.t)
    grid = sol.grid
    out = np.zeros(n) if grid.ndim_h == 1 else np.zeros((n, grid.ndim_h))
    if model is None:
        return out
    rho = _rho(sol)
    spectral = sol.info.get("scheme") == "spectral"
    for m in model.mutations:
        out = out + m.boundary_rate(rho, grid, spectral)
    return out


def _selection_term(sol) -> np.ndarray:
    """The selection part of d/dt E[h] at each saved state: the rule's Price face."""
    model = sol.model
    n = len(sol.t)
    if model is None or not model.selection_active:
        return np.zeros(n) if sol.grid.ndim_h == 1 else np.zeros((n, sol.grid.ndim_h))
    grid = sol.grid
    reduced = _kind(sol) == "reduced"
    setting = Setting(grid, grid.ndim_h, joint=not reduced,
                      spectral=sol.info.get("scheme") == "spectral")
    setting.explore = model.explore_kernel(setting)
    if reduced:
        rule, fitness, w = model.selection.reduced_rule(), sol.effective_fitness, grid.h_weights
    else:
        rule, fitness, w = model.selection, model.fitness_on(grid), grid.weights
    out = np.array([rule.price_rate(np.asarray(f) * w, fitness, setting) for f in sol.f])
    return out[:, 0] if grid.ndim_h == 1 else out


def price_residual(sol) -> dict[str, np.ndarray]:
    """The Price identity along a run (module docstring).

    Returns a dict of arrays along ``sol.t``: ``dmean_dt`` (from the saved means by
    second-order differences), ``selection`` (κ Cov(h, F), or λ(E_M[h] − E[h]) for the jump
    rules), ``boundary`` (B) and ``residual`` = dmean_dt − selection − boundary.
    """
    if len(sol.t) < 3:
        raise ValueError("the Price residual needs at least 3 saved states (pass a smaller "
                         "save_every)")
    m, _ = h_moments(sol)
    dm = np.gradient(m, sol.t, axis=0, edge_order=2)
    sel = _selection_term(sol)
    bnd = boundary_flux(sol)
    return {"t": np.asarray(sol.t), "dmean_dt": dm, "selection": sel, "boundary": bnd,
            "residual": dm - sel - bnd}


def argmax_fitness(fitness: np.ndarray, h) -> float | tuple[float, ...]:
    """h* = argmax of ``fitness`` on the uniform nodes ``h``, refined by the parabola through
    the best node and its neighbours (exact for a quadratic). With several h-axes (``h`` a
    tuple of node arrays, ``fitness`` of the h-grid's shape) the best node is refined along
    each axis, and h* is a tuple."""
    fitness = np.asarray(fitness, float)
    if isinstance(h, tuple):
        j = np.unravel_index(int(np.argmax(fitness)), fitness.shape)
        return tuple(_parabola(fitness[j[:i] + (slice(None),) + j[i + 1:]], np.asarray(x), j[i])
                     for i, x in enumerate(h))
    return _parabola(fitness, np.asarray(h), int(np.argmax(fitness)))


def _parabola(fitness: np.ndarray, h: np.ndarray, j: int) -> float:
    if j == 0 or j == fitness.size - 1:
        return float(h[j])
    a, b, c = fitness[j - 1], fitness[j], fitness[j + 1]
    denom = a - 2 * b + c
    if denom >= 0:
        return float(h[j])
    return float(h[j] + 0.5 * (h[1] - h[0]) * (a - c) / denom)


def distance_to_optimum(sol, hstar=None) -> np.ndarray:
    """|E[h] − h*| over time (the Euclidean distance with several h-axes), h* = argmax F̄
    unless given."""
    if hstar is None:
        hstar = argmax_fitness(sol.effective_fitness, sol.grid.h)
    m, _ = h_moments(sol)
    if sol.grid.ndim_h == 1:
        return np.abs(m - hstar)
    return np.linalg.norm(m - np.asarray(hstar, float), axis=-1)


def slow_manifold_distance(sol) -> np.ndarray:
    """‖f − ρ π_h‖_{L¹(θ,h)} over time, for a joint run (module docstring)."""
    if _kind(sol) == "reduced":
        raise ValueError("slow_manifold_distance needs a joint solution f(t, theta, h); a "
                         "reduced solution lies on the slow manifold by construction")
    if sol.model is None:
        raise ValueError("this solution has no model, so pi_h is unknown")
    pi = sol.gibbs_state
    grid = sol.grid
    f = np.asarray(sol.f)
    rho = grid.marginal(f, "h")                                     # (n_saved, *h_shape)
    rho = rho.reshape(rho.shape[:1] + (1,) * grid.ndim_theta + rho.shape[1:])
    return (np.abs(f - pi[None] * rho) * grid.weights).sum(
        axis=tuple(range(1, f.ndim)))


def diagnostics(sol) -> dict[str, Any]:
    """Every diagnostic that applies to ``sol``, as arrays along ``sol.t``."""
    m, v = h_moments(sol)
    out: dict[str, Any] = {"t": np.asarray(sol.t), "mean_h": m, "var_h": v}
    has_fitness = (sol.info.get("fitness") is not None if _kind(sol) == "reduced"
                   else sol.model is not None and sol.model.fitness is not None)
    events = sol.info.get("interval") is not None
    if has_fitness:
        out["mean_effective_fitness"] = mean_effective_fitness(sol)
        out["cov_h_fitness"] = cov_h_fitness(sol)
        out["distance_to_optimum"] = distance_to_optimum(sol)
        if _kind(sol) == "joint":
            out["mean_fitness"] = sol.mean_fitness
        if len(sol.t) >= 3 and sol.model is not None and sol.model.selection is not None \
                and not events:
            out["price_residual"] = price_residual(sol)["residual"]
    if _kind(sol) == "joint" and sol.model is not None:
        out["slow_manifold_distance"] = slow_manifold_distance(sol)
    return out


__all__ = ["h_moments", "effective_fitness_on_grid", "mean_effective_fitness",
           "cov_h_fitness", "boundary_flux", "price_residual", "argmax_fitness",
           "distance_to_optimum", "slow_manifold_distance", "diagnostics"]
