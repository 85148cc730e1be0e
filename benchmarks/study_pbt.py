"""PBT's generation map in the three solvers: the breeder's equation, ε → 0, N → ∞, τ → 0.

* **Breeder's equation.** One generation on h ~ N(m, s²) ranked by G = h, copy, no explore:
  the mean moves by 2 s φ(Φ⁻¹(q)). Grids whose faces hold the two quantiles show the clean
  O(Δh²) convergence; on arbitrary grids the error oscillates under a C·Δh² envelope (the
  fractional cell at each quantile is placed at its centre).
* **ε → 0.** The joint solver ranking on the instantaneous F (exact in time between
  generations: ``integrator="uniformisation"``) against the reduced map ranking on the law
  of F under ρ π_h: L¹ gap O(ε). The reduced map ranking on F̄ is a different limit.
* **N → ∞.** Agents (⌈qN⌉ bottom copy uniform donors among the ⌈qN⌉ top) against the joint
  PDE: W1 distance of the h-marginals after 4 generations, per copy mode and explore kind,
  against N (bar: slope −1/2 ± 0.15). The PDE must be accurate beyond the statistical error
  at the largest N (W1 ≈ 5·10⁻⁴ at N = 10⁶), so the full run uses a 288² grid, whose
  h-marginal is 2·10⁻⁵ (W1) from that of a 576² grid. (While the truncation map took whole
  cells by their centre values, that gap was an irregular O(Δ) ~10⁻³ on every grid from 96²
  to 432², and the distance stalled there from N ≈ 10⁵ on.)
* **τ → 0** with q = λτ: PBT against continuous truncation at rate λ/q_c with a small fraction
  q_c (the limit rule), on the reduced equation.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
from scipy.stats import norm

import pde_popdyn as pp

from ._common import fit_slope, machine_info, now, write_json

NAME = "pbt"
DESCRIPTION = ("PBT generation map: breeder's-equation mean shift against Δh (order 2), joint "
               "(instantaneous ranking) against the reduced map as ε → 0 (slope in "
               "[0.85, 1.15]), agents against the joint PDE (W1 slope −1/2 ± 0.15), and "
               "τ → 0 with q = λτ against continuous truncation")
Q = 0.2
CONFIG = {
    "quick": {"breeder": (144, 288, 576), "eps": (0.02, 0.01, 0.005),
              "N": (1000, 4000, 16000), "seeds": 3, "tau": (0.2, 0.1, 0.05), "qc": 4e-3},
    "full": {"breeder": (144, 288, 576, 1152, 2304), "eps": (0.04, 0.02, 0.01, 0.005, 0.0025),
             "N": (10_000, 40_000, 160_000, 640_000, 1_000_000), "seeds": 6,
             "tau": (0.4, 0.2, 0.1, 0.05, 0.025), "qc": 1e-3, "cells": 288},
}


def breeder(cells_list) -> dict:
    m, s, pad = 0.3, 0.5, 4.0
    z = norm.ppf(1 - Q)
    a, b = m - z * s, m + z * s
    exact = 2 * s * norm.pdf(z)
    model = pp.Model(loss=lambda th, h: 0.5 * th ** 2, fitness=lambda th, h: h + 0 * th,
                     temperature=1.0, eps=1.0, selection=pp.PBT(interval=1.0, fraction=Q))
    out = {"aligned": {"dh": [], "error": []}, "any": {"dh": [], "error": []}}
    for cells in cells_list:
        for kind, lo, hi in (("aligned", a - pad * (b - a), b + pad * (b - a)),
                             ("any", m - 5.61 * s, m + 5.83 * s)):
            grid = pp.Grid(theta=(-4, 4, 4), h=(lo, hi, cells))
            f0 = pp.gaussian(grid, (0.0, m), [[1.0, 0.0], [0.0, s * s]])
            sol = pp.solve(model, grid, f0, 1.0, 1.0, progress=False)
            out[kind]["dh"].append(grid.dh)
            out[kind]["error"].append(abs(sol.mean_h[-1] - sol.mean_h[0] - exact))
    s_al = fit_slope(out["aligned"]["dh"], out["aligned"]["error"])
    out["order"], out["order_stderr"] = s_al.slope, s_al.stderr
    out["envelope"] = max(e / d ** 2 for e, d in zip(out["any"]["error"], out["any"]["dh"]))
    out["exact_shift"] = exact
    return out


def _eps_model(eps, rank="instantaneous"):
    return pp.Model(loss=lambda th, h: 0.5 * (th - h) ** 2,
                    fitness=lambda th, h: -(th - 0.5) ** 2 - 0.3 * h ** 2,
                    temperature=0.3, eps=eps, selection=pp.PBT(0.5, Q, rank_on=rank),
                    mutation=[pp.Diffusion(0.05), pp.GaussianJump(0.2)])


def eps_limit(eps_list) -> dict:
    grid = pp.Grid(theta=(-3, 3, 48), h=(-2, 2, 32))
    f0 = pp.gaussian(grid, (-0.5, -0.5), [[0.3, 0], [0, 0.2]])
    f0 = pp.gibbs(_eps_model(1.0), grid) * grid.marginal(f0, "h")[None]
    rho0 = grid.marginal(f0, "h")
    inst = pp.solve_reduced(_eps_model(1.0), grid, rho0, 2.0, 0.5, progress=False)
    eff = pp.solve_reduced(_eps_model(1.0, "effective"), grid, rho0, 2.0, 0.5, progress=False)
    gaps, gaps_eff = [], []
    for e in eps_list:
        rho = pp.solve(_eps_model(e), grid, f0, 2.0, 0.5, integrator="uniformisation",
                       progress=False).rho[-1]
        gaps.append(float(np.abs(rho - inst.f[-1]).sum() * grid.dh))
        gaps_eff.append(float(np.abs(rho - eff.f[-1]).sum() * grid.dh))
    s = fit_slope(eps_list, gaps)
    return {"eps": list(eps_list), "gap_instantaneous": gaps, "gap_effective": gaps_eff,
            "slope": s.slope, "stderr": s.stderr,
            "reduced_maps_gap": float(np.abs(inst.f[-1] - eff.f[-1]).sum() * grid.dh)}


def particles(n_list, seeds, cells: int = 96) -> dict:
    grid = pp.Grid(theta=(-3, 3, cells), h=(-2, 2, cells))
    f0 = pp.gaussian(grid, (-0.5, -0.5), [[0.2, 0], [0, 0.1]])
    out = {}
    for copy in ("both", "h"):
        for name, explore in (("gaussian", pp.GaussianJump(0.2)),
                              ("perturb", pp.Perturb((0.8, 1.25))),
                              ("prior", pp.PriorResample(0.2))):
            model = pp.Model(loss=lambda th, h: 0.5 * (th - h) ** 2,
                             fitness=lambda th, h: -(th - 0.5) ** 2 - 0.3 * h ** 2,
                             temperature=0.2, eps=0.1, quadratic=(1.0, lambda h: h),
                             selection=pp.PBT(0.5, Q, copy=copy), mutation=explore)
            sol = pp.solve(model, grid, f0, 2.0, 0.05, progress=False)
            w1 = []
            for n in n_list:
                vals = []
                for seed in range(seeds):
                    ens = pp.simulate_particles(model, n, f0, 2.0, 0.05, grid=grid,
                                                seed=seed, progress=False, save_every=40)
                    vals.append(float(pp.compare(ens, sol)["w1_h"][-1]))
                w1.append(float(np.mean(vals)))
            s = fit_slope(n_list, w1)
            out[f"{copy}/{name}"] = {"N": list(n_list), "w1_h": w1, "slope": s.slope,
                                     "stderr": s.stderr}
    return out


def tau_limit(tau_list, qc) -> dict:
    grid = pp.Grid(theta=(-3, 3, 16), h=(-2, 2, 100))
    lam = 0.4

    def model(sel):
        return pp.Model(loss=lambda th, h: 0.5 * (th - h) ** 2,
                        fitness=lambda th, h: -(th - 0.5) ** 2 - 0.3 * h ** 2,
                        temperature=0.3, eps=0.1, selection=sel, mutation=pp.Diffusion(0.01))
    rho0 = np.exp(-(grid.h + 0.8) ** 2 / 0.2)
    limit = pp.solve_reduced(model(pp.Truncation(rate=lam / qc, fraction=qc)), grid, rho0,
                             2.0, qc / (20 * lam), progress=False, save_every=10 ** 9).f[-1]
    dist = []
    for tau in tau_list:
        rho = pp.solve_reduced(model(pp.PBT(tau, lam * tau, rank_on="effective")), grid, rho0,
                               2.0, tau / 4, progress=False).f[-1]
        dist.append(float(np.abs(rho - limit).sum() * grid.dh))
    s = fit_slope(tau_list, dist)
    return {"tau": list(tau_list), "l1_to_limit": dist, "rate": s.slope, "stderr": s.stderr,
            "limit_fraction": qc, "lambda": lam}


def run(quick: bool, outdir: Path) -> dict:
    cfg = CONFIG["quick" if quick else "full"]
    started, t0 = now(), time.perf_counter()
    res = {"breeder": breeder(cfg["breeder"]), "eps": eps_limit(cfg["eps"]),
           "particles": particles(cfg["N"], cfg["seeds"], cfg.get("cells", 96)),
           "tau": tau_limit(cfg["tau"], cfg["qc"])}
    slopes = [v["slope"] for v in res["particles"].values()]
    passed = (1.9 <= res["breeder"]["order"] <= 2.1
              and 0.85 <= res["eps"]["slope"] <= 1.15
              and all(-0.65 <= s <= -0.35 for s in slopes))
    headline = (f"breeder's equation order {res['breeder']['order']:.2f} in Δh (quantiles on "
                f"faces; envelope {res['breeder']['envelope']:.2f}·Δh² otherwise); ε → 0 gap "
                f"slope {res['eps']['slope']:.2f}; agents W1 slopes "
                f"{min(slopes):.2f}..{max(slopes):.2f} in N; τ → 0 rate "
                f"{res['tau']['rate']:.2f}")
    data = {"study": NAME, "date": started, "machine": machine_info(), "quick": quick,
            "results": res, "headline": headline, "passed": passed,
            "wall_seconds": time.perf_counter() - t0}
    write_json(outdir / f"{NAME}.json", data)
    _figure(res, outdir / f"{NAME}.png")
    return {"headline": headline, "passed": passed}


def _figure(res, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 4, figsize=(17, 3.8))
    b = res["breeder"]
    ax = axes[0]
    ax.loglog(b["aligned"]["dh"], b["aligned"]["error"], "o-", label="quantiles on faces")
    ax.loglog(b["any"]["dh"], b["any"]["error"], "s:", label="any grid")
    d = np.array(b["aligned"]["dh"])
    ax.loglog(d, b["aligned"]["error"][0] * (d / d[0]) ** 2, "k--", lw=0.8, label="Δh²")
    ax.set(xlabel="Δh", ylabel="|mean shift − 2sφ(Φ⁻¹(q))|",
           title=f"breeder's equation: order {b['order']:.2f}")
    ax.legend(fontsize=8)
    e = res["eps"]
    ax = axes[1]
    ax.loglog(e["eps"], e["gap_instantaneous"], "o-", label="vs reduced map on law of F")
    ax.loglog(e["eps"], e["gap_effective"], "s:", label="vs reduced map on F̄")
    ax.set(xlabel="ε", ylabel="L¹ gap of ρ at t = 2", title=f"ε → 0: slope {e['slope']:.2f}")
    ax.legend(fontsize=8)
    ax = axes[2]
    for key, v in res["particles"].items():
        ax.loglog(v["N"], v["w1_h"], "o-", ms=3, label=f"{key} ({v['slope']:.2f})")
    n = np.array(next(iter(res["particles"].values()))["N"], float)
    ax.loglog(n, 0.5 * next(iter(res["particles"].values()))["w1_h"][0] * (n / n[0]) ** -0.5,
              "k--", lw=0.8, label="N^-1/2")
    ax.set(xlabel="agents N", ylabel="W1(h) agents vs PDE", title="agents → PDE")
    ax.legend(fontsize=7)
    t = res["tau"]
    ax = axes[3]
    ax.loglog(t["tau"], t["l1_to_limit"], "o-")
    ax.set(xlabel="τ (q = λτ)", ylabel="L¹ to continuous truncation",
           title=f"τ → 0: rate {t['rate']:.2f}")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
