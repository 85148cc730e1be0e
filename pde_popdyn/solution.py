"""The result of a run: saved times and states, with marginals and moments over time."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np

from . import diagnostics as _diag
from . import plot
from .gibbs import gibbs
from .grid import Grid
from .io import solution_record, to_dataset
from .model import Model


KINDS = ("joint", "reduced")


@dataclass
class Solution:
    """Saved states of a run: ``t`` of shape (n_saved,) and ``f``.

    ``kind="joint"`` (default): ``f`` has shape (n_saved, n_theta, n_h), the density f(t,θ,h).
    ``kind="reduced"``: ``f`` has shape (n_saved, n_h), the h-density ρ(t,h) of the reduced
    (ε → 0) equation; ``rho`` is ``f`` itself, θ-moments are not defined and raise, and
    ``info["fitness"]`` is the fitness on grid.h that selection used.

    Diagnostics over time are properties: ``mass``, ``rho`` (the h-marginal ρ(t,h)),
    ``mean_h``, ``var_h``, ``mean_theta``, ``var_theta``, ``cov``, ``mean_fitness`` (⟨F⟩_f for
    a joint run, ⟨F̄⟩_ρ for a reduced one), and, from :mod:`pde_popdyn.diagnostics`,
    ``effective_fitness``, ``mean_effective_fitness``, ``cov_h_fitness``, ``price_residual``,
    ``distance_to_optimum``, ``slow_manifold_distance`` and ``diagnostics()``.

    ``stop_reason`` says why the run ended: 't_final', 'steady_state', 'tracker', 'guard'
    or 'interrupted' (see :mod:`pde_popdyn.trackers`).
    """

    t: np.ndarray
    f: np.ndarray
    grid: Grid
    model: Model | None = None
    info: dict[str, Any] = field(default_factory=dict)
    kind: str = "joint"
    stop_reason: str = "t_final"

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"kind={self.kind!r} is not known; use 'joint' or 'reduced'")

    @property
    def is_reduced(self) -> bool:
        return self.kind == "reduced"

    def _no_theta(self, what: str) -> None:
        if self.is_reduced:
            raise ValueError(f"{what} is not defined for a reduced solution (kind='reduced' "
                             f"holds only rho(t, h): theta is at its Gibbs state pi_h); use "
                             f"mean_h / var_h, or pp.gibbs(model, grid) for the theta-law")

    # -- marginals and moments ------------------------------------------------------------
    @property
    def mass(self) -> np.ndarray:
        if self.is_reduced:
            return np.asarray(self.f) @ self.grid.h_weights
        return self.grid.mass(self.f)

    @property
    def rho(self) -> np.ndarray:
        """ρ(t, h) = ∫ f dθ, shape (n_saved, n_h) (``f`` itself for a reduced solution)."""
        if self.is_reduced:
            return self.f
        return self.grid.marginal(self.f, "h")

    def marginal(self, axis: str = "h") -> np.ndarray:
        """Marginal density over time along ``axis`` ('h' or 'theta')."""
        if self.is_reduced:
            if axis == "h":
                return self.f
            self._no_theta(f"marginal({axis!r})")
        return self.grid.marginal(self.f, axis)  # type: ignore[arg-type]

    @property
    def mean(self) -> np.ndarray:
        """(E θ, E h) over time, shape (n_saved, 2)."""
        self._no_theta("mean (E theta, E h)")
        return self.grid.mean(self.f)

    @property
    def cov(self) -> np.ndarray:
        """Covariance of (θ, h) over time, shape (n_saved, 2, 2)."""
        self._no_theta("cov of (theta, h)")
        return self.grid.cov(self.f)

    def _block(self, values: np.ndarray, kind: str) -> np.ndarray:
        """The θ- or h-part of per-axis values (n_saved, ndim): 1-D if that kind has one axis."""
        d, m = self.grid.ndim_theta, self.grid.ndim_h
        part = values[:, :d] if kind == "theta" else values[:, d:d + m]
        return part[:, 0] if part.shape[1] == 1 else part

    @property
    def mean_theta(self) -> np.ndarray:
        """E θ over time: (n_saved,), or (n_saved, d) with several θ-axes."""
        self._no_theta("mean_theta")
        return self._block(self.mean, "theta")

    @property
    def mean_h(self) -> np.ndarray:
        if self.is_reduced:
            return _diag.h_moments(self)[0]
        return self._block(self.mean, "h")

    @property
    def var_theta(self) -> np.ndarray:
        self._no_theta("var_theta")
        return self._block(np.diagonal(self.cov, axis1=1, axis2=2), "theta")

    @property
    def var_h(self) -> np.ndarray:
        if self.is_reduced:
            return _diag.h_moments(self)[1]
        return self._block(np.diagonal(self.cov, axis1=1, axis2=2), "h")

    @property
    def mean_fitness(self) -> np.ndarray:
        """⟨F⟩_f over time (joint); ⟨F̄⟩_ρ with the solver's fitness (reduced)."""
        if self.is_reduced:
            return _diag.mean_effective_fitness(self)
        if self.model is None or self.model.fitness is None:
            raise ValueError("this solution's model has no fitness")
        F = self.model.fitness_on(self.grid)
        return self.grid.integrate(self.f, F) / self.mass

    def moments(self) -> dict[str, np.ndarray]:
        """All scalar diagnostics over time, as a dict of 1-D arrays along ``t``."""
        if self.is_reduced:
            out = {"mass": self.mass, "mean_h": self.mean_h, "var_h": self.var_h}
            if self.info.get("fitness") is not None:
                out["mean_fitness"] = self.mean_fitness
            return out
        out = {"mass": self.mass, "mean_theta": self.mean_theta, "mean_h": self.mean_h,
               "var_theta": self.var_theta, "var_h": self.var_h,
               "cov_theta_h": self.cov[:, 0, 1]}
        if self.model is not None and self.model.fitness is not None:
            out["mean_fitness"] = self.mean_fitness
        return out

    # -- two-time-scale diagnostics (pde_popdyn.diagnostics) -------------------------------
    @cached_property
    def effective_fitness(self) -> np.ndarray:
        """The fitness on grid.h the reduced dynamics select on (F̄, or F̄_α for jumps)."""
        return _diag.effective_fitness_on_grid(self)

    @cached_property
    def gibbs_state(self) -> np.ndarray:
        """π_h(θ) on the grid (the discrete Gibbs state of the fast step), shape grid.shape."""
        if self.model is None:
            raise ValueError("this solution has no model, so pi_h is unknown")
        return gibbs(self.model, self.grid, check=False)

    @property
    def mean_effective_fitness(self) -> np.ndarray:
        """⟨F̄⟩_ρ over time."""
        return _diag.mean_effective_fitness(self)

    @property
    def cov_h_fitness(self) -> np.ndarray:
        """Cov_ρ(h, F̄) over time."""
        return _diag.cov_h_fitness(self)

    @property
    def price_residual(self) -> dict[str, np.ndarray]:
        """d/dt E[h] − (selection term) − (boundary term); see pde_popdyn.diagnostics."""
        return _diag.price_residual(self)

    @property
    def distance_to_optimum(self) -> np.ndarray:
        """|E[h] − h*| over time, h* = argmax F̄."""
        return _diag.distance_to_optimum(self)

    @property
    def slow_manifold_distance(self) -> np.ndarray:
        """‖f − ρ π_h‖_{L¹} over time (joint solutions only)."""
        return _diag.slow_manifold_distance(self)

    def diagnostics(self) -> dict[str, Any]:
        """Every applicable diagnostic of :mod:`pde_popdyn.diagnostics`, along ``t``."""
        return _diag.diagnostics(self)

    def to_xarray(self):
        """This solution as an ``xarray.Dataset``: the Dataset that
        ``xarray.open_dataset(path, engine="h5netcdf")`` gives for the snapshot file its run
        writes with ``output=path`` (same variables, coordinates with cell bounds, stored
        diagnostics and attributes; only ``pde_popdyn.io.RUNTIME_ATTRIBUTES`` such as
        ``created`` carry the time of this call), built without writing a file. Needs
        ``pip install "pde_popdyn[interop]"``."""
        return to_dataset(solution_record(self))

    def at(self, t: float) -> np.ndarray:
        """The saved state nearest to time ``t``."""
        return self.f[int(np.argmin(np.abs(self.t - t)))]

    def __repr__(self) -> str:
        kind = ", kind='reduced'" if self.is_reduced else ""
        return (f"Solution(n_saved={len(self.t)}, t=[{self.t[0]:g}, {self.t[-1]:g}], "
                f"grid={self.grid!r}{kind})")

    # -- figures (thin wrappers of pde_popdyn.plot; each returns the figure) ----------------
    def plot_density(self, times=None, ax=None, *, dims=None, at=None, axes=None):
        """f(θ, h) (or ρ for a reduced run) at the saved times nearest to ``times``; on grids
        with more axes the view ``dims=(x, y)``, other axes integrated out or sliced at
        ``at``. Returns the figure."""
        return plot.densities(self, times, ax=ax, dims=dims, at=at, axes=axes)

    def plot_kymograph(self, ax=None, hstar=None, theory: tuple | None = None, *, axis=None):
        """ρ(t, h) over time with the mean of h, h* and an optional theory curve; one panel
        per h-axis (or the chosen ``axis``) with several. Returns the figure."""
        return plot.kymograph(self, ax=ax, hstar=hstar, theory=theory, axis=axis)

    def plot_moments(self, ax=None, theory=()):
        """Mean and variance of h over time against theory curves ``(t, mean, var, label)``.
        Returns the figure."""
        return plot.moments(self, ax=ax, theory=theory)

    def plot_particles(self, samples, t: float | None = None, axis: str = "h", ax=None):
        """A histogram of agents' h (or θ) over this solution's marginal at time ``t``.
        Returns the figure."""
        return plot.particles(samples, self, t, axis=axis, ax=ax)

    def animate(self, path, field: str = "rho", **kwargs):
        """Save ρ(t, h) or f(t, θ, h) over time as a .gif or, with ffmpeg, an .mp4 (chosen by
        the suffix of ``path``); returns the path. See :func:`pde_popdyn.plot.animate`."""
        return plot.animate(self, path, field=field, **kwargs)
