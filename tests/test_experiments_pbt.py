"""The generic PBT driver: ranking, exploit, explore, fitness windows, genealogy. No
networks, no gymnasium: a population here is a plain array of weights."""

import math

import numpy as np
import pytest
from scipy import stats

from pde_popdyn.experiments.pbt import (PBT, FitnessWindow, Hyperparameter, HyperSpace,
                                        n_truncated, rank_agents, roots, surviving_lineages,
                                        truncation)


class ArrayPopulation:
    """Agents whose 'weights' are rows of an array; memory is a per-agent counter."""

    def __init__(self, n, rng):
        self.w = rng.standard_normal((n, 3))
        self.mem = np.arange(n, dtype=float)
        self.h = None

    def copy_agents(self, dst, src):
        self.w[dst] = self.w[src]

    def clear_memory(self, idx):
        self.mem[idx] = -1

    def copy_memory(self, dst, src):
        self.mem[dst] = self.mem[src]

    def set_hyperparameters(self, **cols):
        self.h = cols


def space():
    return HyperSpace((Hyperparameter("lr", 1e-5, 1e-2, scale="log10"),
                       Hyperparameter("eps_decay", 500.0, 5000.0),
                       Hyperparameter("batch", 32.0, 128.0, integer=True,
                                      prior=(32.0, 64.0, 128.0))))


def test_truncation_takes_the_ceil_q_n_lowest_and_donors_from_the_top():
    rng = np.random.default_rng(0)
    for n in (10, 11, 32, 500):
        f = rng.standard_normal(n)
        bottom, donors = truncation(f, 0.2, rng)
        nq = math.ceil(0.2 * n)
        assert len(bottom) == len(donors) == nq == n_truncated(n, 0.2)
        order = np.argsort(f)
        assert set(bottom) == set(order[:nq])
        assert set(donors) <= set(order[-nq:])
    # donors are uniform over the top set
    f = np.arange(100.0)
    counts = np.zeros(100)
    for _ in range(400):
        _, d = truncation(f, 0.2, rng)
        np.add.at(counts, d, 1)
    assert counts[:80].sum() == 0
    assert stats.chisquare(counts[80:]).pvalue > 1e-3


def test_ranking_puts_agents_without_a_score_lowest_and_breaks_ties_at_random():
    rng = np.random.default_rng(1)
    f = np.array([5.0, np.nan, 5.0, 1.0, 5.0])
    firsts = set()
    for _ in range(50):
        order = rank_agents(f, rng)
        assert order[0] == 1 and order[1] == 3
        firsts.add(order[-1])
    assert firsts == {0, 2, 4}                        # every tied agent can come out on top
    with pytest.raises(ValueError, match="overlap"):
        n_truncated(3, 0.5)


def test_unit_map_round_trip_clipping_and_rounding():
    sp = space()
    rng = np.random.default_rng(2)
    h = sp.sample(rng, 1000)
    assert h[:, 0].min() >= 1e-5 and h[:, 0].max() <= 1e-2
    assert set(h[:, 2]) == {32.0, 64.0, 128.0}
    # log-uniform: log10 lr uniform on [-5, -2]
    assert stats.kstest(np.log10(h[:, 0]), "uniform", args=(-5, 3)).pvalue > 1e-3
    np.testing.assert_allclose(sp.from_unit(sp.to_unit(h)), h, rtol=1e-12)
    np.testing.assert_allclose(sp.to_unit(np.array([[1e-5, 500.0, 32.0],
                                                    [1e-2, 5000.0, 128.0]])),
                               [[-1, -1, -1], [1, 1, 1]], atol=1e-12)
    # explore: N(0, 0.1²) in unit coordinates away from the edges, clipped at them
    mid = np.tile([[10 ** -3.5, 2750.0, 80.0]], (20000, 1))
    u = sp.to_unit(sp.explore(mid, rng, 0.1))
    assert abs(u[:, 0].mean()) < 0.003 and abs(u[:, 0].std() - 0.1) < 0.003
    assert abs(u[:, 1].std() - 0.1) < 0.003
    b = sp.explore(mid, rng, 0.1)[:, 2]
    assert np.all(b == np.round(b)) and 55 < b.min() and b.max() < 105
    assert abs(b.std() - 0.1 * 48) < 0.1
    edge = np.tile([[1e-2, 5000.0, 128.0]], (10000, 1))
    e = sp.explore(edge, rng, 0.1)
    assert e[:, 0].max() <= 1e-2 and np.mean(e[:, 0] == 1e-2) == pytest.approx(0.5, abs=0.03)


def test_fitness_window_is_the_mean_of_the_last_k_scores():
    rng = np.random.default_rng(3)
    n, kmax = 6, 5
    w = FitnessWindow(n, kmax)
    hist = [[] for _ in range(n)]
    assert np.all(np.isnan(w.mean(1)))
    for _ in range(30):
        mask = rng.random(n) < 0.5
        vals = rng.standard_normal(n)
        w.push(vals, mask)
        for i in np.flatnonzero(mask):
            hist[i].append(vals[i])
        for k in (1, 2, 5):
            want = [np.mean(h[-k:]) if h else np.nan for h in hist]
            np.testing.assert_allclose(w.mean(k), want, equal_nan=True)
    w.clear([0])
    hist[0] = []
    assert np.isnan(w.mean(5)[0])
    w.copy([1], [2])
    np.testing.assert_allclose(w.mean(5)[1], np.mean(hist[2][-5:]))
    with pytest.raises(ValueError, match="k=6"):
        w.mean(6)


def test_pbt_step_copies_perturbs_resets_and_records_the_genealogy():
    rng = np.random.default_rng(4)
    sp = space()
    n = 40
    pop = ArrayPopulation(n, rng)
    h = sp.sample(rng, n)
    f = rng.standard_normal(n)
    win = FitnessWindow(n, 2)
    win.push(f)
    pbt = PBT(sp, fraction=0.2, sigma=0.1, memory="reset", rng=rng)
    w0 = pop.w.copy()
    rec = pbt.step(pop, h, f, win)
    nq = 8
    assert len(rec.bottom) == nq and set(rec.bottom) == set(np.argsort(f)[:nq])
    np.testing.assert_array_equal(pop.w[rec.bottom], w0[rec.donors])       # weights copied
    keep = np.setdiff1d(np.arange(n), rec.bottom)
    np.testing.assert_array_equal(pop.w[keep], w0[keep])
    np.testing.assert_array_equal(rec.h_after[keep], h[keep])              # only copiers move
    assert np.all(rec.h_after[rec.bottom, 0] != h[rec.donors, 0])
    du = sp.to_unit(rec.h_after[rec.bottom])[:, :2] - sp.to_unit(h[rec.donors])[:, :2]
    assert np.all(np.abs(du) < 0.6)                                        # near the donor
    assert np.all(pop.mem[rec.bottom] == -1) and np.all(np.isnan(win.mean(2)[rec.bottom]))
    np.testing.assert_array_equal(pop.h["lr"], rec.h_after[:, 0])
    assert np.array_equal(rec.parent[rec.bottom], rec.donors)
    assert np.array_equal(pbt.genealogy[0], rec.parent)
    # memory="inherit": the copier takes the donor's fitness history
    pbt2 = PBT(sp, memory="inherit", rng=np.random.default_rng(5))
    win2 = FitnessWindow(n, 2)
    win2.push(f)
    rec2 = pbt2.step(pop, h, f, win2)
    np.testing.assert_array_equal(win2.mean(1)[rec2.bottom], f[rec2.donors])
    with pytest.raises(ValueError, match="fitness has shape"):
        pbt.step(pop, h, f[:5])


def test_one_generation_on_a_gaussian_shifts_the_mean_by_the_breeders_equation():
    """Rank on G = h, copy, no mutation: the new mean is m + 2 s φ(Φ⁻¹(q)) (0.5599 s at
    q = 0.2), the truncation-selection closed form."""
    rng = np.random.default_rng(6)
    n, m, s = 200_000, 0.0, 1.0
    sp = HyperSpace((Hyperparameter("x", -50.0, 50.0),))
    h = rng.normal(m, s, (n, 1))
    pop = ArrayPopulation(n, rng)
    rec = PBT(sp, fraction=0.2, sigma=0.0, rng=rng).step(pop, h, h[:, 0])
    shift = rec.h_after.mean() - m
    z = stats.norm.ppf(0.2)
    assert 2 * s * stats.norm.pdf(z) == pytest.approx(0.5599, abs=1e-4)
    # the sampling spread of the shift is ~ s·sqrt(0.2·...)/sqrt(n) ≈ 0.003
    assert shift == pytest.approx(2 * s * stats.norm.pdf(z), abs=0.01)


def test_pbt_moves_a_noisy_population_towards_the_optimum_and_longer_windows_help():
    """Agents with fitness −(log10 lr + 3.5)² + noise: PBT moves the learning rates towards
    10^-3.5, and averaging k noisy scores does so faster (less selection noise)."""
    sp = HyperSpace((Hyperparameter("lr", 1e-5, 1e-2, scale="log10"),))
    dist = {}
    for k in (1, 5):
        d = []
        for seed in range(4):
            rng = np.random.default_rng(100 + seed)
            n = 400
            h = sp.sample(rng, n)
            pop = ArrayPopulation(n, rng)
            pbt = PBT(sp, rng=rng)
            win = FitnessWindow(n, 5)
            for g in range(8):
                x = np.log10(h[:, 0])
                for _ in range(5):
                    win.push(-(x + 3.5) ** 2 + 1.5 * rng.standard_normal(n))
                h = pbt.step(pop, h, win.mean(k), win).h_after
            d.append(np.mean(np.abs(np.log10(h[:, 0]) + 3.5)))
        dist[k] = np.mean(d)
    assert dist[5] < 0.35 < 0.75 < 1.0          # start: E|U(-5,-2) + 3.5| = 0.75
    assert dist[5] < dist[1]


def test_genealogy_roots_and_surviving_lineages():
    parents = [np.array([0, 0, 2, 2]), np.array([1, 1, 2, 3])]
    r = roots(parents)
    np.testing.assert_array_equal(r, [[0, 1, 2, 3], [0, 0, 2, 2], [0, 0, 2, 2]])
    np.testing.assert_array_equal(surviving_lineages(parents), [4, 2, 2])


def test_hyperparameter_validation_names_the_problem():
    with pytest.raises(ValueError, match="log10 axis needs low > 0"):
        Hyperparameter("lr", 0.0, 1.0, scale="log10")
    with pytest.raises(ValueError, match="low < high"):
        Hyperparameter("x", 1.0, 1.0)
    with pytest.raises(ValueError, match="prior values"):
        Hyperparameter("b", 32, 128, prior=(16, 32))
    with pytest.raises(ValueError, match="distinct"):
        HyperSpace((Hyperparameter("x", 0, 1), Hyperparameter("x", 0, 2)))
    with pytest.raises(ValueError, match=r"needs \(N, 3\)"):
        space().to_unit(np.zeros((4, 2)))
    with pytest.raises(ValueError, match="memory"):
        PBT(space(), memory="forget")
