"""Selection sub-steps (the slow h-part).

Replicator: the exact solution over τ of ∂_t f = κ (F − ⟨F⟩_f) f is

    f ← f e^{κτF} / ∫∫ f e^{κτF},

computed in the log domain (the exponent is shifted by its maximum over the support of f),
so it neither overflows nor loses all mass to underflow. It is positive and conserves mass for
any τ. Equivalently it is the exact step of the linear equation ∂_t u = κ F u followed by
normalisation, which is why splitting the replicator equation is splitting a linear equation.
"""

from __future__ import annotations

import numpy as np


class ReplicatorStep:
    """Exact replicator step for fitness values ``fitness`` (any shape matching f)."""

    def __init__(self, fitness: np.ndarray, rate: float, weights: np.ndarray | float):
        self.fitness = np.asarray(fitness, dtype=float)
        self.rate = float(rate)
        self.weights = weights

    def __call__(self, f: np.ndarray, tau: float) -> np.ndarray:
        if self.rate == 0.0 or tau == 0.0:
            return f
        expo = (self.rate * tau) * self.fitness
        support = f > 0
        top = expo[support].max() if support.any() else 0.0
        # cells outside the support may have expo > top; the clip keeps 0 * inf out
        g = f * np.exp(np.minimum(expo - top, 0.0))
        mass_before = (f * self.weights).sum()
        return g * (mass_before / (g * self.weights).sum())
