"""pde_popdyn: the mean-field limit of population-based training.

The joint density f(t, θ, h) of parameters θ and hyperparameters h solves a Fokker–Planck /
selection–mutation equation; as ε → 0 it factorises as ρ(t, h) π_h(θ). See the README and
the module docstrings for the equations each function solves.
"""

from ._version import __version__
from .densities import from_samples, gaussian, normalize, uniform
from .grid import Grid
from .model import BoltzmannJump, Diffusion, GaussianJump, Model, Replicator, Truncation
from .solution import Solution
from .gibbs import effective_fitness, gibbs, log_partition
from .reduced import solve_reduced, steady_state
from .solve import solve
from .convergence import ConvergenceStudy, convergence
from .sweep import SweepResult, sweep
from .particles import Ensemble, simulate_particles
from .loading import load, resume
from .compare import compare

__all__ = ["Grid", "Model", "Replicator", "BoltzmannJump", "Truncation", "Diffusion",
           "GaussianJump", "gaussian", "uniform", "normalize",
           "from_samples", "solve", "Solution", "__version__", "load", "resume",
           "effective_fitness", "gibbs", "log_partition", "solve_reduced", "steady_state",
           "convergence", "ConvergenceStudy", "sweep", "SweepResult",
           "simulate_particles", "Ensemble", "compare"]
