"""pde_popdyn: the mean-field limit of population-based training.

The joint density f(t, θ, h) of parameters θ and hyperparameters h solves a Fokker–Planck /
selection–mutation equation; as ε → 0 it factorises as ρ(t, h) π_h(θ). The package's
documentation (docs/) states the model and the method; every docstring states the equation its
function solves.
"""

from . import trackers
from ._version import __version__
from .compare import compare
from .convergence import ConvergenceStudy, convergence
from .densities import from_samples, gaussian, normalize, uniform
from .finite_n import mean_field_check
from .gibbs import effective_fitness, gibbs, log_partition
from .grid import Grid
from .loading import load
from .model import AffineCenter, Model
from .particles import Ensemble, simulate_particles
from .reduced import solve_reduced, steady_state
from .resume import resume
from .rules import (PBT, BoltzmannJump, Diffusion, GaussianJump, Perturb, PriorResample,
                    Replicator, Truncation)
from .solution import Solution
from .solve import solve
from .sweep import SweepResult, sweep
from .trackers import (CallbackTracker, GuardTracker, PlotTracker, ProgressTracker,
                       SteadyStateTracker)

__all__ = ["Grid", "Model", "AffineCenter", "Replicator", "BoltzmannJump", "Truncation", "PBT", "Diffusion",
           "GaussianJump", "Perturb", "PriorResample", "gaussian", "uniform", "normalize",
           "from_samples", "solve", "Solution", "__version__", "load", "resume",
           "effective_fitness", "gibbs", "log_partition", "solve_reduced", "steady_state",
           "convergence", "ConvergenceStudy", "sweep", "SweepResult",
           "simulate_particles", "Ensemble", "compare", "mean_field_check", "trackers", "SteadyStateTracker",
           "GuardTracker", "CallbackTracker", "ProgressTracker", "PlotTracker"]
