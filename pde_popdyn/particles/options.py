"""Arguments of :func:`~pde_popdyn.particles.simulate_particles`: the choices, their checks,
and the initial state drawn from a density."""

from __future__ import annotations

import numbers
from typing import Any, Callable

import numpy as np

from .._validate import _short, density_array
from ..gibbs import effective_fitness as gibbs_effective_fitness
from ..grid import Grid
from ..model import Model

FAST_METHODS = ("auto", "ou", "euler", "mala")
FITNESS_MODES = ("instantaneous", "window", "effective", "estimated")
WINDOW_KINDS = ("exponential", "running")
REPLICATOR_SCHEMES = ("resample", "pairwise")
RESAMPLING = ("systematic", "multinomial")
ENGINES = ("auto", "fused", "numpy")
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


__all__ = ["sample_density", "FAST_METHODS", "FITNESS_MODES", "WINDOW_KINDS",
           "REPLICATOR_SCHEMES", "RESAMPLING", "SPLITTINGS", "ENGINES"]
