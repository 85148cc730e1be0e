"""Sharded particle runs: the global operations the rules' sharded faces use, reproducibility
across backends, agreement with unsharded runs, rebalancing, checkpoints and errors."""

import numpy as np
import pytest

import pde_popdyn as pp
from pde_popdyn.particles import kernels as K
from pde_popdyn.particles import simulate_particles
from pde_popdyn.particles.backends import InlineBackend
from pde_popdyn.particles.shardctx import ShardContext
from pde_popdyn.presets import GaussianProblem

GP = GaussianProblem()


def gaussian_init(n, rng):
    z = rng.multivariate_normal(GP.mean0, GP.cov0, n)
    return z[:, 0].copy(), z[:, 1].copy()


def _ctx(arrays: list, rng=None) -> ShardContext:
    """A context over inline shards whose scratch holds the given arrays under "v"."""
    specs = [{"rank": s, "model": GP.model(), "target": a.size, "seed_seq": s,
              "theta": np.zeros(a.size), "h": np.zeros(a.size),
              "opts": _opts()} for s, a in enumerate(arrays)]
    be = InlineBackend(specs)
    for sh, a in zip(be.shards, arrays):
        sh.scratch["v"] = a
    return ShardContext(be, sum(a.size for a in arrays), [a.size for a in arrays],
                        rng or np.random.default_rng(0), {})


def _opts() -> dict:
    from pde_popdyn.particles.setup import prepare
    setup = prepare(GP.model(), 4, (np.zeros(4), np.zeros(4)), 0.1, 0.05, seed=0,
                    save_every=None, summary_every=None, fitness_mode="instantaneous",
                    window=None, window_kind="exponential", effective_fitness=None,
                    bandwidth=None, grid=None, replicator="resample", resampling="systematic",
                    ess_threshold=1.0, jump_order=2, boundary=None, h_box=None, fast="auto",
                    substeps=1, gradient=None, noise=True, splitting="strang", check=False,
                    output=None, resume=None, engine="auto")
    return setup.opts


# --------------------------------------------------------------------------------------------
# global operations
# --------------------------------------------------------------------------------------------
def test_order_statistics_are_exact_with_ties():
    rng = np.random.default_rng(4)
    vals = np.concatenate([rng.normal(size=30_000), np.full(5000, 0.25),
                           rng.integers(0, 3, 8000).astype(float)])
    rng.shuffle(vals)
    arrays = np.array_split(vals, [7000, 7001, 25000])
    ctx = _ctx(arrays)
    ranks = [1, 100, 20_000, 20_000, 33_333, vals.size]
    order = np.argsort(vals, kind="stable")          # ties by shard, then index
    for r, (v, ties) in zip(ranks, ctx.order_statistics("v", ranks)):
        chosen = np.zeros(vals.size, bool)
        chosen[order[:r]] = True
        assert v == vals[order[r - 1]]
        assert sum(ties) == r - np.count_nonzero(vals < v)
        start = 0
        for a, t in zip(arrays, ties):                # the first t ties of each shard
            eq = np.flatnonzero(a == v)
            assert np.all(chosen[start + eq[:t]]) and not np.any(chosen[start + eq[t:]])
            start += a.size


def test_systematic_plan_is_one_resampling_of_the_whole_population():
    """Each shard's counts from its share of the points equal the counts of one systematic
    resampling of the concatenated weights with the same uniform offset (up to the rounding
    of the running sums, which may move a point across one boundary)."""
    rng = np.random.default_rng(5)
    parts = [rng.normal(size=m) for m in (3000, 1, 4999, 2000)]
    kt = 0.7
    ctx = _ctx([np.zeros(p.size) for p in parts], rng=np.random.default_rng(9))
    stats, ws = [], []
    for F in parts:
        w = np.exp(kt * (F - F.max()))
        stats.append((kt * F.max(), w.sum()))
        ws.append(w)
    plan = ctx.systematic_plan(stats)
    counts = []
    for w, (off, sc, lo, hi) in zip(ws, plan):
        c = w.copy()
        K.systematic_counts_into(c, c.size, off, sc, lo, hi)
        counts.append(c)
    counts = np.concatenate(counts)
    u = np.random.default_rng(9).random()
    allw = np.exp(kt * np.concatenate(parts))
    ref = allw.copy()
    K.systematic_counts_into(ref, ref.size, u, allw.size / allw.sum(), 0, allw.size)
    assert counts.sum() == allw.size and np.all(counts >= 0)
    assert np.abs(counts - ref).sum() <= 2 * len(parts)


def test_chunk_scaled_counts_are_the_counts_of_the_scaled_weights():
    """The counts of weights scaled chunk by chunk as they are read equal, bit for bit, those
    of the weights multiplied out beforehand; unit factors change nothing."""
    rng = np.random.default_rng(2)
    m, chunk = 5 * K.BLOCK + 77, 2 * K.BLOCK
    w = rng.random(m)
    fac = np.array([1.0, 0.3, 1e-3])
    scaled = w * np.repeat(fac, chunk)[:m]
    for off, lo, hi in ((0.25, 0, 900), (17.6, 3, 700)):
        sc = (hi - lo) / scaled.sum()
        a, b, c, d = w.copy(), scaled.copy(), w.copy(), w.copy()
        K.counts_scaled(a, m, off, sc, lo, hi, fac, chunk)
        K.systematic_counts_into(b, m, off, sc, lo, hi)
        assert np.array_equal(a, b) and a.sum() == hi - lo
        K.counts_scaled(c, m, off, sc, lo, hi, np.ones(1), m + 1)
        K.systematic_counts_into(d, m, off, sc, lo, hi)
        assert np.array_equal(c, d)


@pytest.mark.parametrize("m,lo,hi", [(5 * K.BLOCK + 77, 0, 5 * K.BLOCK + 77),
                                     (3000, 10, 2900), (3000, 0, 3400), (40, 0, 55),
                                     (2 * K.BLOCK, 5, 5 + 2 * K.BLOCK)])
def test_one_pass_resampling_is_counts_then_fill(m, lo, hi):
    """resample_scaled (the offspring numbers computed block by block as the fill reaches
    them) leaves the same agents in the same slots as counts_scaled then fill_in_place, for
    shards that keep, lose or gain agents, with and without chunk factors."""
    rng = np.random.default_rng(m + lo)
    chunk = K.BLOCK
    for w in (rng.random(m), np.exp(8 * rng.normal(size=m) - 8)):
        for fac in (np.ones(1), 0.2 + rng.random(-(-m // chunk))):
            ch = m + 1 if fac.size == 1 else chunk
            sc = (hi - lo) / (w * np.repeat(fac, ch)[:m]).sum()
            cap = max(m, hi - lo) + 3
            ref_t, ref_h = rng.normal(size=(cap, 2)), rng.normal(size=cap)
            a_t, a_h, b_t, b_h = ref_t.copy(), ref_h.copy(), ref_t.copy(), ref_h.copy()
            wa, wb = w.copy(), w.copy()
            K.counts_scaled(wa, m, 0.37, sc, lo, hi, fac, ch)
            K.fill_in_place(wa, m, hi - lo, a_t.reshape(-1), 2, a_h)
            K.resample_scaled(wb, m, 0.37, sc, lo, hi, fac, ch, b_t.reshape(-1), 2, b_h)
            n = hi - lo
            assert np.array_equal(a_t[:n], b_t[:n]) and np.array_equal(a_h[:n], b_h[:n])


def test_the_fused_step_computes_the_selection_weights_chunk_by_chunk(monkeypatch):
    """With ``weights=(w, kt)`` the fused step moves the agents exactly as without, and w
    holds e^{kt(F − m_c)} per chunk c, m_c the chunk's largest F (what a shard's advance
    hands to the replicator's selection instead of F)."""
    from pde_popdyn.particles import fused
    from pde_popdyn.particles.population import Population
    from pde_popdyn.particles.system import Simulator
    monkeypatch.setattr(fused, "CHUNK", 3 * K.BLOCK + 6)       # rounded down to whole blocks
    model = GP.model()
    n, kt = 10_000, 0.8
    th, h = gaussian_init(n, np.random.default_rng(1))
    runs, wbuf = [], np.empty(n + 3)
    for weights in (None, (wbuf, kt)):
        sim = Simulator(model, n, np.random.default_rng(4), _opts())
        P = Population(th.copy(), h.copy())
        runs.append((P, sim.fused(P, 0.05, True, sim._chunk_fitness, weights=weights)))
    (P0, F), (P1, (tops, sums, chunk)) = runs
    assert chunk == 3 * K.BLOCK and tops.size == -(-n // chunk)
    assert np.array_equal(P0.theta, P1.theta) and np.array_equal(P0.h, P1.h)
    for c in range(tops.size):
        Fc = F[c * chunk:(c + 1) * chunk]
        wc = np.exp(kt * (Fc - Fc.max()))
        assert tops[c] == Fc.max() and np.isclose(sums[c], wc.sum(), rtol=1e-13)
        np.testing.assert_allclose(wbuf[c * chunk:min((c + 1) * chunk, n)], wc, rtol=1e-14)


# --------------------------------------------------------------------------------------------
# runs
# --------------------------------------------------------------------------------------------
def test_sharded_runs_reproduce_and_agree_with_unsharded():
    model = GP.model()
    n = 20_000
    kw = dict(seed=3, h_box=GP.h_box, client="inline")
    a = simulate_particles(model, n, gaussian_init, 1.0, 0.05, shards=2, **kw)
    b = simulate_particles(model, n, gaussian_init, 1.0, 0.05, shards=2, **kw)
    c = simulate_particles(model, n, gaussian_init, 1.0, 0.05, shards=3, **kw)
    assert np.array_equal(a.theta, b.theta) and np.array_equal(a.h, b.h)
    assert not np.array_equal(a.h, c.h)
    assert a.info["shard_sizes"] == [10_000, 10_000] and a.info["round_trips"] < 40
    ref = simulate_particles(model, n, gaussian_init, 1.0, 0.05, seed=3, h_box=GP.h_box)
    for ens in (a, c):
        se = np.hypot(ens.standard_errors()["mean_h"][-1], ref.standard_errors()["mean_h"][-1])
        assert abs(ens.mean_h[-1] - ref.mean_h[-1]) < 5 * se
        assert abs(ens.mean_theta[-1] - ref.mean_theta[-1]) < 5 * se * 2


@pytest.mark.parametrize("rule", [pp.BoltzmannJump(1.0, 2.0), pp.Truncation(1.0, 0.2),
                                  pp.Truncation(2.0, 0.5, copy="h")])
def test_sharded_jump_rules_agree_with_unsharded(rule):
    base = GP.model()
    model = pp.Model(base.loss, base.fitness, temperature=GP.T, eps=GP.eps, selection=rule,
                     mutation=pp.GaussianJump(0.05), quadratic=(GP.K, lambda h: GP.a * h))
    n = 20_000
    runs = [simulate_particles(model, n, gaussian_init, 0.3, 0.05, seed=s, h_box=GP.h_box,
                               **kw) for s, kw in ((7, {}), (8, dict(shards=3, client="inline")))]
    se = np.hypot(*(r.standard_errors()["mean_h"][-1] for r in runs))
    # copies correlate the agents, so the independent-agent error is doubled
    assert abs(runs[0].mean_h[-1] - runs[1].mean_h[-1]) < 10 * se
    assert abs(runs[0].mean_theta[-1] - runs[1].mean_theta[-1]) < 10 * se * 3


def test_rebalancing_keeps_shards_near_their_share():
    """Strong selection moves offspring between shards; the client rebalances when a shard is
    more than 2 % off, and exactly at saved times."""
    base = GP.model()
    model = pp.Model(base.loss, base.fitness, temperature=GP.T, eps=GP.eps,
                     selection=pp.Replicator(40.0), mutation=pp.Diffusion(0.01),
                     quadratic=(GP.K, lambda h: GP.a * h))
    ens = simulate_particles(model, 9000, gaussian_init, 0.5, 0.05, seed=1, shards=3,
                             client="inline", h_box=GP.h_box, summary_every=1)
    assert ens.info["shard_sizes"] == [3000, 3000, 3000]
    assert ens.info["agents_rebalanced"] > 0
    assert np.all(np.isfinite(ens.summaries["mean_h"]))


def test_rebalancing_carries_pending_weights_of_adaptive_resampling():
    """With ess_threshold < 1 the log-weights of a pending selection live on the shards;
    agents moved by rebalancing take theirs along, and the run agrees with an unsharded one
    (copies correlate the agents, so the independent-agent error is taken ten times)."""
    base = GP.model()
    model = pp.Model(base.loss, base.fitness, temperature=GP.T, eps=GP.eps,
                     selection=pp.Replicator(5.0), mutation=pp.Diffusion(0.01),
                     quadratic=(GP.K, lambda h: GP.a * h))
    kw = dict(h_box=GP.h_box, summary_every=1, ess_threshold=0.5)
    ens = simulate_particles(model, 9000, gaussian_init, 0.5, 0.05, seed=1, shards=3,
                             client="inline", **kw)
    ref = simulate_particles(model, 9000, gaussian_init, 0.5, 0.05, seed=2, **kw)
    assert ens.info["agents_rebalanced"] > 0
    se = np.hypot(ens.standard_errors()["mean_h"][-1], ref.standard_errors()["mean_h"][-1])
    assert abs(ens.mean_h[-1] - ref.mean_h[-1]) < 10 * se


def test_an_error_inside_a_sharded_run_surfaces_as_itself(tmp_path):
    """A failing run closes its (checkpoint) writer and re-raises the user's error."""
    base = GP.model()
    calls = {"n": 0}

    def fitness(theta, h):
        calls["n"] += 1
        if calls["n"] > 6:
            raise RuntimeError("boom in the user's fitness")
        return base.fitness(theta, h)
    model = pp.Model(base.loss, fitness, temperature=GP.T, eps=GP.eps,
                     selection=pp.Replicator(1.0), quadratic=(GP.K, lambda h: GP.a * h))
    for ckpt in (None, tmp_path / "ckpt"):
        calls["n"] = 0
        with pytest.raises(RuntimeError, match="boom in the user's fitness"):
            simulate_particles(model, 2000, gaussian_init, 1.0, 0.05, seed=1, shards=2,
                               client="inline", h_box=GP.h_box, checkpoint=ckpt)


def test_checkpoint_and_resume_bit_for_bit(tmp_path):
    model = GP.model()
    kw = dict(seed=3, shards=2, client="inline", h_box=GP.h_box, checkpoint_every=10)
    full = simulate_particles(model, 6000, gaussian_init, 1.0, 0.05, checkpoint=tmp_path / "a",
                              **kw)
    half = simulate_particles(model, 6000, gaussian_init, 0.5, 0.05, checkpoint=tmp_path / "b",
                              **kw)
    assert sorted(p.name for p in (tmp_path / "b").iterdir()) == [
        "manifest.json", "shard-0000.h5", "shard-0001.h5"]
    stored = pp.load(tmp_path / "b" / "shard-0001.h5")     # each file is a particle file
    assert stored.n == half.info["shard_sizes"][1] and float(stored.t[-1]) == 0.5
    rest = simulate_particles(model, None, None, 1.0, None, resume=tmp_path / "b",
                              client="inline")
    assert rest.info["resumed_at"] == 0.5
    assert np.array_equal(rest.theta[-1], full.theta[-1]) and np.array_equal(rest.h[-1],
                                                                              full.h[-1])


@pytest.mark.slow
def test_resume_a_sharded_checkpoint_in_local_processes(tmp_path):
    """pp.resume continues a checkpoint directory with one local process per shard (the
    preset model is rebuilt from the manifest), bit for bit."""
    model = GP.model()
    kw = dict(seed=3, shards=2, h_box=GP.h_box, checkpoint_every=10)
    full = simulate_particles(model, 6000, gaussian_init, 1.0, 0.05, client="inline",
                              checkpoint=tmp_path / "full", **kw)
    simulate_particles(model, 6000, gaussian_init, 0.5, 0.05, checkpoint=tmp_path / "b", **kw)
    again = pp.resume(tmp_path / "b", 1.0)
    assert again.info["backend"] == "processes"
    assert np.array_equal(again.h[-1], full.h[-1])


def test_sharded_bad_input_raises_clear_errors(tmp_path):
    model = GP.model()
    init = (np.zeros(10), np.zeros(10))
    with pytest.raises(ValueError, match="shards must be a positive integer"):
        simulate_particles(model, 10, init, 0.1, 0.05, shards=0, client="inline")
    with pytest.raises(ValueError, match="more than the 10 agents"):
        simulate_particles(model, 10, init, 0.1, 0.05, shards=11, client="inline")
    with pytest.raises(ValueError, match="client='bogus' is not known"):
        simulate_particles(model, 10, init, 0.1, 0.05, shards=2, client="bogus")
    with pytest.raises(ValueError, match="trackers are not available in sharded runs"):
        simulate_particles(model, 10, init, 0.1, 0.05, shards=2, client="inline",
                           trackers=[lambda t, s: False])
    with pytest.raises(NotImplementedError, match="pairwise"):
        simulate_particles(model, 10, init, 0.1, 0.05, shards=2, client="inline",
                           replicator="pairwise")
    with pytest.raises(ValueError, match="fitness_mode='window'"):
        simulate_particles(model, 10, init, 0.1, 0.05, shards=2, client="inline",
                           fitness_mode="window", window=0.1)
    with pytest.raises(FileNotFoundError, match="not a sharded checkpoint"):
        simulate_particles(model, None, None, 0.1, None, resume=tmp_path, client="inline")
    pbt = pp.Model(model.loss, model.fitness, temperature=GP.T, eps=GP.eps,
                   selection=pp.PBT(0.1, 0.5), quadratic=(GP.K, lambda h: GP.a * h))
    with pytest.raises(ValueError, match=r"PBT\(fraction=0.5\) with n=3 .* overlap"):
        simulate_particles(pbt, 3, (np.zeros(3), np.zeros(3)), 0.2, 0.05, shards=2,
                           client="inline")


@pytest.mark.parametrize("processes", [False, pytest.param(True, marks=pytest.mark.slow)])
def test_sharded_on_a_dask_cluster_matches_inline(processes, monkeypatch):
    """Two dask workers (one thread each) run the same shards as the inline backend, bit for
    bit, through direct calls or (when those fail at start) the actor handles, and an error in
    a shard surfaces as itself. (Worker processes take 10-20 s to start on a loaded machine, so the default suite
    runs the workers as threads; ``-m slow`` runs them as processes.)"""
    distributed = pytest.importorskip("distributed", reason="dask.distributed is not installed")
    model = GP.model()
    kw = dict(seed=11, shards=2, h_box=GP.h_box, summary_every=5)
    inline = simulate_particles(model, 20_000, gaussian_init, 0.5, 0.05, client="inline", **kw)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=processes,
                                  dashboard_address=":0") as cluster, \
            distributed.Client(cluster) as client:
        ens = simulate_particles(model, 20_000, gaussian_init, 0.5, 0.05, client=client, **kw)

        def fitness(theta, h):                 # fails on the workers, not in the first call
            if theta.shape[0] > 5000:
                raise RuntimeError("boom on a worker")
            return model.fitness(theta, h)
        bad = pp.Model(model.loss, fitness, temperature=GP.T, eps=GP.eps,
                       selection=pp.Replicator(1.0), quadratic=(GP.K, lambda h: GP.a * h))
        with pytest.raises(RuntimeError, match="boom on a worker"):
            simulate_particles(bad, 20_000, gaussian_init, 0.5, 0.05, client=client, **kw)

        async def no_direct_calls(self, batches):
            raise RuntimeError("the workers have no actor_execute handler")
        from pde_popdyn.particles.backends import DaskBackend
        monkeypatch.setattr(DaskBackend, "_run_direct", no_direct_calls)
        via_actors = simulate_particles(model, 20_000, gaussian_init, 0.5, 0.05, client=client,
                                        **kw)
    assert np.array_equal(via_actors.h, inline.h)        # the actor handles' path, checked
    assert ens.info["backend"] == "dask"
    assert np.array_equal(ens.theta, inline.theta) and np.array_equal(ens.h, inline.h)
    np.testing.assert_array_equal(ens.summaries["mean_h"], inline.summaries["mean_h"])


# --------------------------------------------------------------------------------------------
# PBT's generation map over shards
# --------------------------------------------------------------------------------------------
def test_sharded_pbt_generation_replaces_exactly_the_global_bottom():
    """One generation on three uneven shards, fitness F = h, no explore: the ⌈qN⌉ lowest h
    of the whole population (and only they) become copies of agents among the ⌈qN⌉ highest."""
    rule = pp.PBT(0.5, fraction=0.2)
    model = pp.Model(lambda th, h: 0.5 * (th - h) ** 2, lambda th, h: h + 0.0 * th,
                     temperature=0.1, eps=0.1, selection=rule, quadratic=(1.0, lambda h: h))
    rng = np.random.default_rng(5)
    sizes = [70, 13, 117]
    hs = [rng.permutation(np.arange(s) + 1000.0 * r) * 1e-3 for r, s in enumerate(sizes)]
    hs = [np.round(h + rng.normal(0, 1, h.size), 6) for h in hs]
    specs = [{"rank": s, "model": model, "target": h.size, "seed_seq": s,
              "theta": np.zeros(h.size), "h": h.copy(), "opts": _opts()}
             for s, h in enumerate(hs)]
    be = InlineBackend(specs)
    n = sum(sizes)
    ctx = ShardContext(be, n, sizes, np.random.default_rng(1), {})
    rule.sharded_generation(ctx)
    ctx.flush()
    before = np.concatenate(hs)
    after = np.concatenate([sh.P.h for sh in be.shards])
    k = rule.n_selected(n)
    order = np.argsort(before, kind="stable")
    bottom, top = order[:k], order[n - k:]
    keep = np.setdiff1d(np.arange(n), bottom)
    assert np.array_equal(after[keep], before[keep])            # the others are untouched
    assert np.isin(after[bottom], before[top]).all()             # copies of top agents
    assert len(np.unique(after[bottom])) > k // 3                # donors drawn, not one agent


@pytest.mark.parametrize("copy", ["both", "h"])
def test_sharded_pbt_agrees_with_unsharded(copy):
    base = GP.model()
    model = pp.Model(base.loss, base.fitness, temperature=GP.T, eps=GP.eps,
                     selection=pp.PBT(0.1, 0.2, copy=copy), mutation=pp.GaussianJump(0.05),
                     quadratic=(GP.K, lambda h: GP.a * h))
    n = 20_000
    runs = [simulate_particles(model, n, gaussian_init, 0.5, 0.05, seed=s, h_box=GP.h_box,
                               **kw) for s, kw in ((7, {}), (8, dict(shards=3, client="inline")))]
    moved = runs[0].mean_h[-1] - runs[0].mean_h[0]
    se = np.hypot(*(r.standard_errors()["mean_h"][-1] for r in runs))
    assert moved > 20 * se                                       # selection did act
    assert abs(runs[0].mean_h[-1] - runs[1].mean_h[-1]) < 10 * se
    assert abs(runs[0].mean_theta[-1] - runs[1].mean_theta[-1]) < 10 * se * 3
