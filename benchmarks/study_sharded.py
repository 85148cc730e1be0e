"""Sharded particle runs on dask: speed-up over one process, agreement in law, and 10⁸ agents.

1. **Speed-up.** The throughput study's model (replicator, diffusion, exact OU, d = 1), 10⁷
   agents × 40 steps (quick: 2·10⁶ × 10), run unsharded in a fresh process and sharded on a
   dask LocalCluster of two workers with one thread each (each shard draws its own agents;
   positions are not gathered), alternately twice; the rates are agent-steps per wall-clock
   second, and the bar is ≥ 1.6× the one-process rate. The cluster runs with dask's own
   bookkeeping turned down (:data:`QUIET_DASK`: no worker profiler or dashboard, slower
   ticks and system monitor, no work stealing), which with two workers on two cores
   otherwise takes ~15 % of a core away from them; one more pair on a cluster with dask's
   default settings shows what a plain LocalCluster gives. The machine has two cores shared with
   other users: the load averages are recorded, and the figure is only as good as the share
   of the two cores the workers got. Per-step communication: round trips per step, their
   wall time beyond the shards' own compute time, and the bytes sent and received (the
   pickled calls and results); the same for S = 1 and 2 small shards, whose compute is
   negligible, gives the per-round-trip latency and the client's cost per shard.
2. **Agreement.** The closed-form Gaussian problem (pde_popdyn.presets.GaussianProblem),
   10⁶ agents (quick: 10⁵), 10 steps of Δt = 0.05, for each selection rule (replicator,
   BoltzmannJump with GaussianJump explore, Truncation with GaussianJump explore; PBT when
   the rule is available with a sharded face), unsharded and with S = 1, 2, 4 shards (the
   inline backend, which gives the same agents as dask bit for bit), three seeds each
   (quick: two). z-scores of the final moments (E θ, E h, Var θ, Var h, Cov) of each sharded
   configuration against the unsharded one, with the variance between seeds pooled over the
   configurations; for the replicator also against the exact moments of the scheme's
   mean-field limit. Bar: every |z| ≤ 4.
3. **10⁸ agents × 10³ steps** on the two-worker LocalCluster: run separately (it takes about
   an hour here) by ``python -m benchmarks.study_sharded --big``, in two legs (0 → 5, then
   resumed from the checkpoint → 10) with checkpoints every 250 steps; it writes
   ``results/sharded_1e8.json``, which this study reads: wall time, memory per worker and per
   agent, the moments against the exact solution of the PDE and against the scheme's
   mean-field limit, and the cost extrapolated to 64 workers from the measured compute per
   agent and communication per step.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np

from pde_popdyn.particles import DASK_SETTINGS

from ._common import DEFAULT_OUTDIR, machine_info, now, read_json, write_json

NAME = "sharded"
DESCRIPTION = (
    "Sharded particle runs on dask: 2 workers vs 1 process at 1e7 agents (bar >= 1.6x), "
    "moment z-scores of S = 1, 2, 4 shards against unsharded runs for every selection rule "
    "on the closed-form Gaussian problem at 1e6 agents (bar |z| <= 4), and the 1e8 x 1e3 run "
    "(python -m benchmarks.study_sharded --big) with its cost extrapolated to 64 workers.")

BIG_JSON = "sharded_1e8.json"

_ONE = textwrap.dedent('''
    import json, os, sys, time
    import numpy as np
    import pde_popdyn as pp
    sys.path.insert(0, os.getcwd())
    from benchmarks.study_sharded import throughput_model, throughput_init
    n, steps = int(sys.argv[1]), int(sys.argv[2])
    model = throughput_model()
    pp.simulate_particles(model, 20000, throughput_init, 0.02, 0.01, seed=1, h_box=(-3, 3),
                          progress=False)
    w0, c0 = time.perf_counter(), time.process_time()
    ens = pp.simulate_particles(model, n, throughput_init, steps * 0.01, 0.01, seed=1,
                                h_box=(-3, 3), progress=False)
    wall, cpu = time.perf_counter() - w0, time.process_time() - c0
    print(json.dumps({"wall_seconds": wall, "cpu_seconds": cpu, "engine": ens.info["engine"],
                      "run_seconds": ens.info["run_seconds"], "loadavg": os.getloadavg()}))
''')


def throughput_model():
    import pde_popdyn as pp
    return pp.Model(lambda th, h: 0.5 * (th - h) ** 2, lambda th, h: -(th - 0.5) ** 2,
                    temperature=0.05, eps=0.01, selection=pp.Replicator(1.0),
                    mutation=pp.Diffusion(0.01), quadratic=(1.0, pp.AffineCenter()))


def throughput_init(n, rng):
    return rng.normal(-0.5, 0.2, n), rng.normal(-1.0, 0.2, n)


def gaussian_init(problem):
    def draw(n, rng):
        z = rng.multivariate_normal(problem.mean0, problem.cov0, n)
        return z[:, 0].copy(), z[:, 1].copy()
    return draw


def _env() -> dict:
    return dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1",
                NUMBA_NUM_THREADS="1", PYTHONPATH=os.pathsep.join(
                    [str(Path(__file__).resolve().parents[1]), os.environ.get("PYTHONPATH", "")]))


#: dask settings of the benchmark's cluster (the package's recommendation for sharded runs on
#: few cores, :data:`pde_popdyn.particles.DASK_SETTINGS`: no worker profiler or dashboard,
#: slower bookkeeping ticks, no work stealing)
QUIET_DASK = DASK_SETTINGS


def _cluster(quiet: bool = True):
    """The two-worker LocalCluster (one thread each); ``quiet=False``: dask's own defaults
    (profiler, dashboard, 20 ms tick), as a user who creates a plain LocalCluster gets."""
    import dask
    from distributed import Client, LocalCluster
    env = {"OMP_NUM_THREADS": "1", "NUMBA_NUM_THREADS": "1"}
    if not quiet:
        cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True, env=env)
        return cluster, Client(cluster)
    with dask.config.set(QUIET_DASK):
        cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                               dashboard_address=None, env=env)
        return cluster, Client(cluster)


def _one_process(n: int, steps: int) -> dict:
    out = subprocess.run([sys.executable, "-c", _ONE, str(n), str(steps)], capture_output=True,
                         text=True, env=_env(), cwd=str(Path(__file__).resolve().parents[1]),
                         timeout=7200)
    if out.returncode != 0:
        raise RuntimeError(f"one-process child failed: {out.stderr[-2000:]}")
    r = json.loads(out.stdout.strip().splitlines()[-1])
    r["rate"] = n * steps / r["run_seconds"]
    return r


def _worker_cpu(client) -> dict:
    def cpu_now():
        import resource
        r = resource.getrusage(resource.RUSAGE_SELF)
        return r.ru_utime + r.ru_stime
    return client.run(cpu_now)


def _sharded(client, n: int, steps: int, shards: int = 2, model=None, init=None) -> dict:
    import pde_popdyn as pp
    cpu0 = _worker_cpu(client)
    ens = pp.simulate_particles(model or throughput_model(), n, init or throughput_init,
                                steps * 0.01, 0.01, seed=1, h_box=(-3, 3), shards=shards,
                                client=client, gather=False, progress=False)
    cpu1 = _worker_cpu(client)
    i = ens.info
    busy = max(i["shard_busy_seconds"])
    return {"run_seconds": i["run_seconds"], "rate": n * steps / i["run_seconds"],
            "round_trips": i["round_trips"], "round_trip_seconds": i["round_trip_seconds"],
            "shard_busy_seconds": i["shard_busy_seconds"],
            "shard_cpu_seconds": i.get("shard_cpu_seconds"),
            "worker_cpu_seconds": [cpu1[w] - cpu0[w] for w in sorted(cpu0)],
            "comm_seconds_per_step": max(i["run_seconds"] - busy, 0.0) / steps,
            "client_cpu_seconds_per_round_trip": i["client_cpu_seconds_in_round_trips"]
            / max(i["round_trips"], 1),
            "bytes_per_step": ((i["bytes_to_shards"] or 0) + (i["bytes_from_shards"] or 0))
            / steps, "round_trips_per_step": i["round_trips"] / steps,
            "loadavg": os.getloadavg()}


def speedup(quick: bool) -> dict:
    n, steps = (2_000_000, 10) if quick else (10_000_000, 40)
    cluster, client = _cluster()
    try:
        _sharded(client, 20_000, 2)                        # workers import and load kernels
        one, two = [], []
        for _ in range(2):
            one.append(_one_process(n, steps))
            two.append(_sharded(client, n, steps))
        small = {s: _sharded(client, 20_000, 20, shards=s) for s in (1, 2)}
    finally:
        client.close()
        cluster.close()
    # the same pair once more on a cluster with dask's default settings
    cluster, client = _cluster(quiet=False)
    try:
        _sharded(client, 20_000, 2)
        plain = {"one_process": _one_process(n, steps), "two_workers": _sharded(client, n, steps)}
    finally:
        client.close()
        cluster.close()
    plain["speedup"] = plain["two_workers"]["rate"] / plain["one_process"]["rate"]
    r1 = max(r["rate"] for r in one)
    r2 = max(r["rate"] for r in two)
    # with a core per worker: the one process's CPU time against the busiest worker's
    cpu1 = min(r["cpu_seconds"] for r in one)
    cpu2 = min(max(r["worker_cpu_seconds"]) for r in two)
    c1, c2 = (small[s]["comm_seconds_per_step"] for s in (1, 2))
    per_shard = (small[2]["client_cpu_seconds_per_round_trip"]
                 - small[1]["client_cpu_seconds_per_round_trip"])
    return {"n": n, "steps": steps, "one_process": one, "two_workers": two,
            "rate_one_process": r1, "rate_two_workers": r2, "speedup": r2 / r1,
            "speedup_cpu": cpu1 / cpu2, "small_runs": small, "default_dask_settings": plain,
            "latency_per_round_trip": max(c1 - max(per_shard, 0.0), 0.0),
            "comm_seconds_per_step_small": {"1": c1, "2": c2},
            "client_seconds_per_shard": max(per_shard, 0.0)}


def _rules():
    import pde_popdyn as pp
    from pde_popdyn.presets import GaussianProblem
    gp = GaussianProblem()
    base = gp.model()
    out = {"replicator": base}
    quad = (gp.K, lambda h: gp.a * h + gp.b)
    for name, sel in (("boltzmann", pp.BoltzmannJump(1.0, 2.0)),
                      ("truncation", pp.Truncation(1.0, 0.2))):
        out[name] = pp.Model(base.loss, base.fitness, temperature=gp.T, eps=gp.eps,
                             selection=sel, mutation=pp.GaussianJump(0.05), quadratic=quad)
    if hasattr(pp, "PBT"):
        out["pbt"] = pp.Model(base.loss, base.fitness, temperature=gp.T, eps=gp.eps,
                              selection=pp.PBT(0.1, 0.2), mutation=pp.GaussianJump(0.05),
                              quadratic=quad)
    return gp, out


MOMENTS = ("mean_theta", "mean_h", "var_theta", "var_h", "cov_theta_h")


def agreement(quick: bool) -> dict:
    import pde_popdyn as pp
    from pde_popdyn.compare import gaussian_scheme_moments
    n, reps = (100_000, 2) if quick else (1_000_000, 3)
    dt, steps = 0.05, 10
    gp, models = _rules()
    configs = {"unsharded": {}, **{f"S={s}": {"shards": s, "client": "inline"}
                                   for s in (1, 2, 4)}}
    out = {}
    for name, model in models.items():
        vals: dict = {c: [] for c in configs}
        try:
            for c, kw in configs.items():
                for r in range(reps):
                    ens = pp.simulate_particles(model, n, gaussian_init(gp), dt * steps, dt,
                                                seed=100 + r, h_box=gp.h_box, progress=False,
                                                **kw)
                    m = ens.moments()
                    vals[c].append([float(m[k][-1]) for k in MOMENTS])
        except NotImplementedError as exc:
            out[name] = {"status": f"no sharded face: {exc}"}
            continue
        arr = {c: np.array(v) for c, v in vals.items()}
        pooled = np.mean([a.var(axis=0, ddof=1) for a in arr.values()], axis=0)
        z = {c: ((arr[c].mean(0) - arr["unsharded"].mean(0)) /
                 np.sqrt(2 * pooled / reps)).tolist() for c in configs if c != "unsharded"}
        rec = {"moments": MOMENTS, "means": {c: a.mean(0).tolist() for c, a in arr.items()},
               "between_seed_sd": np.sqrt(pooled).tolist(), "z_vs_unsharded": z,
               "max_abs_z": float(np.max(np.abs(list(z.values()))))}
        if name == "replicator":
            mu, cov = gaussian_scheme_moments(gp, dt, steps, splitting="strang")
            exact = np.array([mu[-1][0], mu[-1][1], cov[-1][0, 0], cov[-1][1, 1],
                              cov[-1][0, 1]])
            rec["scheme_limit"] = exact.tolist()
            rec["z_vs_scheme_limit"] = {c: ((a.mean(0) - exact) / np.sqrt(pooled / reps))
                                        .tolist() for c, a in arr.items()}
        out[name] = rec
    return {"n": n, "reps": reps, "dt": dt, "steps": steps, "rules": out}


# --------------------------------------------------------------------------------------------
# 10⁸ agents
# --------------------------------------------------------------------------------------------
def big_run(n: int, steps: int, ckpt: Path, out: Path, checkpoint_every: int | None = None
            ) -> dict:
    """The two-leg 10⁸-agent run (module docstring, part 3): ``steps`` steps of Δt = 0.01,
    the second half resumed from the checkpoint of the first; the workers' CPU time per step
    gives the cost of 10³ steps with a whole core per worker."""
    import shutil

    import pde_popdyn as pp
    from pde_popdyn.compare import gaussian_scheme_moments
    from pde_popdyn.presets import GaussianProblem
    gp = GaussianProblem()
    model = gp.model()
    dt = 0.01
    half = steps // 2
    every = checkpoint_every or max(1, steps // 4)
    shutil.rmtree(ckpt, ignore_errors=True)
    rec: dict = {"n": n, "steps": steps, "dt": dt, "problem": gp.to_dict(), "date": now(),
                 "loadavg_start": os.getloadavg()}
    cluster, client = _cluster()

    def rss_now():
        import psutil
        return psutil.Process().memory_info().rss

    def cpu_now():
        import resource
        r = resource.getrusage(resource.RUSAGE_SELF)
        return r.ru_utime + r.ru_stime
    try:
        rec["worker_rss_before_bytes"] = client.run(rss_now)
        cpu0 = client.run(cpu_now)
        t0 = time.perf_counter()
        leg1 = pp.simulate_particles(model, n, gaussian_init(gp), half * dt, dt, seed=2024,
                                     shards=2, client=client, gather=False, summary_every=10,
                                     checkpoint=ckpt, checkpoint_every=every, h_box=gp.h_box,
                                     progress=True)
        t1 = time.perf_counter()
        rec["leg1"] = {"wall_seconds": t1 - t0, "info": leg1.info,
                       "loadavg": os.getloadavg()}
        cpu1 = client.run(cpu_now)
        leg2 = pp.simulate_particles(model, None, None, steps * dt, None, resume=ckpt,
                                     client=client, gather=False, summary_every=10,
                                     checkpoint_every=every, progress=True)
        t2 = time.perf_counter()
        cpu2 = client.run(cpu_now)
        rec["leg2"] = {"wall_seconds": t2 - t1, "info": leg2.info, "loadavg": os.getloadavg()}

        def peak_rss():
            import resource
            return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        rss = client.run(peak_rss)
    finally:
        client.close()
        cluster.close()
    rec["wall_seconds"] = t2 - t0
    rec["checkpoint_every"] = every
    rec["worker_cpu_seconds"] = {"leg1": {w: cpu1[w] - cpu0[w] for w in cpu0},
                                 "leg2": {w: cpu2[w] - cpu1[w] for w in cpu0}}
    # a worker's CPU seconds per step in the second leg (no initial sampling), and the cost of
    # 10³ steps if each worker had a core of its own
    per_step = max(rec["worker_cpu_seconds"]["leg2"].values()) / (steps - half)
    rec["worker_cpu_seconds_per_step"] = per_step
    rec["projected_seconds_1e3_steps_full_cores"] = 1e3 * per_step
    rec["projected_seconds_1e3_steps_as_measured"] = 1e3 * (t2 - t1) / (steps - half)
    rec["worker_peak_rss_bytes"] = rss
    rec["peak_rss_bytes_per_agent"] = max(rss.values()) / (n / 2)
    rec["rss_growth_bytes_per_agent"] = max(rss[w] - rec["worker_rss_before_bytes"][w]
                                            for w in rss) / (n / 2)
    s = {k: np.concatenate([leg1.summaries[k], leg2.summaries[k][1:]]) for k in leg1.summaries}
    times = s["t"]
    mu_x, cov_x = gp.exact(times)
    mu_s, cov_s = gaussian_scheme_moments(gp, dt, steps, splitting="strang")
    idx = np.rint(times / dt).astype(int)
    rec["summaries"] = s
    rec["exact_pde"] = {"mean": mu_x, "cov": cov_x}
    rec["scheme_limit"] = {"mean": mu_s[idx], "cov": cov_s[idx]}
    sd = np.sqrt(np.stack([s["var_theta"], s["var_h"]], 1) / n)
    rec["final"] = {
        "mean_theta": [float(s["mean_theta"][-1]), float(mu_x[-1][0]), float(mu_s[-1][0])],
        "mean_h": [float(s["mean_h"][-1]), float(mu_x[-1][1]), float(mu_s[-1][1])],
        "var_theta": [float(s["var_theta"][-1]), float(cov_x[-1][0, 0]),
                      float(cov_s[-1][0, 0])],
        "var_h": [float(s["var_h"][-1]), float(cov_x[-1][1, 1]), float(cov_s[-1][1, 1])],
        "order": "[particles, exact PDE, scheme limit]",
        "sd_of_means": sd[-1].tolist()}
    write_json(out, rec)
    return rec


def extrapolate(big: dict, sp: dict, workers: int = 64) -> dict:
    """Cost of 10⁸ × 10³ on ``workers`` workers: per-step compute ∝ N/W from the measured
    busy time per agent-step of the big run's shards, plus the measured communication per
    step: a round-trip latency and the client's cost per shard, times W."""
    legs = [big["leg1"]["info"], big["leg2"]["info"]]
    agent_steps = sum(i["n_steps"] for i in legs) * big["n"]
    busy = sum(max(i["shard_busy_seconds"]) for i in legs)
    per_agent_step = busy * 2 / agent_steps             # one worker's seconds per agent-step
    steps = sum(i["n_steps"] for i in legs)
    comm_big = (sum(i["run_seconds"] for i in legs) - busy) / steps
    lat, per_shard = sp["latency_per_round_trip"], sp["client_seconds_per_shard"]
    t_step = per_agent_step * big["n"] / workers + lat + per_shard * workers
    return {"workers": workers, "seconds_per_agent_step_per_worker": per_agent_step,
            "measured_comm_seconds_per_step_2_workers": comm_big,
            "latency_per_round_trip": lat, "client_seconds_per_shard": per_shard,
            "seconds_per_step": t_step, "seconds_for_1e3_steps": 1e3 * t_step,
            "memory_per_worker_bytes": big["peak_rss_bytes_per_agent"] * big["n"] / workers}


# --------------------------------------------------------------------------------------------
def run(quick: bool, outdir: Path) -> dict:
    outdir = Path(outdir)
    t_start = time.perf_counter()
    res: dict = {"machine": machine_info(), "date": now(), "quick": quick,
                 "loadavg_start": os.getloadavg()}
    res["speedup"] = sp = speedup(quick)
    res["agreement"] = ag = agreement(quick)
    big_path = outdir / BIG_JSON
    if not big_path.exists() and (DEFAULT_OUTDIR / BIG_JSON).exists():
        big_path = DEFAULT_OUTDIR / BIG_JSON
    big = read_json(big_path) if big_path.exists() else None
    if big is not None:
        res["big"] = {k: big.get(k) for k in (
            "n", "steps", "wall_seconds", "final", "peak_rss_bytes_per_agent",
            "rss_growth_bytes_per_agent", "worker_peak_rss_bytes", "loadavg_start",
            "worker_cpu_seconds_per_step", "projected_seconds_1e3_steps_full_cores",
            "projected_seconds_1e3_steps_as_measured", "checkpoint_every")}
        res["extrapolation"] = extrapolate(big, sp)
    zmax = max(r.get("max_abs_z", 0.0) for r in ag["rules"].values())
    pending = [k for k, r in ag["rules"].items() if "status" in r]
    res["passed"] = passed = sp["speedup"] >= 1.6 and zmax <= 4 and not pending
    head = (f"2 dask workers {sp['speedup']:.2f}x one process at {sp['n']:.0e} agents "
            f"[bar 1.6] ({sp['speedup_cpu']:.2f}x in CPU time: a core per worker; "
            f"{sp['default_dask_settings']['speedup']:.2f}x with dask's default cluster "
            f"settings); max |z| "
            f"{zmax:.1f} over S=1,2,4 x "
            f"{', '.join(k for k in ag['rules'] if k not in pending)} at {ag['n']:.0e} "
            f"[bar 4]")
    if pending:
        head += f"; no sharded face yet: {', '.join(pending)}"
    if big is not None:
        e = res["extrapolation"]
        head += (f"; 1e8 x {big['steps']}: {big['wall_seconds'] / 60:.0f} min on 2 workers "
                 f"(1e3 steps: {big['projected_seconds_1e3_steps_as_measured'] / 3600:.1f} h "
                 f"as loaded, {big['projected_seconds_1e3_steps_full_cores'] / 60:.0f} min "
                 f"with a core per worker), {big['peak_rss_bytes_per_agent']:.0f} B/agent "
                 f"peak RSS; 64 workers ~{e['seconds_for_1e3_steps']:.0f} s")
    head += f"; load {res['loadavg_start'][0]:.1f}"
    res["headline"] = head
    res["wall_seconds"] = time.perf_counter() - t_start
    write_json(outdir / f"{NAME}.json", res)
    _figure(res, outdir / f"{NAME}.png")
    return {"headline": head, "passed": passed}


def _figure(res: dict, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(16, 4.5))
    sp = res["speedup"]
    ax = axes[0]
    ax.bar(["1 process", "2 dask workers"], [sp["rate_one_process"], sp["rate_two_workers"]],
           color=["tab:blue", "tab:green"])
    ax.axhline(1.6 * sp["rate_one_process"], color="r", ls=":", label="bar: 1.6 × one process")
    ax.set(ylabel="agent-steps per second", title=f"{sp['n']:.0e} agents, replicator, d = 1")
    ax.legend(fontsize=8)
    ax = axes[1]
    ag = res["agreement"]["rules"]
    labels, zs = [], []
    for rule, r in ag.items():
        for c, z in r.get("z_vs_unsharded", {}).items():
            labels.append(f"{rule} {c}")
            zs.append(np.max(np.abs(z)))
    ax.barh(range(len(zs)), zs, color="tab:purple")
    ax.axvline(4, color="r", ls=":", label="bar: 4")
    ax.set_yticks(range(len(zs)))
    ax.set_yticklabels(labels, fontsize=7)
    ax.set(xlabel="max |z| of the final moments vs unsharded", title="Agreement in law")
    ax.legend(fontsize=8)
    ax = axes[2]
    big = res.get("big")
    if big is not None:
        full = read_json(Path(path).with_name(BIG_JSON)) if Path(path).with_name(
            BIG_JSON).exists() else read_json(DEFAULT_OUTDIR / BIG_JSON)
        s = full["summaries"]
        t = np.asarray(s["t"])
        mx = np.asarray(full["exact_pde"]["mean"])
        ax.plot(t, s["mean_h"], "k-", label="E h, 10⁸ agents")
        ax.plot(t, mx[:, 1], "r--", label="E h, exact PDE")
        ax.plot(t, s["mean_theta"], "b-", label="E θ, 10⁸ agents")
        ax.plot(t, mx[:, 0], "c--", label="E θ, exact PDE")
        ax.set(xlabel="t", title=f"10⁸ × 10³ on 2 workers: {big['wall_seconds'] / 60:.0f} min")
        ax.legend(fontsize=8)
    else:
        ax.text(0.5, 0.5, "run python -m benchmarks.study_sharded --big", ha="center")
        ax.set_axis_off()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.study_sharded",
                                description="The 10⁸-agent sharded run (part 3).")
    p.add_argument("--big", action="store_true", help="run the 10⁸ × 10³ job")
    p.add_argument("--n", type=float, default=1e8)
    p.add_argument("--steps", type=int, default=1000)
    p.add_argument("--checkpoint-every", type=int, default=None)
    p.add_argument("--ckpt", type=Path, default=Path("/tmp/pde_popdyn_1e8_checkpoint"))
    p.add_argument("--out", type=Path, default=DEFAULT_OUTDIR / BIG_JSON)
    a = p.parse_args(argv)
    if not a.big:
        p.print_help()
        return 2
    rec = big_run(int(a.n), a.steps, a.ckpt, a.out, a.checkpoint_every)
    print(json.dumps({k: rec[k] for k in ("wall_seconds", "final", "peak_rss_bytes_per_agent")},
                     default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
