"""Selection, copy, mutation and boundary variants (issue: discretisations and variants)."""

import numpy as np
import pytest
import scipy.special as sps
from scipy.integrate import solve_ivp

import pde_popdyn as pp
from pde_popdyn.fast.fv import SGOperator
from pde_popdyn.slow.mutation import DiffusionStep
from pde_popdyn.slow.selection import BoltzmannMap, JumpStep, TruncationMap


def _generations(cells, n_gen=40):
    alpha, g, hstar, sm = 2.0, 1.5, 0.3, 0.15
    grid = pp.Grid(theta=(-1, 1, 3), h=(-6.0, 6.0, cells))
    h = grid.h
    rho = np.exp(-0.5 * (h + 1.0) ** 2 / 0.5)
    rho /= rho.sum() * grid.dh
    kernel = DiffusionStep(1.0, grid.n_h, grid.dh)
    gen = BoltzmannMap(-0.5 * g * (h - hstar) ** 2, alpha, "both",
                       kernel=lambda x: kernel(x, 0.5 * sm ** 2))
    v, m, err = 0.5, -1.0, 0.0
    for _ in range(n_gen):
        rho = gen(rho)
        m = hstar + (m - hstar) / (1 + alpha * g * v)     # the mean's recursion
        v = v / (1 + alpha * g * v) + sm ** 2
        mean = (h * rho).sum() * grid.dh
        var = ((h - mean) ** 2 * rho).sum() * grid.dh
        err = max(err, abs(var / v - 1), abs(mean - m))
    vstar = (sm ** 2 * alpha * g + np.sqrt((sm ** 2 * alpha * g) ** 2
                                           + 4 * alpha * g * sm ** 2)) / (2 * alpha * g)
    return err, var, vstar, mean, m


def test_discrete_generations_match_variance_recursion():
    """Boltzmann weights e^{αF̄} then a Gaussian jump σ_m, with F̄ = −(g/2)(h − h*)²:
    Gaussians stay Gaussian with v_{n+1} = v_n/(1 + αg v_n) + σ_m², up to the fixed point.
    On the grid the jump kernel is the finite-volume heat kernel (variance exactly σ_m², but
    not exactly Gaussian), so the recursion holds up to O(Δh²)."""
    e_coarse = _generations(1200)[0]
    err, var, vstar, mean, m = _generations(2400)
    assert err < 2e-5
    assert 3.5 < e_coarse / err < 4.5          # second order in Δh
    assert var == pytest.approx(vstar, rel=2e-5)
    assert mean == pytest.approx(m, abs=1e-5)


def _weak_selection_error(lam, grid, base, f0):
    kappa, D = 1.0, 0.02
    rep = pp.Model(**base, selection=pp.Replicator(kappa), mutation=pp.Diffusion(D))
    jump = pp.Model(**base, selection=pp.BoltzmannJump(lam, kappa / lam, "both"),
                    mutation=pp.GaussianJump(np.sqrt(2 * D / lam)))
    ref = pp.solve(rep, grid, f0, 0.5, 0.005, progress=False).f[-1]
    # λΔt ≤ 0.05: the exponential-midpoint jump step errs by O((λΔt)² × fast rate) per unit
    # time in this λ → ∞ limit, which must stay below the O(1/λ) being measured
    got = pp.solve(jump, grid, f0, 0.5, min(0.005, 0.05 / lam), progress=False).f[-1]
    return np.abs(got - ref).sum() / np.abs(ref).sum()


def test_weak_selection_limit_rate():
    """λ → ∞ with α = κ/λ and σ_m² = 2D/λ: the jump rule tends to the replicator–mutator
    solution at rate O(1/λ)."""
    grid = pp.Grid(theta=(-3, 3, 32), h=(-2, 2, 32))
    base = dict(loss=lambda th, h: 0.5 * (th - h) ** 2, fitness=lambda th, h: -(th - 0.5) ** 2,
                temperature=0.1, eps=0.1)
    f0 = pp.gaussian(grid, (-0.4, -0.6), [0.1, 0.1])
    lams = np.array([10.0, 20.0, 40.0, 80.0])
    errs = np.array([_weak_selection_error(l, grid, base, f0) for l in lams])
    slope = np.polyfit(np.log(lams), np.log(errs), 1)[0]
    assert np.all(np.diff(errs) < 0)
    assert -1.2 < slope < -0.8, f"rate {slope:.3f}, errors {errs}"


def _truncation_ode(p, F, lam, q):
    """Exact truncation dynamics of a discrete distribution (atoms with fitness F)."""
    tmap = TruncationMap(F, q, "both")
    return lambda _t, x: lam * (tmap(x) - x)


def test_truncation_moves_rate_times_fraction_and_matches_exact_discrete_dynamics():
    rng = np.random.default_rng(4)
    F = rng.normal(size=40)
    F[5] = F[6] = F[7]                      # ties are shared fractionally
    p = rng.random(40)
    p /= p.sum()
    lam, q = 3.0, 0.2
    tmap = TruncationMap(F, q, "both")
    out = tmap(p)
    # M[f] − f = G − B: the bottom loses exactly q, the top gives exactly q
    assert (p - out)[(p - out) > 0].sum() == pytest.approx(q, rel=1e-12)
    assert out.sum() == pytest.approx(1.0, rel=1e-14)
    # mass moved per unit time at t = 0 is rate × fraction
    tau = 1e-6
    step = JumpStep(tmap, lam, order=1)
    moved = np.abs(step(p, tau) - p).sum() / 2
    assert moved / tau == pytest.approx(lam * q, rel=1e-5)
    # the continuum step against an exact ODE solve of the discrete distribution
    exact = solve_ivp(_truncation_ode(p, F, lam, q), (0, 1.0), p, rtol=1e-11, atol=1e-14,
                      method="DOP853").y[:, -1]
    errs = []
    for n in (40, 80, 160, 320):
        x = p.copy()
        st = JumpStep(tmap, lam, order=2)
        for _ in range(n):
            x = st(x, 1.0 / n)
        errs.append(np.abs(x - exact).sum())
    assert errs[-1] < 1e-4
    slope = -np.polyfit(np.log([40, 80, 160, 320]), np.log(errs), 1)[0]
    assert slope > 1.8, f"order of the jump step {slope:.2f}: {errs}"


def test_jump_step_orders():
    """The exponential-midpoint jump step is order 2; the plain one order 1."""
    h = np.linspace(-3, 3, 200)
    rho0 = np.exp(-(h + 1) ** 2)
    rho0 /= rho0.sum()
    bm = BoltzmannMap(-(h - 0.5) ** 2, 1.5, "both")

    def run(order, n):
        x = rho0.copy()
        st = JumpStep(bm, 2.0, order=order)
        for _ in range(n):
            x = st(x, 1.0 / n)
        return x
    ref = run(2, 4096)
    for order in (1, 2):
        e = [np.abs(run(order, n) - ref).sum() for n in (16, 32, 64)]
        slope = np.log2(e[0] / e[2]) / 2
        assert abs(slope - order) < 0.15, (order, e)


SELECTIONS = [
    lambda r: pp.Replicator(r.uniform(0, 3)),
    lambda r: pp.BoltzmannJump(r.uniform(0, 5), r.uniform(0.1, 5), "both"),
    lambda r: pp.BoltzmannJump(r.uniform(0, 5), r.uniform(0.1, 5), "h"),
    lambda r: pp.Truncation(r.uniform(0, 5), r.uniform(0.05, 0.5), "both"),
    lambda r: pp.Truncation(r.uniform(0, 5), r.uniform(0.05, 0.5), "h"),
]


def test_every_variant_positive_and_mass_exact_on_random_models():
    rng = np.random.default_rng(2024)
    seen = set()
    for trial in range(50):
        sel = SELECTIONS[trial % len(SELECTIONS)](rng)
        jumpy = not isinstance(sel, pp.Replicator)
        kind = rng.integers(0, 3 if jumpy else 2)
        mut = [None, pp.Diffusion(rng.uniform(0, 0.1)), pp.GaussianJump(rng.uniform(0.01, 0.5))
               ][kind]
        periodic = tuple(a for a in ("theta", "h") if rng.random() < 0.4)
        seen.add((type(sel).__name__, getattr(sel, "copy", "-"), type(mut).__name__, periodic))
        a, c, s = rng.uniform(-1, 1, 3)
        if "theta" in periodic:
            box = (-np.pi, np.pi)

            def loss(th, h, a=a):
                return -np.cos(th - h) + 0.3 * a * np.cos(2 * th)
        else:
            box = (-3.0, 3.0)

            def loss(th, h, a=a):
                return 0.5 * (th - 0.5 * h) ** 2 + 0.1 * a * th ** 4 / 4

        model = pp.Model(loss=loss, fitness=lambda th, h, c=c, s=s: np.cos(th + c) - s * h ** 2,
                         temperature=lambda h: 0.2 + 0.1 * h ** 2, eps=10 ** rng.uniform(-5, 0),
                         selection=sel, mutation=mut)
        grid = pp.Grid(theta=(*box, 24), h=(-1.5, 1.5, 16), periodic=periodic)
        f0 = rng.random(grid.shape) ** 3
        sol = pp.solve(model, grid, f0, 0.5, rng.uniform(0.02, 0.2), progress=False,
                       splitting=["strang", "lie"][trial % 2])
        assert np.abs(sol.mass - 1).max() < 1e-12, (trial, sel, mut)
        assert sol.f.min() >= 0.0, (trial, sel, mut)
        # positivity holds because nothing but round-off was clipped, not by construction
        clipped = sol.info["clipped_mass"]
        assert all(v["largest"] < 1e-13 for v in clipped.values()), (trial, sel, mut, clipped)
    assert len(seen) >= 20


def test_periodic_theta_von_mises_effective_fitness():
    """L = −k cos(θ − h), F = cos(θ − θ*): the discrete Gibbs state of the periodic
    Scharfetter–Gummel operator gives F̄ = I₁(k/T)/I₀(k/T) cos(h − θ*) to round-off."""
    k, T, ts = 1.3, 0.4, 0.3
    grid = pp.Grid(theta=(-np.pi, np.pi, 48), h=(-np.pi, np.pi, 20), periodic=("theta", "h"))
    model = pp.Model(loss=lambda th, h: -k * np.cos(th - h),
                     fitness=lambda th, h: np.cos(th - ts), temperature=T, eps=0.1)
    op = SGOperator.from_model(model, grid)
    fbar = (op.gibbs * model.fitness_on(grid)).sum(axis=0)
    exact = sps.i1(k / T) / sps.i0(k / T) * np.cos(grid.h - ts)
    assert np.abs(fbar - exact).max() < 1e-13
    # and that Gibbs state is stationary under the periodic step
    prop = op.propagator(0.05)
    np.testing.assert_allclose(prop(op.gibbs), op.gibbs, atol=1e-15)


@pytest.mark.parametrize("make,exc,match", [
    (lambda: pp.BoltzmannJump(-1.0, 1.0), ValueError, "BoltzmannJump rate must be >= 0"),
    (lambda: pp.BoltzmannJump(1.0, 0.0), ValueError, "BoltzmannJump pressure must be > 0"),
    (lambda: pp.BoltzmannJump(1.0, 1.0, copy="theta"), ValueError, "copy='theta' is not known"),
    (lambda: pp.Truncation(-0.5, 0.2), ValueError, "Truncation rate must be >= 0"),
    (lambda: pp.Truncation(1.0, 0.0), ValueError, "Truncation fraction must be > 0"),
    (lambda: pp.Truncation(1.0, 0.6), ValueError, r"fraction must be in \(0, 0.5\]"),
    (lambda: pp.GaussianJump(0.0), ValueError, "GaussianJump std must be > 0"),
    (lambda: pp.GaussianJump(-0.1), ValueError, "GaussianJump std must be > 0"),
    (lambda: pp.Model(loss=lambda t, h: t * t, fitness=lambda t, h: t,
                      selection=pp.Replicator(1.0), mutation=pp.GaussianJump(0.1)),
     ValueError, "GaussianJump acts at copy events"),
    (lambda: pp.Grid(theta=(0, 1, 8), h=(0, 1, 8), periodic=("x",)), ValueError,
     "unknown axes"),
])
def test_variant_bad_input(make, exc, match):
    with pytest.raises(exc, match=match):
        make()


def test_truncation_map_one_axis_with_the_level_on_a_cell_face():
    """Uniform mass, F = h on 64 cells, q = 1/4: the level falls on a face, where the
    one-axis CDF (b = 0) used to divide 0 by 0 (ZeroDivisionError under numba). Exactly the
    16 lowest and 16 highest cells form the sets."""
    n, q = 64, 0.25
    h = (np.arange(n) + 0.5) / n
    f = np.full(n, 1.0 / n)
    M = TruncationMap(h, q, "both")
    out = M(f)
    assert np.allclose(M.last_moved, (q, q), rtol=1e-12)
    want = f.copy()
    want[:16] = 0.0
    want[-16:] *= 2.0
    np.testing.assert_allclose(out, want, atol=1e-13)


def test_truncation_map_three_axes_is_monotone_in_the_fitness():
    """F = x + 0.93 y + 1.11 z on a uniform 12³ grid with uniform mass: every cell has the
    same variations (the largest 1.11Δ/2, the merged rest 1.93Δ/2), so the part of a cell in
    the top set must increase with the cell's centre value. (With the merged rest larger than
    the largest variation the two-uniform CDF was wrong and not monotone.)"""
    n, q = 12, 0.2
    c = (np.arange(n) + 0.5) / n
    X = np.meshgrid(c, c, c, indexing="ij")
    F = X[0] + 0.93 * X[1] + 1.11 * X[2]
    f = np.full(F.shape, 1.0 / F.size)
    M = TruncationMap(F, q, "both")
    for top in (True, False):
        chi = M._fractional_set(f, q, top).ravel()
        order = np.argsort(F.ravel() if top else -F.ravel(), kind="stable")
        assert np.all(np.diff(chi[order]) >= -1e-12)
        assert (chi * f.ravel()).sum() == pytest.approx(q, rel=1e-12)


@pytest.mark.parametrize("where", ["bottom", "top"])
def test_truncation_map_with_infinite_fitness_at_the_level(where):
    """The level on cells of infinite F (−inf holding more than q of the mass at the bottom,
    +inf at the top): those cells are tied and taken by a common fraction; both sets hold
    exactly q and the mass is conserved (the bracket φ₀ ± R was nan)."""
    x = np.linspace(-1, 1, 21)
    f = np.exp(-x ** 2)
    f /= f.sum()
    F = x.copy()
    if where == "bottom":
        F[:8] = -np.inf
    else:
        F[15:] = np.inf
    M = TruncationMap(F, 0.2, "both")
    out = M(f)
    assert np.allclose(M.last_moved, (0.2, 0.2), rtol=1e-12)
    assert out.sum() == pytest.approx(1.0, rel=1e-14) and out.min() >= 0


def test_truncation_map_three_axes_matches_the_volume_above_a_plane():
    """F = x + y + z on 12³ uniform cells of the unit cube with uniform mass: the top set is
    the corner above the plane x + y + z = 3 − (6q)^{1/3}, and each cell's part in it is the
    volume of the cell above the plane (by sub-sampling the cells it crosses). With the two
    smaller variations merged into one uniform of their summed width the cells' parts were
    3.4 % of q off in L1; merged by variance, 0.3 %."""
    n, q, k = 12, 0.2, 24
    c = (np.arange(n) + 0.5) / n
    X = np.stack(np.meshgrid(c, c, c, indexing="ij"), axis=-1)
    F = X.sum(axis=-1)
    f = np.full(F.shape, 1.0 / F.size)
    chi = TruncationMap(F, q, "both")._fractional_set(f, q, True)
    level = 3.0 - (6.0 * q) ** (1.0 / 3.0)
    exact = (F > level).astype(float)
    crossed = np.abs(F - level) < 1.5 / n
    u = ((np.arange(k) + 0.5) / k - 0.5) / n
    offsets = np.stack(np.meshgrid(u, u, u, indexing="ij"), axis=-1).reshape(-1, 3).sum(axis=1)
    exact[crossed] = (F[crossed][:, None] + offsets[None] > level).mean(axis=1)
    assert np.abs((chi - exact) * f).sum() / q < 0.01


def test_truncation_map_refuses_a_nan_fitness():
    F = np.linspace(0, 1, 10)
    F[3] = np.nan
    with pytest.raises(ValueError, match="fitness is NaN on 1 of 10 cells"):
        TruncationMap(F, 0.2, "both")


def test_truncation_map_with_one_steep_cell_narrows_its_band(monkeypatch):
    """F = e^{6h} on 256²: the first bracket is as wide as the steepest cell (where F varies
    ~50× faster than at the level), so most cells straddle it. The band shrinks with the
    bracket; the sets must still hold exactly q each and agree with those found by a band
    that never shrinks."""
    n, q = 256, 0.25
    th, h = np.linspace(-3, 3, n), np.linspace(-1, 1, n)
    T, H = np.meshgrid(th, h, indexing="ij")
    f = np.exp(-((T - 0.2) ** 2 + (H - 0.1) ** 2) / 0.3)
    f /= f.sum()
    M = TruncationMap(np.exp(6 * H), q, "both")
    chis = [M._fractional_set(f, q, top) for top in (True, False)]
    monkeypatch.setattr(TruncationMap, "_NARROW_ABOVE", 10 ** 12)
    for top, chi in zip((True, False), chis):
        assert (chi * f).sum() == pytest.approx(q, rel=1e-12)
        wide = M._fractional_set(f, q, top)
        assert np.abs((chi - wide) * f).sum() < 1e-13


@pytest.mark.parametrize("q", [0.1, 0.25, 0.5])
def test_truncation_map_on_plateaus_takes_tied_cells_by_a_fraction(q):
    """F = −1, 0, +1 on three bands of a 64² grid (reach 0 inside each plateau): the level sits
    on a plateau, whose cells are tied and must be taken by a common fraction, also after the
    band has narrowed. (A cell with zero reach exactly at the bracket's upper end was moved to
    the sure set, a whole cell too many: 0.734 instead of 0.5.)"""
    n = 64
    th = np.linspace(-1, 1, n)
    F = np.where(th < -0.5, -1.0, np.where(th > 0.5, 1.0, 0.0))[:, None] * np.ones((1, n))
    f = np.full((n, n), 1.0 / n ** 2)
    M = TruncationMap(F, q, "both")
    out = M(f)
    assert np.allclose(M.last_moved, (q, q), rtol=1e-12)
    assert out.sum() == pytest.approx(1.0, rel=1e-14)
