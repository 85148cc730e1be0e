"""Deep Q-learning (DQN) for a whole population of agents at once, in numpy.

Each agent i has a Q-network Q_i(s, ·) (an MLP, :mod:`.nets`), a target network Q̂_i, a replay
buffer of its own transitions and an Adam optimiser with its own learning rate η_i. All agents
act and learn in lockstep; the arrays are stacked over agents so that no Python loop runs over
agents.

One learning step of agent i draws B_i transitions (s, a, r, s′, d) uniformly (with
replacement) from its buffer and takes one Adam step on the mean squared temporal-difference
error

    loss_i = (1/B_i) Σ_j ( Q_i(s_j, a_j) − y_j )²,   y_j = r_j + γ (1 − d_j) max_a Q̂_i(s′_j, a),

where d_j = 1 when the episode *terminated* at s′_j (a time-limit truncation bootstraps).
Batch sizes differ between agents: the batch is padded to the largest B_i of a group of
agents and the padding gets weight 0 in the loss. An agent learns only once its buffer holds
at least B_i transitions. Every ``target_every`` steps Q̂ ← Q for every agent.

Exploration is ε-greedy with ε_i(t) = ε_end + (ε_start − ε_end)·exp(−t/ε_decay,i), t the
number of environment steps taken (equal for all agents, who step together).

Speed: the learning step runs over groups of ``chunk`` agents sorted by batch size, so that
the activations of a group stay in the processor's cache and the padding is small; inside a
group every layer is one batched matrix product.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .nets import Adam, MLPLayout, backward, forward, workspace


@dataclass(frozen=True)
class DQNConfig:
    """The DQN settings shared by all agents (the per-agent ones are hyperparameters).

    Defaults are the reference setting: Q-network (obs, 64, 64, actions) with ReLU,
    γ = 0.99, replay capacity 5000, target network copied every 100 steps, ε from 1.0 to 0.01.
    """

    obs_dim: int = 4
    n_actions: int = 2
    hidden: tuple[int, ...] = (64, 64)
    gamma: float = 0.99
    capacity: int = 5000
    target_every: int = 100
    eps_start: float = 1.0
    eps_end: float = 0.01
    batch_max: int = 128
    chunk: int = 48
    dtype: str = "float32"
    threads: int = 1

    def __post_init__(self):
        for name in ("obs_dim", "n_actions", "capacity", "target_every", "batch_max", "chunk",
                     "threads"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
                raise ValueError(f"DQNConfig.{name}={v!r} must be a positive integer")
        if not 0.0 <= self.gamma <= 1.0:
            raise ValueError(f"DQNConfig.gamma={self.gamma!r} must lie in [0, 1]")
        if not 0.0 <= self.eps_end <= self.eps_start <= 1.0:
            raise ValueError(f"DQNConfig needs 0 <= eps_end <= eps_start <= 1, got "
                             f"eps_end={self.eps_end}, eps_start={self.eps_start}")
        if self.dtype not in ("float32", "float64"):
            raise ValueError(f"DQNConfig.dtype={self.dtype!r}: use 'float32' or 'float64'")

    @property
    def layout(self) -> MLPLayout:
        return MLPLayout((self.obs_dim, *self.hidden, self.n_actions))


class ReplayBuffers:
    """One ring buffer of transitions per agent.

    A transition (s, s′, a, r, d) and its bootstrap value u = max_a Q̂(s′, a) under the
    current target network are one row of a record array of shape (N, capacity,
    2·obs_dim + 4), so that drawing a minibatch is a single gather of contiguous rows.
    """

    def __init__(self, n: int, capacity: int, obs_dim: int, dtype=np.float32):
        self.n, self.capacity, self.obs_dim = int(n), int(capacity), int(obs_dim)
        self.rec = np.zeros((n, capacity, 2 * obs_dim + 4), dtype=dtype)
        self.pos = np.zeros(n, dtype=np.int64)
        self.size = np.zeros(n, dtype=np.int64)
        self._rows = np.arange(n)

    def push(self, s, a, r, s2, done, u) -> None:
        """Append one transition and its bootstrap value for every agent (N rows)."""
        k = self.obs_dim
        rec = self.rec[self._rows, self.pos]          # (N, D) copy, filled then stored
        rec[:, :k] = s
        rec[:, k:2 * k] = s2
        rec[:, 2 * k] = a
        rec[:, 2 * k + 1] = r
        rec[:, 2 * k + 2] = done
        rec[:, 2 * k + 3] = u
        self.rec[self._rows, self.pos] = rec
        self.pos += 1
        self.pos %= self.capacity
        np.minimum(self.size + 1, self.capacity, out=self.size)

    def clear(self, idx) -> None:
        """Empty the buffers of agents ``idx``."""
        self.pos[idx] = 0
        self.size[idx] = 0

    def copy(self, dst, src) -> None:
        """Agents ``dst`` take copies of the buffers of agents ``src``."""
        self.rec[dst] = self.rec[src]
        self.pos[dst] = self.pos[src]
        self.size[dst] = self.size[src]

    def gather(self, ids: np.ndarray, idx: np.ndarray):
        """Transitions ``idx`` (n, B) of agents ``ids`` (n,): views s, a, r, d, u."""
        flat = ids[:, None] * self.capacity + idx
        g = np.take(self.rec.reshape(-1, self.rec.shape[2]), flat, axis=0)
        k = self.obs_dim
        return g[..., :k], g[..., 2 * k], g[..., 2 * k + 1], g[..., 2 * k + 2], g[..., 2 * k + 3]


class BatchedDQN:
    """N DQN agents with stacked networks, optimisers and replay buffers.

    Parameters
    ----------
    n:
        Number of agents N.
    lr, batch, eps_decay:
        Per-agent hyperparameters, arrays of shape (N,) (scalars broadcast): Adam learning
        rate η_i, batch size B_i (integer, 1 ≤ B_i ≤ ``config.batch_max``) and the exploration
        decay ε_decay,i (> 0).
    rng:
        ``numpy.random.Generator`` for the initial weights and, unless given per call, the
        sampling of minibatches and of exploratory actions.
    config:
        :class:`DQNConfig`.

    Notes
    -----
    Internally the networks and optimiser states are stored sorted by batch size ("slots"),
    so that each learning group is a contiguous block of rows with little padding; the
    public properties and methods speak of agents in their own order.
    """

    def __init__(self, n: int, lr, batch, eps_decay, rng: np.random.Generator,
                 config: DQNConfig | None = None):
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
            raise ValueError(f"n={n!r} must be a positive integer (the number of agents)")
        self.config = cfg = config or DQNConfig()
        self.n = int(n)
        self.dtype = np.dtype(cfg.dtype)
        self.layout = cfg.layout
        self.rng = rng
        self._th = self.layout.init(self.n, rng, self.dtype)      # slot order
        self._tg = self._th.copy()
        self.adam = Adam(self.n, self.layout.n_params, dtype=self.dtype)
        self.replay = ReplayBuffers(self.n, cfg.capacity, cfg.obs_dim, self.dtype)
        self._perm = np.arange(self.n)      # slot -> agent
        self._slot = np.arange(self.n)      # agent -> slot
        self.lr = np.empty(self.n)
        self.batch = np.empty(self.n, dtype=np.int64)
        self.eps_decay = np.empty(self.n)
        self.set_hyperparameters(lr, batch, eps_decay)
        self.steps = 0          # environment steps taken (the same for every agent)
        self.updates = 0        # learning steps taken
        self.last_loss = np.full(self.n, np.nan)
        # agents whose stored bootstrap values predate a change of their target network
        self._stale = np.zeros(self.n, dtype=bool)
        self._alloc()

    # .. state in agent order ...................................................................
    @property
    def theta(self) -> np.ndarray:
        """Q-network parameters, (N, P), rows in agent order (a copy)."""
        return self._th[self._slot]

    @theta.setter
    def theta(self, value) -> None:
        self._th[self._slot] = np.asarray(value, self.dtype).reshape(self.n, -1)

    @property
    def target(self) -> np.ndarray:
        """Target-network parameters, (N, P), rows in agent order (a copy)."""
        return self._tg[self._slot]

    @target.setter
    def target(self, value) -> None:
        self._tg[self._slot] = np.asarray(value, self.dtype).reshape(self.n, -1)

    def _resort(self) -> None:
        """Re-order the slots by batch size (after the batch sizes changed)."""
        perm = np.argsort(self.batch, kind="stable")
        if np.array_equal(perm, self._perm):
            return
        move = self._slot[perm]                 # new slot k takes old slot move[k]
        self._th = self._th[move]
        self._tg = self._tg[move]
        a = self.adam
        a.m, a.v, a.t = a.m[move], a.v[move], a.t[move]
        self._perm = perm
        self._slot = np.empty_like(perm)
        self._slot[perm] = np.arange(self.n)

    # .. hyperparameters .......................................................................
    def set_hyperparameters(self, lr=None, batch=None, eps_decay=None) -> None:
        """Set some or all of the per-agent hyperparameters (arrays of shape (N,))."""
        if lr is not None:
            lr = np.broadcast_to(np.asarray(lr, float), (self.n,))
            if not np.all(np.isfinite(lr) & (lr > 0)):
                raise ValueError(f"lr must be finite and > 0 for every agent; got min "
                                 f"{np.nanmin(lr)!r}")
            self.lr[:] = lr
        if batch is not None:
            b = np.broadcast_to(np.asarray(batch), (self.n,))
            if not np.all(np.isfinite(b)) or np.any(b != np.round(b)) or b.min() < 1 \
                    or b.max() > self.config.batch_max:
                raise ValueError(f"batch sizes must be integers in [1, {self.config.batch_max}]"
                                 f" (DQNConfig.batch_max); got range [{b.min()}, {b.max()}]")
            self.batch[:] = b.astype(np.int64)
            self._resort()
        if eps_decay is not None:
            e = np.broadcast_to(np.asarray(eps_decay, float), (self.n,))
            if not np.all(np.isfinite(e) & (e > 0)):
                raise ValueError("eps_decay must be finite and > 0 for every agent")
            self.eps_decay[:] = e

    def epsilon(self) -> np.ndarray:
        """The agents' current exploration rates ε_i(t), shape (N,)."""
        c = self.config
        return c.eps_end + (c.eps_start - c.eps_end) * np.exp(-self.steps / self.eps_decay)

    # .. acting ...............................................................................
    def q_values(self, obs: np.ndarray) -> np.ndarray:
        """Q_i(obs_i, ·) for every agent: ``obs`` (N, obs_dim) → (N, n_actions)."""
        x = np.asarray(obs, dtype=self.dtype)[self._perm, None, :]
        q = forward(self.layout.views(self._th), x)[:, 0, :]
        return q[self._slot]

    def act(self, obs: np.ndarray, rng: np.random.Generator | None = None) -> np.ndarray:
        """ε-greedy actions for every agent (ties of the greedy choice go to action 0).

        The random numbers drawn have fixed shapes (N,), so an agent's draws do not depend on
        the other agents' hyperparameters.
        """
        rng = self.rng if rng is None else rng
        u = rng.random(self.n)
        rand_a = rng.integers(0, self.config.n_actions, self.n)
        greedy = np.argmax(self.q_values(obs), axis=1)
        return np.where(u < self.epsilon(), rand_a, greedy)

    def observe(self, s, a, r, s2, terminated) -> None:
        """Store one transition per agent (with its bootstrap value max_a Q̂_i(s′, a)) and
        count an environment step."""
        x = np.asarray(s2, dtype=self.dtype)[self._perm, None, :]
        u = forward(self.layout.views(self._tg), x)[:, 0, :].max(axis=1)[self._slot]
        self.replay.push(s, a, r, s2, terminated, u)
        self.steps += 1

    def _refresh_bootstrap(self, agents=None) -> None:
        """Recompute u = max_a Q̂(s′, a) of every stored transition of ``agents`` (default:
        all) under their current target networks."""
        rb, c = self.replay, self.config
        k = rb.obs_dim
        if agents is None:
            groups = [(self._perm[lo:lo + c.chunk], slice(lo, lo + c.chunk))
                      for lo in range(0, self.n, c.chunk)]
        else:
            agents = np.asarray(agents)
            agents = agents[rb.size[agents] > 0]
            groups = [(agents[lo:lo + c.chunk], self._slot[agents[lo:lo + c.chunk]])
                      for lo in range(0, len(agents), c.chunk)]
        R = c.batch_max
        for ids, slots in groups:
            if len(ids) == 0:
                continue
            top = int(rb.size[ids].max())
            layers = self.layout.views(self._tg[slots])
            for lo in range(0, top, R):
                hi = min(lo + R, top)
                x = rb.rec[ids, lo:hi, k:2 * k]
                u = forward(layers, x, None, self._ws[0].tw).max(axis=2)
                rb.rec[ids, lo:hi, 2 * k + 3] = u

    # .. learning ..............................................................................
    def _alloc(self) -> None:
        self._ws = [_Workspace(self) for _ in range(self.config.threads)]
        self._pool = None
        if self.config.threads > 1:
            from concurrent.futures import ThreadPoolExecutor
            self._pool = ThreadPoolExecutor(self.config.threads,
                                            thread_name_prefix="pde_popdyn-dqn")

    def __del__(self):
        pool = getattr(self, "_pool", None)
        if pool is not None:
            pool.shutdown(wait=False)

    def learn(self, rng: np.random.Generator | None = None) -> np.ndarray:
        """One learning step for every agent whose buffer holds ≥ B_i transitions; then the
        target-network copy when due. Returns the agents' losses (NaN where inactive)."""
        rng = self.rng if rng is None else rng
        c = self.config
        # fixed-shape draws: agent i's minibatch does not depend on the others' batch sizes
        u = rng.random((self.n, c.batch_max))
        if self._stale.any():
            self._refresh_bootstrap(np.flatnonzero(self._stale))
            self._stale[:] = False
        size = self.replay.size
        active = size >= self.batch
        loss = np.full(self.n, np.nan)
        if active.any():
            idx = (u * size[:, None]).astype(np.int64)
            groups = [slice(lo, min(lo + c.chunk, self.n)) for lo in range(0, self.n, c.chunk)]
            groups = [sl for sl in groups if active[self._perm[sl]].any()]
            if self._pool is None:
                for sl in groups:
                    self._learn_group(sl, idx, active, loss, self._ws[0])
            else:
                # groups are disjoint blocks of rows; numpy's BLAS calls and the compiled
                # kernels release the GIL, so the threads run in parallel
                k = len(self._ws)
                futs = [self._pool.submit(self._learn_groups, groups[j::k], idx, active, loss,
                                          self._ws[j]) for j in range(k)]
                for f in futs:
                    f.result()
        self.updates += 1
        if self.updates % c.target_every == 0:
            np.copyto(self._tg, self._th)
            self._refresh_bootstrap()
        self.last_loss = loss
        return loss

    def _learn_groups(self, groups, idx, active, loss, ws) -> None:
        for sl in groups:
            self._learn_group(sl, idx, active, loss, ws)

    def _learn_group(self, sl: slice, idx, active, loss, ws) -> None:
        ids = self._perm[sl]
        act = active[ids]
        bs = self.batch[ids]
        B = int(bs[-1])                   # slots are sorted by batch size
        s, a, r, d, u_next = self.replay.gather(ids, idx[ids, :B])
        lo, grad = self.td_gradient(self._th[sl], s, a, r, d, bs, act, u=u_next, ws=ws)
        self.adam.step(self._th[sl], grad, self.lr[ids], rows=sl, active=act,
                       scratch=ws.scratch)
        loss[ids] = lo

    def td_step(self, agents, s, a, r, s2, done, active=None) -> np.ndarray:
        """One Adam step on the TD loss for ``agents`` (indices) on given minibatches.

        ``s``, ``s2`` (n, B, obs_dim), ``a``, ``r``, ``done`` (n, B), padded to B columns;
        agent k uses its first ``batch[agents[k]]`` columns. Returns loss_k (NaN where
        inactive). This is the learning rule of :meth:`learn` without the minibatch draw
        (and with the bootstrap values computed here rather than read from the buffer).
        """
        agents = np.asarray(agents)
        slots = self._slot[agents]
        active = np.ones(len(agents), bool) if active is None else np.asarray(active, bool)
        th = self._th[slots]
        loss, grad = self.td_gradient(th, s, a, r, done, self.batch[agents], active,
                                      target=self._tg[slots], s2=s2)
        self.adam.step(th, grad, self.lr[agents], rows=slots, active=active,
                       scratch=self._ws[0].scratch)
        self._th[slots] = th
        return loss

    def td_gradient(self, theta, s, a, r, done, batch, active=None, *, u=None, target=None,
                    s2=None, ws=None):
        """The TD loss of each agent and its gradient with respect to its Q-network.

        ``theta`` (n, P) are the agents' Q-network parameters, ``s`` (n, B, obs_dim), ``a``,
        ``r``, ``done`` (n, B) their minibatches padded to B columns, ``batch`` (n,) their
        batch sizes. The bootstrap values u = max_a Q̂(s′, a) are given as ``u`` (n, B), or
        computed from the target parameters ``target`` (n, P) and next states ``s2``.
        Returns ``(loss, grad)``: loss_k (n,) (NaN where inactive) and ∂loss_k/∂θ_k (n, P)
        (zero where inactive; a view of a work buffer, valid until the next call).
        """
        ws = self._ws[0] if ws is None else ws
        a = np.asarray(a)
        n, B = a.shape
        if n > ws.grad.shape[0] or B > self.config.batch_max:
            raise ValueError(f"at most {ws.grad.shape[0]} agents (DQNConfig.chunk) and "
                             f"{self.config.batch_max} columns (batch_max) at once; got {n} "
                             f"and {B}")
        dt = self.dtype
        if u is None:
            if target is None or s2 is None:
                raise ValueError("td_gradient needs the bootstrap values u, or target and s2")
            u = forward(self.layout.views(target), np.asarray(s2, dt), None,
                        ws.tw).max(axis=2)
        batch = np.asarray(batch)
        active = np.ones(n, bool) if active is None else np.asarray(active, bool)
        s = np.asarray(s, dt)
        layers = self.layout.views(theta)
        cache: list = []
        q = forward(layers, s, cache, ws.fw)
        y = r + self.config.gamma * (1 - done) * u
        two = self.config.n_actions == 2
        ai = a.astype(np.int64)
        a1 = ai.astype(bool)
        qsa = np.where(a1, q[..., 1], q[..., 0]) if two else \
            np.take_along_axis(q, ai[..., None], axis=2)[..., 0]
        err = (qsa - y).astype(dt)
        # weight 1/B_k on the agent's own columns, 0 on the padding and for inactive agents
        w = ((np.arange(B)[None, :] < batch[:, None]) * (active / batch)[:, None]).astype(dt)
        loss = np.where(active, (w * err * err).sum(axis=1, dtype=float), np.nan)
        g = 2 * w * err
        dq = ws.dq[:n * B * self.config.n_actions].reshape(n, B, -1)
        if two:
            dq[..., 0] = np.where(a1, 0, g)
            dq[..., 1] = np.where(a1, g, 0)
        else:
            dq[...] = 0
            np.put_along_axis(dq, ai[..., None], g[..., None], axis=2)
        grad = ws.grad[:n]
        backward(layers, s, cache, dq, self.layout.views(grad), ws.tw)
        return loss, grad

    # .. population operations (PBT) ...........................................................
    def copy_agents(self, dst, src, optimizer: str = "keep") -> None:
        """Agents ``dst`` take the Q-network weights of ``src`` (into both their Q-network and
        their target network). ``optimizer``: 'keep' their own Adam state, 'reset' it, or
        'copy' the donor's. Replay buffers are not touched (see :meth:`clear_memory`)."""
        if optimizer not in ("keep", "reset", "copy"):
            raise ValueError(f"optimizer={optimizer!r}: use 'keep', 'reset' or 'copy'")
        d, s = self._slot[np.asarray(dst)], self._slot[np.asarray(src)]
        w = self._th[s]
        self._th[d] = w
        self._tg[d] = w
        self._stale[np.asarray(dst)] = True
        if optimizer == "reset":
            self.adam.reset(d)
        elif optimizer == "copy":
            self.adam.copy(d, s)

    def clear_memory(self, idx) -> None:
        """Empty the replay buffers of agents ``idx``."""
        self.replay.clear(idx)

    def copy_memory(self, dst, src) -> None:
        """Agents ``dst`` take copies of the replay buffers of ``src``."""
        self.replay.copy(np.asarray(dst), np.asarray(src))
        self._stale[np.asarray(dst)] = True


class _Workspace:
    """Work buffers of one learning thread: activations, gradients, Adam scratch."""

    def __init__(self, dqn: BatchedDQN):
        c, L = dqn.config, dqn.layout
        k, B = min(c.chunk, dqn.n), c.batch_max
        widths = L.sizes[1:]
        self.fw = workspace(k, B, widths, dqn.dtype)
        self.tw = workspace(k, B, widths, dqn.dtype)
        self.grad = np.empty((k, L.n_params), dqn.dtype)
        self.scratch = np.empty((k, L.n_params), dqn.dtype)
        self.dq = np.empty(k * B * c.n_actions, dqn.dtype)
