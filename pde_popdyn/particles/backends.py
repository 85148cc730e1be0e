"""Where the shards of a sharded particle run live: dask actors, local processes, or this
process. Each backend starts one :class:`~pde_popdyn.particles.shard.Shard` per spec and runs
a batch of calls on every shard at once (:meth:`run_all`), returning each shard's results.

* :class:`DaskBackend` — one actor per shard on the workers of a dask.distributed Client,
  spread over the workers round-robin (one shard per worker when there are as many workers
  as shards); a round trip calls every shard's worker directly (not through the scheduler)
  with the pickled batch as bytes, and waits for all of them at once;
* :class:`ProcessBackend` — one local process per shard (spawned; the model and the options
  travel by cloudpickle, so lambdas work), talking over a pipe;
* :class:`InlineBackend` — the shards in this process, one after another (tests,
  debugging); the same results as the others, bit for bit.
"""

from __future__ import annotations

import pickle
import time
from typing import Any

from .shard import Shard


class _Stats:
    def __init__(self):
        self.round_trips = 0
        self.seconds = 0.0
        self.client_cpu_seconds = 0.0            # the client's CPU time in the round trips
        self.bytes_out = 0
        self.bytes_in = 0


class InlineBackend:
    """The shards in this process."""

    name = "inline"

    def __init__(self, specs: list[dict]):
        self.shards = [Shard(s) for s in specs]
        self.stats = _Stats()

    def run_all(self, batches: list[list]) -> list[list]:
        t0 = time.perf_counter()
        out = [sh.run(b) for sh, b in zip(self.shards, batches)]
        self.stats.round_trips += 1
        self.stats.seconds += time.perf_counter() - t0
        return out

    def close(self) -> None:
        self.shards = []


def _serve(conn, spec_bytes: bytes) -> None:  # pragma: no cover - runs in a child process
    import cloudpickle
    try:
        shard = Shard(cloudpickle.loads(spec_bytes))
        conn.send_bytes(pickle.dumps(("ok", None)))
    except BaseException as exc:                  # report, then leave
        conn.send_bytes(pickle.dumps(("error", repr(exc))))
        return
    while True:
        try:
            msg = conn.recv_bytes()
        except EOFError:
            return
        batch = pickle.loads(msg)
        if batch is None:
            return
        try:
            reply = ("ok", shard.run(batch))
        except BaseException as exc:              # the client raises it
            import traceback
            reply = ("error", f"{exc!r}\n{traceback.format_exc()}")
        conn.send_bytes(pickle.dumps(reply, protocol=pickle.HIGHEST_PROTOCOL))


class ProcessBackend:
    """One spawned local process per shard."""

    name = "processes"

    def __init__(self, specs: list[dict]):
        import multiprocessing as mp

        import cloudpickle
        ctx = mp.get_context("spawn")
        self.conns, self.procs = [], []
        self.stats = _Stats()
        for spec in specs:
            parent, child = ctx.Pipe()
            p = ctx.Process(target=_serve, args=(child, cloudpickle.dumps(spec)), daemon=True)
            p.start()
            child.close()
            self.conns.append(parent)
            self.procs.append(p)
        for rank, conn in enumerate(self.conns):
            status, detail = pickle.loads(conn.recv_bytes())
            if status != "ok":
                self.close()
                raise RuntimeError(f"shard {rank} failed to start: {detail}")

    def run_all(self, batches: list[list]) -> list[list]:
        t0, c0 = time.perf_counter(), time.process_time()
        for conn, b in zip(self.conns, batches):
            msg = pickle.dumps(b, protocol=pickle.HIGHEST_PROTOCOL)
            self.stats.bytes_out += len(msg)
            conn.send_bytes(msg)
        out = []
        for rank, conn in enumerate(self.conns):
            msg = conn.recv_bytes()
            self.stats.bytes_in += len(msg)
            status, res = pickle.loads(msg)
            if status != "ok":
                raise RuntimeError(f"shard {rank} failed: {res}")
            out.append(res)
        self.stats.round_trips += 1
        self.stats.seconds += time.perf_counter() - t0
        self.stats.client_cpu_seconds += time.process_time() - c0
        return out

    def close(self) -> None:
        for conn in self.conns:
            try:
                conn.send_bytes(pickle.dumps(None))
            except (OSError, BrokenPipeError):
                pass
        for p in self.procs:
            p.join(timeout=10)
            if p.is_alive():
                p.terminate()
        self.conns, self.procs = [], []


class DaskBackend:
    """One dask actor per shard, on the workers of ``client``."""

    name = "dask"

    def __init__(self, specs: list[dict], client: Any):
        workers = sorted(client.scheduler_info()["workers"])
        if not workers:
            raise ValueError("the dask client has no workers; start a cluster with workers "
                             "(e.g. LocalCluster(n_workers=2, threads_per_worker=1))")
        futures = [client.submit(Shard, spec, actor=True, workers=[workers[i % len(workers)]],
                                 allow_other_workers=False, pure=False)
                   for i, spec in enumerate(specs)]
        self.actors = [f.result() for f in futures]
        self.workers = [workers[i % len(workers)] for i in range(len(specs))]
        self.client = client
        self.stats = _Stats()
        # call the actors' workers directly, all shards in one coroutine, rather than through
        # the actor handles (which, unless the client is direct_to_workers, route every call
        # through the scheduler, and wait for each result on its own)
        self.direct = all(hasattr(client, a) for a in ("rpc", "sync"))
        if self.direct:                  # the worker's actor_execute handler is dask-internal:
            try:                         # check it once (an empty batch) and fall back if not
                self.client.sync(self._run_direct, [[] for _ in self.actors])
            except Exception:
                self.direct = False
            self.stats = _Stats()

    async def _run_direct(self, batches: list[list]) -> list:
        """The batches, pickled here and unpickled by the shards (:meth:`Shard.run_pickled`),
        so that dask moves plain bytes both ways."""
        import asyncio
        msgs = [pickle.dumps(b, protocol=pickle.HIGHEST_PROTOCOL) for b in batches]
        replies = await asyncio.gather(*[
            self.client.rpc(w).actor_execute(function="run_pickled", actor=a.key, args=[m],
                                             kwargs={})
            for w, a, m in zip(self.workers, self.actors, msgs)])
        out = []
        for r in replies:
            if r.get("status") != "OK":
                raise r["exception"]
            out.append(pickle.loads(r["result"]))
            self.stats.bytes_in += len(r["result"])
        self.stats.bytes_out += sum(len(m) for m in msgs)
        return out

    def run_all(self, batches: list[list]) -> list[list]:
        t0, c0 = time.perf_counter(), time.process_time()
        if self.direct:
            out = self.client.sync(self._run_direct, batches)
        else:
            futures = [a.run(b) for a, b in zip(self.actors, batches)]
            out = [f.result() for f in futures]
        self.stats.round_trips += 1
        self.stats.seconds += time.perf_counter() - t0
        self.stats.client_cpu_seconds += time.process_time() - c0
        if not self.direct:
            # what travelled, measured as the pickled size of the calls and their results
            self.stats.bytes_out += sum(len(pickle.dumps(b, protocol=5)) for b in batches)
            self.stats.bytes_in += sum(len(pickle.dumps(r, protocol=5)) for r in out)
        return out

    def close(self) -> None:
        self.actors = []


#: dask settings for a cluster that runs sharded particle runs on few cores: its bookkeeping
#: kept off the cores the workers compute on (idle, dask's defaults cost the client process,
#: which hosts the scheduler and the nannies, ~8 % of a core and each worker ~5 %; these ~2 %
#: and ~1 %): no worker profiler (it samples the computing thread every 10 ms), the event-loop
#: tick every second instead of every 20 ms, the system monitor every 2 s instead of 0.5 s,
#: and no work stealing (a sharded run's calls go to actors pinned to their workers). Use as
#: ``with dask.config.set(pde_popdyn.particles.DASK_SETTINGS): cluster = LocalCluster(...)``
#: (with ``dashboard_address=None`` too).
DASK_SETTINGS = {"distributed.worker.profile.enabled": False,
                 "distributed.admin.tick.interval": "1s",
                 "distributed.admin.system-monitor.interval": "2s",
                 "distributed.scheduler.work-stealing": False}


def make_backend(specs: list[dict], client: Any):
    """The backend for ``client``: a dask Client, None (local processes) or "inline"."""
    if client is None:
        return ProcessBackend(specs)
    if isinstance(client, str):
        if client != "inline":
            raise ValueError(f"client={client!r} is not known; give a dask.distributed "
                             f"Client, None (one local process per shard) or 'inline'")
        return InlineBackend(specs)
    if not hasattr(client, "submit") or not hasattr(client, "scheduler_info"):
        raise TypeError(f"client must be a dask.distributed Client, None or 'inline', got "
                        f"{type(client).__name__}")
    return DaskBackend(specs, client)


__all__ = ["InlineBackend", "ProcessBackend", "DaskBackend", "make_backend"]
