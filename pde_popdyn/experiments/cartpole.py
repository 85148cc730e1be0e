"""PBT of DQN agents on CartPole, as the reference experiment runs it.

Setting (the defaults of :class:`CartPolePBTConfig`): gymnasium's CartPole-v1 with episodes
cut at 100 steps (so a return is at most 100); N = 500 agents; 10 generations of 500
environment steps, one DQN learning step per environment step (:mod:`.dqn`); hyperparameters
h = (learning rate η ∈ [1e−5, 1e−2], log-uniform at start; ε_decay ∈ [500, 5000], uniform;
batch size ∈ {32, 64, 128}); after each generation but the last, the PBT map of :mod:`.pbt`
with q = 0.2, explore noise 0.1 in unit coordinates, copiers' replay buffers and fitness
histories cleared; fitness = mean return of an agent's last k episodes.

The environments are one ``CartPoleVectorEnv`` (gymnasium's numpy-vectorised CartPole) with N
sub-environments. A finished episode is restarted within the same step (the next state of the
stored transition is the true last state; the agent then sees the fresh start state), drawing
the start state from the environment's generator with gymnasium's bounds, one draw per agent
per step so that agents do not share random numbers through the resets. An episode still
running when an agent is overwritten by exploit goes on under the copied network and counts
for it when it ends.

gymnasium is an optional dependency (``pip install 'pde_popdyn[gym]'``); it is imported when
an environment is made, never by ``import pde_popdyn``.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Callable

import numpy as np

from ..fast.blas import one_blas_thread
from .dqn import BatchedDQN, DQNConfig
from .pbt import PBT, FitnessWindow, Hyperparameter, HyperSpace, truncation


def import_gymnasium():
    """gymnasium, or an ImportError that says how to install it."""
    try:
        import gymnasium
    except ImportError as exc:
        raise ImportError("the CartPole experiments need gymnasium: pip install "
                          "'pde_popdyn[gym]' (or pip install gymnasium)") from exc
    return gymnasium


class VectorCartPole:
    """N CartPole-v1 environments stepped together, restarting finished episodes at once.

    ``step(actions)`` returns ``(s_next, reward, terminated, truncated, obs)``: ``s_next`` the
    state each action led to (the last state of a finished episode), ``obs`` what the agents
    observe next (a fresh start state where an episode finished).
    """

    def __init__(self, n: int, max_episode_steps: int = 100, seed: int | None = None):
        gym = import_gymnasium()
        self.n = int(n)
        self.env = gym.make_vec("CartPole-v1", num_envs=self.n,
                                vectorization_mode="vector_entry_point",
                                max_episode_steps=int(max_episode_steps))
        self._u = getattr(self.env, "unwrapped", self.env)
        missing = [a for a in ("state", "steps", "prev_done", "np_random", "low", "high")
                   if not hasattr(self._u, a)]
        if missing:
            raise RuntimeError(f"gymnasium {gym.__version__}'s CartPoleVectorEnv lacks "
                               f"{missing}; this adapter was written for gymnasium 1.x")
        self.max_episode_steps = int(max_episode_steps)
        self.obs, _ = self.env.reset(seed=seed)

    def step(self, actions: np.ndarray):
        s_next, r, term, trunc, _ = self.env.step(np.asarray(actions, dtype=np.int64))
        done = term | trunc
        u = self._u
        # a fresh start for every agent each step (fixed shape), used where an episode ended
        fresh = u.np_random.uniform(low=u.low, high=u.high, size=(4, self.n))
        if done.any():
            u.state[:, done] = fresh[:, done]
            u.steps[done] = 0
            u.prev_done[done] = False       # restarted here, not at the next step
        self.obs = u.state.T.astype(np.float32)
        return s_next, r, term, trunc, self.obs

    def close(self) -> None:
        self.env.close()


def default_space(batch_sizes=(32, 64, 128)) -> HyperSpace:
    """The reference hyperparameter box: lr (log10), eps_decay (linear), batch (integer)."""
    return HyperSpace((
        Hyperparameter("lr", 1e-5, 1e-2, scale="log10"),
        Hyperparameter("eps_decay", 500.0, 5000.0),
        Hyperparameter("batch", float(min(batch_sizes)), float(max(batch_sizes)),
                       integer=True, prior=tuple(float(b) for b in batch_sizes)),
    ))


@dataclass(frozen=True)
class CartPolePBTConfig:
    """Settings of a CartPole PBT run (defaults: the reference setting).

    ``window`` is k, the number of recent episodes averaged into the fitness; the fitness
    with every k in ``windows_tracked`` is recorded too (same histories), to measure what a
    different window would have decided. ``exploit=False`` runs the agents with fixed
    hyperparameters (no PBT), e.g. to estimate F̄(h) independently of a PBT run.
    ``optimizer``: what a copier does with its Adam state ('keep', 'reset', 'copy').
    """

    n_agents: int = 500
    generations: int = 10
    steps_per_generation: int = 500
    max_episode_steps: int = 100
    window: int = 1
    fraction: float = 0.2
    sigma: float = 0.1
    memory: str = "reset"
    optimizer: str = "keep"
    exploit: bool = True
    windows_tracked: tuple[int, ...] = (1, 2, 5)
    seed: int = 0
    dqn: DQNConfig = field(default_factory=DQNConfig)

    def __post_init__(self):
        for name in ("n_agents", "generations", "steps_per_generation", "max_episode_steps",
                     "window"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
                raise ValueError(f"CartPolePBTConfig.{name}={v!r} must be a positive integer")
        if self.exploit and 2 * math.ceil(self.fraction * self.n_agents - 1e-9) > self.n_agents:
            raise ValueError(f"fraction={self.fraction} is too large for {self.n_agents} "
                             f"agents (the bottom and top sets would overlap)")
        if self.optimizer not in ("keep", "reset", "copy"):
            raise ValueError(f"optimizer={self.optimizer!r}: use 'keep', 'reset' or 'copy'")

    @property
    def k_max(self) -> int:
        return max(self.window, *self.windows_tracked)

    def describe(self) -> dict[str, Any]:
        d = asdict(self)
        d["dqn"] = asdict(self.dqn)
        return d


QUICK = dict(n_agents=32, generations=3, steps_per_generation=300)


@dataclass
class CartPolePBTResult:
    """Per-generation records of a run; index g = 0 is the initial population, g ≥ 1 the end
    of generation g's training (before its exploit). Arrays are (G+1, N[, ...])."""

    config: CartPolePBTConfig
    space: HyperSpace
    h: np.ndarray                     # hyperparameters used in generation g
    fitness: np.ndarray               # ranking score at the end of generation g (window k)
    fitness_k: dict[int, np.ndarray]  # the same for every tracked window
    returns: np.ndarray               # mean return of the episodes finished in generation g
    episodes: np.ndarray              # number of episodes finished in generation g
    parent: np.ndarray                # agent of generation g−1 that agent i descends from
    bottom: list                      # agents overwritten after generation g (g = 1…G−1)
    theta: np.ndarray | None = None   # (G+1, N, P) float32 when kept
    wall_seconds: float = 0.0
    train_seconds: float = 0.0
    path: Any = None

    @property
    def log10_lr(self) -> np.ndarray:
        return np.log10(self.h[..., 0])

    def mean_return(self) -> np.ndarray:
        """Population mean of the per-agent mean return, per generation (g = 1…G)."""
        return np.nanmean(self.returns[1:], axis=1)


def run(config: CartPolePBTConfig | None = None, *, h0: np.ndarray | None = None,
        output=None, overwrite: bool = False, keep_theta: bool = False,
        lr_bins: tuple[float, float, int] = (-5.0, -2.0, 30),
        progress: Callable[[int, dict], None] | None = None) -> CartPolePBTResult:
    """Run PBT of DQN agents on CartPole (module docstring).

    Parameters
    ----------
    config:
        :class:`CartPolePBTConfig` (default: the reference setting).
    h0:
        Initial hyperparameters (N, 3) = (lr, eps_decay, batch); default: drawn from the
        priors of :func:`default_space`.
    output:
        Path of the snapshot file (HDF5, ``kind="ensemble"``) to write, one snapshot per
        generation; the agents' learning-rate histogram ρ(t, log10 η) goes to a companion
        ``kind="reduced"`` file (``<output stem>.rho_lr.h5``). None: no file.
    keep_theta:
        Keep every generation's parameter vectors in the result (for a PCA).
    lr_bins:
        (low, high, cells) of the log10-learning-rate grid of the histograms.
    progress:
        Called as ``progress(g, summary)`` after each generation.

    The run uses one BLAS thread: its products are many small per-agent matrices, where extra
    BLAS threads gain nothing, and two runs side by side on a 2-core machine (as the
    benchmark runs them) were 11× slower with OpenBLAS's spinning threads than with one each.
    """
    with one_blas_thread():
        return _run(config, h0, output, overwrite, keep_theta, lr_bins, progress)


def _run(config, h0, output, overwrite, keep_theta, lr_bins, progress) -> CartPolePBTResult:
    cfg = config or CartPolePBTConfig()
    t_start = time.perf_counter()
    seeds = np.random.SeedSequence(cfg.seed).spawn(4)
    rng_init, rng_dqn, rng_pbt = (np.random.default_rng(s) for s in seeds[:3])
    env_seed = int(seeds[3].generate_state(1)[0])
    space = default_space()
    n, G = cfg.n_agents, cfg.generations
    h = space.sample(rng_init, n) if h0 is None else space._check(h0).copy()
    agents = BatchedDQN(n, h[:, 0], h[:, 2], h[:, 1], rng_init, cfg.dqn)
    env = VectorCartPole(n, cfg.max_episode_steps, env_seed)
    window = FitnessWindow(n, cfg.k_max)
    pbt = PBT(space, cfg.fraction, cfg.sigma, cfg.memory, rng_pbt)
    ks = sorted(set(cfg.windows_tracked) | {cfg.window})

    recorder = None
    if output is not None:
        from .record import Recorder
        recorder = Recorder(output, space, lr_bins=lr_bins, overwrite=overwrite,
                            seed=cfg.seed, attrs={"experiment": "cartpole_pbt",
                                                  "config": cfg.describe(),
                                                  "time_unit": "generation",
                                                  "steps_per_generation":
                                                      cfg.steps_per_generation})
    hs = [h.copy()]
    nan = np.full(n, np.nan)
    fit, fit_k = [nan], {k: [nan] for k in ks}
    rets, eps_n, parents, bottoms = [nan], [np.zeros(n, int)], [np.arange(n)], []
    thetas = [agents.theta] if keep_theta else None

    def record(g, fields, diag):
        if recorder is not None:
            recorder.write(g, agents.theta, h, fields, diag)

    record(0, {"fitness": nan, "return": nan, "episodes": np.zeros(n, np.int64),
               "parent": np.arange(n), **{f"fitness_k{k}": nan for k in ks}},
           {"mean_return": np.nan, "mean_fitness": np.nan, "train_seconds": 0.0})
    obs = env.obs
    ep_return = np.zeros(n)
    parent = np.arange(n)
    t_train = 0.0
    try:
        for g in range(1, G + 1):
            gen_sum, gen_cnt = np.zeros(n), np.zeros(n, dtype=np.int64)
            t0 = time.perf_counter()
            for _ in range(cfg.steps_per_generation):
                a = agents.act(obs, rng_dqn)
                s_next, r, term, trunc, obs_next = env.step(a)
                agents.observe(obs, a, r, s_next, term)
                agents.learn(rng_dqn)
                ep_return += r
                done = term | trunc
                if done.any():
                    window.push(ep_return, done)
                    gen_sum[done] += ep_return[done]
                    gen_cnt[done] += 1
                    ep_return[done] = 0.0
                obs = obs_next
            t_train += time.perf_counter() - t0
            with np.errstate(invalid="ignore"):
                ret = np.where(gen_cnt > 0, gen_sum / np.maximum(gen_cnt, 1), np.nan)
            fk = {k: window.mean(k) for k in ks}
            f = fk[cfg.window]
            hs.append(h.copy())
            fit.append(f)
            rets.append(ret)
            eps_n.append(gen_cnt)
            parents.append(parent.copy())
            for k in ks:
                fit_k[k].append(fk[k])
            if keep_theta:
                thetas.append(agents.theta)
            summary = {"mean_return": float(np.nanmean(ret)),
                       "mean_fitness": float(np.nanmean(f)), "train_seconds": t_train}
            record(g, {"fitness": f, "return": ret, "episodes": gen_cnt, "parent": parent,
                       **{f"fitness_k{k}": fk[k] for k in ks}}, summary)
            summary["mean_log10_lr"] = float(np.mean(np.log10(h[:, 0])))
            if progress is not None:
                progress(g, summary)
            parent = np.arange(n)
            if cfg.exploit and g < G:
                rec = pbt.step(_Exploitable(agents, cfg.optimizer), h, f, window,
                               set_h=lambda lr, eps_decay, batch: agents.set_hyperparameters(
                                   lr=lr, batch=batch, eps_decay=eps_decay))
                h = rec.h_after
                parent = rec.parent
                bottoms.append(rec.bottom)
    except BaseException:
        if recorder is not None:
            recorder.close("interrupted")
        env.close()
        raise
    env.close()
    wall = time.perf_counter() - t_start
    if recorder is not None:
        recorder.finish(run_seconds=wall, train_seconds=t_train)
    return CartPolePBTResult(
        config=cfg, space=space, h=np.array(hs), fitness=np.array(fit),
        fitness_k={k: np.array(v) for k, v in fit_k.items()}, returns=np.array(rets),
        episodes=np.array(eps_n), parent=np.array(parents), bottom=bottoms,
        theta=None if thetas is None else np.array(thetas), wall_seconds=wall,
        train_seconds=t_train, path=None if recorder is None else recorder.path)


class _Exploitable:
    """The population interface the PBT driver needs, on a BatchedDQN."""

    def __init__(self, agents: BatchedDQN, optimizer: str):
        self.agents, self.optimizer = agents, optimizer

    def copy_agents(self, dst, src):
        self.agents.copy_agents(dst, src, optimizer=self.optimizer)

    def clear_memory(self, idx):
        self.agents.clear_memory(idx)

    def copy_memory(self, dst, src):
        self.agents.copy_memory(dst, src)


def quick_config(**overrides) -> CartPolePBTConfig:
    """The small setting used in CI: 32 agents, 3 generations of 300 steps."""
    return replace(CartPolePBTConfig(**QUICK), **overrides)


__all__ = ["CartPolePBTConfig", "CartPolePBTResult", "VectorCartPole", "default_space", "run",
           "quick_config", "import_gymnasium", "truncation"]
