"""The fused particle step: its counter-based normals, its compiled kernels against their
Python versions, in-place resampling, the default save policy, summaries and memory."""

import tracemalloc

import numpy as np
import pytest
from scipy import stats

import pde_popdyn as pp
from pde_popdyn.particles import counter as C
from pde_popdyn.particles import kernels as K
from pde_popdyn.particles import simulate_particles
from pde_popdyn.presets import GaussianProblem

pytestmark = pytest.mark.skipif(not K.HAVE_NUMBA, reason="the fused step needs numba")

GP = GaussianProblem(K=1.0, a=1.0, b=0.0, T=0.05, eps=0.1, kappa=1.0, D=0.02,
                     Q=[[2.0, 0.0], [0.0, 0.0]], zstar=(0.5, 0.0), mean0=(-0.5, -1.0),
                     cov0=[[0.04, 0.0], [0.0, 0.04]])


def gaussian_init(gp):
    def draw(n, rng):
        z = rng.multivariate_normal(gp.mean0, gp.cov0, n)
        return z[:, 0].copy(), z[:, 1].copy()
    return draw


# --------------------------------------------------------------------------------------------
# counter-based normals
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("ctr,key,want", [
    ((0, 0, 0, 0), (0, 0), (0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8)),
    ((0xffffffff,) * 4, (0xffffffff,) * 2, (0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd)),
    ((0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344), (0xa4093822, 0x299f31d0),
     (0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1)),
])
def test_philox_known_answers(ctr, key, want):
    """Philox4x32-10 against the known-answer vectors published with Random123."""
    assert C.philox4x32(ctr, key) == want


def test_ziggurat_tables_close_at_the_top():
    x, f = C.ZIG_X, C.ZIG_F
    assert x[-1] == 0 and np.all(np.diff(x[1:]) < 0) and abs(f[-1] - 1) < 1e-15
    # every layer has the same area v: x_i (f(x_{i+1}) − f(x_i)) for the upper layers
    areas = x[1:-1] * (f[2:] - f[1:-1])
    np.testing.assert_allclose(areas, areas[0], rtol=1e-9)


def test_normals_are_standard_normal():
    """Moments, a Kolmogorov–Smirnov test per nonce and the tail beyond the base strip's
    edge r (where the exact tail algorithm takes over), on 2·10⁶ normals."""
    xs, pvals = [], []
    for k in range(4):
        x = C.normals((np.uint64(k + 11), np.uint64(3 * k + 1), np.uint64(7)), k % 3, 0,
                      500_000)
        pvals.append(stats.kstest(x, "norm").pvalue)
        xs.append(x)
    x = np.concatenate(xs)
    n = x.size
    assert abs(x.mean()) < 5 / np.sqrt(n)
    assert abs(x.var() - 1) < 5 * np.sqrt(2 / n)
    assert abs(stats.skew(x)) < 5 * np.sqrt(6 / n)
    assert abs(stats.kurtosis(x)) < 5 * np.sqrt(24 / n)
    assert min(pvals) > 1e-4
    p_tail = 2 * stats.norm.sf(C.ZIG_R)
    hits = np.count_nonzero(np.abs(x) > C.ZIG_R)
    assert abs(hits - n * p_tail) < 5 * np.sqrt(n * p_tail)
    # the wedges: frequencies in 200 equal-probability bins
    counts = np.bincount(np.minimum((stats.norm.cdf(x) * 200).astype(int), 199), minlength=200)
    assert stats.chisquare(counts).pvalue > 1e-4


def test_normals_are_a_pure_function_of_their_index():
    """Drawn in one piece or in blocks, the same normals: independent of blocks and threads;
    other streams or nonces give other normals."""
    nonce = (np.uint64(5), np.uint64(6), np.uint64(7))
    whole = C.normals(nonce, 1, 0, 10_000)
    parts = np.concatenate([C.normals(nonce, 1, e0, 2000) for e0 in range(0, 10_000, 2000)])
    assert np.array_equal(whole, parts)
    assert np.array_equal(C.normals(nonce, 1, 4000, 6000), whole[4000:])
    other = C.normals(nonce, 2, 0, 10_000)
    assert abs(np.corrcoef(whole, other)[0, 1]) < 5 / np.sqrt(10_000)
    assert not np.array_equal(whole, C.normals((np.uint64(5), np.uint64(6), np.uint64(8)), 1,
                                               0, 10_000))


# --------------------------------------------------------------------------------------------
# the kernels against their Python versions
# --------------------------------------------------------------------------------------------
def test_advance_kernel_matches_its_python_version():
    rng = np.random.default_rng(1)
    n = 3001
    for d, crow in ((1, False), (1, True), (3, False)):
        th = rng.normal(size=n * d)
        h = rng.uniform(-1.0, 1.0, n)
        cf = rng.normal(size=n) if crow else np.array([0.3])
        dec, sd = np.array([0.7]), np.array([0.2])
        args = (np.uint64(1), np.uint64(2), np.uint64(3), np.uint64(0), 0.3, 0.4, True, dec, sd, cf, crow,
                False, -1.0, 1.0, 1, 0.0, 0.0, False)
        t1, h1 = th.copy(), h.copy()
        K.advance(t1, d, h1, *args)
        t2, h2 = th.copy(), h.copy()
        K._advance_py(t2, d, h2, *args)
        assert np.array_equal(t1, t2) and np.array_equal(h1, h2)
        assert h1.min() >= -1.0 and h1.max() <= 1.0           # reflected into the box


def test_exp_kernel_is_accurate():
    rng = np.random.default_rng(2)
    for scale in (1e-8, 0.03, 0.0625, 1.0, 50.0, 700.0):
        x = np.maximum(-np.abs(rng.normal(size=4096)) * scale, -708.0)
        out, kb = np.empty_like(x), np.empty_like(x)
        K.exp_block(x, out, kb, x.size)
        np.testing.assert_allclose(out, np.exp(x), rtol=5e-16, atol=0)
    x = np.array([-709.0, -800.0, -1e300, 0.0])
    out = np.empty(4)
    K.exp_block(x, out, np.empty(4), 4)
    assert np.array_equal(out, [0.0, 0.0, 0.0, 1.0])


@pytest.mark.parametrize("m,n_out", [(1, 1), (5000, 5000), (5000, 4321), (3000, 7777)])
def test_in_place_systematic_resampling(m, n_out):
    """Offspring numbers sum to n_out, differ from n_out·w_i/W by less than one, are unbiased
    over the uniform offset; the in-place rearrangement holds exactly that multiset and keeps
    the agents with offspring in their slots."""
    rng = np.random.default_rng(m + n_out)
    w = rng.random(m) ** 4
    expect = n_out * w / w.sum()
    mean = np.zeros(m)
    for rep in range(200):
        c = w.copy()
        K.systematic_counts_into(c, m, rng.random(), n_out / w.sum(), 0, n_out)
        assert c.sum() == n_out and np.all(c >= 0) and np.all(np.abs(c - expect) < 1 + 1e-9)
        mean += c / 200
    assert np.all(np.abs(mean - expect) < 5 * 0.5 / np.sqrt(200) + 1e-9)
    cap = max(m, n_out)
    ids = np.zeros(cap)
    ids[:m] = np.arange(m)
    th = np.zeros(2 * cap)
    th[:2 * m] = np.repeat(np.arange(m), 2)
    counts = c.copy()
    K.fill_in_place(c, m, n_out, th, 2, ids)
    assert np.array_equal(np.sort(ids[:n_out]), np.repeat(np.arange(m), counts.astype(int)))
    assert np.array_equal(th[:2 * n_out:2], ids[:n_out])
    keep = np.flatnonzero(counts[:min(m, n_out)] >= 1)
    assert np.array_equal(ids[keep], keep)


# --------------------------------------------------------------------------------------------
# the fused engine in a run
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("centre", [0.3, "callable"])
def test_fused_ou_step_with_a_temperature_that_varies_in_h(centre):
    """T(h) = 0.1 e^h with constant K: the decay is one number, the noise scale one per
    agent. One step from θ = c(h) with Δt/ε = 5 leaves (θ − c(h))/√(T(h)/K) standard normal
    in every h-range. (Regression: the kernels took both from the decay's length, so every
    agent of a block got the first agent's noise scale.)"""
    def c(h):
        return 0.5 * np.exp(-0.25 * h)
    cen = c if centre == "callable" else centre
    def T(h):
        return 0.1 * np.exp(h)
    model = pp.Model(lambda th, h: (th - (c(h) if callable(cen) else cen)) ** 2, None,
                     temperature=T, eps=0.01, quadratic=(2.0, cen))
    n = 40_000
    rng = np.random.default_rng(5)
    h0 = rng.uniform(-2.0, 2.0, n)
    th0 = c(h0) if callable(cen) else np.full(n, cen)
    ens = simulate_particles(model, n, (th0, h0), 0.05, 0.05, seed=2, engine="fused")
    th, h = ens.theta[-1], ens.h[-1]
    z = (th - (c(h) if callable(cen) else cen)) / np.sqrt(T(h) / 2.0)
    for part in (h < -1, (h >= -1) & (h < 1), h >= 1):
        assert abs(z[part].var() - 1.0) < 0.06
        assert abs(z[part].mean()) < 0.05


def test_engines_agree_in_law_on_the_gaussian_scheme():
    """Fused and numpy engines against the exact moments of the time-discrete scheme's
    mean-field limit (Strang, Δt = 0.05), 5·10⁴ agents."""
    from pde_popdyn.compare import gaussian_scheme_moments
    model = GP.model()
    n = 50_000
    mu, cov = gaussian_scheme_moments(GP, 0.05, 10, splitting="strang")
    for engine in ("fused", "numpy"):
        ens = simulate_particles(model, n, gaussian_init(GP), 0.5, 0.05, seed=3, engine=engine)
        assert ens.info["engine"] == engine
        se = ens.standard_errors()
        assert abs(ens.mean_h[-1] - mu[-1][1]) < 5 * se["mean_h"][-1]
        assert abs(ens.mean_theta[-1] - mu[-1][0]) < 5 * se["mean_theta"][-1]
        assert abs(ens.var_h[-1] - cov[-1][1, 1]) < 5 * se["var_h"][-1]


def test_fused_runs_reproduce_and_continue_bit_for_bit():
    model = GP.model()
    full = simulate_particles(model, 4000, gaussian_init(GP), 1.0, 0.05, seed=8, save_every=10)
    again = simulate_particles(model, 4000, gaussian_init(GP), 1.0, 0.05, seed=8, save_every=10)
    assert full.info["engine"] == "fused"
    assert np.array_equal(full.theta, again.theta) and np.array_equal(full.h, again.h)
    first = simulate_particles(model, 4000, gaussian_init(GP), 0.5, 0.05, seed=8, save_every=10)
    cont = first.continue_to(1.0)
    assert np.array_equal(cont.theta[-1], full.theta[-1]) and np.array_equal(cont.h[-1],
                                                                              full.h[-1])


def test_default_saves_first_and_last_and_summaries_every_step():
    model = GP.model()
    grid = GP.grid(32, 16)
    ens = simulate_particles(model, 5000, gaussian_init(GP), 1.0, 0.05, seed=4, grid=grid,
                             summary_every=1)
    assert ens.theta.shape == (2, 5000) and np.allclose(ens.t, [0.0, 1.0])
    s = ens.summaries
    assert s["t"].shape == (21,) and s["density"].shape == (21, 32, 16)
    # at the saved times the summaries describe the saved agents: at t = 0 exactly; at the
    # end the pending half selection step is a weighting, the save a resampling of it
    assert s["mean_h"][0] == pytest.approx(ens.mean_h[0], rel=1e-12)
    assert s["var_theta"][0] == pytest.approx(ens.var_theta[0], rel=1e-12)
    se = ens.standard_errors()
    assert abs(s["mean_h"][-1] - ens.mean_h[-1]) < 3 * se["mean_h"][-1]
    np.testing.assert_allclose((s["density"][0] * grid.weights).sum(), 1.0, rtol=1e-12,
                               atol=0.01)


def test_memory_per_agent_with_the_defaults():
    """Peak of numpy allocations during a default run (replicator, diffusion, d = 1): the
    agents (which live in the saved states), one saved copy, the fitness, the weights and one
    temporary of the user's fitness: at most 64 bytes per agent."""
    model = pp.Model(lambda th, h: 0.5 * (th - h) ** 2, lambda th, h: -(th - 0.5) ** 2,
                     temperature=0.05, eps=0.01, selection=pp.Replicator(1.0),
                     mutation=pp.Diffusion(0.01), quadratic=(1.0, lambda h: h))
    n = 200_000
    rng = np.random.default_rng(0)
    init = rng.normal(-0.5, 0.2, n), rng.normal(-1.0, 0.2, n)
    simulate_particles(model, 1000, (init[0][:1000], init[1][:1000]), 0.02, 0.01, seed=1,
                       h_box=(-3, 3), progress=False)
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    ens = simulate_particles(model, n, init, 0.05, 0.01, seed=1, h_box=(-3, 3),
                             progress=False)
    peak = tracemalloc.get_traced_memory()[1] - base
    tracemalloc.stop()
    assert ens.info["engine"] == "fused"
    assert peak / n <= 64, f"{peak / n:.1f} bytes per agent"


def test_fused_engine_says_what_it_does_not_cover():
    model = pp.Model(lambda th, h: 0.5 * (th - h) ** 2, lambda th, h: -th ** 2,
                     temperature=0.1, selection=pp.Replicator(1.0),
                     loss_grad=lambda th, h: th - h)
    with pytest.raises(ValueError, match="engine='fused' does not cover.*fast='euler'"):
        simulate_particles(model, 10, (np.zeros(10), np.zeros(10)), 0.1, 0.05, engine="fused")
    ens = simulate_particles(model, 10, (np.zeros(10), np.zeros(10)), 0.1, 0.05, seed=0)
    assert ens.info["engine"] == "numpy" and "euler" in ens.info["engine_note"]
    with pytest.raises(ValueError, match="engine='bogus' is not known"):
        simulate_particles(model, 10, (np.zeros(10), np.zeros(10)), 0.1, 0.05, engine="bogus")


def test_chunks_do_not_change_the_agents(monkeypatch):
    """The fused step takes the agents through their sub-steps (and the fitness) chunk by
    chunk; the normals are indexed by the agents' global numbers, so any chunk size gives
    the same agents, bit for bit (callable centre: the pass is cut around its evaluation)."""
    from pde_popdyn.particles import fused
    model = GP.model()
    runs = []
    for chunk in (1 << 30, 1000, 4098):
        monkeypatch.setattr(fused, "CHUNK", chunk)
        runs.append(simulate_particles(model, 9001, gaussian_init(GP), 0.3, 0.05, seed=12,
                                       summary_every=2))
    for r in runs[1:]:
        assert np.array_equal(r.theta, runs[0].theta) and np.array_equal(r.h, runs[0].h)
        np.testing.assert_array_equal(r.summaries["mean_fitness"],
                                      runs[0].summaries["mean_fitness"])


# --------------------------------------------------------------------------------------------
# the joint Gaussian move of an affine centre
# --------------------------------------------------------------------------------------------
def _joint_args(slope, offset=0.2, D=0.5, dt=0.05, Kq=1.3, T=0.05, eps=0.02):
    x = Kq * dt / eps
    dec = np.exp(-x)
    sd = np.sqrt(T / Kq * -np.expm1(-2 * x))
    a = np.sqrt(D * dt)
    beta = (1 - dec) * slope * np.sqrt(D * dt / 2)
    gamma = np.sqrt(sd ** 2 + (1 - dec) ** 2 * slope ** 2 * D * dt / 2)
    return (np.sqrt(2 * D * dt), beta, gamma, dec, slope, offset, a, a, sd), (dec, sd, a)


def test_joint_kernel_matches_its_python_version():
    rng = np.random.default_rng(2)
    n = 3001
    th, h = rng.normal(size=n), rng.uniform(-1.0, 1.0, n)      # many agents near the box
    coef, _ = _joint_args(0.8)
    nonce = (np.uint64(4), np.uint64(5), np.uint64(6), np.uint64(0))
    box = (-1.0, 1.0, 1, 0.0, 0.0, False)
    t1, h1, t2, h2 = th.copy(), h.copy(), th.copy(), h.copy()
    K.joint(t1, h1, *nonce, *coef, *box)
    K._joint_py(t2, h2, *nonce, *coef, *box)
    assert np.array_equal(t1, t2) and np.array_equal(h1, h2)
    assert h1.min() >= -1.0 and h1.max() <= 1.0


@pytest.mark.parametrize("h0", [0.0, 2.95])
@pytest.mark.parametrize("slope", [1.0, -0.7, 0.0])
def test_joint_move_has_the_law_of_the_three_sub_steps(h0, slope):
    """Two normals per agent give the law of M(Δt/2) O(Δt) M(Δt/2) drawn with three (numpy,
    reflecting box [−3, 3]): in the interior, and at h0 = 2.95 where the box acts and the
    agents take the sub-steps one by one."""
    n = 200_000
    rng = np.random.default_rng(int(10 * h0 + 3 * slope + 7))
    th, h = rng.normal(0.3, 0.2, n), np.full(n, h0)
    coef, (dec, sd, a) = _joint_args(slope)
    box = (-3.0, 3.0, 1, 0.0, 0.0, False)
    t1, h1 = th.copy(), h.copy()
    K.joint(t1, h1, np.uint64(1), np.uint64(2), np.uint64(3), np.uint64(0), *coef, *box)

    def reflect(x):
        return np.where(x > 3.0, 6.0 - x, np.where(x < -3.0, -6.0 - x, x))

    z = rng.standard_normal((3, n))
    hh = reflect(h + a * z[0])
    c = slope * hh + 0.2
    tt = c + (th - c) * dec + sd * z[1]
    hh = reflect(hh + a * z[2])
    for u, v in ((t1, tt), (h1, hh), (t1 + h1, tt + hh), (t1 - h1, tt - hh)):
        assert stats.ks_2samp(u, v).pvalue > 1e-4


def test_affine_center_declaration():
    c = pp.AffineCenter(2.0, -1.0)
    np.testing.assert_allclose(c(np.array([0.0, 1.5])), [-1.0, 2.0])
    assert c == pp.AffineCenter(2, -1) and "slope=2.0" in repr(c)
    import pickle
    assert pickle.loads(pickle.dumps(c)) == c
    with pytest.raises(TypeError, match="slope must be a finite number"):
        pp.AffineCenter("h")
    model = GP.model()
    ens = simulate_particles(model, 2000, gaussian_init(GP), 0.2, 0.05, seed=1)
    assert ens.info["fused_pass"] == "joint Gaussian move"
    plain = pp.Model(model.loss, model.fitness, temperature=GP.T, eps=GP.eps,
                     selection=model.selection, mutation=model.mutations[0],
                     quadratic=(GP.K, lambda h: GP.a * h + GP.b))
    ens = simulate_particles(plain, 2000, gaussian_init(GP), 0.2, 0.05, seed=1)
    assert ens.info["fused_pass"] == "two passes around the callables"


def test_a_quadratic_centre_of_the_wrong_shape_is_named_in_the_error():
    """A centre c(h) of shape (N, 3) for θ ∈ R¹ would be read past its values by the kernels:
    the fused step refuses it and says which shapes it takes."""
    model = pp.Model(lambda th, h: 0.5 * th ** 2, None, temperature=0.1, eps=0.1,
                     quadratic=(1.0, lambda h: np.zeros((np.shape(h)[0], 3))))
    with pytest.raises(ValueError, match=r"quadratic centre has shape \(100, 3\)"):
        simulate_particles(model, 100, (np.zeros(100), np.zeros(100)), 0.1, 0.05, seed=0,
                           engine="fused", check=False)
