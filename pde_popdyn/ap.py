"""Time stepping of the joint equation that is second order in Δt for every ε, down to ε = 0.

Splitting selection from the fast θ-dynamics is only first order once ε ≪ Δt: a selection
sub-step on the instantaneous fitness F, applied to a density already relaxed to ρπ_h, sees the
tilted average (1/κτ) log E_π e^{κτF} instead of F̄ = E_π F. This module composes the steps so
that the fast dynamics act *inside* every selection step.

**Replicator selection (and no selection).** The equation is linear after normalisation,
∂_t u = G u + D Δ_h u with G = 𝓛_ε + κ F acting on each h-column separately. Per column,
exp(τ G_j) is computed exactly (:mod:`pde_popdyn.fast.columns`: uniformisation, squaring or
its rank-one stiff limit e^{τλ₀} r₀ l₀ᵀ, with λ₀ → κF̄(h_j) as ε → 0), and only mutation is
split off, in the middle:

    f ← N[ exp(½Δt G) · exp(Δt D Δ_h) · exp(½Δt G) f ],       N[u] = u / ∫u.

Mutation acts on h alone, so it commutes with integrating over θ; as ε → 0 the h-marginal is
advanced by e^{½Δt κF̄} e^{Δt DΔ_h} e^{½Δt κF̄}, the Strang scheme of the reduced equation
∂_t ρ = κ(F̄ − ⟨F̄⟩)ρ + DΔ_h ρ. Putting mutation in the middle (not outside) matters for
intermediate ε: the off-manifold part it creates then relaxes within the same step while being
weighted by the selection, at the midpoint, which removes an O(εΔt) error of the other
ordering. Consecutive half steps merge into exp(Δt G) between saved states.

**Jump selection (Boltzmann, truncation).** With the loss −λf moved into the linear part,
∂_t f = (𝓛_ε − λ) f + λ M[f], where the gain M[f] ≥ 0 has the mass of f (M[f] = K_σ(ωf)/⟨ω⟩_f
for Boltzmann, f − B[f] + K_σ G[f] for truncation). The step is the exponential midpoint rule
with the exact fast propagator E(t) = e^{t𝓛_ε} and its integral Φ(t) = ∫_0^t e^{−λs} E(s) ds
(λΦ(t) is 1 − e^{−λt} times a column-stochastic matrix):

    f_½ = e^{−λΔt/2} E(½Δt) f + λ Φ(½Δt) M[f],
    f   ← e^{−λΔt} E(Δt) f + λ Φ(Δt) M[f_½].

Every term is non-negative and the masses add to exactly one. Both stages see M applied to a
state the fast dynamics have acted on, so as ε → 0 the h-marginal follows the exponential
midpoint rule of the reduced jump equation ∂_t ρ = λ(𝓜[ρ] − ρ) (second order), and Φ keeps
the O(ε) part of copies made less than ~ε ago, which are not yet relaxed. A stationary state of
the semi-discrete equation (M[f] = f − 𝓛_ε f/λ) is a fixed point of the step for every Δt.
Diffusive mutation with a jump rule is split around this step (Strang).

What holds for every Δt and ε: f ≥ 0, unit mass, and with selection and mutation off the
discrete Gibbs state ρπ_h does not move. The entry point is :func:`make_joint_stepper`, which
:class:`~pde_popdyn.equations.JointSystem` calls for ``integrator="ap"``, the default of
:func:`pde_popdyn.solve`.

Known limits, measured by ``python -m benchmarks ap``:

* the error is below C·Δt² with one C for every ε. Data off the slow manifold start an
  initial layer (the first O(ε) of time, while the θ-profiles relax), during which mutation
  acts on unrelaxed profiles; a step with Δt ≫ ε sees them relaxed at its midpoint and misses
  an O(ε²κD) part of the slow mass that Δt does not reduce (l₀ᵀ D∂²_h X with X the layer's
  time integral and l₀ = 1 + O(εκ)). For the replicator, :class:`InitialLayer` adds that part
  to the data at t = 0 (and after each generation): the exact first-order term minus the
  step's own midpoint sum, in closed form for every Δt/ε; the measured order is then 2 at
  every ε from such data too;
* replicator: at the end of a step the θ-profiles lack the O(εD) part by which mutation keeps
  them out of local equilibrium (it is created in the middle of the step and has relaxed by the
  end); the h-marginal is not affected, the whole density's error stops falling at O(εD) once
  Δt ≫ ε;
* jump rules: from data far from local equilibrium the gain acts on unrelaxed profiles during
  the O(ε) initial layer, which a step with Δt ≫ ε does not see (an O(λε) error that Δt does not
  reduce). :class:`JumpLayer` adds the missed slow mass to the data at t = 0 (exact minus the
  step's midpoint sum, to first order in λ, without linearising the gain); the measured order
  is then 2 at every ε from such data too. With λΔt ≳ 0.1 the error constant grows with λ (a
  concern only for very fast jumps, such as the weak-selection limit λ → ∞);
* grids with several θ-axes keep the Strang splitting of selection, mutation and fast steps.
"""

from __future__ import annotations

import numpy as np

from .fast._column_kernels import gth_solve_cols
from .fast._tridiag_kernels import shifted_solves
from .fast._uniformised import Uniformised
from .fast.columns import ColumnGenerator, ColumnPropagator
from .fast.spectral import SpectralColumnPropagator
from .run import SPLITTINGS, compose

_COST_STEPS = 100         # run length assumed by the cost model (not the actual one: see below)


def supports(model, grid, scheme: str, splitting: str, fitness, setting) -> bool:
    """True when :func:`make_joint_stepper` serves this run: one θ-axis, finite volumes on a
    grid of cells or the spectral scheme, and a selection rule that is linear (replicator
    copying (θ, h)), of the jump form λ(M[f] − f), acting at generation times only, or off.
    Continuous mutation is split around the step."""
    if splitting not in SPLITTINGS or grid.ndim_theta != 1:
        return False
    if not ((scheme == "fv" and grid.nodes == "cells") or scheme == "spectral"):
        return False
    sel = model.selection if model.selection_active else None
    return (sel is None or sel.interval is not None or sel.linear_rate is not None
            or sel.jump_form(fitness, setting) is not None)


def make_joint_stepper(op, model, grid, setting, fitness, dt: float, *,
                       splitting: str = "strang", spectral: bool = False):
    """The time step of the joint equation of ``model`` on ``grid`` (module docstring), built
    on the fast operator ``op`` (Scharfetter–Gummel or spectral) for the step ``dt``.

    Returns a stepper: ``stepper(f, dt)`` advances one step (``dt`` must be the step it was
    built for), ``stepper.advance(f, dt, n)`` advances n steps and merges the half steps
    between them. The per-column choice between uniformisation and dense propagators assumes a
    run of 100 steps whatever its length, so that it depends on (model, grid, Δt) only: a run
    and any part of it, or its continuation, do the same arithmetic.
    """
    if splitting not in SPLITTINGS:
        raise ValueError(f"splitting={splitting!r} is not known; use 'strang' (order 2, the "
                         f"default) or 'lie' (order 1)")
    sel = model.selection if model.selection_active else None
    n_app = _COST_STEPS
    dt = float(dt)
    mutation = model.mutation_steps(setting)
    jump = None if sel is None or sel.interval is not None else \
        sel.jump_form(fitness, setting)
    if jump is not None:
        lam, mapping = jump
        prop = (SpectralColumnPropagator(op, 0.5 * dt, lam=lam) if spectral else
                ColumnPropagator(ColumnGenerator(op), 0.5 * dt, lam=lam,
                                 n_applications=(4 if splitting == "strang" else 2) * n_app))
        return JumpStepper(prop, grid, lam, mapping, mutation, dt, splitting)
    kappa = 0.0 if sel is None or sel.interval is not None else sel.linear_rate
    d = kappa * np.asarray(fitness).reshape(grid.n_theta, -1) if kappa > 0 else None
    prop = (SpectralColumnPropagator(op, 0.5 * dt, diag=d) if spectral else
            ColumnPropagator(ColumnGenerator(op, d), 0.5 * dt, n_applications=n_app))
    return LinearStepper(prop, grid, mutation, dt, splitting)


class _Stepper:
    """Shared checks: the step size is fixed at build time."""

    def _check_dt(self, dt: float) -> None:
        if abs(dt - self.dt) > 1e-12 * self.dt:
            raise ValueError(f"this stepper was built for dt={self.dt!r}, got dt={dt!r}; build "
                             f"another one with make_joint_stepper(..., dt)")

    def __call__(self, f: np.ndarray, dt: float) -> np.ndarray:
        return self.advance(f, dt, 1)


#: terms of the partial-fraction sum for φ(x) = 1/x − 1/(2 sinh(x/2)) (tapered Mittag-Leffler
#: series: relative error below 5e-3 on x > 0)
_PHI_TERMS = 8


def _phi_shifts(K: int = _PHI_TERMS) -> np.ndarray:
    """(a_k, c_k) with φ(x) ≈ Σ_k c_k Re[1/(x − i a_k)] for real x > 0.

    φ(x) = Σ_{k≥1} (−1)^{k+1} 2x/(x² + 4π²k²) (the Mittag-Leffler series of 1/(2 sinh(x/2)));
    the second half of the K terms is tapered linearly, which keeps the large-x limit 1/x and
    makes the truncation uniform in x."""
    k = np.arange(1, K + 1)
    w = np.ones(K)
    m = K // 2
    w[m:] = 1.0 - (np.arange(K - m) + 0.5) / (K - m)
    return np.stack([2 * np.pi * k, 2.0 * w * (-1.0) ** (k + 1)], axis=1)


class InitialLayer:
    """The part of the initial layer that the Strang step misses, added to the data (module
    docstring, known limits).

    Per h-column i, with G_i = 𝓛_ε + κF on it, its Perron data (λ_i, r_i, l_i) and
    Q_i = I − r_i l_iᵀ, data f₀ off the slow manifold carry a θ-transient Q f₀ that decays as
    e^{−gap·t}. To first order in the mutation generator M (stencil M_ji), the slow mass that
    mutation draws from the transient into column j, carried to time 0 by e^{−λ_j t}, is

        exact:  Σ_i M_ji ∫_0^∞ e^{s(G_i − λ_j)} Q f₀,i ds = Σ_i M_ji (λ_j − G_i)⁻¹ Q f₀,i,
        step:   Σ_i M_ji Δt Σ_n e^{(n+½)Δt(G_i − λ_j)} Q f₀,i,

    since the step applies mutation at the midpoints of its fast sub-steps. With
    x = Δt(λ_j − G_i) the difference is Σ_i M_ji Δt φ(x) Q f₀,i, φ(x) = 1/x − 1/(2 sinh(x/2)):
    O(x) while Δt·gap ≪ 1 (the step resolves the layer, and the difference is its O(Δt²)
    midpoint error), 1/x once Δt·gap ≫ 1 (the step misses the transient: an O(ε²κD) error in
    the slow part that Δt does not reduce). The correction adds r₀ l₀ᵀ of it to the data at
    t = 0, so that the step's own midpoint sum completes it to the exact term: φ by its tapered
    partial fractions (:func:`_phi_shifts`), each a complex-shifted tridiagonal solve per column
    and stencil direction, once per run. It needs the finite-volume column propagator, a
    non-periodic θ-axis and diffusive mutation on finite volumes; otherwise :meth:`build`
    returns None. Negative values the correction would create (far tails) are clipped, and the
    clipped mass recorded.
    """

    def __init__(self, gen, axes: list, r, l, lam, x_min: float | None = None):
        self.gen, self.axes = gen, axes
        self.r, self.l, self.lam = r, l, lam
        self.clipped = 0.0
        op = gen.op
        # λ_i − G_i, tridiagonal per column: diagonal out − dp + λ'_i, T[p+1, p] = −up_p,
        # T[p, p+1] = −down_p (laid out (ncol, ·) for the kernel)
        self.diag = (op.out_rate - gen.dp + (lam - gen.dmax)[None, :]).T.copy()
        self.sub, self.sup = (-op.up).T.copy(), (-op.down).T.copy()
        # where x = Δt·gap ≥ x_min ≥ 80 on every column, φ(x) = 1/x to e^{−40}: one solve,
        # x/(x² + a²) with a = 10⁻³x_min (1/x to 10⁻⁶ on the transient, 0 on the Perron mode)
        self.shifts = (_phi_shifts() if x_min is None else
                       np.array([[1e-3 * x_min, 1.0]]))

    @classmethod
    def build(cls, prop, mutation: list, dt: float):
        """The correction for this propagator and these mutation sub-steps, or None where it
        does not apply (see the class docstring)."""
        from .slow.mutation import DiffusionStep, HDiffusion
        gen = getattr(prop, "gen", None)
        if gen is None or gen.periodic or not mutation or prop.cols.size != gen.ncol:
            return None
        axes = []
        for m in mutation:
            parts = m.steps if isinstance(m, HDiffusion) else [m]
            if not all(isinstance(p, DiffusionStep) and not p.spectral for p in parts):
                return None
            axes += [p for p in parts if p.coefficient > 0]
        if not axes:
            return None
        # Perron data: kept by the propagator where its columns are rank one, else by inverse
        # iteration to 1e-6 (the correction is O(εκ) times |M X|, which an error δ of l₀
        # changes by δ|M X|: a relative 1e-6/(εκ))
        r, l = prop.r.copy(), prop.lvec.copy()
        lam_p = prop.rate.copy()
        todo = np.flatnonzero(~(prop.certain | prop.cond))
        if todo.size:
            r[:, todo], l[:, todo], lam_p[todo], ok = gen.perron(todo, tol=1e-6, shifted=True)
            if not ok.all():
                return None
        gap = getattr(prop, "gap", None)
        x_min = float(dt * gap.min()) if gap is not None and gap.size else 0.0
        return cls(gen, axes, r, l, lam_p + gen.dmax, x_min if x_min >= 80.0 else None)

    def _q(self, x: np.ndarray) -> np.ndarray:
        return x - self.r * (self.l * x).sum(axis=0)

    def _phi(self, y: np.ndarray, dt: float, shift: np.ndarray, cols: np.ndarray) -> np.ndarray:
        """Q Δt φ(Δt(λ_i + s_i − G_i)) y_i on the columns ``cols`` (y (n, len(cols))); columns
        whose transient is below 10⁻¹⁶ of the largest are left at 0."""
        z = np.zeros_like(y)
        size = np.abs(y).max(axis=0)
        live = np.flatnonzero(size > 1e-16 * size.max()) if size.size else size
        if not live.size:
            return z
        c = cols[live]
        out = shifted_solves(dt * self.sub[c], dt * self.sup[c],
                             dt * (self.diag[c] + shift[live, None]), self.shifts,
                             y[:, live].T)
        zl = dt * out.T
        z[:, live] = zl - self.r[:, c] * (self.l[:, c] * zl).sum(axis=0)
        return z

    def gain(self, f: np.ndarray, dt: float) -> np.ndarray:
        """r₀ l₀ᵀ_j Σ_i M_ji Δt φ(Δt(λ_j − G_i)) Q f_i (columns layout; f with θ first)."""
        hshape = f.shape[1:]
        fc = f.reshape(f.shape[0], -1)
        y = self._q(fc)
        ncol = fc.shape[1]
        idx = np.arange(ncol)
        lam = self.lam
        mx = np.zeros_like(y)
        nd = len(hshape)
        diag_terms = np.zeros(ncol)
        for ax in self.axes:
            k = ax.axis + nd if ax.axis < 0 else ax.axis - 1
            cells = hshape[k]
            stride = int(np.prod(hshape[k + 1:], dtype=int))
            pos = (idx // stride) % cells
            c = ax.coefficient / ax.width ** 2
            for step, edge in ((1, cells - 1), (-1, 0)):
                nb = idx + step * stride
                has = pos != edge
                if ax.periodic:
                    nb = np.where(has, nb, idx - step * (cells - 1) * stride)
                    has = np.ones(ncol, dtype=bool)
                src = idx[has]
                z = self._phi(y[:, src], dt, lam[nb[src]] - lam[src], src)
                np.add.at(mx.T, nb[src], c * z.T)
                diag_terms[src] += c
        z0 = self._phi(y, dt, np.zeros(ncol), idx)
        mx -= diag_terms * z0
        return self.r * (self.l * mx).sum(axis=0)

    def start(self, f: np.ndarray, dt: float) -> np.ndarray:
        """f₀ plus the slow mass of :meth:`gain` (negative values clipped and recorded)."""
        g = f.reshape(f.shape[0], -1) + self.gain(f, dt)
        neg = g < 0
        if neg.any():
            self.clipped += float(-g[neg].sum())
            g = np.where(neg, 0.0, g)
        return g.reshape(f.shape)


class JumpLayer:
    """The part of the initial layer that the jump step misses, added to the data (module
    docstring, known limits).

    Per h-column, with 𝓛 the fast generator (column-stochastic: Perron data (π, 1, 0)) and
    P f = π Σ_θ f, data f₀ off the slow manifold carry a θ-transient T₀ that decays as
    T(s) = e^{−λs} e^{s𝓛} T₀ within O(ε). It is measured from the slow manifold of the jump
    equation, whose θ-profiles are not exactly π: there (λ − 𝓛) f = λ M[f] holds to first order,
    so T₀ = Q(f₀ − λ(λ − 𝓛)⁻¹ M[f₀]) with Q = I − P, which vanishes at a stationary state. While
    it lasts the gain λM sees the unrelaxed profiles; to first order in λ the slow mass it puts
    into column j differs from what the relaxed state gets by

        exact:  λ ∫_0^∞ Σ_θ (M[b + T(s)] − M[b])_j ds,        b = f₀ − T₀,
        step:   λ Δt Σ_n Σ_θ (M[b + T((n+½)Δt)] − M[b])_j,

    since the exponential midpoint step samples the gain at the midpoints of its steps. The
    difference c_j is O(λε) once Δt ≫ ε, which Δt does not reduce, and O(λΔt²/ε) while the step
    resolves the layer. :meth:`start` adds it to the data, non-negatively: c_j > 0 as c_j π_j (the
    shape it has after the layer), c_j < 0 by scaling column j by 1 + c_j/m_j, m_j its mass (a
    factor below zero is clipped and the mass recorded).

    The gain is not linearised: the integral is Gauss–Legendre (6 nodes) on panels whose
    lengths grow by 1.3 from 1/(c + λ) (c the fastest rate) to 20/μ (μ = λ + the smallest
    spectral gap; the transient is then below e^{−20} of its start). The gain of truncation
    selection has kinks (a quantile crossing a cell), so the panels must stay short while the
    integrand is large: with 3 nodes on panels of 3/μ the error left a floor in E[h] at
    ε = 0.1. T(s) is marched between the nodes and the midpoints by uniformisation. The first
    step's first stage then evaluates the gain at b instead of f₀ (the layer's share of the
    gain is in c; holding M[f₀] for ½Δt would count it again, an O(λ²Δt²) error that does not
    vanish as Δt/ε grows).

    It needs the finite-volume column propagator on a uniform θ-axis, and is skipped where the
    transient is below 10⁻¹² of the mass (data on the slow manifold: a stationary state stays a
    fixed point) or the step resolves the layer by far (μΔt < 0.01).
    """

    #: Gauss–Legendre nodes per panel, and the ratio of consecutive panels
    NODES, RATIO = 6, 1.3
    #: the layer is followed to e^{−μs} = e^{−S_MAX}
    S_MAX = 20.0
    ON_MANIFOLD = 1e-12

    def __init__(self, gen, lam: float, mapping, dt: float):
        self.gen, self.lam, self.mapping, self.dt = gen, float(lam), mapping, float(dt)
        g = gen.op.gibbs.reshape(gen.n, -1)
        self.pi = g / g.sum(axis=0)
        self.mu = self.lam + float(gen.gap().min())
        self.c = float(gen.c.max()) + self.lam
        self.clipped = 0.0

    @classmethod
    def build(cls, prop, lam: float, mapping, dt: float, uniform: bool):
        gen = getattr(prop, "gen", None)
        if gen is None or not uniform or not gen.flat.all() or lam <= 0:
            return None
        gap = float(gen.gap().min())
        if not gap > 0 or (lam + gap) * dt < 0.01:
            return None
        return cls(gen, lam, mapping, dt)

    def _P(self, x: np.ndarray) -> np.ndarray:
        return self.pi * x.sum(axis=0)

    def _colgain(self, x: np.ndarray, shape) -> np.ndarray:
        """Σ_θ M[x⁺] per column."""
        return self.mapping(np.maximum(x, 0.0).reshape(shape)).reshape(x.shape).sum(axis=0)

    def _nodes(self) -> tuple[np.ndarray, np.ndarray]:
        """Gauss–Legendre nodes and weights on [0, S_MAX/μ] (class docstring)."""
        xs, ws = np.polynomial.legendre.leggauss(self.NODES)
        edges = [0.0, 1.0 / self.c]
        while edges[-1] < self.S_MAX / self.mu:
            edges.append(self.RATIO * edges[-1])
        e = np.array(edges)
        a, b = e[:-1, None], e[1:, None]
        return (0.5 * (a + b) + 0.5 * (b - a) * xs).ravel(), (0.5 * (b - a) * ws).ravel()

    def _sum(self, u, T, times, weights, base, g0, mass, shape) -> np.ndarray:
        """Σ_k w_k Σ_θ (M[b + T(t_k)] − M[b]) for increasing t_k, T marched by uniformisation
        (the Poisson weights of one spacing are reused)."""
        total = np.zeros(T.shape[1])
        t_prev, d_prev, poisson = 0.0, None, None
        for t, w in zip(times, weights):
            d = t - t_prev
            if d > 0:
                if d_prev is None or abs(d - d_prev) > 1e-10 * d:
                    d_prev, poisson = d, u.weights(d)[0]
                T = u.run(T, poisson) * np.exp(-self.lam * d)
                t_prev = t
            if np.abs(T).sum() <= 1e-13 * mass:
                break
            total += w * (self._colgain(base + T, shape) - g0)
        return total

    def start(self, f: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """(f₀ with the slow mass c added, the point b at which the first stage evaluates the
        gain); f₀ and None where no correction applies."""
        shape = f.shape
        fc = f.reshape(shape[0], -1)
        mass = float(fc.sum())
        op, lam = self.gen.op, self.lam
        mf = self.mapping(f).reshape(fc.shape)
        r = lam * gth_solve_cols(op.up, op.down, np.full(fc.shape, lam), mf)
        x = fc - r
        T = x - self._P(x)
        if not mass > 0 or np.abs(T).sum() <= self.ON_MANIFOLD * mass:
            return f, None
        base = fc - T
        g0 = self._colgain(base, shape)
        u = Uniformised(self.gen, np.arange(fc.shape[1]))
        tq, wq = self._nodes()
        I = self._sum(u, T, tq, wq, base, g0, mass, shape)
        tm = (np.arange(int(self.S_MAX / (self.mu * self.dt)) + 1) + 0.5) * self.dt
        tm = tm[tm <= self.S_MAX / self.mu]
        S = self._sum(u, T, tm, np.full(tm.size, self.dt), base, g0, mass, shape)
        c = lam * (I - S)
        m = fc.sum(axis=0)
        # a gain goes in in the relaxed shape π; a loss scales the column (clipped at zero)
        add = np.maximum(c, 0.0)
        with np.errstate(divide="ignore", invalid="ignore"):
            fac = np.where((c < 0) & (m > 0), 1.0 + c / np.where(m > 0, m, 1.0), 1.0)
        neg = fac < 0
        if neg.any():
            self.clipped += float(-(fac[neg] * m[neg]).sum())
            fac = np.where(neg, 0.0, fac)
        out = fc * fac + self.pi * add
        b = base * fac + self.pi * add
        # c moves mass between columns (Σ_j c_j = 0 but for the clipped evaluation points)
        k = mass / out.sum()
        out *= k
        b *= k
        return out.reshape(shape), np.maximum(b, 0.0).reshape(shape)


class LinearStepper(_Stepper):
    """Replicator (κ ≥ 0) with diffusive mutation (D ≥ 0): exp(½Δt G) e^{ΔtDΔ_h} exp(½Δt G),
    normalised; Lie: e^{ΔtDΔ_h} exp(Δt G).

    With u_n = exp(½Δt G) f_n the Strang steps read v_n = e^{ΔtDΔ_h} u_n,
    f_{n+1} = exp(½Δt G) v_n and u_{n+1} = exp(Δt G) v_n: one fast application per step. The
    stepper remembers v_n for the density it returned last (returned read-only), so a call
    that continues from it, one step or many at a time, runs exactly the same arithmetic.
    """

    def __init__(self, prop, grid, mutation: list, dt: float, splitting: str):
        self.grid, self.dt, self.splitting, self.prop = grid, dt, splitting, prop
        self.weights = grid.weights
        self.mutation = compose(mutation, "lie") if mutation else None
        self._mutation_steps = mutation
        self._last = None          # (the density returned last, its v_n)
        #: the run's time at the next call (the run loop sets it; None: no layer correction)
        self.time: float | None = None
        #: the time between generations (their maps leave the θ-profiles off the manifold)
        self.event_interval: float | None = None
        self._layer = None         # InitialLayer, False where it does not apply, None: not built
        self.layer_corrections = 0     # runs started with the initial layer's correction

    def _start(self, f: np.ndarray) -> np.ndarray:
        """The run's data with the initial layer's correction (:class:`InitialLayer`), when this
        call starts at t = 0 or right after a generation (at a multiple of ``event_interval``):
        the run loop gives the time through ``time``, so that a resumed run repeats the
        uninterrupted run's arithmetic."""
        t = self.time
        if t is None or self.splitting != "strang" or self.mutation is None:
            return f
        iv = self.event_interval
        after_event = iv is not None and t > 0.5 * self.dt and \
            abs(t / iv - round(t / iv)) * iv < 0.5 * self.dt
        if t >= 0.5 * self.dt and not after_event:
            return f
        if self._layer is None:
            self._layer = InitialLayer.build(self.prop, self._mutation_steps, self.dt) or False
        if not self._layer:
            return f
        self.layer_corrections += 1
        return self._layer.start(f, self.dt)

    def _fast(self, f: np.ndarray, k: int) -> np.ndarray:
        g = self.prop.apply(f.reshape(f.shape[0], -1), k).reshape(f.shape)
        return g * (1.0 / (g * self.weights).sum())

    def _mutate(self, f: np.ndarray) -> np.ndarray:
        return f if self.mutation is None else self.mutation(f, self.dt)

    def advance(self, f: np.ndarray, dt: float, n: int) -> np.ndarray:
        """n steps; between them the two half steps exp(½Δt G) are taken as one exp(Δt G)."""
        self._check_dt(dt)
        if n < 1:
            return f
        mass = (f * self.weights).sum()
        if self.splitting == "lie":
            for _ in range(n):
                f = self._mutate(self._fast(f, 2))
            return f * mass
        f = self._start(f)
        last = self._last
        if last is not None and f is last[0]:       # continue the chain (and its mass)
            u, mass = self._fast(last[1], 2), last[2]
        else:
            u = self._fast(f, 1)
        for i in range(n):
            v = self._mutate(u)
            if i < n - 1:
                u = self._fast(v, 2)
        out = self._fast(v, 1) * mass
        out.setflags(write=False)
        self._last = (out, v, mass)
        return out

    def restart(self) -> None:
        """Start the next call afresh from the density it is given (no half step carried
        over): the run loop calls this at every saved state, so that a run resumed from a
        saved state does the same arithmetic as the uninterrupted run."""
        self._last = None

    @property
    def summary(self) -> dict:
        return {"scheme": "exp(dt/2 (L+kF)) exp(dt D Lap_h) exp(dt/2 (L+kF))"
                if self.splitting == "strang" else "exp(dt D Lap_h) exp(dt (L+kF))",
                "initial_layer_corrections": self.layer_corrections,
                "initial_layer_clipped_mass": self._layer.clipped if self._layer else 0.0,
                **self.prop.summary}


class JumpStepper(_Stepper):
    """Boltzmann or truncation jumps: the exponential midpoint rule with the exact fast
    propagator (module docstring); diffusive mutation, if any, split around it."""

    def __init__(self, prop, grid, lam: float, mapping, mutation: list, dt: float,
                 splitting: str):
        self.grid, self.dt, self.splitting, self.prop = grid, dt, splitting, prop
        self.lam = float(lam)
        self.mapping = mapping
        # the jump maps act on masses f·w (they equal f on a uniform finite-volume grid)
        self.weights = None if all(a.uniform for a in grid.theta_axes) else grid.weights
        self.mutation = compose(mutation, "lie") if mutation else None
        #: the run's time at the next call (the run loop sets it; None: no layer correction)
        self.time: float | None = None
        self._layer = None          # JumpLayer, False where it does not apply, None: not built
        self.layer_corrections = 0

    def _map(self, f: np.ndarray) -> np.ndarray:
        if self.weights is None:
            return self.mapping(f)
        return self.mapping(f * self.weights) / self.weights

    def _E(self, f: np.ndarray, k: int) -> np.ndarray:
        return self.prop.apply(f.reshape(f.shape[0], -1), k).reshape(f.shape)

    def _lamPhi(self, g: np.ndarray, k: int) -> np.ndarray:
        return self.lam * self.prop.integral(g.reshape(g.shape[0], -1), k).reshape(g.shape)

    def _start(self, f: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """The data with the initial layer's correction (:class:`JumpLayer`) when this call
        starts the run (t = 0, given by the run loop through ``time``), and the point at which
        the first stage evaluates the gain (None: at f)."""
        t = self.time
        if t is None or t >= 0.5 * self.dt or self.splitting != "strang":
            return f, None
        if self._layer is None:
            self._layer = JumpLayer.build(self.prop, self.lam, self._map, self.dt,
                                          self.weights is None) or False
        if not self._layer:
            return f, None
        g, b = self._layer.start(f)
        if b is not None:
            self.layer_corrections += 1
        return g, b

    def _jump(self, f: np.ndarray, predictor: np.ndarray | None = None) -> np.ndarray:
        h = self.dt
        if self.splitting == "lie":        # exponential Euler: first order
            out = np.exp(-self.lam * h) * self._E(f, 2) + self._lamPhi(self._map(f), 2)
        else:
            a = np.exp(-0.5 * self.lam * h)
            u = self._E(f, 1)
            f_half = a * u + self._lamPhi(self._map(f if predictor is None else predictor), 1)
            out = a * a * self._E(u, 1) + self._lamPhi(self._map(f_half), 2)
        w = self.grid.weights
        return out * ((f * w).sum() / (out * w).sum())

    def advance(self, f: np.ndarray, dt: float, n: int) -> np.ndarray:
        self._check_dt(dt)
        for i in range(n):
            if self.mutation is not None and self.splitting == "lie":
                f = self.mutation(self._jump(f), dt)
                continue
            pre = f if self.mutation is None else self.mutation(f, 0.5 * dt)
            g, b = self._start(pre) if i == 0 else (pre, None)   # the layer: once, at t = 0
            f = self._jump(g, b)
            if self.mutation is not None:
                f = self.mutation(f, 0.5 * dt)
        return f

    @property
    def summary(self) -> dict:
        return {"scheme": "exponential midpoint with exact fast propagator"
                if self.splitting == "strang" else "exponential Euler",
                "initial_layer_corrections": self.layer_corrections,
                "initial_layer_clipped_mass": self._layer.clipped if self._layer else 0.0,
                **self.prop.summary}


__all__ = ["make_joint_stepper", "supports", "LinearStepper", "JumpStepper", "InitialLayer",
           "JumpLayer", "SPLITTINGS"]
