"""Scaling: cost per step of the grid solver against the grid, particle throughput against N.

A. Grid. ``pp.solve`` (Strang splitting, FV) on the linear-Gaussian problem of the speed study
   (docs/model.md, Closed forms; κ = 1, D = 0.02, T = 0.05) on n² grids, n = 64 … 512, with Δt = 0.01, at
   ε = 0.1 and ε = 1e-5 (the same Δt: Δt/ε = 1000 for the stiff case). For each run the set-up
   (operators and the fast propagator e^{Δt A}) and the stepping are timed separately (the
   minimum over repeats), and the cost of a step is the stepping time over the step count
   (:func:`benchmarks.study_speed.cost_per_step`, shared with the speed study, which also
   reports where a step's time goes). Fitted: the least-squares exponent p of cost per step
   ∝ cells^p with its standard error, over all sizes and over n ≥ 128 (small grids are
   dominated by fixed per-step overheads); the same for the set-up.
   What to expect: the selection step is O(cells), the DCT mutation step O(cells log n_h); the
   fast step at ε = 1e-5 is the projection onto the per-column Gibbs state, O(cells); at ε = 0.1
   it is a uniformisation series whose length grows with Δt/(εΔθ²), or a dense per-column
   matrix (O(cells · n_θ)), whichever the cost model picks, so p > 1 there.

B. Particles. ``pp.simulate_particles`` with the replicator rule (resampling every step) and
   the exact Ornstein–Uhlenbeck fast step (the model declares its loss quadratic), Strang
   splitting, reflecting h-box, Δt = 0.01, on the same Gaussian problem, N = 1e3 … 1e6 agents,
   a fixed number of steps, saving only the first and last states. Reported: wall time of the
   whole call (minimum over repeats) and agent-steps per second N·steps/time, plus the
   exponent of time against N (→ 1 once the per-step overhead is amortised).

Timings run with single-threaded BLAS (``threadpoolctl``, recorded); on a shared machine they
move with the load, which is recorded at the start and the end.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np

import pde_popdyn as pp

from ._common import fit_line, machine_info, now, write_json
from .study_speed import (EPS_SMALL, PROBLEM, SCALING_DT, blas_threads, cost_per_step,
                          problem, wrap)

NAME = "scaling"
DESCRIPTION = (
    "Cost per Strang step of pp.solve against grid size 64²..512² at eps=0.1 and eps=1e-5 "
    "(same dt=0.01; set-up timed separately), with the fitted exponent of cells and its "
    "spread; particle throughput (agent-steps/s) of pp.simulate_particles with replicator "
    "resampling and the exact OU step for N = 1e3..1e6.")

PARTICLE_DT = 0.01
CONFIG = {
    "full": {"sizes": (64, 96, 128, 192, 256, 384, 512), "steps": 10, "repeats": 3,
             "agents": (1_000, 3_000, 10_000, 30_000, 100_000, 300_000, 1_000_000),
             "particle_steps": 20, "particle_repeats": 3},
    "quick": {"sizes": (64, 128, 256), "steps": 10, "repeats": 2,
              "agents": (1_000, 10_000, 100_000, 1_000_000), "particle_steps": 10,
              "particle_repeats": 2},
}


def _loadavg():
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except (AttributeError, OSError):  # pragma: no cover - not on Unix
        return None


def _fit(x, y) -> dict:
    if len(x) < 2:
        return {"slope": None, "stderr": None, "intercept": None, "points": len(x)}
    p, c, se = fit_line(x, y)
    return {"slope": p, "stderr": se, "intercept": c, "points": len(x)}


# -- A. grid -----------------------------------------------------------------------------------
def grid_scaling(sizes, n_steps: int, repeats: int) -> tuple[list[dict], dict]:
    cost_per_step(PROBLEM["eps"], sizes[0], 2, 1)       # warm-up, discarded
    recs = [cost_per_step(eps, n, n_steps, repeats)
            for eps in (PROBLEM["eps"], EPS_SMALL) for n in sizes]
    fits = {}
    for eps in (PROBLEM["eps"], EPS_SMALL):
        rs = [r for r in recs if r["eps"] == eps]
        big = [r for r in rs if r["n"] >= 128]
        fits[f"{eps:g}"] = {
            "per_step": _fit([r["cells"] for r in rs], [r["per_step_seconds"] for r in rs]),
            "per_step_n_ge_128": _fit([r["cells"] for r in big],
                                      [r["per_step_seconds"] for r in big]),
            "setup": _fit([r["cells"] for r in rs], [r["setup_seconds"] for r in rs]),
            "sizes": [r["n"] for r in rs]}
    return recs, fits


# -- B. particles ------------------------------------------------------------------------------
def particle_model() -> pp.Model:
    """The speed study's Gaussian model, declaring its loss quadratic (exact OU fast step)."""
    gp = problem()
    m = gp.model()
    return pp.Model(m.loss, m.fitness, temperature=gp.T, eps=gp.eps, mobility=gp.mobility,
                    selection=m.selection, mutation=m.mutation,
                    quadratic=(gp.K, lambda h: gp.a * h + gp.b), name="gaussian")


def particle_throughput(n: int, steps: int, repeats: int, seed: int = 0) -> dict:
    gp = problem()
    model = particle_model()
    z = np.random.default_rng(seed).multivariate_normal(gp.mean0, gp.cov0, n)
    th0, h0 = z[:, 0].copy(), z[:, 1].copy()

    def go():
        return pp.simulate_particles(model, n, (th0, h0), steps * PARTICLE_DT, PARTICLE_DT,
                                     seed=seed + 1, save_every=steps, h_box=gp.h_box,
                                     progress=False)

    go()                                   # warm-up: first allocations, imports
    walls, runs, ens = [], [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        ens = go()
        walls.append(time.perf_counter() - t0)
        runs.append(float(ens.info["run_seconds"]))
    wall = min(walls)
    rec = {"n": n, "steps": steps, "dt": PARTICLE_DT, "wall_seconds": wall,
           "wall_seconds_all": walls, "run_seconds": min(runs),
           "agent_steps_per_second": n * steps / wall,
           "agent_steps_per_second_run": n * steps / min(runs),
           "per_step_seconds": wall / steps, "fast": ens.info["fast"],
           "replicator": ens.info["replicator"], "resamples": ens.info["resamples"],
           "splitting": ens.info["splitting"], "mean_h_final": float(ens.mean_h[-1])}
    print(f"  [particles] N={n:.0e}: {wall:.3f} s for {steps} steps, "
          f"{rec['agent_steps_per_second'] / 1e6:.2f} M agent-steps/s", flush=True)
    return rec


# -- figure ------------------------------------------------------------------------------------
def _figure(data: dict, path: Path) -> None:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(14, 5.5), layout="constrained")
    ax, ax_p = fig.subplots(1, 2)
    for eps, col in ((PROBLEM["eps"], "C0"), (EPS_SMALL, "C2")):
        rs = [r for r in data["grid"] if r["eps"] == eps]
        cells = np.array([r["cells"] for r in rs], float)
        fit = data["grid_fit"][f"{eps:g}"]["per_step"]
        fit_big = data["grid_fit"][f"{eps:g}"]["per_step_n_ge_128"]
        lab = (f"per step, ε={eps:g}: ∝ cells^({fit['slope']:.2f}±{fit['stderr']:.2f})")
        if fit_big["slope"] is not None:
            lab += f"; n≥128: {fit_big['slope']:.2f}±{fit_big['stderr']:.2f}"
        ax.loglog(cells, [r["per_step_seconds"] for r in rs], "o-", color=col, label=lab)
        ax.loglog(cells, np.exp(fit["intercept"]) * cells ** fit["slope"], ":", color=col)
        sfit = data["grid_fit"][f"{eps:g}"]["setup"]
        ax.loglog(cells, [r["setup_seconds"] for r in rs], "s--", color=col, mfc="none",
                  label=f"set-up, ε={eps:g}: ∝ cells^({sfit['slope']:.2f}±"
                        f"{sfit['stderr']:.2f})")
    rs = [r for r in data["grid"] if r["eps"] == PROBLEM["eps"]]
    if rs:
        ref = np.array([r["cells"] for r in rs], float)
        ax.loglog(ref, rs[0]["per_step_seconds"] * ref / ref[0], "k-", lw=0.5, label="∝ cells")
    ax.set(xlabel="cells n²", ylabel="seconds",
           title=f"pp.solve (Strang, FV): cost per step and set-up, Δt = {SCALING_DT:g}")
    ax.legend(fontsize=7)
    ax.grid(True, which="both", alpha=0.3)

    pr = data["particles"]
    n = np.array([r["n"] for r in pr], float)
    ax_p.loglog(n, [r["agent_steps_per_second"] for r in pr], "o-", color="C1",
                label="agent-steps/s (whole call)")
    ax_p.loglog(n, [r["agent_steps_per_second_run"] for r in pr], "s--", color="C1",
                mfc="none", label="agent-steps/s (stepping only)")
    ax_p.set(xlabel="agents N", ylabel="agent-steps per second",
             title=f"pp.simulate_particles: replicator resampling + exact OU, "
                   f"{pr[0]['steps'] if pr else '?'} steps")
    ax_t = ax_p.twinx()
    pf = data["particle_fit"]["all"]
    ax_t.loglog(n, [r["wall_seconds"] for r in pr], "^:", color="C5",
                label=f"wall time ∝ N^({pf['slope']:.2f}±{pf['stderr']:.2f})")
    ax_t.set_ylabel("wall time [s]")
    h1, l1 = ax_p.get_legend_handles_labels()
    h2, l2 = ax_t.get_legend_handles_labels()
    ax_p.legend(h1 + h2, l1 + l2, fontsize=7, loc="lower right")
    ax_p.grid(True, which="both", alpha=0.3)
    fig.suptitle(wrap(data["headline"], 220), fontsize=8)
    fig.savefig(path, dpi=110)


# -- the study ---------------------------------------------------------------------------------
def run(quick: bool, outdir: Path) -> dict:
    cfg = CONFIG["quick" if quick else "full"]
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    started = now()
    load_start = _loadavg()
    with np.errstate(under="ignore"), blas_threads(1) as threads:
        print("[scaling] grid: cost per Strang step", flush=True)
        grid_recs, grid_fit = grid_scaling(cfg["sizes"], cfg["steps"], cfg["repeats"])
        print("[scaling] particles: throughput against N", flush=True)
        parts = [particle_throughput(n, cfg["particle_steps"], cfg["particle_repeats"])
                 for n in cfg["agents"]]
    big = [r for r in parts if r["n"] >= 10_000]
    particle_fit = {"all": _fit([r["n"] for r in parts], [r["wall_seconds"] for r in parts]),
                    "n_ge_1e4": _fit([r["n"] for r in big], [r["wall_seconds"] for r in big])}
    f1 = grid_fit[f"{PROBLEM['eps']:g}"]
    f2 = grid_fit[f"{EPS_SMALL:g}"]
    top = max(parts, key=lambda r: r["n"])

    def _e(f):
        return "n/a" if f["slope"] is None else f"{f['slope']:.2f}±{f['stderr']:.2f}"

    headline = (
        f"cost/step ∝ cells^p, {cfg['sizes'][0]}²–{cfg['sizes'][-1]}² (dt={SCALING_DT:g}): "
        f"eps=0.1 p={_e(f1['per_step'])} (n≥128: {_e(f1['per_step_n_ge_128'])}), "
        f"eps=1e-5 p={_e(f2['per_step'])} (n≥128: {_e(f2['per_step_n_ge_128'])}); "
        f"set-up p={_e(f1['setup'])} / {_e(f2['setup'])}; particles: "
        f"{top['agent_steps_per_second'] / 1e6:.1f}M agent-steps/s at N={top['n']:.0e}, "
        f"time ∝ N^{_e(particle_fit['n_ge_1e4'])} (N≥1e4)")
    data = {
        "study": NAME, "date": started, "machine": machine_info(), "quick": quick,
        "config": cfg, "problem": {**problem().to_dict(), "t_final_particles":
                                   cfg["particle_steps"] * PARTICLE_DT},
        "blas_threads": threads, "loadavg_start": load_start, "loadavg_end": _loadavg(),
        "grid": grid_recs, "grid_fit": grid_fit, "particles": parts,
        "particle_fit": particle_fit, "headline": headline, "passed": None,
    }
    write_json(outdir / f"{NAME}.json", data)
    _figure(data, outdir / f"{NAME}.png")
    return {"headline": headline, "passed": None}
