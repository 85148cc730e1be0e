"""The fused particle step: mutation and the exact OU step in one compiled pass, in-place
systematic resampling, and one-pass summaries.

What it covers (``engine="fused"``, the default where it applies):

* the exact Ornstein–Uhlenbeck fast step of a loss declared ``quadratic=(K, center)``, with
  K, center, T and m constants (then the whole time step is one pass) or callables of h
  (evaluated in numpy once per step, one vector operation each, at the h the OU step sees;
  with Strang splitting the pass is then cut in two around that evaluation). With θ ∈ R,
  constant K, T, m and a constant or :class:`~pde_popdyn.AffineCenter` centre, the Strang
  pass M(Δt/2) O(Δt) M(Δt/2) is sampled as the joint Gaussian move of (θ, h) it is, with two
  normals per agent instead of three (agents near the ends of the h-box take the three
  sub-steps one by one, so that the boundary rule acts as in the composition);
* continuous mutations that are Brownian moves in h (:class:`~pde_popdyn.Diffusion`; several
  add their coefficients), with the reflecting, periodic or clipping boundary rule (with
  clipping, one such mutation only: the numpy engine clips after each mutation's move, and
  that is not the law of clipping once after their sum, whereas the reflecting and periodic
  maps give the same law either way);
* any selection rule: the rules keep their particle faces; systematic resampling (the
  replicator's, and the adaptive one) runs in place (:func:`resample_exp`), and the fitness
  is evaluated once per step in numpy by the model's vectorised fitness, on each chunk of
  agents right after its sub-steps (the fitness must be pointwise, F(θ_i, h_i));
* fitness modes ``"instantaneous"``, ``"effective"`` and ``"estimated"``; θ ∈ R^d.

It does not cover (``engine="auto"`` then takes the numpy path, which covers everything):
Euler–Maruyama and MALA steps (their gradient is a user callable, which cannot be compiled in
general), fitness windows (per-agent memory), and environments without numba.

Random numbers. The normals come from Philox4x32-10 counter streams
(:mod:`pde_popdyn.particles.counter`): each step draws a 96-bit nonce from the run's numpy
``Generator``, and the normal of agent i in sub-step stream s is a pure function of (nonce, s,
i). A seeded run is therefore reproducible bit for bit, its continuation from a saved state is
the uninterrupted run's, and the result does not depend on the block size or thread count.
For a fixed seed the fused and numpy engines give different agents (they draw different
normals, merge several diffusions into one draw and keep resampled agents in different
slots); both are exact samplers of the same splitting scheme, and the tests compare them in
law.

Memory: the step works in place on θ and h; selection adds the fitness and the weights
(8 bytes per agent each; the fitness function's temporaries are per chunk), and the kernels
allocate only their per-block buffers.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from . import kernels as K
from .counter import nonce_from
from .fast import per_agent_centre


def fused_support(model, opts: dict, theta_ndim: int) -> str | None:
    """None if the fused step covers this model and these options, else the reason why not."""
    if not K.HAVE_NUMBA:
        return "numba is not importable"
    if opts["fast"] != "ou":
        return f"fast={opts['fast']!r} (the fused step is the exact OU step of a quadratic loss)"
    if opts["fitness_mode"] == "window":
        return "fitness_mode='window' keeps per-agent memory"
    for m in model.mutations:
        if m.continuous and m.particle_brownian is None:
            return f"the continuous mutation {type(m).__name__} is not a Brownian move in h"
    moves = [m for m in model.mutations if m.continuous and m.particle_brownian]
    if len(moves) > 1 and opts["h_box"] is not None and opts["boundary"] == "clip":
        return ("several Brownian mutations with boundary='clip' (the fused step draws their "
                "sum as one move, and clipping after each move is not clipping after the sum)")
    if theta_ndim not in (1, 2):
        return "θ must have shape (N,) or (N, d)"
    return None


class FusedStep:
    """The mutation and fast sub-steps of one time step as compiled passes (module docstring).

    ``__call__(P, dt, strang)`` advances P in place: Strang M(Δt/2) O(Δt) M(Δt/2), Lie
    O(Δt) M(Δt).
    """

    def __init__(self, model, opts: dict, rng: np.random.Generator, stats: dict):
        self.model = model
        self.o = opts
        self.rng = rng
        self.stats = stats
        self.D = float(sum(m.particle_brownian for m in model.mutations if m.continuous))
        box = opts["h_box"]
        self.kind = K.BOUNDARY_CODES[opts["boundary"]] if box is not None else 0
        self.lo, self.hi = (float(box[0]), float(box[1])) if box is not None else (0.0, 0.0)
        tb = opts.get("theta_box")
        self.twrap = tb is not None
        self.tlo, self.thi = (float(tb[0]), float(tb[1])) if tb is not None else (0.0, 0.0)
        Kq, c = model.quadratic
        self.callable_fields = any(callable(v) for v in (Kq, c, model.temperature,
                                                          model.mobility))
        # an affine centre with constant coefficients: the Strang pass is one Gaussian move of
        # (θ, h), two normals per agent (kernels.joint; AffineCenter has the algebra)
        from ..model import AffineCenter
        constant = not any(callable(v) for v in (Kq, model.temperature, model.mobility))
        if constant and isinstance(c, AffineCenter):
            self.affine = (c.slope, c.offset)
        elif constant and not callable(c) and np.ndim(c) == 0:
            self.affine = (0.0, float(c))
        else:
            self.affine = None
        self._ou_cache: dict[float, tuple] = {}

    # -- the OU coefficients -------------------------------------------------------------
    @staticmethod
    def _value(v, h):
        return np.asarray(v(h), dtype=float) if callable(v) else np.asarray(v, dtype=float)

    def _coefficients(self, h: np.ndarray, tau: float, d: int):
        """(decay, noise scale, centre, crow, ccol) of the OU step over τ at the agents' h:
        decay and noise scale of length 1 or N; the centre flattened, one value, one per agent
        (crow), one per component (ccol) or both."""
        m = self.model
        Kq, c = m.quadratic
        if not (callable(Kq) or callable(m.temperature) or callable(m.mobility)):
            dec, sd = self._ou_constant(tau)
        else:
            Kv, Tv, mv = self._value(Kq, h), self._value(m.temperature, h), \
                self._value(m.mobility, h)
            x = mv * Kv * (tau / m.eps)
            dec = np.atleast_1d(np.exp(-x)).astype(float)
            sd = np.atleast_1d(np.sqrt(Tv / Kv * -np.expm1(-2 * x))).astype(float)
            if dec.shape != sd.shape:
                # T(h) alone varies: the kernels take one value per agent for both or neither
                dec, sd = (np.ascontiguousarray(a) for a in np.broadcast_arrays(dec, sd))
        cv = self._value(c, h)
        n = h.shape[0]
        # (n is the chunk's length: a length-d centre may look like one value per agent)
        if cv.size == 1:
            crow, ccol = False, False                    # one value (also [c] for θ ∈ R¹)
        elif per_agent_centre(c, cv, h, d):
            crow, ccol = True, False                     # one value per agent
        elif cv.size == d and cv.shape[-1] == d:
            crow, ccol = False, True                     # one per component (c ∈ R^d)
        elif cv.ndim == 2 and cv.shape[0] == n and cv.shape[1] in (1, d):
            crow, ccol = True, cv.shape[1] > 1
        else:                   # the kernels would read past the centre's values
            raise ValueError(f"the quadratic centre has shape {cv.shape}; for {n} agents with "
                             f"θ ∈ R^{d} it must be a number, or have shape ({d},), ({n},) or "
                             f"({n}, {d})")
        return dec, sd, np.ascontiguousarray(cv, dtype=float).reshape(-1), crow, ccol

    def _ou_constant(self, tau: float) -> tuple[np.ndarray, np.ndarray]:
        """(e^{−x}, √(T/K (1 − e^{−2x}))), x = mKτ/ε, for constant K, T, m (cached per τ)."""
        if tau not in self._ou_cache:
            m = self.model
            Kq = float(m.quadratic[0])
            x = float(m.mobility) * Kq * tau / m.eps
            self._ou_cache[tau] = (np.array([np.exp(-x)]), np.array(
                [np.sqrt(float(m.temperature) / Kq * -np.expm1(-2 * x))]))
        return self._ou_cache[tau]

    def _joint_coefficients(self, dt: float) -> tuple:
        """(s, β, γ, dec, slope, offset, a1, a2, sd) of :func:`kernels.joint` for Δt."""
        dec, sd = (float(v[0]) for v in self._ou_constant(dt))
        slope, offset = self.affine
        half = self.D * dt                                  # a1² = a2² = DΔt
        beta = (1.0 - dec) * slope * np.sqrt(0.5 * half)
        gamma = np.sqrt(sd * sd + (1.0 - dec) ** 2 * slope * slope * 0.5 * half)
        a = float(np.sqrt(half))
        return (float(np.sqrt(2.0 * half)), float(beta), float(gamma), dec, slope, offset, a,
                a, sd)

    # -- one time step ---------------------------------------------------------------------
    def __call__(self, P, dt: float, strang: bool, fitness=None, weights: tuple | None = None):
        """Advance P over Δt in place; with ``fitness`` (the model's F(θ, h)), also return F of
        the advanced agents. The agents are processed in chunks of :data:`CHUNK`, each taken
        through all its sub-steps (and the fitness) while it is in the cache; the normals are
        indexed by the agents' global numbers, so the result does not depend on the chunks.

        ``weights=(w, kt)`` (with ``fitness``; a sharded step, whose next call is the
        selection): w (length ≥ N) receives, chunk by chunk while F is in the cache, the
        selection weights e^{kt(F − m_c)} with m_c the chunk's largest F, instead of F being
        returned; the return value is then (m_c, Σ_c w, chunk length): the chunks' weights
        relative to a common maximum M are scaled by e^{kt(m_c − M)}
        (:func:`kernels.counts_scaled`). The chunks are then whole blocks of
        :data:`kernels.BLOCK` agents, and the weights' rounding depends on the chunk length."""
        contiguous(P)
        tf = P.theta.reshape(-1)
        d = 1 if P.theta.ndim == 1 else P.theta.shape[1]
        h = P.h
        n = h.shape[0]
        n0, n1, n2 = nonce_from(self.rng)
        a_half = float(np.sqrt(self.D * dt)) if self.D > 0 else 0.0      # √(2D·Δt/2)
        a_full = float(np.sqrt(2.0 * self.D * dt)) if self.D > 0 else 0.0
        box = (self.lo, self.hi, self.kind, self.tlo, self.thi, self.twrap)
        none = np.zeros(1)
        F = np.empty(n) if fitness is not None and weights is None else None
        chunk = CHUNK
        if weights is not None:
            F, kt = weights
            chunk = max(K.BLOCK, chunk // K.BLOCK * K.BLOCK)      # whole blocks per chunk
            tops = np.empty(-(-n // chunk))
            sums = np.empty(tops.shape[0])
        split = strang and self.callable_fields and a_half
        joint = self._joint_coefficients(dt) if strang and a_half and d == 1 and \
            self.affine is not None else None
        self.stats["fused_pass"] = ("joint Gaussian move" if joint is not None else
                                    "two passes around the callables" if split else "one pass")
        for c0 in range(0, n, chunk):
            c1 = min(c0 + chunk, n)
            tb, hb, base = tf[c0 * d:c1 * d], h[c0:c1], np.uint64(c0)
            if joint is not None:
                K.joint(tb, hb, n0, n1, n2, base, *joint, *box)
            elif split:
                # M(Δt/2) first, so that the callables see the h the OU step uses
                K.advance(tb, d, hb, n0, n1, n2, base, a_half, 0.0, False, none, none, none,
                          False, False, *box)
                dec, sd, cf, crow, ccol = self._coefficients(hb, dt, d)
                K.advance(tb, d, hb, n0, n1, n2, base, 0.0, a_half, True, dec, sd, cf, crow,
                          ccol, *box)
            else:
                dec, sd, cf, crow, ccol = self._coefficients(hb, dt, d)
                a1, a2 = (a_half, a_half) if strang else (0.0, a_full)
                K.advance(tb, d, hb, n0, n1, n2, base, a1, a2, True, dec, sd, cf, crow, ccol,
                          *box)
            if F is not None:
                F[c0:c1] = fitness(P.theta[c0:c1], hb)
                if weights is not None:
                    wc = F[c0:c1]
                    tops[c0 // chunk], sums[c0 // chunk] = K.log_weights(wc, wc, kt)
        return (tops, sums, chunk) if weights is not None else F


#: agents per chunk of the fused step (θ, h and F of a chunk stay in the cache)
CHUNK = 65536


def contiguous(P) -> None:
    """Make θ and h C-contiguous (the kernels work on flat views of them)."""
    if not P.theta.flags.c_contiguous:
        P.theta = np.ascontiguousarray(P.theta)
    if not P.h.flags.c_contiguous:
        P.h = np.ascontiguousarray(P.h)


def resample_in_place(P, w: np.ndarray, u: float, n: int) -> Any:
    """Systematic resampling of P to n agents with weights w (consumed: it holds the counts
    afterwards), in place; ``u`` uniform in [0, 1) is the points' common offset."""
    total = float(np.sum(w)) if w.size else 0.0
    _resample_total(P, w, total, u, n)
    return P


def _resample_total(P, w, total, u, n):
    if not np.isfinite(total) or total <= 0:
        raise FloatingPointError(f"the selection weights sum to {total}; check the fitness")
    K.systematic_counts_into(w, w.shape[0], u, n / total, 0, n)
    contiguous(P)
    d = 1 if P.theta.ndim == 1 else P.theta.shape[1]
    K.fill_in_place(w, w.shape[0], n, P.theta.reshape(-1), d, P.h)


def resample_exp(P, F: np.ndarray, w: np.ndarray, kt: float, u: float, n: int):
    """Systematic resampling of P with weights e^{kt(F − max F)}, in place; ``w`` (float64,
    len(F)) receives the weights and then the offspring numbers."""
    F = np.ascontiguousarray(F, dtype=float)
    top, total = K.log_weights(F, w, float(kt))
    if not (np.isfinite(top) and np.isfinite(total)):
        raise FloatingPointError(f"the selection fitness is not finite (max {top}); check the "
                                 f"fitness function at the agents' states")
    _resample_total(P, w, total, u, n)
    return P


def moment_sums(P, F: np.ndarray | None, w: np.ndarray | None) -> np.ndarray:
    """(Σw, Σwθ₁, Σwh, Σwθ₁², Σwh², Σwθ₁h, ΣwF) over the agents, one pass (w None: equal
    weights; F None: no fitness). Sums of shards add up."""
    d = 1 if P.theta.ndim == 1 else P.theta.shape[1]
    empty = np.zeros(0)
    return K.moments(np.ascontiguousarray(P.theta).reshape(-1), d, P.h,
                     empty if F is None else np.ascontiguousarray(F, float),
                     empty if w is None else np.ascontiguousarray(w, float), P.h.shape[0])


def moments_from_sums(s: np.ndarray, with_fitness: bool) -> dict[str, float]:
    """Population moments from :func:`moment_sums` (summed over shards)."""
    tot = s[0]
    mt, mh = s[1] / tot, s[2] / tot
    out = {"mean_theta": mt, "mean_h": mh, "var_theta": max(s[3] / tot - mt * mt, 0.0),
           "var_h": max(s[4] / tot - mh * mh, 0.0), "cov_theta_h": s[5] / tot - mt * mh}
    if with_fitness:
        out["mean_fitness"] = s[6] / tot
    return out


def histogram_counts(grid, theta: np.ndarray, h: np.ndarray, w: np.ndarray | None
                     ) -> np.ndarray:
    """Weighted counts of the agents in the cells of ``grid`` (θ ∈ R, one h-axis; w None:
    unit weights): O(N) on uniform edges, numpy's histogram2d otherwise."""
    te, he = np.asarray(grid.theta_edges, float), np.asarray(grid.h_edges, float)
    uniform = np.allclose(np.diff(te), te[1] - te[0], rtol=1e-12) and \
        np.allclose(np.diff(he), he[1] - he[0], rtol=1e-12)
    if uniform and K.HAVE_NUMBA:
        out = np.zeros((te.size - 1, he.size - 1))
        K.bin2d(theta, h, np.zeros(0) if w is None else w, h.shape[0], te[0], te[-1],
                te.size - 1, he[0], he[-1], he.size - 1, out)
        return out
    return np.histogram2d(theta, h, bins=[te, he], weights=w)[0]


__all__ = ["FusedStep", "fused_support", "resample_exp", "resample_in_place",
           "moment_sums", "moments_from_sums", "histogram_counts"]
