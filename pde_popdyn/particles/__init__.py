"""Agents: the N-agent system whose N → ∞ limit is the mean-field PDE.

* :mod:`~pde_popdyn.particles.simulate` — the entry point :func:`simulate_particles`;
* :mod:`~pde_popdyn.particles.system` — one time step (fast, mutation, selection sub-steps);
* :mod:`~pde_popdyn.particles.fast` — the fast θ-step (exact OU, Euler–Maruyama, MALA);
* :mod:`~pde_popdyn.particles.population` — the state: θ, h and fitness memory;
* :mod:`~pde_popdyn.particles.estimators` — kernel regression of F̄ over the population;
* :mod:`~pde_popdyn.particles.ensemble` — the result, :class:`Ensemble`.
"""

from ..slow.agents import apply_boundary, systematic_counts
from .backends import DASK_SETTINGS
from .ensemble import Ensemble
from .estimators import kernel_regression, silverman_bandwidth
from .simulate import sample_density, simulate_particles

__all__ = ["simulate_particles", "Ensemble", "kernel_regression", "silverman_bandwidth",
           "apply_boundary", "systematic_counts", "sample_density", "DASK_SETTINGS"]
