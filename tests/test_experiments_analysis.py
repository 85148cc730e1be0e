"""Analyses of population runs (selection noise, PCA, F̄ from fixed-h agents, comparison
with a prediction), the recorder's agent-field switch, and that gymnasium stays optional."""

import subprocess
import sys

import numpy as np
import pytest

from pde_popdyn.experiments import analysis as an
from pde_popdyn.experiments import record


def test_reversal_fraction_counts_only_certain_reversals():
    f = np.array([1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0])
    bottom = np.array([0, 1])                        # q = 0.2 of 10: the two lowest
    assert an.reversal_fraction(bottom, f, 0.2) == 0.0
    other = np.array([9.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 1.0, 10.0])
    assert an.reversal_fraction(bottom, other, 0.2) == 0.5      # agent 0 would be kept
    tied = np.array([1.0, 3.0, 3.0, 3.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0])
    assert an.reversal_fraction(np.array([0, 2]), tied, 0.2) == 0.0   # a tie at the cut
    nan = np.array([np.nan, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0])
    assert an.reversal_fraction(bottom, nan, 0.2) == 0.0        # no score ranks lowest


def test_spearman_skips_missing_pairs():
    x = np.array([1.0, 2.0, np.nan, 4.0, 5.0])
    y = np.array([2.0, 4.0, 1.0, 8.0, 10.0])
    assert an.spearman(x, y) == pytest.approx(1.0)
    assert np.isnan(an.spearman([1.0, 1.0, 1.0], [1.0, 2.0, 3.0]))


def test_pca_matches_the_exact_svd():
    rng = np.random.default_rng(0)
    Z = rng.standard_normal((300, 2)) * [5.0, 2.0]
    X = Z @ rng.standard_normal((2, 80)) + 0.05 * rng.standard_normal((300, 80)) + 3.0
    scores, comps, ratio = an.pca(X, 2)
    Xc = X - X.mean(axis=0)
    U, s, Vt = np.linalg.svd(Xc, full_matrices=False)
    np.testing.assert_allclose(ratio, s[:2] ** 2 / (s ** 2).sum(), rtol=1e-8)
    np.testing.assert_allclose(np.abs(comps @ Vt[:2].T), np.eye(2), atol=1e-8)
    np.testing.assert_allclose(np.abs(scores), np.abs(U[:, :2] * s[:2]), rtol=1e-6,
                               atol=1e-8)


def test_fbar_from_fixed_h_agents_averages_after_burn_in_with_standard_errors():
    x = np.repeat([-4.0, -3.0], 3)
    G = 4
    returns = np.full((G + 1, 6), np.nan)
    base = np.array([10.0, 12.0, 14.0, 30.0, 30.0, 36.0])
    for g in range(1, G + 1):
        returns[g] = base + (100.0 if g == 1 else 0.0)     # generation 1 is burn-in
    xs, fbar, se, per_gen = an.fbar_from_fixed_h(x, returns, burn_in=1)
    np.testing.assert_array_equal(xs, [-4.0, -3.0])
    np.testing.assert_allclose(fbar, [12.0, 32.0])
    np.testing.assert_allclose(se, [2.0 / np.sqrt(3), np.std([30, 30, 36], ddof=1) /
                                    np.sqrt(3)])
    assert per_gen.shape == (G, 2) and per_gen[0, 0] == 112.0
    with pytest.raises(ValueError, match="burn_in"):
        an.fbar_from_fixed_h(x, returns, burn_in=4)
    np.testing.assert_allclose(an.fbar_on_grid(xs, fbar, [-5.0, -3.5, -2.0]),
                               [12.0, 22.0, 32.0])


def test_compare_with_prediction_takes_any_predictor():
    h = np.linspace(-4.95, -2.05, 30)
    dh = h[1] - h[0]
    rho = np.exp(-0.5 * ((h[None, :] + 3.5 - 0.1 * np.arange(4)[:, None]) / 0.3) ** 2)
    rho /= rho.sum(axis=1, keepdims=True) * dh

    def frozen(fbar, hg, rho0, G):          # a predictor in which nothing moves
        return np.repeat(rho0[None], G + 1, axis=0)

    out = an.compare_with_prediction(rho, h, np.zeros(30), frozen)
    assert out["l1"][0] == pytest.approx(0.0, abs=1e-12) and out["l1"][-1] > 0.3
    np.testing.assert_allclose(out["mean_agents"], -3.5 + 0.1 * np.arange(4), atol=1e-3)
    np.testing.assert_allclose(out["mean_pred"], -3.5, atol=1e-3)
    with pytest.raises(ValueError, match="must return"):
        an.compare_with_prediction(rho, h, np.zeros(30), lambda f, hg, r0, G: r0[None])


def test_histograms_have_mass_one_and_keep_clipped_values_in_the_end_cells():
    edges = np.linspace(-5, -2, 31)
    x = np.array([[-5.0, -2.0, -3.5, -1.0]])
    rho = an.marginal_histograms(x, edges)
    assert (rho * 0.1).sum() == pytest.approx(1.0)
    assert rho[0, 0] == pytest.approx(2.5) and rho[0, -1] == pytest.approx(5.0)
    np.testing.assert_allclose(record.histogram(x[0], edges), rho[0])


def test_agent_fields_go_to_the_writer_when_it_takes_them_else_to_the_sidecar():
    calls = []

    class New:
        def write(self, t, state=None, *, theta=None, h=None, diagnostics=None,
                  agent_fields=None):
            calls.append(("new", agent_fields))

    class Old:
        def write(self, t, state=None, *, theta=None, h=None, diagnostics=None):
            calls.append(("old", None))

    side = {}
    fields = {"fitness": np.arange(3.0)}
    record.write_agents(New(), 0.0, np.zeros((3, 2)), np.zeros((3, 1)), diagnostics={},
                        agent_fields=fields, sidecar=side)
    record.write_agents(Old(), 1.0, np.zeros((3, 2)), np.zeros((3, 1)), diagnostics={},
                        agent_fields=fields, sidecar=side)
    assert calls[0][0] == "new" and calls[0][1] is fields and calls[1][0] == "old"
    assert side["time"] == [1.0] and np.array_equal(side["fitness"][0], np.arange(3.0))


def test_gymnasium_stays_optional(monkeypatch):
    code = ("import sys, pde_popdyn, pde_popdyn.experiments.cartpole, "
            "pde_popdyn.experiments.dqn; print('gymnasium' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "False"
    from pde_popdyn.experiments import cartpole
    monkeypatch.setitem(sys.modules, "gymnasium", None)
    with pytest.raises(ImportError, match=r"pip install 'pde_popdyn\[gym\]'"):
        cartpole.VectorCartPole(2)
