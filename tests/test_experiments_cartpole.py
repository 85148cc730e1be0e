"""PBT of DQN agents on gymnasium's CartPole: the environment adapter, a tiny run end to end,
reproducibility and the recorded files. Skipped when gymnasium is not installed."""

import numpy as np
import pytest

gym = pytest.importorskip("gymnasium", reason="the CartPole experiments need gymnasium "
                                              "(pip install 'pde_popdyn[gym]')")

import pde_popdyn as pp  # noqa: E402
from pde_popdyn.experiments import cartpole as cp  # noqa: E402
from pde_popdyn.experiments.dqn import DQNConfig  # noqa: E402
from pde_popdyn.experiments.record import read_agent_fields  # noqa: E402

TINY = dict(n_agents=10, generations=3, steps_per_generation=60,
            dqn=DQNConfig(hidden=(16, 16), capacity=200, target_every=20, chunk=4))


def test_vector_cartpole_restarts_finished_episodes_in_the_same_step():
    env = cp.VectorCartPole(6, max_episode_steps=15, seed=3)
    single = gym.make("CartPole-v1").unwrapped
    single.reset(seed=0)
    obs = env.obs.copy()
    rng = np.random.default_rng(0)
    lengths = np.zeros(6, int)
    seen_trunc = seen_term = False
    for _ in range(200):
        a = rng.integers(0, 2, 6)
        s_next, r, term, trunc, obs_next = env.step(a)
        lengths += 1
        # every step is a real transition: gymnasium's own dynamics from the observed state
        for i in range(6):
            single.state = obs[i].astype(np.float64)
            single.steps_beyond_terminated = None
            want, *_ = single.step(int(a[i]))
            np.testing.assert_allclose(s_next[i], want, rtol=1e-5, atol=1e-6)
        assert np.all(r == 1.0)
        done = term | trunc
        assert np.all(lengths[trunc] == 15) and np.all(lengths <= 15)
        # a finished episode restarts at once, from gymnasium's start distribution
        assert np.all(np.abs(obs_next[done]) <= 0.05)
        np.testing.assert_array_equal(obs_next[~done], s_next[~done])
        seen_trunc |= trunc.any()
        seen_term |= term.any()
        lengths[done] = 0
        obs = obs_next
    assert seen_trunc and seen_term
    env.close()


def test_tiny_run_is_reproducible_and_records_what_pbt_did(tmp_path):
    cfg = cp.CartPolePBTConfig(**TINY, window=2, seed=7)
    a = cp.run(cfg, output=tmp_path / "run.h5", keep_theta=True)
    b = cp.run(cfg)
    np.testing.assert_array_equal(a.h, b.h)                       # seeded: bit for bit
    np.testing.assert_array_equal(a.returns[1:], b.returns[1:])
    G, n = 3, 10
    assert a.h.shape == (G + 1, n, 3) and a.theta.shape == (G + 1, n, 4 * 16 + 16 + 16 * 16
                                                           + 16 + 16 * 2 + 2)
    assert np.all(a.returns[1:] >= 1) and np.all(a.returns[1:] <= 100)
    # fitness = mean of the last 2 episode returns, recorded for every tracked window
    np.testing.assert_array_equal(a.fitness[1:], a.fitness_k[2][1:])
    # exploit: ⌈0.2·10⌉ = 2 agents per generation copy a top agent of the window-2 ranking
    for g in (1, 2):
        bottom = a.bottom[g - 1]
        assert len(bottom) == 2
        par = a.parent[g + 1]
        top = np.argsort(a.fitness[g])[-2:]
        assert set(par[bottom]) <= set(top) or np.any(np.isnan(a.fitness[g]))
        keep = np.setdiff1d(np.arange(n), bottom)
        np.testing.assert_array_equal(par[keep], keep)
        np.testing.assert_array_equal(a.h[g + 1][keep], a.h[g][keep])
        assert np.all(a.h[g + 1][bottom, 0] != a.h[g][par[bottom], 0])   # explored
    # the files: ensemble (θ, h, per-agent fields) and ρ(t, log10 lr) of the agents
    ens = pp.load(tmp_path / "run.h5")
    np.testing.assert_array_equal(ens.t, np.arange(G + 1.0))
    np.testing.assert_array_equal(np.asarray(ens.h), a.h)
    np.testing.assert_array_equal(np.asarray(ens.theta), a.theta)
    fields = read_agent_fields(tmp_path / "run.h5")
    np.testing.assert_array_equal(fields["parent"], a.parent)
    np.testing.assert_array_equal(fields["fitness"][1:], a.fitness[1:])
    rho = pp.load(tmp_path / "run.rho_lr.h5")
    assert rho.f.shape == (G + 1, 30)
    np.testing.assert_allclose((rho.f * 0.1).sum(axis=1), 1.0, rtol=1e-12)
    counts = np.histogram(np.log10(a.h[2][:, 0]), bins=np.linspace(-5, -2, 31))[0]
    np.testing.assert_allclose(rho.f[2] * 0.1 * n, counts)


def test_fixed_hyperparameter_agents_keep_their_h():
    h0 = np.column_stack([np.full(6, 1e-3), np.full(6, 1000.0), np.full(6, 32.0)])
    cfg = cp.CartPolePBTConfig(**{**TINY, "n_agents": 6, "generations": 2}, exploit=False)
    res = cp.run(cfg, h0=h0)
    assert np.all(res.h == h0) and res.bottom == []
    np.testing.assert_array_equal(res.parent[-1], np.arange(6))


def test_config_errors_name_the_setting():
    with pytest.raises(ValueError, match="n_agents"):
        cp.CartPolePBTConfig(n_agents=0)
    with pytest.raises(ValueError, match="fraction"):
        cp.CartPolePBTConfig(n_agents=3, fraction=0.5)
    with pytest.raises(ValueError, match="optimizer"):
        cp.CartPolePBTConfig(optimizer="adam")
