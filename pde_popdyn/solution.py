"""The result of a run: saved times and states, with marginals and moments over time."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .grid import Grid
from .model import Model


@dataclass
class Solution:
    """Saved states of a run: ``t`` of shape (n_saved,), ``f`` of shape (n_saved, n_theta, n_h).

    Diagnostics over time are properties: ``mass``, ``rho`` (the h-marginal ρ(t,h)),
    ``mean_h``, ``var_h``, ``mean_theta``, ``var_theta``, ``cov``, ``mean_fitness`` (⟨F⟩_f).
    """

    t: np.ndarray
    f: np.ndarray
    grid: Grid
    model: Model | None = None
    info: dict[str, Any] = field(default_factory=dict)

    # -- marginals and moments ------------------------------------------------------------
    @property
    def mass(self) -> np.ndarray:
        return self.grid.mass(self.f)

    @property
    def rho(self) -> np.ndarray:
        """ρ(t, h) = ∫ f dθ, shape (n_saved, n_h)."""
        return self.grid.marginal(self.f, "h")

    def marginal(self, axis: str = "h") -> np.ndarray:
        """Marginal density over time along ``axis`` ('h' or 'theta')."""
        return self.grid.marginal(self.f, axis)  # type: ignore[arg-type]

    @property
    def mean(self) -> np.ndarray:
        """(E θ, E h) over time, shape (n_saved, 2)."""
        return self.grid.mean(self.f)

    @property
    def cov(self) -> np.ndarray:
        """Covariance of (θ, h) over time, shape (n_saved, 2, 2)."""
        return self.grid.cov(self.f)

    @property
    def mean_theta(self) -> np.ndarray:
        return self.mean[:, 0]

    @property
    def mean_h(self) -> np.ndarray:
        return self.mean[:, 1]

    @property
    def var_theta(self) -> np.ndarray:
        return self.cov[:, 0, 0]

    @property
    def var_h(self) -> np.ndarray:
        return self.cov[:, 1, 1]

    @property
    def mean_fitness(self) -> np.ndarray:
        """⟨F⟩_f over time."""
        if self.model is None or self.model.fitness is None:
            raise ValueError("this solution's model has no fitness")
        F = self.model.fitness_on(self.grid)
        return self.grid.integrate(self.f, F) / self.mass

    def moments(self) -> dict[str, np.ndarray]:
        """All scalar diagnostics over time, as a dict of 1-D arrays along ``t``."""
        out = {"mass": self.mass, "mean_theta": self.mean_theta, "mean_h": self.mean_h,
               "var_theta": self.var_theta, "var_h": self.var_h,
               "cov_theta_h": self.cov[:, 0, 1]}
        if self.model is not None and self.model.fitness is not None:
            out["mean_fitness"] = self.mean_fitness
        return out

    def at(self, t: float) -> np.ndarray:
        """The saved state nearest to time ``t``."""
        return self.f[int(np.argmin(np.abs(self.t - t)))]

    def __repr__(self) -> str:
        return (f"Solution(n_saved={len(self.t)}, t=[{self.t[0]:g}, {self.t[-1]:g}], "
                f"grid={self.grid!r})")
