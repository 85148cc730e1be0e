"""The client's view of a sharded population: what a selection rule's sharded face uses.

A rule needing global information (normalisers, quantiles, donors) asks for it through a
:class:`ShardContext` instead of the driver branching on the rule's type:

* ``ctx.gather(name, *args, per=None)`` runs ``getattr(rule, name)(shard, *args, *per[s])``
  on every shard s and returns the results in shard order (one round trip, which also
  carries the calls queued by ``apply``);
* ``ctx.apply(name, *args, per=None)`` queues the same call without waiting for it (it goes
  out with the next round trip);
* ``ctx.systematic_plan(parts)`` — each shard's share of N global systematic resampling
  points from its (log-scale, sum of weights) pair: offspring are allocated to shards in
  proportion to their weight, exactly as one systematic resampling of the whole population;
* ``ctx.order_statistics(key, ranks)`` — exact order statistics of the values each shard
  stored in ``shard.scratch[key]`` (a few histogram rounds, then the few values left);
* ``ctx.exchange(give, counts, receive, takes)`` — a donor pool: shard s gives ``counts[s]``
  agents (``give``), the client shuffles them with its generator and deals them out,
  ``takes[s]`` to shard s (``receive``);
* ``ctx.rng`` (the client's generator), ``ctx.n``, ``ctx.sizes``, ``ctx.options``.

Everything is deterministic given the seed and the number of shards.
"""

from __future__ import annotations

import numpy as np

#: bins of a histogram round of order_statistics, and the values gathered at the end
_BINS = 1024
_GATHER = 4096


class ShardContext:
    """See the module docstring."""

    def __init__(self, backend, n: int, targets: list[int], rng: np.random.Generator,
                 options: dict):
        self.backend = backend
        self.n = int(n)
        self.targets = list(targets)
        self.sizes = list(targets)
        self.rng = rng
        self.options = options
        self.shards = len(targets)
        self._queue: list[list] = [[] for _ in targets]

    # -- calls ---------------------------------------------------------------------------------
    def _enqueue(self, kind: str, name: str, args: tuple, per) -> None:
        for s in range(self.shards):
            extra = tuple(per[s]) if per is not None else ()
            self._queue[s].append((kind, name, args + extra))

    def apply(self, name: str, *args, per=None, kind: str = "rule") -> None:
        """Queue a call on every shard (sent with the next round trip)."""
        self._enqueue(kind, name, args, per)

    def gather(self, name: str, *args, per=None, kind: str = "rule") -> list:
        """Run a call on every shard, with the queued ones before it; its results."""
        self._enqueue(kind, name, args, per)
        return [r[-2] for r in self._send()]

    def flush(self) -> None:
        """Send the queued calls, if any."""
        if any(self._queue):
            self._send()

    def _send(self) -> list:
        batches, self._queue = self._queue, [[] for _ in range(self.shards)]
        results = self.backend.run_all(batches)
        self.sizes = [int(r[-1]) for r in results]
        return results

    # -- helpers ---------------------------------------------------------------------------------
    def systematic_plan(self, parts: list) -> list[tuple]:
        """Each shard's (offset, scale, k_lo, k_hi) for systematic resampling of N agents with
        weights e^{ℓ_i}: ``parts[s] = (m_s, W_s)``, the shard's largest log-weight and Σ e^{ℓ_i −
        m_s}. With one common uniform u, the whole population's points are u + j, j < N, on
        the scale N·C/W of the cumulative weights; shard s holds those in [K_s, K_{s+1})."""
        m = np.array([p[0] for p in parts], dtype=float)
        W = np.array([p[1] for p in parts], dtype=float)
        top = np.max(m[np.isfinite(m)]) if np.isfinite(m).any() else 0.0
        a = np.where(np.isfinite(m), W * np.exp(np.where(np.isfinite(m), m - top, 0.0)), 0.0)
        total = float(a.sum())
        if not (np.isfinite(total) and total > 0):
            raise FloatingPointError(f"the selection weights sum to {total}; check the "
                                     f"fitness")
        u = float(self.rng.random())
        A = np.concatenate([[0.0], np.cumsum(a)])
        offsets = u + self.n * A[:-1] / total
        ks = [0]
        for s in range(1, self.shards):
            ks.append(min(max(int(np.floor(offsets[s])), ks[-1]), self.n))
        ks.append(self.n)
        return [(float(offsets[s]), float(self.n * np.exp(m[s] - top) / total)
                 if np.isfinite(m[s]) else 0.0, ks[s], ks[s + 1]) for s in range(self.shards)]

    def order_statistics(self, key: str, ranks: list[int]) -> list[tuple[float, list[int]]]:
        """For each rank r (1 ≤ r ≤ N): (v, ties) such that the r smallest values, ties broken
        by shard and then by index, are those below v and the first ties[s] values equal to v
        on each shard s. Histogram rounds narrow a window around each rank (to three of 1024
        bins: a value's bin may be off by one at the edges) until it holds a few thousand
        values or cannot shrink; then the shards send the window's distinct values with their
        counts, and the exact number below it."""
        asked = list(ranks)
        ranks = sorted(set(asked))
        ext = self.gather("values_range", key, kind="shard")
        lo = min(r[0] for r in ext)
        hi = float(np.nextafter(max(r[1] for r in ext), np.inf))
        win = {r: (lo, hi) for r in ranks}
        left = {r: self.n for r in ranks}
        for _ in range(16):
            todo = [r for r in ranks if left[r] > _GATHER]
            if not todo:
                break
            parts = self.gather("values_hist", key, [(*win[r], _BINS) for r in todo],
                                kind="shard")
            for j, r in enumerate(todo):
                below = sum(p[j][0] for p in parts)
                counts = sum(p[j][1] for p in parts)
                a, b = win[r]
                w = (b - a) / _BINS
                k = int(np.searchsorted(below + np.cumsum(counts), r))
                k0, k1 = max(k - 1, 0), min(k + 2, _BINS)
                na = a + k0 * w if k0 else a
                nb = a + k1 * w if k1 < _BINS else b
                if not (a <= na < nb <= b) or (na, nb) == (a, b):
                    left[r] = 0                    # cannot shrink: equal values, or an ulp
                else:
                    win[r] = (na, nb)
                    left[r] = int(counts[k0:k1].sum())
        wins = [win[r] for r in ranks]
        found = self.gather("values_in", key, wins, kind="shard")
        belows = self.gather("values_below", key, [w[0] for w in wins], kind="shard")
        out = []
        for j, r in enumerate(ranks):
            below = sum(b[j] for b in belows)
            vals = [f[j] for f in found]           # per shard: (distinct values, counts)
            uniq = np.unique(np.concatenate([v[0] for v in vals]))
            tot = np.zeros(uniq.size, np.int64)
            for v, c in vals:
                np.add.at(tot, np.searchsorted(uniq, v), c)
            cum = below + np.cumsum(tot)
            i = int(np.searchsorted(cum, r))
            if r <= below or i >= uniq.size:
                raise RuntimeError(f"the order statistic of rank {r} fell outside its window "
                                   f"[{wins[j][0]!r}, {wins[j][1]!r}); please report this")
            v = float(uniq[i])
            need = r - (int(cum[i - 1]) if i else below)
            ties = []
            for vv, c in vals:
                pos = int(np.searchsorted(vv, v))
                e = int(c[pos]) if pos < vv.size and vv[pos] == v else 0
                t = min(e, need)
                ties.append(t)
                need -= t
            out.append((v, ties))
        return [out[ranks.index(r)] for r in asked]

    def exchange(self, give: str, counts: list[int], receive: str, takes: list[int],
                 give_args: tuple = (), receive_args: tuple = ()) -> None:
        """A donor pool (module docstring): the shards give, the client shuffles and deals."""
        if sum(counts) != sum(takes):
            raise ValueError(f"the donors given ({sum(counts)}) and taken ({sum(takes)}) "
                             f"differ")
        parts = self.gather(give, *give_args, per=[(int(c),) for c in counts])
        theta = np.concatenate([p[0] for p in parts])
        h = np.concatenate([p[1] for p in parts])
        perm = self.rng.permutation(h.shape[0])
        theta, h = theta[perm], h[perm]
        bounds = np.concatenate([[0], np.cumsum(takes)])
        self.apply(receive, *receive_args,
                   per=[(theta[bounds[s]:bounds[s + 1]], h[bounds[s]:bounds[s + 1]])
                        for s in range(self.shards)])

    def rebalance(self, tolerance: float = 0.0) -> int:
        """Move agents so that every shard holds its target size (when some shard is off by
        more than ``tolerance`` of its target); returns the number of agents moved."""
        self.flush()
        off = [abs(s - t) / max(t, 1) for s, t in zip(self.sizes, self.targets)]
        if max(off) <= tolerance:
            return 0
        surplus = [max(s - t, 0) for s, t in zip(self.sizes, self.targets)]
        deficit = [max(t - s, 0) for s, t in zip(self.sizes, self.targets)]
        parts = self.gather("export", per=[(c,) for c in surplus], kind="shard")
        theta = np.concatenate([p[0] for p in parts])
        h = np.concatenate([p[1] for p in parts])
        # pending log-weights (adaptive resampling) move with their agents
        lw = None if parts[0][2] is None else np.concatenate([p[2] for p in parts])
        bounds = np.concatenate([[0], np.cumsum(deficit)])
        self.apply("receive", per=[(theta[bounds[s]:bounds[s + 1]], h[bounds[s]:bounds[s + 1]],
                                    None if lw is None else lw[bounds[s]:bounds[s + 1]])
                                   for s in range(self.shards)], kind="shard")
        self.flush()
        return int(sum(surplus))


__all__ = ["ShardContext"]
