"""Supervised PBT on numpy MLPs (pde_popdyn.experiments.supervised) and the reduced PBT map it
is compared with (pde_popdyn.experiments.continuum)."""

import json
import math

import numpy as np
import pytest
from scipy.stats import norm

import pde_popdyn as pp
from pde_popdyn.experiments import continuum as cont

pytest.importorskip("sklearn", reason="the supervised experiment uses scikit-learn's datasets")

from pde_popdyn.experiments import supervised as sv  # noqa: E402


@pytest.fixture(scope="module")
def data():
    return sv.load_dataset("digits", 120, 200, dtype=np.float64)


def _loss_one(pop, i, data, idx, decay):
    """CE on the minibatch idx plus (λ/2)|W|² of agent i, in float64, written out plainly."""
    X, y = data.X_train[idx], data.y_train[idx]
    A = np.tanh(X @ pop.W1[i] + pop.b1[i])
    Z = A @ pop.W2[i] + pop.b2[i]
    logz = np.log(np.exp(Z - Z.max(1, keepdims=True)).sum(1)) + Z.max(1)
    ce = (logz - Z[np.arange(len(y)), y]).mean()
    return ce + 0.5 * decay * ((pop.W1[i] ** 2).sum() + (pop.W2[i] ** 2).sum())


# -- the network population ----------------------------------------------------------------
def test_sgd_step_is_a_gradient_step_on_the_regularised_minibatch_loss(data):
    rng = np.random.default_rng(0)
    pop = sv.MLPPopulation.init(3, data.X_train.shape[1], 5, data.n_classes, rng,
                                dtype=np.float64)
    before = sv.MLPPopulation(*(a.copy() for a in pop.arrays()))
    lr, decay, batch = np.array([0.1, 0.2, 0.05]), np.array([1e-2, 0.0, 0.3]), 8
    idx = np.random.default_rng(42).integers(0, data.y_train.size, (3, batch))
    pop.sgd(data, lr, decay, 1, batch, np.random.default_rng(42))   # draws the same idx
    for i in range(3):
        # central differences of the loss along a random direction of all parameters
        for a_new, a_old in zip(pop.arrays(), before.arrays()):
            step = (a_old[i] - a_new[i]) / lr[i]                  # the gradient SGD used
            d = np.random.default_rng(i).standard_normal(a_old[i].shape)
            e = 1e-6
            a_old[i] += e * d
            up = _loss_one(before, i, data, idx[i], decay[i])
            a_old[i] -= 2 * e * d
            dn = _loss_one(before, i, data, idx[i], decay[i])
            a_old[i] += e * d
            assert (step * d).sum() == pytest.approx((up - dn) / (2 * e), rel=1e-6, abs=1e-9)


def test_agents_are_independent_in_the_batch(data):
    """Changing one agent's weights changes no other agent's trajectory."""
    def train(perturb):
        rng = np.random.default_rng(1)
        pop = sv.MLPPopulation.init(4, data.X_train.shape[1], 6, data.n_classes, rng)
        if perturb:
            pop.W1[2] += 0.5
        pop.sgd(data, np.full(4, 0.2), np.full(4, 1e-3), 20, 8, np.random.default_rng(2))
        return pop.evaluate(data.X_val, data.y_val)[0]

    a, b = train(False), train(True)
    np.testing.assert_array_equal(np.delete(a, 2), np.delete(b, 2))
    assert a[2] != b[2]


def test_evaluate_matches_a_per_agent_computation(data):
    pop = sv.MLPPopulation.init(3, data.X_train.shape[1], 7, data.n_classes,
                                np.random.default_rng(3), dtype=np.float64)
    ce, acc = pop.evaluate(data.X_val, data.y_val)
    for i in range(3):
        A = np.tanh(data.X_val @ pop.W1[i] + pop.b1[i])
        Z = A @ pop.W2[i] + pop.b2[i]
        P = np.exp(Z - Z.max(1, keepdims=True))
        P /= P.sum(1, keepdims=True)
        assert ce[i] == pytest.approx(-np.log(P[np.arange(data.y_val.size), data.y_val]).mean(),
                                      rel=1e-12)
        assert acc[i] == pytest.approx((P.argmax(1) == data.y_val).mean())


# -- PBT on the agents -----------------------------------------------------------------------
def test_pbt_truncation_copies_bottom_from_top_and_explores_within_the_box():
    setup = sv.Setup(n_train=120, n_val=200, hidden=6, interval=40, eval_every=20, window=1,
                     box=(-4.0, -1.0), explore_std=0.3)
    rec = sv.run_pbt(setup, 10, 3, 2, seed=5, keep_params=True)
    k = math.ceil(0.2 * 10)
    assert rec.h.shape == (2, 4, 10) and rec.fitness.shape == (2, 3, 10)
    assert np.all((rec.h >= -4.0) & (rec.h <= -1.0))
    # window=1: the ranking fitness is minus the validation loss at the ready time
    np.testing.assert_allclose(rec.fitness, -rec.val_loss)
    for s in range(2):
        for g in range(3):
            order = np.argsort(rec.fitness[s, g])
            par = rec.parent[s, g]
            replaced = np.nonzero(par != np.arange(10))[0]
            assert sorted(replaced) == sorted(order[:k])                  # the k lowest
            assert set(par[replaced]) <= set(order[-k:])                  # from the k highest
            kept = np.setdiff1d(np.arange(10), replaced)
            np.testing.assert_array_equal(rec.h[s, g + 1, kept], rec.h[s, g, kept])
            jump = rec.h[s, g + 1, replaced] - rec.h[s, g, par[replaced]]
            assert np.all(np.abs(jump) < 6 * 0.3)
    # copied weights: a replaced agent of the last generation holds its donor's parameters
    # plus exactly nothing else (no training happened after the last copy)
    par = rec.parent[0, -1]
    j = int(np.nonzero(par != np.arange(10))[0][0])
    np.testing.assert_array_equal(rec.params[0, j], rec.params[0, par[j]])


def test_pbt_and_setup_reject_bad_input():
    with pytest.raises(ValueError, match="fraction"):
        sv.Setup(fraction=0.7)
    with pytest.raises(ValueError, match="multiple of eval_every"):
        sv.Setup(interval=100, eval_every=30)
    with pytest.raises(ValueError, match="box"):
        sv.Setup(box=(0.0, -1.0))
    with pytest.raises(ValueError, match="dataset"):
        sv.load_dataset("mnist")
    with pytest.raises(ValueError, match="h0 must lie in the box"):
        sv.run_pbt(sv.Setup(interval=20, eval_every=20), 10, 1, 1, h0=np.full(10, 3.0))
    with pytest.raises(ValueError, match="overlap"):
        sv.run_pbt(sv.Setup(interval=20, eval_every=20, fraction=0.5), 3, 1, 1)
    with pytest.raises(ValueError, match="h0 must have shape"):
        sv.run_pbt(sv.Setup(interval=20, eval_every=20), 10, 1, 2, h0=np.full(7, -2.0))


def test_fixed_h_estimate_averages_after_burn_in_and_over_seeds():
    setup = sv.Setup(n_train=120, n_val=200, hidden=6, interval=40, eval_every=20)
    runs = sv.fixed_h_runs(setup, [-4.0, -2.0, 0.0], 3, 200, seed=1)
    assert runs.fitness.shape == (3, 3, 10)
    est = sv.estimate_fitness(runs, 100)
    np.testing.assert_allclose(est.fbar, runs.fitness[:, :, 5:].mean(axis=(1, 2)))
    np.testing.assert_allclose(est.stderr, runs.fitness[:, :, 5:].mean(2).std(1, ddof=1)
                               / math.sqrt(3))
    assert est.windowed.shape == (3, 3 * 2) and est.by_time.shape == (5, 3)
    np.testing.assert_array_equal(est.block_steps, [40, 80, 120, 160, 200])
    # a weight decay of 1 collapses the network: the worst fitness of the three
    assert est.fbar[2] < est.fbar[:2].min()
    with pytest.raises(ValueError, match="burn_in"):
        sv.estimate_fitness(runs, 190)


# -- the reduced map -------------------------------------------------------------------------
def _gauss_grid(m=0.0, s=0.5):
    grid = pp.Grid(theta=(-1.0, 1.0, 3), h=(-6.0, 6.0, 2400))
    return grid, np.exp(-0.5 * ((grid.h - m) / s) ** 2)


def test_reduced_map_on_a_gaussian_is_the_breeders_equation():
    """One generation ranked by G = h moves the mean by 2 s φ(Φ⁻¹(q)) (0.5599 s for q = 0.2);
    the explore kernel adds σ² to the variance of the copies and leaves the mean."""
    grid, rho0 = _gauss_grid(0.3, 0.5)
    p = cont.predict(grid.h, grid, rho0, 1.0, 1, fraction=0.2, explore_std=0.05)
    shift = 2 * 0.5 * norm.pdf(norm.ppf(0.2))
    assert p.mean[1, 0] - p.mean[0, 0] == pytest.approx(shift, rel=1e-4)
    assert (p.rho[1] * grid.dh).sum() == pytest.approx(1.0, abs=1e-13)
    assert p.rho.min() >= 0.0
    # second moment in units of s: ∫_a^∞ x²φ + ∫_{-a}^∞ x²φ = (1 − q + aφ(a)) + (q − aφ(a)) = 1,
    # a = Φ⁻¹(q); the copies add σ² on mass q; so Var = s²(1 − 4φ(a)²) + qσ²
    var = 0.25 * (1 - 4 * norm.pdf(norm.ppf(0.2)) ** 2) + 0.2 * 0.05 ** 2
    assert p.var[1, 0] == pytest.approx(var, rel=2e-3)


def test_ranking_on_the_noisy_fitness_tends_to_the_effective_map_and_to_no_selection():
    grid, rho0 = _gauss_grid(0.0, 0.5)
    eff = cont.predict(grid.h, grid, rho0, 1.0, 2, explore_std=0.05)
    sharp = cont.predict(grid.h, grid, rho0, 1.0, 2, explore_std=0.05, rank_on="instantaneous",
                         fitness_std=np.full(grid.n_h, 1e-6))
    np.testing.assert_allclose(sharp.mean, eff.mean, atol=1e-5)
    blind = cont.predict(grid.h, grid, rho0, 1.0, 2, explore_std=0.05, rank_on="instantaneous",
                         fitness_std=np.full(grid.n_h, 1e6))
    assert abs(blind.mean[-1, 0]) < 1e-4                 # the ranking is a coin toss
    # a moderate noise selects less than F̄ does, but selects
    mid = cont.predict(grid.h, grid, rho0, 1.0, 2, explore_std=0.05, rank_on="instantaneous",
                       fitness_std=np.full(grid.n_h, 0.5))
    assert 0.1 * eff.mean[-1, 0] < mid.mean[-1, 0] < 0.9 * eff.mean[-1, 0]
    assert (mid.rho[-1] * grid.dh).sum() == pytest.approx(1.0, abs=1e-12)


def test_time_dependent_fitness_and_bad_input():
    grid, rho0 = _gauss_grid()
    rising, falling = grid.h, -grid.h
    p = cont.predict(np.stack([rising, falling]), grid, rho0, 5.0, 2)
    assert p.mean[1, 0] > 0.1 and abs(p.mean[2, 0] - p.mean[1, 0]) > 0.1 and \
        p.mean[2, 0] < p.mean[1, 0]
    np.testing.assert_array_equal(p.t, [0.0, 5.0, 10.0])
    with pytest.raises(ValueError, match="fbar_on_grid"):
        cont.predict(np.ones(7), grid, rho0, 1.0, 1)
    with pytest.raises(ValueError, match="rank_on"):
        cont.predict(rising, grid, rho0, 1.0, 1, rank_on="windowed")
    with pytest.raises(ValueError, match="fitness_std"):
        cont.predict(rising, grid, rho0, 1.0, 1, rank_on="instantaneous")
    with pytest.raises(ValueError, match="rho0"):
        cont.predict(rising, grid, -rho0, 1.0, 1)
    with pytest.raises(ValueError, match="fraction"):
        cont.predict(rising, grid, rho0, 1.0, 1, fraction=0.8)
    with pytest.raises(TypeError, match="grid must be a pp.Grid"):
        cont.predict(rising, grid.h, rho0, 1.0, 1)


def test_idealised_population_converges_to_the_map_as_n_grows():
    grid, _ = _gauss_grid()
    box = (-6.0, 6.0)
    rho0 = np.exp(-0.5 * (grid.h / 0.5) ** 2)
    p = cont.predict(grid.h, grid, rho0, 1.0, 3, explore_std=0.1)
    h0 = np.random.default_rng(0).normal(0.0, 0.5, (200, 2000))
    h = cont.surrogate_pbt(lambda x: x, h0, 3, box, explore_std=0.1, seed=1)
    m = h.mean(2)
    se = m.std(0, ddof=1) / math.sqrt(m.shape[0])
    # the finite-N bias is O(1/N) (quantiles of 2000 agents), far below a tenth of the shift
    assert np.all(np.abs(m.mean(0) - p.mean[:, 0]) < 4 * se + 0.01 * (p.mean[-1, 0]))
    assert h.shape == (200, 4, 2000) and np.all(np.abs(h) <= 6.0)


# -- the study -------------------------------------------------------------------------------
def test_quick_study_writes_json_and_figure(tmp_path):
    from benchmarks import study_supervised as st

    out = st.run(True, tmp_path)
    assert out["passed"] in (True, False) and "E[h]" in out["headline"]
    data = json.loads((tmp_path / "supervised.json").read_text())
    main = data["main"]
    G = main["generations"]
    assert len(main["population"]["mean_h"]) == len(main["prediction"]["mean_h"]) == G + 1
    assert len(main["population"]["mean_h_seeds"]) >= 3
    rho = np.asarray(main["prediction"]["rho"])
    np.testing.assert_allclose(rho.sum(1) * (5.0 / st.GRID_CELLS), 1.0, atol=1e-12)
    assert (tmp_path / "supervised.png").stat().st_size > 10_000
