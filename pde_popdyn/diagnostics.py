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
  W-weighted mean. The residual d/dt E[h] − (selection term) − B, with d/dt E[h] from the
  saved means by second-order differences (``np.gradient``), is O(Δt_save²) + the splitting
  error: save often when using it.
* :func:`distance_to_optimum` — |E[h] − h*| with h* = argmax F̄ (grid argmax refined by the
  parabola through the three best points, exact for a quadratic F̄).
* :func:`slow_manifold_distance` — for a joint run, ‖f − ρ π_h‖_{L¹} over (θ, h), with π_h the
  discrete Gibbs state of the grid (:func:`pde_popdyn.gibbs.gibbs`), which the fast step leaves
  exactly invariant: it measures how far the population is from the slow manifold.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .model import BoltzmannJump, Diffusion, Replicator, Truncation


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


def discrete_gibbs(model, grid) -> tuple[np.ndarray, np.ndarray]:
    """π_h ∝ exp(−L/T) at the θ-nodes of every h-node, normalised with the θ-weights (the
    state the finite-volume fast step leaves invariant), and the θ-weights broadcast to the
    grid's shape."""
    th_axes = tuple(range(grid.ndim_theta))
    phi = model.loss_on(grid) / model.temperature_on(grid.h_mesh())
    wt = grid.theta_weights.reshape(grid.theta_shape + (1,) * grid.ndim_h)
    pi = np.exp(-(phi - phi.min(axis=th_axes, keepdims=True)))
    return pi / (pi * wt).sum(axis=th_axes, keepdims=True), wt


def grid_effective_fitness(model, grid) -> np.ndarray:
    """F̄(h) = Σ_θ π_h F w_θ with the discrete Gibbs state π_h ∝ exp(−L/T) of the grid's
    θ-nodes (normalised with the θ-weights), on every h-node, shape ``grid.h_shape``; for a
    :class:`BoltzmannJump` rule of pressure α, F̄_α = α⁻¹ log Σ_θ π_h e^{αF} w_θ. Used on
    grids with several θ- or h-axes, where the adaptive quadrature of
    :func:`pde_popdyn.effective_fitness` (one axis of each kind) does not apply."""
    th_axes = tuple(range(grid.ndim_theta))
    pi, wt = discrete_gibbs(model, grid)
    F = model.fitness_on(grid)
    if isinstance(model.selection, BoltzmannJump):
        a = model.selection.pressure
        top = F.max(axis=th_axes)
        return top + np.log((pi * wt * np.exp(a * (F - top[(None,) * len(th_axes)])))
                            .sum(axis=th_axes)) / a
    return (pi * F * wt).sum(axis=th_axes)


def effective_fitness_on_grid(sol) -> np.ndarray:
    """The fitness on grid.h that the reduced dynamics select on (see module docstring)."""
    if _kind(sol) == "reduced" and sol.info.get("fitness") is not None:
        return np.asarray(sol.info["fitness"], float)
    cache = getattr(sol, "_cache", None)
    if cache is not None and "effective_fitness" in cache:
        return cache["effective_fitness"]
    if sol.model is None or sol.model.fitness is None:
        raise ValueError("this solution has no fitness on record and no model fitness, so F̄ "
                         "is not defined")
    if sol.grid.ndim_theta > 1 or sol.grid.ndim_h > 1:
        fbar = grid_effective_fitness(sol.model, sol.grid)
    else:
        from .reduced import default_fitness
        fbar = default_fitness(sol.model, sol.grid)[0]
    if cache is not None:
        cache["effective_fitness"] = fbar
    return fbar


def mean_effective_fitness(sol) -> np.ndarray:
    """⟨F̄⟩_ρ over time."""
    fbar = effective_fitness_on_grid(sol)
    return (_rho(sol) * fbar * sol.grid.h_weights).sum(_haxes(sol.grid))


def cov_h_fitness(sol) -> np.ndarray:
    """Cov_ρ(h, F̄) over time (one column per h-axis with several)."""
    fbar = effective_fitness_on_grid(sol)
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
    """B(t): the contribution of diffusive mutation D Δ_h to d/dt E[h] (module docstring).

    With several h-axes, the part of Δ_h along the other axes integrates to zero, so B of
    axis i is the one-axis formula applied to the marginal density of h_i.
    """
    model = sol.model
    mut = None if model is None else model.mutation
    n = len(sol.t)
    grid = sol.grid
    if not isinstance(mut, Diffusion) or mut.coefficient == 0:
        return np.zeros(n) if grid.ndim_h == 1 else np.zeros((n, grid.ndim_h))
    rho = _rho(sol)
    D = mut.coefficient
    out = []
    for i, ax in enumerate(grid.h_axes):
        marg = rho
        for j in reversed(range(grid.ndim_h)):  # integrate out the other h-axes
            if j != i:
                marg = np.tensordot(marg, grid.h_axes[j].weights, axes=([1 + j], [0]))
        if sol.info.get("scheme") == "spectral":
            # the mutation step used the continuum eigenvalues: B = D Σ h (Δ_spec ρ) Δh exactly
            out.append(D * (_laplacian_spectral_axis(marg, ax) * ax.centres).sum(-1)
                       * ax.width)
        elif ax.periodic:
            out.append(D * (ax.length / ax.width) * (marg[:, 0] - marg[:, -1]))
        else:
            out.append(-D * (marg[:, -1] - marg[:, 0]))
    return _per_axis(out)


def laplacian_spectral(rho: np.ndarray, grid) -> np.ndarray:
    """∂²_h ρ of the cosine (Neumann) or Fourier (periodic) interpolant, along the last axis."""
    return _laplacian_spectral_axis(rho, grid.h_axis)


def _laplacian_spectral_axis(rho: np.ndarray, ax) -> np.ndarray:
    import scipy.fft as sfft

    from .slow.mutation import spectral_eigenvalues
    lam = spectral_eigenvalues(ax.cells, ax.width, ax.periodic)
    if ax.periodic:
        c = sfft.rfft(rho, axis=-1)
        return sfft.irfft(-lam * c, n=ax.cells, axis=-1)
    c = sfft.dct(rho, type=2, axis=-1, norm="ortho")
    return sfft.idct(-lam * c, type=2, axis=-1, norm="ortho")


def _mean_h_of(g: np.ndarray, grid, coords: list[np.ndarray]) -> np.ndarray:
    """E[h] (one entry per h-axis) of one state g: a density on the h-grid (reduced) or on the
    whole grid (joint), with uniform weights (the jump rules act on such grids only)."""
    lead = g.ndim - grid.ndim_h
    marg = g.sum(axis=tuple(range(lead))) if lead else g
    return np.array([(marg * x).sum() / marg.sum() for x in coords])


def _selection_term(sol) -> np.ndarray:
    """The selection part of d/dt E[h] at each saved state (module docstring)."""
    model = sol.model
    sel = None if model is None else model.selection
    n = len(sol.t)
    if sel is None or sel.rate == 0:
        return np.zeros(n)
    grid = sol.grid
    if isinstance(sel, Replicator):
        if _kind(sol) == "reduced":
            return sel.rate * cov_h_fitness(sol)
        F = model.fitness_on(grid)
        f = sol.f / grid.mass(sol.f).reshape((-1,) + (1,) * len(grid.shape))
        w, ax = grid.weights, tuple(range(-len(grid.shape), 0))
        eF = (f * F * w).sum(axis=ax)
        terms = []
        for x in grid._coords()[grid.ndim_theta:]:
            eh = (f * x * w).sum(axis=ax)
            ehF = (f * F * x * w).sum(axis=ax)
            terms.append(sel.rate * (ehF - eh * eF))
        return _per_axis(terms)
    if isinstance(sel, (BoltzmannJump, Truncation)):
        if _kind(sol) == "reduced":
            from .reduced import reduced_substeps
            steps = reduced_substeps(model, grid, effective_fitness_on_grid(sol),
                                     sol.info.get("scheme", "fv"))
        else:
            from .solve import slow_substeps
            steps = slow_substeps(sel, model.mutation, model.fitness_on(grid), grid)
        mapping = steps[0].mapping
        coords = _h_coords(grid)
        out = np.array([sel.rate * (_mean_h_of(mapping(f), grid, coords)
                                    - _mean_h_of(f, grid, coords)) for f in sol.f])
        return out[:, 0] if grid.ndim_h == 1 else out
    raise ValueError(f"no Price identity is implemented for selection={sel!r}")


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
        hstar = argmax_fitness(effective_fitness_on_grid(sol), sol.grid.h)
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
    from .gibbs import gibbs
    cache = getattr(sol, "_cache", None)
    pi = None if cache is None else cache.get("gibbs")
    if pi is None:
        pi = (gibbs(sol.model, sol.grid, check=False)
              if sol.grid.ndim_theta == 1 and sol.grid.ndim_h == 1
              else discrete_gibbs(sol.model, sol.grid)[0])
        if cache is not None:
            cache["gibbs"] = pi
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
    if has_fitness:
        out["mean_effective_fitness"] = mean_effective_fitness(sol)
        out["cov_h_fitness"] = cov_h_fitness(sol)
        out["distance_to_optimum"] = distance_to_optimum(sol)
        if _kind(sol) == "joint":
            out["mean_fitness"] = sol.mean_fitness
        if len(sol.t) >= 3 and sol.model is not None and sol.model.selection is not None:
            out["price_residual"] = price_residual(sol)["residual"]
    if _kind(sol) == "joint" and sol.model is not None:
        out["slow_manifold_distance"] = slow_manifold_distance(sol)
    return out


__all__ = ["h_moments", "effective_fitness_on_grid", "mean_effective_fitness",
           "cov_h_fitness", "boundary_flux", "price_residual", "argmax_fitness",
           "grid_effective_fitness", "discrete_gibbs",
           "distance_to_optimum", "slow_manifold_distance", "diagnostics"]
