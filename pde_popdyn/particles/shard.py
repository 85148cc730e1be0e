"""One shard of a sharded particle run: the agents a worker keeps in memory between steps.

A :class:`Shard` holds its agents (θ, h) in buffers with some spare capacity, its own
:class:`~pde_popdyn.particles.system.Simulator` and its own random generator (spawned from
the run's seed). The client drives it with batches of calls (:meth:`Shard.run`): the
built-in operations below, and the shard-side methods of the selection rule
(``("rule", name, args)``: ``getattr(rule, name)(shard, *args)``), which the rules' sharded
faces name (:mod:`pde_popdyn.rules.base`). Only what a call returns travels back: a few
numbers per shard, except for the agents that change shard (rebalancing, donor pools) and
positions that the client asks for explicitly.

Built-in operations a rule's shard-side method may use: ``shard.P``/``shard.sim``/
``shard.rng``/``shard.scratch`` (a dict kept between calls of one step),
:meth:`Shard.resample_weights` (systematic resampling with the shard's part of global
points, which may change the number of agents), :meth:`Shard.take`, :meth:`Shard.put` and
:meth:`Shard.values_*` (histograms and selections of a scratch array for global order
statistics).
"""

from __future__ import annotations

import numpy as np

from . import kernels as K
from .population import Population
from .system import Simulator

#: spare capacity of a shard's buffers, relative to its target size
SLACK = 0.05


class Shard:
    """A shard's agents and simulator (module docstring).

    ``spec``: ``model``, ``opts`` (simulator options), ``rank``, ``target`` (agents this shard
    should hold), ``seed_seq`` (its SeedSequence) or ``rng_state``, ``theta``/``h`` (initial
    agents) or ``draw`` (draw(n, rng) -> (θ, h)), ``grid`` (for histograms).
    """

    def __init__(self, spec: dict):
        self.rank = int(spec["rank"])
        self.model = spec["model"]
        self.grid = spec.get("grid")
        self.rule = self.model.selection if self.model.selection_active else None
        theta, h = spec.get("theta"), spec.get("h")
        if spec.get("from_file") is not None:
            theta, h, state = _read_checkpoint(spec["from_file"], spec["t"])
            self.rng = np.random.Generator(getattr(np.random, state["bit_generator"])())
            self.rng.bit_generator.state = state
        else:
            self.rng = np.random.default_rng(spec["seed_seq"])
        if theta is None:
            theta, h = spec["draw"](int(spec["target"]), self.rng)
        theta = np.asarray(theta, dtype=float)
        h = np.asarray(h, dtype=float)
        box = spec["opts"].get("h_box")
        if box is not None:
            from ..slow.agents import apply_boundary
            apply_boundary(h, *box, spec["opts"]["boundary"])
        self.target = int(spec["target"])
        self.d_shape = theta.shape[1:]
        self._allocate(max(self.target, h.shape[0]))
        self.size = h.shape[0]
        self._tbuf[:self.size] = theta
        self._hbuf[:self.size] = h
        self.sim = Simulator(self.model, self.size, self.rng, spec["opts"])
        self.P = Population(self._tbuf[:self.size], self._hbuf[:self.size])
        self.scratch: dict = {}
        self.stats = {"seconds": 0.0, "cpu": 0.0}

    # -- buffers ---------------------------------------------------------------------------
    def _allocate(self, n: int) -> None:
        cap = int(np.ceil(n * (1 + SLACK))) + 16
        self._tbuf = np.empty((cap,) + self.d_shape)
        self._hbuf = np.empty(cap)

    def _set_size(self, n: int) -> None:
        self.size = n
        self.sim.n = n
        self.P.theta = self._tbuf[:n]
        self.P.h = self._hbuf[:n]

    def _adopt(self) -> None:
        """Copy a population that a rule replaced (e.g. by copies) back into the buffers."""
        P = self.P
        if P.h.shape[0] > self._hbuf.shape[0]:
            self._allocate(P.h.shape[0])
        if not np.shares_memory(P.h, self._hbuf):
            n = P.h.shape[0]
            self._tbuf[:n] = P.theta
            self._hbuf[:n] = P.h
        self._set_size(P.h.shape[0])

    # -- the protocol --------------------------------------------------------------------------
    def run(self, batch: list) -> list:
        """Execute ``batch``, a list of (kind, name, args): kind ``"shard"`` calls a method of
        this class, ``"rule"`` the selection rule's shard-side method ``name(shard, *args)``.
        Returns the results, and the shard's size last."""
        import time
        t0, c0 = time.perf_counter(), time.thread_time()
        out = []
        for i, (kind, name, args) in enumerate(batch):
            if kind == "rule":
                out.append(getattr(self.rule, name)(self, *args))
                self._adopt()
            elif name == "advance":
                out.append(self.advance(*args, kt=self._weights_ahead(batch[i + 1:i + 2])))
            else:
                out.append(getattr(self, name)(*args))
        out.append(self.size)
        self.stats["seconds"] += time.perf_counter() - t0
        self.stats["cpu"] += time.thread_time() - c0
        return out

    def run_pickled(self, batch: bytes) -> bytes:
        """:meth:`run` of a pickled batch, its results pickled (what the dask backend sends:
        plain bytes, which dask moves without inspecting them)."""
        import pickle
        return pickle.dumps(self.run(pickle.loads(batch)), protocol=pickle.HIGHEST_PROTOCOL)

    # -- built-in operations ---------------------------------------------------------------
    def _weights_ahead(self, following: list):
        """kt if the call after an advance asks for the weights e^{kt·F} of the advanced
        agents at their instantaneous fitness (the rule's ``<method>_ahead(shard, *args)``
        says so), which the fused step can then compute chunk by chunk; else None."""
        if not following or following[0][0] != "rule" or self.rule is None:
            return None
        ahead = getattr(self.rule, following[0][1] + "_ahead", None)
        return None if ahead is None else ahead(self, *following[0][2])

    def advance(self, dt: float, kt: float | None = None) -> None:
        """The mutation and fast sub-steps over Δt (in place); the selection rule's scratch
        of the previous sub-step is dropped (pending log-weights excepted). With ``kt`` (the
        next call wants the weights e^{kt·F}, :meth:`_weights_ahead`) and the fused engine,
        the weights are computed chunk by chunk in the same pass, for
        :meth:`advanced_weights`, instead of F."""
        for key in [k for k in self.scratch if k != "logw"]:
            del self.scratch[key]
        sim = self.sim
        if kt is not None and sim.fused is not None and sim._continuous_selection() and \
                sim.o["fitness_mode"] == "instantaneous" and self.size > 0:
            sim.forget_fitness()
            w = self._weights_buffer(self.size)
            tops, sums, chunk = sim.fused(self.P, dt, sim.strang, sim._chunk_fitness,
                                          weights=(w, float(kt)))
            self.scratch["chunk_weights"] = (float(kt), tops, sums, chunk)
        else:
            sim.move(self.P, dt)

    def advanced_weights(self, kt: float) -> tuple | None:
        """(max ℓ, Σ e^{ℓ − max ℓ}, w, (factors, chunk)) for ℓ = kt·F of the agents the last
        :meth:`advance` moved, when it computed their weights (chunk c's weights are
        ``w·factors[c]``, :func:`kernels.counts_scaled`); None otherwise. Raises if F is not
        finite."""
        pre = self.scratch.pop("chunk_weights", None)
        if pre is None or pre[0] != kt:
            return None
        _, tops, sums, chunk = pre
        top = float(tops.max())
        fac = np.exp(kt * (tops - top))
        total = float((sums * fac).sum())
        if not (np.isfinite(top) and np.isfinite(total)):
            raise FloatingPointError(f"the selection fitness is not finite (max {top}); "
                                     f"check the fitness function at the agents' states")
        return float(kt * top), total, self._wbuf[:self.size], (fac, chunk)

    def summary(self, owed: float, logw_pending: bool) -> tuple:
        """Moment sums of this shard (:meth:`Simulator.summary_sums`), weighted by the owed
        half selection step."""
        self.sim.owed = owed
        self.sim.logw = self.scratch.get("logw") if logw_pending else None
        try:
            return self.sim.summary_sums(self.P, self.grid)
        finally:
            self.sim.owed = 0.0
            self.sim.logw = None

    def positions(self) -> tuple[np.ndarray, np.ndarray]:
        """Copies of this shard's θ and h."""
        return self.P.theta.copy(), self.P.h.copy()

    def busy_seconds(self) -> float:
        """Seconds this shard spent executing calls."""
        return self.stats["seconds"]

    def timings(self) -> tuple[float, float]:
        """(seconds, CPU seconds of the executing thread) this shard spent executing calls."""
        return self.stats["seconds"], self.stats["cpu"]

    def check_finite(self) -> bool:
        return bool(np.isfinite(self.P.theta).all() and np.isfinite(self.P.h).all())

    def resample_weights(self, w: np.ndarray, offset: float, scale: float, k_lo: int,
                         k_hi: int, factors: tuple | None = None) -> int:
        """Systematic resampling with this shard's part of the global points: agent i gets
        ⌊offset + scale·C_i⌋ − ⌊offset + scale·C_{i−1}⌋ copies (C the running sum of w, which
        is consumed; scaled chunk by chunk by ``factors`` = (factors, chunk) when given, as
        :meth:`advanced_weights` returns them), k_hi − k_lo agents in all; returns the new
        size."""
        n_out = int(k_hi - k_lo)
        self.sim.forget_fitness()
        if n_out > self._hbuf.shape[0]:
            self._grow(n_out)
        if self.size == 0:
            self._set_size(0)
            return 0
        fac, chunk = (np.ones(1), self.size + 1) if factors is None else \
            (np.ascontiguousarray(factors[0], dtype=float), int(factors[1]))
        d = int(np.prod(self.d_shape)) if self.d_shape else 1
        K.resample_scaled(w, self.size, offset, scale, int(k_lo), int(k_hi), fac, chunk,
                          self._tbuf.reshape(-1), d, self._hbuf)
        self._set_size(n_out)
        return n_out

    def _grow(self, n: int) -> None:
        t, h = self._tbuf[:self.size].copy(), self._hbuf[:self.size].copy()
        self._allocate(n)
        self._tbuf[:self.size] = t
        self._hbuf[:self.size] = h
        self._set_size(self.size)

    def exp_weights(self, F: np.ndarray, kt: float) -> tuple:
        """(max ℓ, Σ e^{ℓ − max ℓ}, e^{ℓ − max ℓ}) for ℓ = kt·F (the compiled exponential);
        raises if F is not finite."""
        n = F.shape[0]
        w = self._weights_buffer(n)
        if n == 0:
            return -np.inf, 0.0, w
        top, total = K.log_weights(np.ascontiguousarray(F, dtype=float), w, float(kt))
        if not (np.isfinite(top) and np.isfinite(total)):
            raise FloatingPointError(f"the selection fitness is not finite (max {top}); "
                                     f"check the fitness function at the agents' states")
        return float(kt * top), float(total), w

    def _weights_buffer(self, n: int) -> np.ndarray:
        """The first n entries of a weights array reused from step to step."""
        if getattr(self, "_wbuf", None) is None or self._wbuf.shape[0] < n:
            self._wbuf = np.empty(max(n, self._hbuf.shape[0]))
        return self._wbuf[:n]

    def population(self, theta: np.ndarray, h: np.ndarray) -> Population:
        """A population of the given agents (e.g. donors received from other shards)."""
        return Population(theta, h)

    def take(self, idx: np.ndarray, source: str = "P") -> tuple[np.ndarray, np.ndarray]:
        """θ and h of the agents ``idx`` (of ``scratch[source]`` if it names a population)."""
        P = self.P if source == "P" else self.scratch[source]
        idx = np.asarray(idx, dtype=np.int64)
        return P.theta[idx].copy(), P.h[idx].copy()

    def export(self, count: int) -> tuple:
        """Remove the last ``count`` agents and return them (rebalancing): θ, h and their
        pending log-weights (None when no selection is pending), which travel with them."""
        count = min(int(count), self.size)
        self.sim.forget_fitness()
        n = self.size - count
        lw = self.scratch.get("logw")
        if lw is not None:
            self.scratch["logw"], lw = lw[:n], lw[n:self.size].copy()
        out = self._tbuf[n:self.size].copy(), self._hbuf[n:self.size].copy(), lw
        self._set_size(n)
        return out

    def receive(self, theta: np.ndarray, h: np.ndarray, logw: np.ndarray | None = None) -> int:
        """Append agents (rebalancing), with their pending log-weights if any; returns the
        new size."""
        n = self.size + h.shape[0]
        self.sim.forget_fitness()
        if n > self._hbuf.shape[0]:
            self._grow(n)
        self._tbuf[self.size:n] = theta
        self._hbuf[self.size:n] = h
        if logw is not None:
            self.scratch["logw"] = np.concatenate([self.scratch["logw"][:self.size], logw])
        self._set_size(n)
        return n

    # -- order statistics of a scratch array (values stored by a rule's shard method) ----------
    def values_range(self, key: str) -> tuple[float, float, int]:
        v = self.scratch[key]
        if v.size == 0:
            return np.inf, -np.inf, 0
        return float(v.min()), float(v.max()), int(v.size)

    def values_hist(self, key: str, windows: list) -> list:
        """For each window (lo, hi, bins): the counts of values below lo and in each of the
        ``bins`` equal cells of [lo, hi)."""
        v = self.scratch[key]
        out = []
        for lo, hi, bins in windows:
            below = int(np.count_nonzero(v < lo))
            inside = v[(v >= lo) & (v < hi)]
            if hi > lo:
                idx = np.minimum(((inside - lo) * (bins / (hi - lo))).astype(np.int64),
                                 bins - 1)
                counts = np.bincount(idx, minlength=bins)
            else:
                counts = np.zeros(bins, np.int64)
            out.append((below, counts))
        return out

    def values_in(self, key: str, windows: list) -> list:
        """The distinct values in each window [lo, hi), sorted, with their counts."""
        v = self.scratch[key]
        return [np.unique(v[(v >= lo) & (v < hi)], return_counts=True) for lo, hi in windows]

    def values_below(self, key: str, bounds: list) -> list:
        """The number of values below each bound."""
        v = self.scratch[key]
        return [int(np.count_nonzero(v < b)) for b in bounds]

    def write_checkpoint(self, directory: str, t: float, attrs: dict) -> str:
        """Write this shard's agents and generator state to ``directory/shard-RRRR.h5`` (a
        particle snapshot file), through a temporary file renamed at the end."""
        import os
        from pathlib import Path

        from ..run import open_output
        final = Path(directory) / f"shard-{self.rank:04d}.h5"
        tmp = final.with_name(final.name + ".tmp")
        w = open_output(tmp, True, kind="ensemble", model=self.model, rng=self.rng,
                        attrs=dict(attrs, shard=self.rank, n_agents=self.size),
                        compression=None)
        try:
            w.write(t, theta=self.P.theta, h=self.P.h)
        except BaseException:
            w.close(status="failed")
            raise
        w.close(status="complete")
        os.replace(tmp, final)
        return str(final)


def _read_checkpoint(path: str, t: float) -> tuple:
    """(θ, h, generator state) stored in a shard's checkpoint file at time t."""
    from ..run import plan_resume
    plan = plan_resume(path, "ensemble", t_final=t, initial_key="none")
    stored = float(plan.t[-1])
    if abs(stored - t) > 1e-9 * max(1.0, abs(t)):
        raise ValueError(f"{path} ends at t={stored!r} but the checkpoint's manifest says "
                         f"t={t!r}; the checkpoint directory is inconsistent")
    return (np.array(plan.states["particle_theta"][-1], dtype=float),
            np.array(plan.states["particle_h"][-1], dtype=float), plan.rng_state)


__all__ = ["Shard", "SLACK"]
