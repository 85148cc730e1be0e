"""Temporal convergence of the splitting: Lie order 1, Strang order 2.

The correlated linear-Gaussian problem (ε = 0.2, κ = 0.7, D = 0.03, cross terms in the fitness)
on a fixed 40² grid: each error is measured against a Δt = 0.4/512 run on the same grid, so the
spatial error cancels. Observed orders are least-squares slopes over the Δt values. The scheme
is the operator splitting (`integrator="split"`: selection, mutation and the exact fast step as
sub-steps), whose Lie and Strang orders this study checks; the default step
(`integrator="ap"`) has its own study, `benchmarks ap`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

import pde_popdyn as pp
from pde_popdyn.presets import GaussianProblem

from ._common import fit_slope, machine_info, now, write_json

NAME = "time"
DESCRIPTION = "splitting error against Δt: Lie order 1, Strang order 2"


def problem() -> GaussianProblem:
    return GaussianProblem(eps=0.2, K=1.5, a=0.8, b=0.1, T=0.08, kappa=0.7, D=0.03,
                           Q=[[2.0, 0.5], [0.5, 1.0]], zstar=(0.4, 0.3), mean0=(-0.2, -0.5),
                           cov0=[[0.06, 0.025], [0.025, 0.05]])


def run(quick: bool, outdir: Path) -> dict:
    started = now()
    prob = problem()
    grid = prob.grid(40, 40)
    model, f0 = prob.model(), prob.initial(grid)
    steps = [2, 4, 8, 16, 32] if quick else [2, 4, 8, 16, 32, 64, 128]
    out = {}
    for splitting in ("lie", "strang"):
        ref = pp.solve(model, grid, f0, 0.4, 0.4 / 512, splitting=splitting,
                       integrator="split", progress=False).f[-1]
        errs = []
        for n in steps:
            f = pp.solve(model, grid, f0, 0.4, 0.4 / n, splitting=splitting,
                         integrator="split", progress=False).f[-1]
            errs.append(float(np.abs(f - ref).sum() / np.abs(ref).sum()))
        dts = [0.4 / n for n in steps]
        s = fit_slope(dts, errs)
        out[splitting] = {"dt": dts, "errors": errs, "order": s.slope, "stderr": s.stderr}
    passed = abs(out["lie"]["order"] - 1) <= 0.15 and abs(out["strang"]["order"] - 2) <= 0.15
    headline = (f"Lie order {out['lie']['order']:.2f} ± {out['lie']['stderr']:.2f}, Strang "
                f"order {out['strang']['order']:.2f} ± {out['strang']['stderr']:.2f}")
    data = {"study": NAME, "date": started, "machine": machine_info(), "quick": quick,
            "results": out, "headline": headline, "passed": passed}
    write_json(outdir / f"{NAME}.json", data)
    _figure(out, outdir / f"{NAME}.png")
    return {"headline": headline, "passed": passed}


def _figure(out, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6, 4.2), layout="constrained")
    for name, style in (("lie", "o-"), ("strang", "s-")):
        r = out[name]
        ax.loglog(r["dt"], r["errors"], style,
                  label=f"{name.capitalize()}: order {r['order']:.2f} ± {r['stderr']:.2f}")
    dt = np.array(out["lie"]["dt"])
    ax.loglog(dt, out["lie"]["errors"][0] * (dt / dt[0]), "k:", lw=1, label="slope 1")
    ax.loglog(dt, out["strang"]["errors"][0] * (dt / dt[0]) ** 2, "k--", lw=1, label="slope 2")
    ax.set_xlabel("time step Δt")
    ax.set_ylabel("relative L¹ error at t = 0.4")
    ax.set_title("splitting error (spatial error cancelled)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.savefig(path, dpi=120)
    plt.close(fig)
