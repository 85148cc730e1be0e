"""The numpy DQN batched over agents: its gradient, its Adam, and that agents do not interact
(one agent of a batch learns exactly as it does alone). No gymnasium needed."""

import numpy as np
import pytest

from pde_popdyn.experiments.dqn import BatchedDQN, DQNConfig, ReplayBuffers
from pde_popdyn.experiments.nets import Adam, MLPLayout, backward, forward

SMALL = DQNConfig(hidden=(5, 6), dtype="float64", batch_max=8, chunk=4, capacity=50,
                  target_every=3)


def minibatch(rng, n, B, obs=4):
    s = rng.standard_normal((n, B, obs))
    s2 = rng.standard_normal((n, B, obs))
    a = rng.integers(0, 2, (n, B))
    r = rng.random((n, B))
    done = (rng.random((n, B)) < 0.3).astype(float)
    return s, a, r, s2, done


def test_td_gradient_matches_finite_differences():
    rng = np.random.default_rng(1)
    d = BatchedDQN(3, 1e-3, [3, 8, 5], 1000.0, rng, SMALL)
    target = d.target + 0.1 * rng.standard_normal(d.target.shape)
    s, a, r, s2, done = minibatch(rng, 3, 8)
    active = np.array([True, True, False])
    th = d.theta
    loss, g = d.td_gradient(th, s, a, r, done, d.batch, active, target=target, s2=s2)
    g = g.copy()
    assert np.isnan(loss[2]) and np.all(g[2] == 0)          # inactive: no loss, no gradient
    step = 1e-6
    num = np.zeros_like(th)
    for k in range(th.shape[1]):
        e = np.zeros(th.shape[1])
        e[k] = step
        lp, _ = d.td_gradient(th + e, s, a, r, done, d.batch, active, target=target, s2=s2)
        lm, _ = d.td_gradient(th - e, s, a, r, done, d.batch, active, target=target, s2=s2)
        num[:, k] = (lp - lm) / (2 * step)
    np.testing.assert_allclose(g[:2], num[:2], rtol=0, atol=1e-8 * np.abs(g).max())
    # the loss is the mean squared TD error over the agent's own B_k columns only
    q = d.q_values(s[0])  # noqa: F841  (smoke: q_values accepts (N, obs))
    layers = d.layout.views(th)
    qs = forward(layers, s)
    qt = forward(d.layout.views(target), s2).max(axis=2)
    y = r + 0.99 * (1 - done) * qt
    qsa = np.take_along_axis(qs, a[..., None], axis=2)[..., 0]
    for k in range(2):
        B = d.batch[k]
        assert loss[k] == pytest.approx(np.mean((qsa[k, :B] - y[k, :B]) ** 2), rel=1e-12)


def test_mlp_backward_matches_finite_differences_for_a_generic_loss():
    rng = np.random.default_rng(2)
    L = MLPLayout((3, 7, 4, 2))
    th = L.init(2, rng, np.float64)
    x = rng.standard_normal((2, 5, 3))
    c = rng.standard_normal((2, 5, 2))

    def loss(t):
        return 0.5 * ((forward(L.views(t), x) - c) ** 2).sum(axis=(1, 2))

    cache = []
    out = forward(L.views(th), x, cache)
    grad = np.zeros_like(th)
    backward(L.views(th), x, cache, out - c, L.views(grad))
    num = np.zeros_like(th)
    for k in range(th.shape[1]):
        e = np.zeros(th.shape[1])
        e[k] = 1e-6
        num[:, k] = (loss(th + e) - loss(th - e)) / 2e-6
    np.testing.assert_allclose(grad, num, atol=1e-7)


def test_init_is_the_usual_uniform_fan_in_rule():
    L = MLPLayout((4, 64, 64, 2))
    assert L.n_params == 4 * 64 + 64 + 64 * 64 + 64 + 64 * 2 + 2
    th = L.init(200, np.random.default_rng(0))
    (W1, b1), (W2, _), _ = L.views(th)
    assert th.dtype == np.float32 and np.abs(W1).max() <= 0.5 and np.abs(W2).max() <= 0.125
    assert np.abs(W2).max() > 0.124 and abs(W2.std() - 0.125 / np.sqrt(3)) < 1e-3
    W1[0, 0, 0] = 7.0                                      # views write the flat vector
    assert th[0, 0] == 7.0


def test_adam_is_the_reference_update_and_freezes_inactive_agents():
    rng = np.random.default_rng(3)
    n, P, steps = 4, 11, 5
    lr = np.array([1e-3, 1e-2, 3e-4, 1e-1])
    for rows_kind in ("slice", "index"):                  # compiled and numpy paths
        opt = Adam(n, P, dtype=np.float64)
        th = rng.standard_normal((n, P))
        ref_th, m, v = th.copy(), np.zeros((n, P)), np.zeros((n, P))
        t = np.zeros(n)
        for k in range(steps):
            g = rng.standard_normal((n, P))
            active = np.array([True, True, k % 2 == 0, True])
            rows = slice(0, n) if rows_kind == "slice" else np.arange(n)
            if rows_kind == "slice":
                opt.step(th, g, lr, rows=rows, active=active)
            else:
                sub = th[rows]
                opt.step(sub, g, lr, rows=rows, active=active)
                th[rows] = sub
            for i in np.flatnonzero(active):               # torch.optim.Adam, written out
                t[i] += 1
                m[i] = 0.9 * m[i] + 0.1 * g[i]
                v[i] = 0.999 * v[i] + 0.001 * g[i] ** 2
                mh, vh = m[i] / (1 - 0.9 ** t[i]), v[i] / (1 - 0.999 ** t[i])
                ref_th[i] -= lr[i] * mh / (np.sqrt(vh) + 1e-8)
        np.testing.assert_allclose(th, ref_th, rtol=1e-12, atol=1e-14)
        assert list(opt.t) == list(t)


def test_one_agent_of_the_batch_learns_exactly_as_it_does_alone():
    rng = np.random.default_rng(4)
    n = 5
    lr, batch = np.array([1e-3, 3e-3, 1e-4, 1e-2, 5e-4]), np.array([8, 3, 5, 8, 1])
    pop = BatchedDQN(n, lr, batch, 800.0, rng, SMALL)
    alone = [BatchedDQN(1, lr[i], batch[i], 800.0, np.random.default_rng(9), SMALL)
             for i in range(n)]
    for i, ag in enumerate(alone):
        ag.theta = pop.theta[i:i + 1]
        ag.target = pop.target[i:i + 1]
    for _ in range(12):
        s, a, r, s2, done = minibatch(rng, n, 8)
        order = rng.permutation(n)            # any grouping of agents gives the same result
        pop.td_step(order[:3], s[order[:3]], a[order[:3]], r[order[:3]], s2[order[:3]],
                    done[order[:3]])
        pop.td_step(order[3:], s[order[3:]], a[order[3:]], r[order[3:]], s2[order[3:]],
                    done[order[3:]])
        for i, ag in enumerate(alone):
            B = batch[i]                           # alone: no padding at all
            ag.td_step([0], s[i:i + 1, :B], a[i:i + 1, :B], r[i:i + 1, :B], s2[i:i + 1, :B],
                       done[i:i + 1, :B])
    for i, ag in enumerate(alone):
        np.testing.assert_allclose(pop.theta[i], ag.theta[0], rtol=1e-12, atol=1e-14)
    assert np.abs(pop.theta - alone[0].theta).max() > 1e-3     # the agents did learn


def feed(d, rng, steps):
    for _ in range(steps):
        s = rng.standard_normal((d.n, 4))
        d.observe(s, rng.integers(0, 2, d.n), np.ones(d.n), s + 0.1, rng.random(d.n) < 0.1)
        d.learn(rng)


def test_agents_do_not_share_random_numbers_or_state_through_learn():
    """Agent 0's trajectory is the same whatever the other agents' hyperparameters."""
    out = []
    for other_batch in (3, 8):
        rng = np.random.default_rng(5)
        d = BatchedDQN(4, [1e-2, 1e-3, 1e-3, 1e-3], [5, other_batch, other_batch, 2], 500.0,
                       np.random.default_rng(6), SMALL)
        feed(d, rng, 20)
        out.append(d.theta[0])
    np.testing.assert_allclose(out[0], out[1], rtol=1e-12, atol=1e-14)


def test_learn_waits_for_a_full_batch_and_updates_the_target_on_schedule():
    rng = np.random.default_rng(7)
    d = BatchedDQN(3, 1e-2, [2, 8, 4], 500.0, np.random.default_rng(8), SMALL)
    th0 = d.theta
    feed(d, rng, 2)                                # buffers hold 2: only agent 0 learns
    assert d.updates == 2
    assert np.any(d.theta[0] != th0[0]) and np.all(d.theta[1:] == th0[1:])
    assert np.all(np.isnan(d.last_loss[1:])) and np.isfinite(d.last_loss[0])
    np.testing.assert_array_equal(d.target, th0)   # target_every = 3: not yet
    feed(d, rng, 1)
    np.testing.assert_array_equal(d.target, d.theta)


def test_stored_bootstrap_values_are_those_of_the_current_target_network():
    rng = np.random.default_rng(10)
    d = BatchedDQN(3, 1e-2, [2, 3, 4], 500.0, np.random.default_rng(11), SMALL)
    feed(d, rng, 7)           # two target updates, and transitions stored in between
    d.copy_agents([2], [0])   # agent 2's target changes: its values are refreshed lazily
    feed(d, rng, 1)
    rb = d.replay
    for i in range(3):
        n_i = rb.size[i]
        s2 = rb.rec[i, :n_i, 4:8]
        want = forward(d.layout.views(d.target[i:i + 1]), s2[None]).max(axis=2)[0]
        got = rb.rec[i, :n_i, 11]
        # transitions stored since the last target update used the same network
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


def test_copy_agents_sets_both_networks_and_the_optimizer_choice():
    rng = np.random.default_rng(12)
    d = BatchedDQN(4, 1e-2, [2, 2, 3, 3], 500.0, np.random.default_rng(13), SMALL)
    feed(d, rng, 4)
    m_before = d.adam.m.copy()
    slot = d._slot
    d.copy_agents([1, 3], [0, 2], optimizer="keep")
    np.testing.assert_array_equal(d.theta[1], d.theta[0])
    np.testing.assert_array_equal(d.target[1], d.theta[0])
    np.testing.assert_array_equal(d.target[3], d.theta[2])
    np.testing.assert_array_equal(d.adam.m[slot[1]], m_before[slot[1]])
    d.copy_agents([1], [0], optimizer="reset")
    assert np.all(d.adam.m[slot[1]] == 0) and d.adam.t[slot[1]] == 0
    d.copy_agents([1], [2], optimizer="copy")
    np.testing.assert_array_equal(d.adam.m[slot[1]], d.adam.m[slot[2]])
    with pytest.raises(ValueError, match="optimizer"):
        d.copy_agents([1], [0], optimizer="swap")


def test_changing_batch_sizes_keeps_every_agent_its_own_state():
    rng = np.random.default_rng(14)
    d = BatchedDQN(5, 1e-2, [8, 1, 5, 2, 3], 500.0, np.random.default_rng(15), SMALL)
    feed(d, rng, 3)
    th, tg, t = d.theta, d.target, d.adam.t[d._slot].copy()
    d.set_hyperparameters(batch=[1, 8, 2, 7, 3])     # re-sorts the internal slots
    np.testing.assert_array_equal(d.theta, th)
    np.testing.assert_array_equal(d.target, tg)
    np.testing.assert_array_equal(d.adam.t[d._slot], t)
    assert list(np.diff(d.batch[d._perm]) >= 0) == [True] * 4


def test_replay_ring_buffer_wraps_and_clears():
    rb = ReplayBuffers(2, 3, 1, np.float64)
    for k in range(5):
        rb.push(np.full((2, 1), k), np.zeros(2), np.full(2, k), np.full((2, 1), k + 1),
                np.zeros(2), np.zeros(2))
    assert list(rb.size) == [3, 3] and list(rb.pos) == [2, 2]
    assert sorted(rb.rec[0, :, 0]) == [2.0, 3.0, 4.0]          # the oldest were overwritten
    rb.clear([1])
    assert list(rb.size) == [3, 0] and rb.pos[1] == 0
    s, a, r, done, u = rb.gather(np.array([0]), np.array([[0, 1, 2]]))
    assert s.shape == (1, 3, 1) and sorted(r[0]) == [2.0, 3.0, 4.0]


def test_epsilon_schedule_and_greedy_actions():
    d = BatchedDQN(2, 1e-3, 4, [500.0, 5000.0], np.random.default_rng(0), SMALL)
    np.testing.assert_allclose(d.epsilon(), [1.0, 1.0])
    d.steps = 1000
    np.testing.assert_allclose(d.epsilon(), 0.01 + 0.99 * np.exp(-1000 / np.array([500,
                                                                                     5000])))
    d.steps = 10**6                      # ε → 0.01: almost all actions are greedy
    obs = np.random.default_rng(1).standard_normal((2, 4))
    greedy = np.argmax(d.q_values(obs), axis=1)
    acts = np.array([d.act(obs) for _ in range(400)])
    assert np.mean(acts == greedy) > 0.98


def test_bad_hyperparameters_are_rejected_with_the_fix():
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="batch sizes must be integers in \\[1, 8\\]"):
        BatchedDQN(2, 1e-3, [4, 9], 500.0, rng, SMALL)
    with pytest.raises(ValueError, match="lr must be finite and > 0"):
        BatchedDQN(2, [1e-3, -1.0], 4, 500.0, rng, SMALL)
    with pytest.raises(ValueError, match="n=0"):
        BatchedDQN(0, 1e-3, 4, 500.0, rng, SMALL)
    with pytest.raises(ValueError, match="gamma"):
        DQNConfig(gamma=1.5)
    d = BatchedDQN(2, 1e-3, 4, 500.0, rng, SMALL)
    with pytest.raises(ValueError, match="at most"):
        d.td_gradient(d.theta, *np.zeros((5, 2, 9)), d.batch)


def test_float32_learning_tracks_float64():
    """The single-precision hot path stays close to double precision over many steps."""
    res = {}
    for dt in ("float32", "float64"):
        cfg = DQNConfig(hidden=(16, 16), dtype=dt, batch_max=8, chunk=4, capacity=64,
                        target_every=5)
        d = BatchedDQN(3, 1e-3, [8, 4, 6], 500.0, np.random.default_rng(20), cfg)
        d.theta = BatchedDQN(3, 1e-3, [8, 4, 6], 500.0, np.random.default_rng(20),
                             DQNConfig(hidden=(16, 16), dtype="float64", batch_max=8,
                                       chunk=4)).theta
        d.target = d.theta
        feed(d, np.random.default_rng(21), 40)
        res[dt] = d.theta.astype(float)
    drift = np.abs(res["float32"] - res["float64"]).max()
    assert drift < 1e-4 * np.abs(res["float64"]).max()
