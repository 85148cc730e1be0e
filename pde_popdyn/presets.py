"""Built-in models: the README example and the closed-form test problems.

:class:`GaussianProblem` is the linear-Gaussian family of test problems: a quadratic loss
L = ½K(θ − a h − b)² (Gibbs measure π_h = N(a h + b, T/K)), constant T and m, quadratic fitness
F = −½ (z − z*)ᵀ Q (z − z*) with z = (θ, h), replicator selection and diffusive mutation.
Gaussian data stay Gaussian for every ε, and the reduced (ε → 0) equation has the quadratic
effective fitness F̄(h) = −(g/2)(h − ĥ)² + const, so both limits are known exactly.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

import numpy as np

from .densities import gaussian
from .exact import gaussian_moments, reduced_gaussian
from .grid import Grid
from .model import AffineCenter, Diffusion, Model, Replicator
from .rules import PBT, Perturb


@dataclass
class GaussianProblem:
    K: float = 1.0                 # curvature of the loss in θ
    a: float = 1.0                 # the loss minimiser θ*(h) = a h + b
    b: float = 0.0
    T: float = 0.05                # temperature
    mobility: float = 1.0
    eps: float = 0.01
    kappa: float = 1.0             # selection rate κ
    D: float = 0.01                # mutation coefficient
    Q: list = field(default_factory=lambda: [[2.0, 0.0], [0.0, 0.0]])
    zstar: tuple = (0.5, 0.0)      # (θ*, h*) of the fitness
    mean0: tuple = (-0.5, -1.0)    # initial Gaussian (θ, h) mean and covariance
    cov0: list = field(default_factory=lambda: [[0.04, 0.0], [0.0, 0.04]])
    theta_box: tuple = (-3.0, 3.0)
    h_box: tuple = (-2.0, 2.0)

    # Not a dataclass field: the name under which :func:`build` finds this problem again.
    preset_name = "gaussian"

    # -- model and data ------------------------------------------------------------------
    def model(self) -> Model:
        K, a, b = self.K, self.a, self.b
        Q = np.asarray(self.Q, float)
        ts, hs = self.zstar

        def loss(theta, h):
            return 0.5 * K * (theta - a * h - b) ** 2

        def fitness(theta, h):
            d0, d1 = theta - ts, h - hs
            return -0.5 * (Q[0, 0] * d0 * d0 + 2 * Q[0, 1] * d0 * d1 + Q[1, 1] * d1 * d1)

        model = Model(loss=loss, fitness=fitness, temperature=self.T, eps=self.eps,
                      mobility=self.mobility,
                      selection=Replicator(self.kappa) if self.kappa > 0 else None,
                      mutation=Diffusion(self.D) if self.D > 0 else None,
                      loss_grad=lambda theta, h: K * (theta - a * h - b),
                      quadratic=(K, AffineCenter(a, b)), name="gaussian")
        # lets a snapshot file rebuild the model: build(**model.preset) gives it back
        model.preset = {"name": self.preset_name, "params": self.to_dict()}
        return model

    def grid(self, n_theta: int = 128, n_h: int = 64) -> Grid:
        return Grid(theta=(*self.theta_box, n_theta), h=(*self.h_box, n_h))

    def initial(self, grid: Grid) -> np.ndarray:
        return gaussian(grid, self.mean0, self.cov0)

    def describe_initial(self) -> str:
        return f"the preset's Gaussian, mean {list(self.mean0)}"

    # -- exact solutions -------------------------------------------------------------------
    def drift(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(M, c, 𝔇) of the linear SDE z' = M z + c + √(2𝔇) Ẇ."""
        r = self.mobility * self.K / self.eps
        M = np.array([[-r, r * self.a], [0.0, 0.0]])
        c = np.array([r * self.b, 0.0])
        Dm = np.diag([self.mobility * self.T / self.eps, self.D])
        return M, c, Dm

    def exact(self, times) -> tuple[np.ndarray, np.ndarray]:
        """Mean (nt, 2) and covariance (nt, 2, 2) of the exact joint Gaussian solution."""
        M, c, Dm = self.drift()
        return gaussian_moments(M, c, Dm, self.Q, self.zstar, self.kappa, self.mean0,
                                self.cov0, times)

    def exact_density(self, grid: Grid, t: float) -> np.ndarray:
        """Cell averages of the exact solution at time t, normalised on the box."""
        mu, S = self.exact([t])
        return gaussian(grid, mu[0], S[0])

    def effective_fitness_coeffs(self) -> tuple[float, float]:
        """(g, ĥ) with F̄(h) = −(g/2)(h − ĥ)² + const, for π_h = N(a h + b, T/K)."""
        Q = np.asarray(self.Q, float)
        e = np.array([self.a, 1.0])
        w = np.array([self.b - self.zstar[0], -self.zstar[1]])
        g = float(e @ Q @ e)
        return g, float(-(e @ Q @ w) / g)

    def effective_fitness(self, h) -> np.ndarray:
        """F̄(h) = E_{π_h} F in closed form."""
        Q = np.asarray(self.Q, float)
        h = np.asarray(h, float)
        u0 = self.a * h + self.b - self.zstar[0]
        u1 = h - self.zstar[1]
        return -0.5 * (Q[0, 0] * u0 * u0 + 2 * Q[0, 1] * u0 * u1 + Q[1, 1] * u1 * u1
                       + Q[0, 0] * self.T / self.K)

    def reduced(self, times) -> tuple[np.ndarray, np.ndarray]:
        """Mean and variance of h in the ε → 0 limit (closed form; data taken Gaussian in h)."""
        g, hhat = self.effective_fitness_coeffs()
        return reduced_gaussian(times, self.mean0[1], np.asarray(self.cov0)[1, 1], g, hhat,
                                self.kappa, self.D)

    def to_dict(self) -> dict:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(self).items()}


def readme_example() -> GaussianProblem:
    """The built-in example of ``pde-popdyn run``: a quadratic bilevel problem.

    Inner problem: SGD/Langevin on L = ½(θ − h)² at T = 0.05 (so π_h = N(h, T)).
    Outer problem: maximise the fitness F = −(θ − ½)², i.e. F̄(h) = −(h − ½)² − T, whose best
    hyperparameter is h* = ½. The population starts at mean h = −1 and climbs toward h*.
    """
    prob = GaussianProblem(K=1.0, a=1.0, b=0.0, T=0.05, eps=0.01, kappa=4.0, D=0.02,
                           Q=[[2.0, 0.0], [0.0, 0.0]], zstar=(0.5, 0.0),
                           mean0=(-0.5, -1.0), cov0=[[0.04, 0.0], [0.0, 0.04]])
    prob.preset_name = "quadratic-bilevel"
    return prob


def gaussian_problem() -> GaussianProblem:
    """The linear-Gaussian test family (exact joint and reduced solutions)."""
    return GaussianProblem()


@dataclass
class PBTProblem:
    """Population-Based Training of a learning rate, with SGD's noise tied to it.

    h = log η (the natural log of the learning rate). The inner problem is SGD on the training
    loss L(θ) = ½K(θ − c)²: its mobility is the learning rate, m(h) = η, and its temperature
    the learning rate times the gradient-noise variance, T(h) = η σ²/2 (the Langevin model of
    SGD), so the Gibbs state π_h = N(c, T/K) widens with η while a larger η relaxes faster
    (rate η K/ε). The fitness is the validation loss, F = −(θ − c_val)², whence
    F̄(h) = −(c − c_val)² − T(h)/K: at equilibrium the smallest learning rate wins, but from a
    poor start a large one gets there first, so PBT (exploit every ``interval`` with fraction
    ``fraction``, explore by multiplying η by 0.8 or 1.2) lowers the learning rate over time:
    a schedule emerges. No closed form: the run prints its moments.
    """

    K: float = 1.0
    c: float = 1.0                  # minimiser of the training loss
    c_val: float = 1.0              # minimiser of the validation loss
    sigma2: float = 1.0             # gradient-noise variance σ²
    eps: float = 0.1
    interval: float = 0.5
    fraction: float = 0.25
    factors: tuple = (0.8, 1.2)
    theta0: float = -2.0            # initial θ (mean) and its spread
    theta0_var: float = 0.05
    h_box: tuple = (float(np.log(0.01)), 0.0)
    theta_box: tuple = (-3.0, 3.0)

    preset_name = "pbt"
    has_theory = False

    def model(self) -> Model:
        K, c, cv, s2 = self.K, self.c, self.c_val, self.sigma2
        model = Model(loss=lambda theta, h: 0.5 * K * (theta - c) ** 2,
                      fitness=lambda theta, h: -(theta - cv) ** 2,
                      temperature=lambda h: 0.5 * s2 * np.exp(h),
                      mobility=lambda h: np.exp(h), eps=self.eps,
                      selection=PBT(self.interval, self.fraction),
                      mutation=Perturb(self.factors),
                      loss_grad=lambda theta, h: K * (theta - c), quadratic=(K, c),
                      name="pbt")
        model.preset = {"name": self.preset_name, "params": self.to_dict()}
        return model

    def grid(self, n_theta: int = 128, n_h: int = 64) -> Grid:
        return Grid(theta=(*self.theta_box, n_theta), h=(*self.h_box, n_h))

    def initial(self, grid: Grid) -> np.ndarray:
        """θ ~ N(θ₀, var), h uniform on the box (learning rates log-uniform)."""
        th = np.exp(-(grid.theta - self.theta0) ** 2 / (2 * self.theta0_var))
        return th[:, None] * np.ones(grid.n_h)[None, :] / (th.sum() * grid.dtheta *
                                                            grid.n_h * grid.dh)

    def describe_initial(self) -> str:
        return (f"θ ~ N({self.theta0:g}, {self.theta0_var:g}), learning rate log-uniform on "
                f"[{np.exp(self.h_box[0]):.3g}, {np.exp(self.h_box[1]):.3g}]")

    def to_dict(self) -> dict:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(self).items()}


def pbt_problem() -> PBTProblem:
    """PBT of a learning rate with SGD-like noise (see :class:`PBTProblem`)."""
    return PBTProblem()


PRESETS = {"quadratic-bilevel": readme_example, "gaussian": gaussian_problem,
           "pbt": pbt_problem}


def preset_parameters(name: str) -> dict[str, Any]:
    """The parameters of preset ``name`` and their default values."""
    return _preset_factory(name)().to_dict()


def _preset_factory(name: Any):
    if name not in PRESETS:
        raise ValueError(f"preset {name!r} is not known; the built-in presets are "
                         f"{', '.join(sorted(PRESETS))} (see `pde-popdyn presets`)")
    return PRESETS[name]


def build(name: str, params: dict[str, Any] | None = None) -> GaussianProblem | PBTProblem:
    """Preset ``name`` with some of its parameters replaced by ``params``.

    ``build(**model.preset)`` rebuilds the problem behind a preset model, which is how a
    snapshot file written from a preset can be resumed. An unknown parameter is a ValueError
    naming it.
    """
    base = _preset_factory(name)()
    params = dict(params or {})
    known = {f.name for f in fields(base)}
    for key in params:
        if key not in known:
            raise ValueError(f"parameter {key!r} is not known for preset {name!r}; its "
                             f"parameters are {', '.join(sorted(known))}")
    # TOML and JSON give lists where the dataclass holds tuples
    params = {k: tuple(v) if isinstance(getattr(base, k), tuple) and isinstance(v, list) else v
              for k, v in params.items()}
    prob = replace(base, **params)
    prob.preset_name = name
    return prob


def model_from_attrs(attrs: dict[str, Any]):
    """The model of a preset run from a snapshot file's attributes (None if the run did not
    come from a preset, or the preset cannot be rebuilt)."""
    preset = attrs.get("preset")
    if not isinstance(preset, dict) or "name" not in preset:
        return None
    try:
        return build(preset["name"], preset.get("params")).model()
    except (ValueError, TypeError):
        return None
