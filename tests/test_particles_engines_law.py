"""The fused and numpy particle engines sample the same time-discrete scheme, so the laws of
their agents agree over every configuration the fused engine covers
(:mod:`pde_popdyn.particles.fused`): K, T, m and the OU centre constant or callable of h,
:class:`~pde_popdyn.AffineCenter` (the joint Gaussian move), θ of shape (N,), (N, 1) and
(N, 3) with a centre per agent or per component, Brownian mutation in a box with each
boundary rule (agents started at the edges too), a periodic θ-box, Strang and Lie splitting,
and each selection rule with instantaneous, effective and estimated fitness.

Each test runs both engines from the same agents (different seeds: with a fixed seed their
agents differ anyway) and compares, by two-sample z-scores |z| < 5, the means of per-agent
features: the moments of h and θ, the occupation of bins of h (the layers at the box's ends,
and the atoms there of the clip rule), and the mean and variance of the standardised OU
residual r = (θ − c(h))/√(T(h)/K(h)) within each third of the h-range, which a wrong decay or
noise scale for part of the agents moves by many standard errors (e.g. the noise scale of
one agent per block, fixed in commit aaca0d7: |z| ≈ 30). Without selection each agent keeps
its slot, so the pairs (initial, final) of an agent have the same law under both engines too,
and the tests without selection also compare the paired increments Δh = h − h₀ and
Δθ = θ − θ₀ (their means, variances, mean of Δh² per third of the h₀-range, cov(Δθ, Δh)):
from h₀ spread over the box the end state's moments are dominated by h₀'s spread, which
hides a wrong mutation strength (D scaled by 1.44 in the fused engine: the end state's
scores stay below 5 in most such tests, var Δh gives |z| ≈ 23–33 in each; D × 1.2: 13–19).
Over a module run there are about 3500 such scores; with independent agents each exceeds 5
with probability 6·10⁻⁷.
"""

from __future__ import annotations

import numpy as np
import pytest

import pde_popdyn as pp
from pde_popdyn.particles import kernels as K
from pde_popdyn.particles import simulate_particles

pytestmark = pytest.mark.skipif(not K.HAVE_NUMBA, reason="the fused step needs numba")

N = 30_001              # odd, and not a multiple of the kernels' block: partial blocks too
DT = 0.05
EPS = 0.2               # mKΔt/ε ≈ 0.4: the decay and the noise scale both matter
D = 0.1                 # √(2DΔt) = 0.1 per step
BOX = (-1.0, 1.0)
THIRDS = ((-np.inf, -1 / 3), (-1 / 3, 1 / 3), (1 / 3, np.inf))      # of the box, in h
Z_MAX = 5.0


# --------------------------------------------------------------------------------------------
# the fields of the quadratic loss L = ½K(h)|θ − c(h)|²
# --------------------------------------------------------------------------------------------
def K_h(h):
    return 1.5 + 0.5 * np.tanh(2.0 * h)


def T_h(h):
    return 0.05 * np.exp(1.2 * h)


def m_h(h):
    return 1.0 / (1.0 + 0.8 * h * h)


def c_h(h):
    return 0.4 * np.sin(2.0 * h) + 0.2


C3 = np.array([0.3, -0.2, 0.5])


def c_h3(h):
    """A centre in R³ that varies with h, one row per agent."""
    return np.stack([np.sin(2.0 * h), 0.5 * h, -0.3 * h * h], axis=1)


CENTRES = {"const": 0.3, "callable": c_h, "affine": pp.AffineCenter(0.8, 0.1),
           "const1": np.array([0.3]), "const3": C3, "callable3": c_h3}


def value(v, h):
    return np.asarray(v(h) if callable(v) else v, dtype=float)


def centre_at(c, h, d):
    """c(h) as an (N, d) array."""
    cv = value(c, h)
    if cv.ndim == 0:
        return np.full((h.shape[0], d), float(cv))
    if cv.ndim == 1 and not callable(c):           # one value per component
        return np.broadcast_to(cv, (h.shape[0], d))
    return cv.reshape(h.shape[0], -1) * np.ones((1, d))


def fitness(th, h):
    t1 = th if th.ndim == 1 else th[:, 0]
    return -(t1 - 0.4) ** 2 - 0.5 * (h - 0.3) ** 2


def fbar(h):
    return -0.8 * (h - 0.2) ** 2


def make_model(Kq=1.5, T=0.05, m=1.0, centre="const", selection=None, mutation=None):
    c = CENTRES[centre]

    def loss(th, h):
        cv = value(c, h)
        r = th - (cv[:, None] if cv.ndim == 1 and callable(c) and th.ndim == 2 else cv)
        q = r * r if r.ndim == 1 else (r * r).sum(axis=1)
        return 0.5 * value(Kq, h) * q

    return pp.Model(loss, fitness if selection is not None else None, temperature=T,
                    mobility=m, eps=EPS, selection=selection,
                    mutation=pp.Diffusion(D) if mutation is None else mutation,
                    quadratic=(Kq, c))


# --------------------------------------------------------------------------------------------
# initial agents and the two runs
# --------------------------------------------------------------------------------------------
def initial(model, d, where="uniform", seed=0, lo=BOX[0], hi=BOX[1]):
    """The same agents for both engines: h uniform on the box (or within 0.05 of its ends),
    θ = c(h) + 0.6 + a spread of 0.2, off the OU equilibrium so that the decay matters; θ of
    shape (N,) for d = 1, (N, d) for d = 3 or (N, 1) for d = "1 column"."""
    column = d == "1 column"
    d = 1 if column else d
    rng = np.random.default_rng(seed)
    if where == "uniform":
        h = rng.uniform(lo, hi, N)
    else:
        u = rng.uniform(0.0, 0.05, N)
        h = np.where(rng.random(N) < 0.5, lo + u, hi - u)
        h[:N // 10] = np.where(np.arange(N // 10) % 2 == 0, lo, hi)      # exactly at the edges
    c = centre_at(model.quadratic[1], h, d)
    th = c + 0.6 + 0.2 * rng.standard_normal((N, d))
    return (th[:, 0].copy() if d == 1 and not column else th), h


def run(model, init, engine, steps=3, **kw):
    """The agents (θ as (N, d), h) after ``steps`` steps of Δt under ``engine``."""
    ens = simulate_particles(model, N, init, steps * DT, DT, engine=engine, progress=False,
                             seed=11 if engine == "fused" else 23, **kw)
    assert ens.info["engine"] == engine
    th = ens.theta[-1]
    return (th[:, None] if th.ndim == 1 else th), ens.h[-1]


def both(model, init, **kw):
    """(θ, h) of the fused run and of the numpy run from the same agents."""
    return run(model, init, "fused", **kw), run(model, init, "numpy", **kw)


# --------------------------------------------------------------------------------------------
# two-sample z-scores
# --------------------------------------------------------------------------------------------
def z_mean(x, y):
    """z of the difference of the means of two independent samples."""
    if x.size < 30 or y.size < 30:
        return 0.0
    se = np.sqrt(x.var() / x.size + y.var() / y.size)
    return float((x.mean() - y.mean()) / se) if se > 0 else \
        (0.0 if x.mean() == y.mean() else np.inf)


def z_var(x, y):
    """z of the difference of the variances (as means of squared deviations)."""
    if x.size < 30 or y.size < 30:
        return 0.0
    return z_mean((x - x.mean()) ** 2, (y - y.mean()) ** 2)


def h_part(h, lo, hi):
    """Agents with lo ≤ h < hi."""
    return (h >= lo) & (h < hi)


def law_scores(model, a, b, clip=False):
    """Named z-scores of features of the two samples a, b = (θ (N, d), h): moments, bins of h
    (finer at the ends of the box; with ``clip`` the atoms at its ends), and the mean and
    variance of the standardised OU residual per third of the h-range."""
    Kq, c = model.quadratic
    out = {}
    (ta, ha), (tb, hb) = a, b
    d = ta.shape[1]
    out["mean h"] = z_mean(ha, hb)
    out["var h"] = z_var(ha, hb)
    for j in range(d):
        out[f"mean θ{j}"] = z_mean(ta[:, j], tb[:, j])
        out[f"var θ{j}"] = z_var(ta[:, j], tb[:, j])
        out[f"cov θ{j} h"] = z_mean((ta[:, j] - ta[:, j].mean()) * (ha - ha.mean()),
                                    (tb[:, j] - tb[:, j].mean()) * (hb - hb.mean()))
    lo, hi = BOX
    # eighths of the box, and the layers at its ends, where the boundary rule acts
    inner = np.unique(np.concatenate([np.linspace(lo, hi, 9)[1:-1],
                                      [lo + 0.02, lo + 0.06, hi - 0.06, hi - 0.02]]))
    cuts = np.concatenate([[-np.inf], inner, [np.inf]])
    for lo_k, hi_k in zip(cuts[:-1], cuts[1:]):
        out[f"P(h in [{lo_k:.2f}, {hi_k:.2f}))"] = z_mean(
            h_part(ha, lo_k, hi_k).astype(float), h_part(hb, lo_k, hi_k).astype(float))
    if clip:
        for e in (lo, hi):
            out[f"P(h = {e})"] = z_mean((ha == e).astype(float), (hb == e).astype(float))

    def residual(th, h):
        return (th - centre_at(c, h, d)) / np.sqrt(value(model.temperature, h) /
                                                    value(Kq, h))[..., None]

    ra, rb = residual(ta, ha), residual(tb, hb)
    for k, (lo_k, hi_k) in enumerate(THIRDS):
        ia, ib = h_part(ha, lo_k, hi_k), h_part(hb, lo_k, hi_k)
        for j in range(d):
            out[f"mean r{j} | h third {k}"] = z_mean(ra[ia, j], rb[ib, j])
            out[f"var r{j} | h third {k}"] = z_var(ra[ia, j], rb[ib, j])
    return out


def wrapped(x, period):
    """x taken into [−period/2, period/2) (the shortest displacement on a circle)."""
    return x if period is None else np.mod(x + 0.5 * period, period) - 0.5 * period


def increment_scores(a, b, init, h_period=None, theta_period=None):
    """Named z-scores of the paired increments Δh = h − h₀, Δθ = θ − θ₀ of the two samples
    a, b = (θ (N, d), h) from the same agents ``init`` = (θ₀, h₀), which they must hold in the
    same slots (no selection): means, variances, the mean of Δh² per third of the h₀-range,
    and cov(Δθ, Δh). On a periodic axis the increments are the shortest displacements."""
    th0, h0 = init
    th0 = th0.reshape(th0.shape[0], -1)
    out = {}
    (ta, ha), (tb, hb) = a, b
    dha, dhb = wrapped(ha - h0, h_period), wrapped(hb - h0, h_period)
    dta, dtb = wrapped(ta - th0, theta_period), wrapped(tb - th0, theta_period)
    out["mean Δh"] = z_mean(dha, dhb)
    out["var Δh"] = z_var(dha, dhb)
    for k, (lo_k, hi_k) in enumerate(THIRDS):
        i = h_part(h0, lo_k, hi_k)
        out[f"mean Δh² | h₀ third {k}"] = z_mean(dha[i] ** 2, dhb[i] ** 2)
    for j in range(ta.shape[1]):
        out[f"mean Δθ{j}"] = z_mean(dta[:, j], dtb[:, j])
        out[f"var Δθ{j}"] = z_var(dta[:, j], dtb[:, j])
        out[f"cov Δθ{j} Δh"] = z_mean((dta[:, j] - dta[:, j].mean()) * (dha - dha.mean()),
                                      (dtb[:, j] - dtb[:, j].mean()) * (dhb - dhb.mean()))
    return out


def assert_same_law(model, a, b, init=None, h_period=None, theta_period=None, **kw):
    """|z| < 5 for every score of :func:`law_scores` and, given the initial agents ``init``
    (runs without selection), of :func:`increment_scores`; the message names the five
    largest."""
    scores = law_scores(model, a, b, **kw)
    if init is not None:
        scores.update(increment_scores(a, b, init, h_period, theta_period))
    worst = sorted(scores.items(), key=lambda kv: -abs(kv[1]))[:5]
    assert abs(worst[0][1]) < Z_MAX, "fused vs numpy z-scores: " + ", ".join(
        f"{k}: {v:+.1f}" for k, v in worst)


# --------------------------------------------------------------------------------------------
# the OU step's coefficients as callables of h, θ ∈ R and R³
# --------------------------------------------------------------------------------------------
FIELDS = {
    # name: (K, T, m, centre, d)
    "all constant, constant centre": (1.5, 0.05, 1.0, "const", 1),
    "all constant, affine centre": (1.5, 0.05, 1.0, "affine", 1),
    "K(h)": (K_h, 0.05, 1.0, "const", 1),
    "T(h)": (1.5, T_h, 1.0, "const", 1),
    "T(h), c(h)": (1.5, T_h, 1.0, "callable", 1),
    "T(h), affine centre": (1.5, T_h, 1.0, "affine", 1),
    "m(h), affine centre": (1.5, 0.05, m_h, "affine", 1),
    "K(h), m(h), c(h)": (K_h, 0.05, m_h, "callable", 1),
    "K(h), T(h), m(h), c(h)": (K_h, T_h, m_h, "callable", 1),
    "d=3, T(h), constant centre in R³": (1.5, T_h, 1.0, "const3", 3),
    "d=3, K(h), c(h) per agent": (K_h, 0.05, 1.0, "callable", 3),
    "d=3, m(h), T(h), c(h) in R³": (1.5, T_h, m_h, "callable3", 3),
    "d=3, all constant, affine centre": (1.5, 0.05, 1.0, "affine", 3),
    "d=3, all constant, constant centre in R³": (1.5, 0.05, 1.0, "const3", 3),
    # a constant centre of shape (1,): one value per component of θ ∈ R¹
    "θ (N, 1), constant centre [c]": (1.5, 0.05, 1.0, "const1", "1 column"),
    "θ (N, 1), T(h), constant centre [c]": (1.5, T_h, 1.0, "const1", "1 column"),
    "θ (N,), T(h), constant centre [c]": (1.5, T_h, 1.0, "const1", 1),
    "θ (N, 1), all constant, affine centre": (1.5, 0.05, 1.0, "affine", "1 column"),
}


@pytest.mark.parametrize("splitting", ["strang", "lie"])
@pytest.mark.parametrize("case", list(FIELDS))
def test_ou_coefficients_callable_of_h(case, splitting):
    """With K, T, m and the centre constant or callable of h (and θ ∈ R or R³), the law of
    (θ, h) after three steps, of the OU residual within each third of the h-range, and of
    each agent's increments, is the same under both engines (reflecting box, Brownian
    mutation)."""
    Kq, T, m, centre, d = FIELDS[case]
    model = make_model(Kq, T, m, centre)
    init = initial(model, d)
    a, b = both(model, init, h_box=BOX, splitting=splitting)
    assert_same_law(model, a, b, init=init)


def test_the_fused_paths_are_those_named():
    """The configurations above take the fused passes they are meant to exercise."""
    for case, want in (("all constant, affine centre", "joint Gaussian move"),
                       ("T(h)", "two passes around the callables"),
                       ("d=3, all constant, affine centre", "two passes around the callables"),
                       ("d=3, all constant, constant centre in R³", "one pass")):
        Kq, T, m, centre, d = FIELDS[case]
        model = make_model(Kq, T, m, centre)
        ens = simulate_particles(model, 2000, tuple(x[:2000] for x in initial(model, d)),
                                 DT, DT, seed=0, h_box=BOX, engine="fused", progress=False)
        assert ens.info["fused_pass"] == want


def test_temperature_alone_varying_detects_one_noise_scale_per_block():
    """T(h) varying alone (constant K and m, the case of commit aaca0d7): each engine
    against the exact law of one Lie step without mutation, θ' = c + (θ − c)e^{−x} +
    √(T(h)/K (1 − e^{−2x})) ξ, by the standardised residual's mean and variance per third of
    the h-range."""
    model = make_model(1.5, T_h, 1.0, "const", mutation=[])
    th0, h0 = initial(model, 1)
    x = 1.5 * DT / EPS
    mean = 0.3 + (th0 - 0.3) * np.exp(-x)
    for engine in ("fused", "numpy"):
        th, h = run(model, (th0, h0), engine, steps=1, splitting="lie")
        z = (th[:, 0] - mean) / np.sqrt(T_h(h0) / 1.5 * -np.expm1(-2 * x))
        assert np.array_equal(h, h0)
        for k, (lo_k, hi_k) in enumerate(THIRDS):
            zp = z[h_part(h0, lo_k, hi_k)]
            assert abs(zp.mean()) < Z_MAX / np.sqrt(zp.size), (engine, k)
            assert abs(zp.var() - 1.0) < Z_MAX * np.sqrt(2.0 / zp.size), (engine, k)


@pytest.mark.parametrize("engine", ["fused", "numpy"])
@pytest.mark.parametrize("kind", ["constant", "callable in R^d", "callable per agent"])
@pytest.mark.parametrize("d,n,chunk", [(3, 2003, 1000), (3, 3, None), (16, 1000, None)])
def test_centre_layout_when_d_equals_the_number_of_agents(d, n, chunk, kind, engine,
                                                          monkeypatch):
    """A centre of length d is one value per component when it is a constant array or a
    callable's value that does not depend on the agents, and a callable's value of length n
    is one per agent, also where the two lengths coincide: the fused step's last chunk
    holding d agents, a population of N = d agents, the declaration check on 16 agents with
    d = 16. With Δt/ε ≫ 1 and T → 0 one OU step puts every agent at its centre."""
    from pde_popdyn.particles import fused
    if chunk is not None:
        monkeypatch.setattr(fused, "CHUNK", chunk)
    cvec = np.linspace(-1.0, 1.0, d)
    c = {"constant": cvec, "callable in R^d": lambda h: cvec,
         "callable per agent": lambda h: np.sin(3.0 * h)}[kind]
    per_agent = kind == "callable per agent"

    def loss(th, h):
        return 0.5 * ((th - (c(h)[:, None] if per_agent else cvec)) ** 2).sum(axis=1)

    model = pp.Model(loss, None, temperature=1e-12, eps=1e-3, quadratic=(1.0, c))
    rng = np.random.default_rng(d + n)
    h0 = rng.normal(size=n)
    ens = simulate_particles(model, n, (rng.normal(size=(n, d)), h0), DT, DT, seed=1,
                             engine=engine, progress=False)
    want = np.sin(3.0 * h0)[:, None] * np.ones(d) if per_agent else np.broadcast_to(cvec,
                                                                                   (n, d))
    np.testing.assert_allclose(ens.theta[-1], want, atol=1e-4)


# --------------------------------------------------------------------------------------------
# the h-box: each boundary rule, agents started at its ends, θ periodic
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("splitting", ["strang", "lie"])
@pytest.mark.parametrize("path", ["joint", "callables"])
@pytest.mark.parametrize("boundary", ["reflecting", "periodic", "clip"])
def test_boundary_rules_with_agents_at_the_edges(boundary, path, splitting):
    """Agents started within 0.05 of the ends of the h-box (a tenth exactly on them), one
    mutation step √(2DΔt) = 0.1: the occupation of the edge layers (and the atoms of the clip
    rule), the law of θ given h and of each agent's increments, agree under both engines:
    with constant coefficients and an affine centre (the joint move, whose agents near the
    box take the sub-steps one by one) and with T(h) and c(h) callable."""
    if path == "joint":
        model = make_model(1.5, 0.05, 1.0, "affine")
    else:
        model = make_model(1.5, T_h, 1.0, "callable")
    init = initial(model, 1, where="edges")
    a, b = both(model, init, steps=2, h_box=BOX, boundary=boundary, splitting=splitting)
    for th, h in (a, b):
        assert h.min() >= BOX[0] and h.max() <= BOX[1]
    assert_same_law(model, a, b, clip=boundary == "clip", init=init,
                    h_period=BOX[1] - BOX[0] if boundary == "periodic" else None)


@pytest.mark.parametrize("boundary", ["reflecting", "periodic"])
def test_several_diffusions_add_up(boundary):
    """Two Brownian mutations, which the fused step merges into one draw of D₁ + D₂ while
    the numpy engine moves the agents by each in turn, applying the boundary rule after
    each: the same law, also of each agent's increments, under the reflecting and periodic
    rules (the maps folding R onto the box commute in law with a symmetric move); agents
    started at the edges."""
    model = make_model(1.5, T_h, 1.0, "callable",
                       mutation=[pp.Diffusion(0.6 * D), pp.Diffusion(0.4 * D)])
    init = initial(model, 1, where="edges")
    a, b = both(model, init, steps=2, h_box=BOX, boundary=boundary)
    assert_same_law(model, a, b, init=init,
                    h_period=BOX[1] - BOX[0] if boundary == "periodic" else None)


def test_several_diffusions_with_clipping_take_the_numpy_engine():
    """Clipping after each of two moves is not clipping after their sum (from h at the upper
    end, one step of two equal moves stays there with probability 3/8, not 1/2), so the
    fused step, which merges the moves, declines them under the clip rule."""
    model = make_model(1.5, T_h, 1.0, "callable",
                       mutation=[pp.Diffusion(0.5 * D), pp.Diffusion(0.5 * D)])
    init = (np.full(2000, c_h(1.0)), np.full(2000, 1.0))
    with pytest.raises(ValueError, match="several Brownian mutations with boundary='clip'"):
        simulate_particles(model, 2000, init, DT, DT, seed=0, h_box=BOX, boundary="clip",
                           engine="fused", progress=False)
    ens = simulate_particles(model, 2000, init, DT, DT, seed=0, h_box=BOX, boundary="clip",
                             splitting="lie", progress=False)
    assert ens.info["engine"] == "numpy"
    at_edge = np.mean(ens.h[-1] == 1.0)
    assert abs(at_edge - 3 / 8) < 5 * np.sqrt(3 / 8 * 5 / 8 / 2000)
    one = simulate_particles(make_model(1.5, T_h, 1.0, "callable"), 2000, init, DT, DT,
                             seed=0, h_box=BOX, boundary="clip", progress=False)
    assert one.info["engine"] == "fused"


@pytest.mark.parametrize("splitting", ["strang", "lie"])
@pytest.mark.parametrize("path", ["joint", "callables"])
def test_periodic_theta_box(path, splitting):
    """θ on a circle (a grid with a periodic θ-axis, θ-box [−0.5, 0.5], narrower than the
    OU spread so that most agents wrap): the law of the wrapped θ, per bin of θ and per third
    of the h-range, and of each agent's increments (Δθ the shortest displacement on the
    circle), agrees under both engines."""
    grid = pp.Grid(theta=(-0.5, 0.5, 16), h=(BOX[0], BOX[1], 16), periodic=("theta",))
    model = make_model(1.5, 0.6, 1.0, "affine") if path == "joint" else \
        make_model(K_h, T_h, 1.0, "callable")
    th0, h0 = initial(model, 1)
    th0 = np.mod(th0 + 0.5, 1.0) - 0.5
    a, b = both(model, (th0, h0), steps=2, grid=grid, splitting=splitting)
    for th, h in (a, b):
        assert th.min() >= -0.5 and th.max() <= 0.5

    def cell(s, e, third):
        return (h_part(s[0][:, 0], e, e + 0.125) & h_part(s[1], *third)).astype(float)

    scores = {f"P(θ in [{e:.3f}, {e + 0.125:.3f}), h third {k})":
              z_mean(cell(a, e, third), cell(b, e, third))
              for e in np.linspace(-0.5, 0.5, 9)[:-1] for k, third in enumerate(THIRDS)}
    worst = max(scores.items(), key=lambda kv: abs(kv[1]))
    assert abs(worst[1]) < Z_MAX, worst
    assert_same_law(model, a, b, init=(th0, h0), theta_period=1.0)


# --------------------------------------------------------------------------------------------
# selection
# --------------------------------------------------------------------------------------------
SELECTIONS = {
    "replicator": (lambda: pp.Replicator(2.0), None),
    "boltzmann": (lambda: pp.BoltzmannJump(rate=3.0, pressure=2.0),
                  lambda: [pp.Diffusion(D), pp.GaussianJump(0.1)]),
    "truncation": (lambda: pp.Truncation(rate=3.0, fraction=0.2),
                   lambda: [pp.Diffusion(D), pp.GaussianJump(0.1)]),
}


SELECTION_FIELDS = {
    # name: (K, T, m, centre, d)
    "T(h), c(h)": (1.5, T_h, 1.0, "callable", 1),
    "constant, affine centre": (1.5, 0.05, 1.0, "affine", 1),
    "d=3, K(h), c(h) in R³": (K_h, 0.05, 1.0, "callable3", 3),
}


@pytest.mark.parametrize("fields", list(SELECTION_FIELDS))
@pytest.mark.parametrize("splitting", ["strang", "lie"])
@pytest.mark.parametrize("mode", ["instantaneous", "effective", "estimated"])
@pytest.mark.parametrize("rule", list(SELECTIONS))
def test_selection_rules(rule, mode, splitting, fields):
    """Selection (replicator resampling, Boltzmann jumps and truncation with Gaussian
    explore jumps) on the instantaneous fitness F(θ, h), which the fused step evaluates
    chunk by chunk right after its sub-steps, on an effective fitness F̄(h), or on the
    population's kernel regression of F on h: the same law of (θ, h) under both engines
    (reflecting box, Brownian mutation), with T(h) and c(h) callable, with constant
    coefficients and an affine centre (the joint move under Strang), and in R³."""
    sel, mut = SELECTIONS[rule]
    Kq, T, m, centre, d = SELECTION_FIELDS[fields]
    model = make_model(Kq, T, m, centre, selection=sel(), mutation=mut() if mut else None)
    init = initial(model, d)
    kw = dict(fitness_mode=mode, splitting=splitting, h_box=BOX)
    if mode == "effective":
        kw["effective_fitness"] = fbar
    a, b = both(model, init, **kw)
    assert_same_law(model, a, b)


SELECTION_VARIANTS = {
    "replicator, adaptive resampling": (lambda: pp.Replicator(2.0), None,
                                        dict(ess_threshold=0.5)),
    "replicator, pairwise imitation": (lambda: pp.Replicator(2.0), None,
                                       dict(replicator="pairwise")),
    "replicator, pairwise imitation of h": (lambda: pp.Replicator(2.0, copy="h"), None,
                                            dict(replicator="pairwise")),
    "boltzmann, copy h": (lambda: pp.BoltzmannJump(3.0, 2.0, copy="h"),
                          lambda: [pp.Diffusion(D), pp.GaussianJump(0.1)], {}),
    "truncation, copy h, first-order jumps": (lambda: pp.Truncation(3.0, 0.2, copy="h"),
                                              lambda: [pp.Diffusion(D), pp.GaussianJump(0.1)],
                                              dict(jump_order=1)),
    "PBT, one generation a step": (lambda: pp.PBT(interval=DT, fraction=0.2),
                                   lambda: [pp.Diffusion(D), pp.GaussianJump(0.1)], {}),
}


@pytest.mark.parametrize("variant", list(SELECTION_VARIANTS))
def test_selection_variants(variant):
    """Other settings of the selection step, which the fused engine leaves to the rules'
    particle faces (accumulated log-weights resampled in place, pairwise imitation, copies
    of h alone, first-order jumps, PBT's generations): the same law of (θ, h) under both
    engines, K(h), T(h) and c(h) callable."""
    sel, mut, kw = SELECTION_VARIANTS[variant]
    model = make_model(K_h, T_h, 1.0, "callable", selection=sel(),
                       mutation=mut() if mut else None)
    a, b = both(model, initial(model, 1), h_box=BOX, **kw)
    assert_same_law(model, a, b)
