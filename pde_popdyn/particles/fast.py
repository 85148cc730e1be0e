"""The fast step on agents: θ over τ with h frozen (SGD/Langevin at time scale ε).

    dθ = −(m(h)/ε) ∇_θ L(θ,h) dt + sqrt(2 m(h) T(h)/ε) dW

* ``"ou"``: the exact Ornstein–Uhlenbeck transition when the model declares
  ``quadratic=(K, c)``, i.e. L = ½K(h)|θ − c(h)|² + g(h). With x = m K τ/ε,

      θ ← c + (θ − c) e^{−x} + sqrt( (T/K)(1 − e^{−2x}) ) ξ,   ξ ~ N(0, I),

  exact for every τ/ε: as τ/ε → ∞ it draws θ from π_h = N(c, T/K) (asymptotic-preserving).
* ``"euler"``: Euler–Maruyama with ``substeps`` inner steps of length s = m τ/(ε·substeps):
  θ ← θ − s ∇_θ L + sqrt(2 T s) ξ; the gradient is the ``gradient=`` argument,
  ``Model(loss_grad=...)``, K(θ − c) of a quadratic declaration, or central differences
  (``gradient="central"``, δ = 6·10⁻⁶ max(1, |θ_k|)); ``gradient=callable(theta, h, rng)`` may
  be stochastic (a minibatch gradient) and ``noise=False`` drops the Langevin noise (SGD).
* ``"mala"``: the Euler–Maruyama proposal accepted with the Metropolis–Hastings probability
  min(1, e^{−(L(y)−L(θ))/T} q(θ|y)/q(y|θ)): π_h stays exactly invariant for every s.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from ..model import Model
from ..slow.agents import apply_boundary
from .population import Population

_FD_REL_STEP = 6e-6


class FastStep:
    """The fast θ-step of a particle run; ``options`` holds the simulator's settings (``fast``,
    ``substeps``, ``grad_source``, ``gradient``, ``noise``, ``theta_box``)."""

    def __init__(self, model: Model, n: int, rng: np.random.Generator, options: dict,
                 stats: dict):
        self.model = model
        self.n = n
        self.rng = rng
        self.o = options
        self.stats = stats
        self._ou_cache: dict[float, tuple[float, float]] = {}
        self._buf: dict[tuple, np.ndarray] = {}

    def _field(self, value: Any, h: np.ndarray):
        if callable(value):
            return np.asarray(value(h), dtype=float)
        v = np.asarray(value, dtype=float)
        return float(v) if v.ndim == 0 else v

    @staticmethod
    def _col(v, theta):
        """Broadcast a per-agent value against θ of shape (N,) or (N, d)."""
        if np.ndim(v) == 0 or theta.ndim == 1:
            return v
        return v[:, None]

    @staticmethod
    def _per_agent(c, cv, theta, h):
        """The centre's value cv = c(h) against θ of shape (N, d): a column if it holds one
        value per agent (:func:`per_agent_centre`)."""
        if theta.ndim == 2 and per_agent_centre(c, cv, h, theta.shape[1]):
            return cv[:, None]
        return cv

    def _normals(self, shape: tuple) -> np.ndarray:
        """Standard normals in a reused buffer (valid until the next call)."""
        buf = self._buf.get(shape)
        if buf is None:
            buf = self._buf[shape] = np.empty(shape)
        return self.rng.standard_normal(out=buf)

    def __call__(self, P: Population, tau: float) -> None:
        """Advance θ of every agent over τ with h frozen, in place (module docstring)."""
        m = self.model
        method = self.o["fast"]
        if method == "ou":
            K, c = m.quadratic
            Kv, cv = self._field(K, P.h), self._field(c, P.h)
            mob, T = self._field(m.mobility, P.h), self._field(m.temperature, P.h)
            if np.ndim(Kv) == 0 and np.ndim(mob) == 0 and np.ndim(T) == 0:
                key = tau
                if key not in self._ou_cache:
                    x = mob * Kv * tau / m.eps
                    self._ou_cache[key] = (float(np.exp(-x)),
                                           float(np.sqrt(T / Kv * -np.expm1(-2 * x))))
                a, s = self._ou_cache[key]
            else:
                x = mob * Kv * (tau / m.eps)
                a = np.exp(-x)
                s = np.sqrt(T / Kv * -np.expm1(-2 * x))
                a, s = self._col(a, P.theta), self._col(s, P.theta)
            cv = self._per_agent(c, cv, P.theta, P.h)
            xi = self._normals(P.theta.shape)
            th = P.theta
            th -= cv                # θ ← c + (θ − c) e^{−x} + sqrt((T/K)(1 − e^{−2x})) ξ
            th *= a
            th += cv
            xi *= s
            th += xi
        else:
            nsub = self.o["substeps"]
            mob, T = self._field(m.mobility, P.h), self._field(m.temperature, P.h)
            s = self._col(mob * (tau / (m.eps * nsub)), P.theta)
            Tc = self._col(T, P.theta)
            noise_scale = np.sqrt(2.0 * Tc * s)
            # an unstable explicit step overflows: let it, and report it below by name
            with np.errstate(over="ignore", invalid="ignore"):
                if method == "euler":
                    for _ in range(nsub):
                        g = self.grad(P.theta, P.h)
                        P.theta -= s * g
                        if self.o["noise"]:
                            P.theta += noise_scale * self.rng.standard_normal(P.theta.shape)
                else:
                    self._mala(P, s, Tc, noise_scale, nsub)
        if self.o["theta_box"] is not None:
            lo, hi = self.o["theta_box"]
            apply_boundary(P.theta, lo, hi, "periodic")
        if method != "ou" and not np.isfinite(P.theta).all():
            raise FloatingPointError(
                f"θ became non-finite in the fast step (method {method!r}, step "
                f"m·Δt/ε/substeps = {np.max(mob) * tau / (m.eps * self.o['substeps']):.3g})"
                f"{self._loss_hint(P)}: the explicit step is unstable for this loss: increase "
                f"substeps=, use fast='mala', or declare Model(quadratic=...) for the exact OU "
                f"step")

    def _loss_hint(self, P) -> str:
        """A note for the non-finite θ message when the loss itself is not finite at the
        agents' h (probed at θ = 0): then the model, not the step size, is the likely cause."""
        bad = ~np.isfinite(P.theta)
        if bad.ndim > 1:
            bad = bad.any(axis=1)
        hb = P.h[bad]
        try:
            with np.errstate(all="ignore"):
                L = np.asarray(self.model.loss(np.zeros_like(P.theta[bad]), hb), dtype=float)
        except Exception:             # the probe is a hint only
            return ""
        L = np.broadcast_to(L, hb.shape[:1])
        if np.isfinite(L).all():
            return ""
        i = int(np.flatnonzero(~np.isfinite(L))[0])
        return (f"; the loss itself is {L[i]} at θ = 0, h = {np.ravel(hb[i])[0]:.4g}, so check "
                f"that the model's loss is finite where the agents go; if it is")

    def _mala(self, P, s, Tc, noise_scale, nsub) -> None:
        loss = self.model.loss
        th, hh = P.theta, P.h
        L = np.asarray(loss(th, hh), dtype=float)
        g = self.grad(th, hh)
        dsum = (lambda a: a if a.ndim == 1 else a.sum(axis=1))
        Tv = Tc if np.ndim(Tc) == 0 or th.ndim == 1 else Tc[:, 0]
        sv = s if np.ndim(s) == 0 or th.ndim == 1 else s[:, 0]
        for _ in range(nsub):
            xi = self.rng.standard_normal(th.shape)
            y = th - s * g + noise_scale * xi
            Ly = np.asarray(loss(y, hh), dtype=float)
            gy = self.grad(y, hh)
            back = th - y + s * gy
            log_alpha = -(Ly - L) / Tv - dsum(back * back) / (4.0 * Tv * sv) \
                + 0.5 * dsum(xi * xi)
            acc = np.log(self.rng.random(self.n)) < log_alpha
            self.stats["mala_accepted"] += int(acc.sum())
            self.stats["mala_proposed"] += self.n
            th[acc] = y[acc]
            L[acc] = Ly[acc]
            g[acc] = gy[acc]

    def grad(self, theta: np.ndarray, h: np.ndarray) -> np.ndarray:
        src = self.o["grad_source"]
        if src == "user":
            g = self.o["gradient"](theta, h, self.rng)
        elif src == "model":
            g = self.model.loss_grad(theta, h)
        elif src == "quadratic":
            K, c = self.model.quadratic
            Kv, cv = self._field(K, h), self._field(c, h)
            cv = self._per_agent(c, cv, theta, h)
            g = self._col(Kv, theta) * (theta - cv)
        else:
            g = central_gradient(self.model.loss, theta, h)
        g = np.asarray(g, dtype=float)
        if g.shape != theta.shape:
            raise ValueError(f"the gradient returned shape {g.shape}, but θ has shape "
                             f"{theta.shape}; it must return ∂L/∂θ with θ's shape")
        return g


def per_agent_centre(c, cv, h: np.ndarray, d: int) -> bool:
    """Whether cv = c(h), the OU centre at the n agents h, holds one value per agent (shape
    (n,)) rather than one per component of θ ∈ R^d (shape (d,)). Only a callable's value can
    (a constant array is one value per component); when n = d its value at one agent tells."""
    n = np.shape(h)[0]
    if not callable(c) or np.ndim(cv) != 1 or np.shape(cv)[0] != n:
        return False
    return n != d or np.shape(c(h[:1])) == (1,)


def central_gradient(loss: Callable, theta: np.ndarray, h: np.ndarray) -> np.ndarray:
    """∂_k L by central differences with δ = 6·10⁻⁶ max(1, |θ_k|) (documented fallback)."""
    g = np.empty_like(theta)
    cols = [None] if theta.ndim == 1 else range(theta.shape[1])
    for k in cols:
        sl = (slice(None),) if k is None else (slice(None), k)
        x = theta[sl]
        d = _FD_REL_STEP * np.maximum(1.0, np.abs(x))
        tp, tm = theta.copy(), theta.copy()
        tp[sl] = x + d
        tm[sl] = x - d
        step = tp[sl] - tm[sl]               # the representable 2δ
        g[sl] = (np.asarray(loss(tp, h), float) - np.asarray(loss(tm, h), float)) / step
    return g


def check_declarations(model: Model, theta: np.ndarray, h: np.ndarray, grad_source: str,
                        rng_state: np.random.Generator | None = None) -> None:
    """Check a quadratic declaration and a model loss_grad against the loss, on ≤ 16 agents."""
    k = min(16, h.size)
    th, hh = theta[:k].copy(), h[:k].copy()
    shift = 0.25 * np.linspace(-1.0, 1.0, k).reshape((k,) + (1,) * (th.ndim - 1))
    if model.quadratic is not None:
        K, c = model.quadratic
        Kv = np.asarray(K(hh) if callable(K) else K, float)
        cv = np.asarray(c(hh) if callable(c) else c, float)
        if Kv.ndim == 1 and th.ndim == 2:
            Kv = Kv[:, None]
        if th.ndim == 2 and per_agent_centre(c, cv, hh, th.shape[1]):
            cv = cv[:, None]

        def q(x):
            r = 0.5 * Kv * (x - cv) ** 2
            return r if x.ndim == 1 else r.sum(axis=1)
        lhs = np.asarray(model.loss(th + shift, hh), float) - np.asarray(model.loss(th, hh),
                                                                         float)
        rhs = q(th + shift) - q(th)
        if not np.allclose(lhs, rhs, rtol=1e-6, atol=1e-9 * (1 + np.abs(rhs).max())):
            i = int(np.argmax(np.abs(lhs - rhs)))
            raise ValueError(f"Model(quadratic=(K, center)) disagrees with the loss: at θ="
                             f"{np.ravel(th[i])[0]:.4g}, h={hh[i]:.4g} the loss changes by "
                             f"{lhs[i]:.6g} but ½K|θ−c|² by {rhs[i]:.6g}; fix the declaration "
                             f"(L must be ½K(h)|θ − c(h)|² + g(h)) or drop it")
    if grad_source == "model":
        g = np.asarray(model.loss_grad(th, hh), float)
        if g.shape != th.shape:
            raise ValueError(f"loss_grad returned shape {g.shape} for θ of shape {th.shape}; "
                             f"it must return ∂L/∂θ with θ's shape")
        fd = central_gradient(model.loss, th, hh)
        if not np.allclose(g, fd, rtol=1e-4, atol=1e-6 * (1 + np.abs(fd).max())):
            i = np.unravel_index(int(np.argmax(np.abs(g - fd))), g.shape)
            raise ValueError(f"Model(loss_grad=...) disagrees with central differences of "
                             f"the loss: {g[i]:.6g} against {fd[i]:.6g} at agent {i[0]}; "
                             f"check its sign and scale (or pass check=False)")


__all__ = ["FastStep", "central_gradient", "check_declarations", "per_agent_centre"]
