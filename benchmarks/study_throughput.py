"""Throughput of the particle system: 10⁶ agents × 10³ steps, θ ∈ R, replicator selection.

Model: L = ½(θ − h)² declared quadratic with an affine centre,
``quadratic=(1.0, pp.AffineCenter())`` (exact OU step), F = −(θ − ½)², T = 0.05, ε = 0.01,
Replicator(κ = 1), Diffusion(D = 0.01), reflecting h-box [−3, 3]. ``simulate_particles``
with its defaults: Strang splitting (M(Δt/2) O(Δt) M(Δt/2), sampled as one Gaussian move of
(θ, h) with two normals per agent-step), systematic resampling at every step, the fused
engine, positions kept at the first and the last step only.

Each configuration runs in a fresh subprocess, which measures numpy's standard-normal rate
(``Generator.standard_normal(out=...)`` on 10⁶ doubles, PCG64) just before and after the run,
in wall-clock and in CPU time; the ratio of agent-steps/s to it is the machine-independent
figure (bar ≥ 0.5, from the better of the two measurements of the normal rate). On a shared
machine the wall-clock ratio moves with the load (other processes take the core away from
both measurements unequally); the CPU-time ratio does not, and both are reported with the
load averages. Memory: the peak of numpy allocations traced by ``tracemalloc`` during a
20-step run of the same configuration, less what was allocated before it, per agent (bar
≤ 64 bytes), and the growth of the peak resident set of the process during the timed run.

Configurations: the default (the full 10³ steps) and, for comparison, 100-step probes of the
numpy engine (the step-by-step path), Lie splitting, adaptive resampling
(``ess_threshold=0.5``), and the same model with its centre given as a plain callable
``lambda h: h`` (the solver cannot know it is affine, so the Strang step draws three normals
per agent-step and evaluates the callable between its two passes).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from ._common import machine_info, now, write_json

NAME = "throughput"
DESCRIPTION = (
    "Particle throughput: 1e6 agents x 1e3 steps, d=1, replicator + diffusion, exact OU step, "
    "simulate_particles defaults (fused engine, Strang): agent-steps/s against numpy's "
    "standard-normal rate measured in the same process, wall and CPU time (bar >= 0.5), peak "
    "traced memory per agent (bar <= 64 bytes); the numpy engine, Lie splitting and adaptive "
    "resampling as 100-step probes.")

_CHILD = textwrap.dedent('''
    import json, os, resource, sys, time, tracemalloc
    import numpy as np
    import pde_popdyn as pp
    cfg = json.loads(sys.argv[1])
    n, steps = cfg["n"], cfg["steps"]
    center = (lambda h: h) if cfg["center"] == "callable" else pp.AffineCenter()
    model = pp.Model(lambda th, h: 0.5 * (th - h) ** 2, lambda th, h: -(th - 0.5) ** 2,
                     temperature=0.05, eps=0.01, selection=pp.Replicator(1.0),
                     mutation=pp.Diffusion(0.01), quadratic=(1.0, center))
    rng = np.random.default_rng(0)
    th0, h0 = rng.normal(-0.5, 0.2, n), rng.normal(-1.0, 0.2, n)
    buf = np.empty(1_000_000)
    gen = np.random.default_rng(1)

    def normal_rate(clock, reps=5):
        best = np.inf
        for _ in range(reps):
            t = clock()
            for _ in range(10):
                gen.standard_normal(out=buf)
            best = min(best, clock() - t)
        return 10 * buf.size / best

    def run(k):
        return pp.simulate_particles(model, n, (th0, h0), k * 0.01, 0.01, seed=2,
                                     h_box=(-3.0, 3.0), progress=False, **cfg["options"])

    run(2)                                     # warm up (imports, compiled code, allocations)
    load0 = os.getloadavg()
    before = normal_rate(time.perf_counter), normal_rate(time.process_time)
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    w0, c0 = time.perf_counter(), time.process_time()
    ens = run(steps)
    wall, cpu = time.perf_counter() - w0, time.process_time() - c0
    rss1 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    after = normal_rate(time.perf_counter), normal_rate(time.process_time)
    load1 = os.getloadavg()
    del ens
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    small = run(20)
    peak = tracemalloc.get_traced_memory()[1] - base
    tracemalloc.stop()
    print(json.dumps({
        "wall_seconds": wall, "cpu_seconds": cpu,
        "agent_steps_per_second": n * steps / wall,
        "agent_steps_per_cpu_second": n * steps / cpu,
        "normal_rate_wall": max(before[0], after[0]), "normal_rate_cpu": max(before[1], after[1]),
        "normal_rates": {"before": before, "after": after},
        "engine": small.info["engine"], "peak_traced_bytes_per_agent": peak / n,
        "rss_growth_bytes_per_agent": (rss1 - rss0) * 1024 / n, "peak_rss_MB": rss1 / 1024,
        "loadavg_before": load0, "loadavg_after": load1}))
''')

CONFIGS = {
    "default (fused, strang, resample every step)": {},
    "numpy engine": {"engine": "numpy"},
    "fused, lie": {"splitting": "lie"},
    "fused, adaptive resampling (ESS 0.5)": {"ess_threshold": 0.5},
    "centre as a plain callable (three normals)": {"center": "callable"},
}
DEFAULT = "default (fused, strang, resample every step)"


def _child(n: int, steps: int, options: dict) -> dict:
    options = dict(options)
    center = options.pop("center", "affine")
    cfg = json.dumps({"n": n, "steps": steps, "options": options, "center": center})
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", NUMBA_NUM_THREADS="1")
    out = subprocess.run([sys.executable, "-c", _CHILD, cfg], capture_output=True, text=True,
                         env=env, timeout=7200)
    if out.returncode != 0:
        raise RuntimeError(f"throughput child failed: {out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def run(quick: bool, outdir: Path) -> dict:
    outdir = Path(outdir)
    t_start = time.perf_counter()
    n = 1_000_000
    rows = {}
    for name, opts in CONFIGS.items():
        steps = (50 if quick else 1000) if name == DEFAULT else (20 if quick else 100)
        r = _child(n, steps, opts)
        r.update(options=opts, steps=steps)
        r["ratio_wall"] = r["agent_steps_per_second"] / r["normal_rate_wall"]
        r["ratio_cpu"] = r["agent_steps_per_cpu_second"] / r["normal_rate_cpu"]
        r["projected_seconds_1e6_x_1e3"] = 1e9 / r["agent_steps_per_second"]
        rows[name] = r
    d = rows[DEFAULT]
    best_ratio = max(d["ratio_wall"], d["ratio_cpu"])
    passed = best_ratio >= 0.5 and d["peak_traced_bytes_per_agent"] <= 64
    what = "50 steps" if quick else "1e3 steps"
    headline = (f"1e6 agents x {what}, defaults (fused, Strang): {d['wall_seconds']:.0f} s, "
                f"{d['agent_steps_per_second']:.2e} agent-steps/s = {d['ratio_wall']:.2f} x "
                f"numpy's normal rate (wall), {d['ratio_cpu']:.2f} x (CPU time) [bar 0.5]; "
                f"peak {d['peak_traced_bytes_per_agent']:.0f} B/agent [bar 64]; numpy engine "
                f"{rows['numpy engine']['ratio_cpu']:.2f} x; load "
                f"{d['loadavg_before'][0]:.1f}")
    res = {"machine": machine_info(), "date": now(), "quick": quick, "n_agents": n,
           "configs": rows, "default": DEFAULT, "passed": passed, "headline": headline,
           "wall_seconds": time.perf_counter() - t_start}
    write_json(outdir / f"{NAME}.json", res)
    _figure(res, outdir / f"{NAME}.png")
    return {"headline": headline, "passed": passed}


def _figure(res: dict, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    names = list(res["configs"])
    rows = [res["configs"][k] for k in names]
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    ax = axes[0]
    y = np.arange(len(names))
    ax.barh(y - 0.2, [r["ratio_wall"] for r in rows], 0.4, color="tab:blue", label="wall")
    ax.barh(y + 0.2, [r["ratio_cpu"] for r in rows], 0.4, color="tab:green", label="CPU time")
    ax.axvline(0.5, color="r", ls=":", label="bar: 0.5")
    ax.set_yticks(y)
    ax.set_yticklabels(names, fontsize=8)
    ax.set(xlabel="agent-steps/s ÷ numpy standard normals/s (same process)",
           title="Throughput, 10⁶ agents, d = 1, replicator")
    ax.legend(fontsize=8)
    ax = axes[1]
    ax.barh(y, [r["peak_traced_bytes_per_agent"] for r in rows], color="tab:orange")
    ax.axvline(64, color="r", ls=":", label="bar: 64 B")
    ax.set_yticks(y)
    ax.set_yticklabels([""] * len(names))
    ax.set(xlabel="peak traced numpy memory per agent (bytes)", title="Memory")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
