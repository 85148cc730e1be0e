"""The claim, made robust: does selecting on the effective fitness F̄ improve a population?

Problem (docs/model.md, "Gibbs averages"). h plays a log learning rate: the SGD temperature
grows with it, T(h) = T₀ e^h, while the bias of the trained parameters shrinks,
L = ½K(θ − μ(h))² with μ(h) = b e^{−γh}; the fitness is F = −(q/2)θ² (θ* = 0). Then
π_h = N(μ(h), T(h)/K),

    F̄(h) = −(q/2)[μ(h)² + T(h)/K],
    F̄_α(h) = α⁻¹ log E_{π_h} e^{αF} = −(1/2α) log(1 + αqT/K) − q μ² / (2(1 + αqT/K)),

and with K = q = 1, T₀ = 0.1, b² = 0.2, γ = 1/4 the best hyperparameter is h* = argmax F̄ = 0,
while argmax F̄_α moves to (2/3) log 3 ≈ 0.73 as α → ∞.

Set-up. Agents (N = 1000, 8 seeds; a check at N = 100 and 10⁴), ε = 0.01 (exact OU step),
Δt = 0.05, h ∈ [−2, 2] reflecting, h₀ ~ N(−1.5, 0.1²) with θ₀ ~ π_h, horizon up to t = 60;
copies take (θ, h), the copied h is perturbed by N(0, 0.05²). Rules and their pressure:
Boltzmann jumps at rate 1 with α = 1 … 1000; continuous truncation at rate 1 with fraction
q = 0.5 … 0.03; PBT with ready interval τ = 0.5 and q = 0.5 … 0.05 (a smaller q selects
harder). Fitness modes: "instantaneous" F(θ_i, h_i); "window", an exponential average of F
over w = 0.5 (50 relaxation times of θ); "effective", F̄(h_i) in closed form. (The
"estimated" mode, kernel regression of {(h_j, F_j)}, is left out of the map: at N = 1000 the
regression sums over all pairs, four times a step, about 100 s a run against 0.2 s; notebook
(c) shows it on single runs.) The measure is the regret R(t) = F̄(h*) − ⟨F̄(h_i)⟩ of the
population, averaged over the seeds, with its spread (sd, min, max); on the map, horizons
t = 5, 10, 20, 40, 60.

Three limits tell the effects apart (instantaneous mode; the others need none):

* the **reduced equation** (ε → 0, N → ∞): Boltzmann with W = e^{αF̄_α}; PBT ranking on the law
  of F under ρπ_h (`pp.solve_reduced`); truncation on the instantaneous F has no reduced solver,
  so the joint solver at ε = 10⁻⁵ (asymptotic-preserving) stands in for it;
* the **joint PDE** (ε = 0.01, N → ∞): `pp.solve` on a 96 × 100 (θ, h) grid with the agents'
  Δt, so agents − joint is the finite-N effect and joint − reduced the finite-ε one (the joint
  PDE's own Δt error is measured at Δt/4 for one pressure and its grid error at α = 1000 with
  twice the θ-cells);
* in the effective mode the fitness depends on h only, so the joint equation's h-marginal *is*
  the reduced equation with F̄ (for every ε): agents − reduced is purely finite-N there.

Why instantaneous fitness can beat the effective one (α = 10, t = 20). Expanding the tilt,
F̄_α = F̄ + (α/2) Var_{π_h}(F) + O(α²), and here Var_{π_h} F = μ²T/K + T²/(2K²) grows with h
(T ∝ e^h grows faster than μ² ∝ e^{−h/2} decays). Selection on F rewards noisy
hyperparameters; left of h* that bonus points the same way as the true gradient of F̄, so the
instantaneous population climbs *faster* toward h* (F̄_10' is 15–50 % steeper than F̄' on
[−1.5, −0.5], and the selection step is ∝ α times that slope in both modes); only near h* does
the bonus push it past h* toward argmax F̄_α (0.55 at α = 10). Under strong pressure the
tilted fitness is flat instead (F̄_1000' is a tenth of F̄') and its maximum sits near 0.73.
At α = 10 neither population has reached h* by t = 20 (the climb from −1.5 takes 60 time
units or more), so the faster climber has the lower regret, and it does so in the mean-field
limit too (the reduced and joint PDEs order the two modes the same way): a systematic
transient, which is why the seed ranges can fail to overlap. The effective fitness wins at
horizons long enough to reach h*, and by far under strong pressure, where the instantaneous
population overshoots at once.

Findings (full run; numbers in RESULTS.md and claim.json). Effective-fitness selection has
the lower regret on every seed in 52 of 70 (rule, pressure, horizon) cells: all 35 of
truncation and PBT (every q, every horizon; regret 10–10³× below instantaneous ranking at
t ≥ 20), all 15 of Boltzmann α ≥ 100, and α = 30 at t ≥ 40. It does not help for Boltzmann α ≤ 10:
at N = 1000 the seeds of the two modes overlap at every horizon up to 60, and the
instantaneous mean regret is the lower one at α = 3 (t ≥ 40) and α = 10 (t ≤ 40), because the
climb is slow and the price of the overshoot is small (F̄(h*) − F̄(argmax F̄_α) = 0.004 at
α = 3, 0.012 at α = 10); at α = 30 instantaneous selection is better on every seed at t = 20.
At α = 10, t = 20 the mean-field limits agree (joint 0.013, reduced 0.015 against 0.026 for
F̄), so it is not a finite-N or finite-ε artefact; finite N slows the instantaneous population
(0.024 at N = 1000, 0.017 at N = 10⁴, whose seed ranges do not overlap with the effective
ones, as reported) and by t = 60 the effective runs win on every seed at N = 10⁴. The window
(w = 0.5) helps truncation and PBT (5–50× below instantaneous) but not strong Boltzmann
selection (α ≥ 100: regret 0.02–0.05, seeds scattered as widely as the mean): an agent's
window only averages the time since its last copy, and extreme pressure picks the luckiest
short windows (a longer window, w = 2, or copying h only with a reset memory gave 0.02–0.12 on
4 seeds at α = 1000, t = 20). Finite ε: under strong pressure the joint PDE (ε = 0.01) climbs
more slowly to argmax F̄_α than the reduced equation (regret 0.003–0.012 against 0.02–0.03 at
t ≤ 20, α ≥ 100), and the agents trail the joint PDE (finite N).
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

import pde_popdyn as pp

from ._common import machine_info, now, write_json

NAME = "claim"
DESCRIPTION = (
    "Selecting on the effective fitness against instantaneous and windowed fitness: regret "
    "F̄(h*) − ⟨F̄⟩ over ≥ 8 seeds on a map of pressure (Boltzmann α = 1..1000, truncation "
    "and PBT fraction q) and horizon (t = 5..60), agents (N = 1000; N = 100 "
    "and 10⁴ checked) against the joint PDE (finite ε) and the reduced equation (ε → 0). Bar: "
    "for Boltzmann α ≥ 100 at t ≥ 20 the effective runs beat every instantaneous seed.")

K, Q, T0, B2, GAMMA = 1.0, 1.0, 0.1, 0.2, 0.25
EPS, SIGMA_M, H_BOX = 0.01, 0.05, (-2.0, 2.0)
H_STAR, H_INF = 0.0, np.log(3.0) / 1.5
WINDOW = 0.5

CONFIG = {
    "quick": {"N": 100, "seeds": 3, "t_final": 5.0, "dt": 0.05, "horizons": (2.5, 5.0),
              "pressures": {"boltzmann": (1000.0,), "truncation": (0.1,), "pbt": (0.2,)},
              "modes": ("instantaneous", "effective"), "theta_cells": 24, "h_cells": 40,
              "n_check": {"N": (30,), "alphas": (1000.0,), "seeds": 2},
              "dt_check": 1000.0, "grid_check": None},
    "full": {"N": 1000, "seeds": 8, "t_final": 60.0, "dt": 0.05,
             "horizons": (5.0, 10.0, 20.0, 40.0, 60.0),
             "pressures": {"boltzmann": (1.0, 3.0, 10.0, 30.0, 100.0, 300.0, 1000.0),
                           "truncation": (0.5, 0.25, 0.1, 0.03), "pbt": (0.5, 0.2, 0.05)},
             "modes": ("instantaneous", "window", "effective"), "theta_cells": 96,
             "h_cells": 100,
             "n_check": {"N": (100, 10_000), "alphas": (10.0, 1000.0), "seeds": 8},
             "dt_check": 10.0, "grid_check": 1000.0},
}


def mu(h):
    return np.sqrt(B2) * np.exp(-GAMMA * np.asarray(h, float))


def temperature(h):
    return T0 * np.exp(np.asarray(h, float))


def fbar(h):
    return -0.5 * Q * (mu(h) ** 2 + temperature(h) / K)


def fbar_alpha(h, alpha):
    r = alpha * Q * temperature(h) / K
    return -np.log1p(r) / (2 * alpha) - Q * mu(h) ** 2 / (2 * (1 + r))


def selection(rule: str, p: float, rank_on: str = "instantaneous"):
    if rule == "boltzmann":
        return pp.BoltzmannJump(1.0, p)
    if rule == "truncation":
        return pp.Truncation(1.0, p)
    return pp.PBT(interval=0.5, fraction=p, rank_on=rank_on)


def model(rule: str, p: float, eps: float = EPS, rank_on: str = "instantaneous") -> pp.Model:
    return pp.Model(lambda th, h: 0.5 * K * (th - mu(h)) ** 2, lambda th, h: -0.5 * Q * th ** 2,
                    temperature=temperature, eps=eps, selection=selection(rule, p, rank_on),
                    mutation=pp.GaussianJump(SIGMA_M), quadratic=(K, mu),
                    name=f"claim {rule} {p:g}")


def regret_of(h: np.ndarray) -> np.ndarray:
    """F̄(h*) − mean of F̄ over the agents, per saved state (rows of h)."""
    return fbar(H_STAR) - fbar(h).mean(axis=-1)


def initial_agents(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng([seed, 99])
    h0 = np.clip(rng.normal(-1.5, 0.1, n), *H_BOX)
    return mu(h0) + np.sqrt(temperature(h0) / K) * rng.normal(size=n), h0


# -- agents ------------------------------------------------------------------------------------
def agents(rule: str, p: float, mode: str, n: int, seeds: int, cfg: dict) -> dict:
    save_every = int(round(1.0 / cfg["dt"])) if cfg["t_final"] >= 20 else \
        int(round(0.5 / cfg["dt"]))
    mean_h, reg = [], []
    t0 = time.perf_counter()
    for s in range(seeds):
        ens = pp.simulate_particles(model(rule, p), n, initial_agents(n, s), cfg["t_final"],
                                    cfg["dt"], seed=1000 + s, h_box=H_BOX, fitness_mode=mode,
                                    window=WINDOW if mode == "window" else None,
                                    effective_fitness=fbar, save_every=save_every,
                                    progress=False)
        mean_h.append(ens.mean_h)
        reg.append(regret_of(ens.h))
    mean_h, reg = np.array(mean_h), np.array(reg)
    return {"t": ens.t, "mean_h": mean_h, "regret": reg,
            "regret_mean": reg.mean(axis=0), "regret_sd": reg.std(axis=0, ddof=1),
            "regret_min": reg.min(axis=0), "regret_max": reg.max(axis=0),
            "seconds": time.perf_counter() - t0}


# -- mean-field limits ------------------------------------------------------------------------
def _grids(cfg: dict, theta_cells: int | None = None) -> pp.Grid:
    return pp.Grid(theta=(-2.5, 3.5, theta_cells or cfg["theta_cells"]),
                   h=(*H_BOX, cfg["h_cells"]))


def _rho0(h: np.ndarray) -> np.ndarray:
    return np.exp(-0.5 * ((h + 1.5) / 0.1) ** 2)


def pde_joint(rule: str, p: float, cfg: dict, dt: float | None = None, eps: float = EPS,
              theta_cells: int | None = None, t_final: float | None = None) -> dict:
    grid = _grids(cfg, theta_cells)
    m = model(rule, p, eps)
    f0 = pp.gibbs(m, grid) * _rho0(grid.h)[None, :]
    dt = dt or cfg["dt"]
    tf = t_final or cfg["t_final"]
    t0 = time.perf_counter()
    sol = pp.solve(m, grid, f0, tf, dt, save_every=max(1, int(round(0.5 / dt))),
                   progress=False)
    rho = np.stack([grid.marginal(f, "h") for f in np.asarray(sol.f)])
    return _h_summary(np.asarray(sol.t), rho, grid, time.perf_counter() - t0)


def _h_summary(t, rho, grid, seconds) -> dict:
    w = grid.h_weights
    mass = (rho * w).sum(axis=1)
    mean_h = (rho * w * grid.h).sum(axis=1) / mass
    regret = fbar(H_STAR) - (rho * w * fbar(grid.h)).sum(axis=1) / mass
    return {"t": t, "mean_h": mean_h, "regret": regret, "seconds": seconds}


def pde_reduced(rule: str, p: float, mode: str, cfg: dict) -> dict:
    """ε → 0 limit of the agents of ``mode`` (module docstring)."""
    grid = _grids(cfg)
    rho0 = _rho0(grid.h)
    dt, tf = cfg["dt"], cfg["t_final"]
    t0 = time.perf_counter()
    if rule == "truncation" and mode == "instantaneous":
        return pde_joint(rule, p, cfg, eps=1e-5)
    if rule == "pbt":
        m = model(rule, p, rank_on="effective" if mode == "effective" else "instantaneous")
        sol = pp.solve_reduced(m, grid, rho0, tf, dt, save_every=int(round(0.5 / dt)),
                               progress=False)
    else:
        fit = fbar(grid.h) if mode == "effective" or rule == "truncation" else \
            fbar_alpha(grid.h, p)
        sol = pp.solve_reduced(model(rule, p), grid, rho0, tf, dt, fitness=fit,
                               save_every=int(round(0.5 / dt)), progress=False)
    return _h_summary(np.asarray(sol.t), np.asarray(sol.f), grid, time.perf_counter() - t0)


# -- the study ---------------------------------------------------------------------------------
def _at(series: dict, key: str, horizons) -> list:
    t = np.asarray(series["t"])
    return [float(np.asarray(series[key])[..., int(np.argmin(np.abs(t - h)))]) if
            np.ndim(series[key]) == 1 else np.asarray(series[key])[:, int(np.argmin(
                np.abs(t - h)))].tolist() for h in horizons]


def _compact(a: dict) -> None:
    """Keep the run-to-run mean, min and max of E h along t instead of every seed's (and drop
    the per-seed regret trajectories, summarised already), so that the JSON stays small."""
    mh = np.asarray(a.pop("mean_h"))
    a.update(mean_h_mean=mh.mean(axis=0), mean_h_min=mh.min(axis=0), mean_h_max=mh.max(axis=0))
    a.pop("regret")


def run(quick: bool, outdir: Path) -> dict:
    outdir = Path(outdir)
    cfg = CONFIG["quick" if quick else "full"]
    t_start = time.perf_counter()
    hz = cfg["horizons"]
    cells = {}
    for rule, pressures in cfg["pressures"].items():
        for p in pressures:
            cell = {"rule": rule, "pressure": p}
            for mode in cfg["modes"]:
                a = agents(rule, p, mode, cfg["N"], cfg["seeds"], cfg)
                cell[mode] = a
                cell[mode]["at_horizons"] = {k: _at(a, k, hz) for k in
                                             ("regret_mean", "regret_sd", "regret_min",
                                              "regret_max")}
                cell[mode]["per_seed_at_horizons"] = _at(a, "regret", hz)
                _compact(cell[mode])
            cell["joint_instantaneous"] = pde_joint(rule, p, cfg)
            for mode in ("instantaneous", "effective"):
                cell[f"reduced_{mode}"] = pde_reduced(rule, p, mode, cfg)
            for key in ("joint_instantaneous", "reduced_instantaneous", "reduced_effective"):
                cell[key]["regret_at_horizons"] = _at(cell[key], "regret", hz)
            if rule == "boltzmann":
                hg = np.linspace(*H_BOX, 40_001)
                cell["argmax_fbar_alpha"] = float(hg[np.argmax(fbar_alpha(hg, p))])
            cells[f"{rule} {p:g}"] = cell
            inst, eff = cell["instantaneous"], cell["effective"]
            print(f"  [{rule} {p:g}] regret at t={hz[-1]:g}: inst "
                  f"{inst['at_horizons']['regret_mean'][-1]:.2e}, eff "
                  f"{eff['at_horizons']['regret_mean'][-1]:.2e}", flush=True)
    # the PDE's own errors
    checks = {}
    a_dt = cfg["dt_check"]
    base = cells[f"boltzmann {a_dt:g}"]["joint_instantaneous"]
    fine = pde_joint("boltzmann", a_dt, cfg, dt=cfg["dt"] / 4)
    checks["joint_dt"] = {"alpha": a_dt, "dt": cfg["dt"], "dt_fine": cfg["dt"] / 4,
                          "mean_h_difference": np.array(_at(fine, "mean_h", hz))
                          - _at(base, "mean_h", hz),
                          "regret_difference": np.array(_at(fine, "regret", hz))
                          - _at(base, "regret", hz)}
    if cfg["grid_check"] is not None:
        a_g = cfg["grid_check"]
        base = cells[f"boltzmann {a_g:g}"]["joint_instantaneous"]
        fine = pde_joint("boltzmann", a_g, cfg, theta_cells=2 * cfg["theta_cells"])
        checks["joint_grid"] = {"alpha": a_g, "theta_cells": [cfg["theta_cells"],
                                                             2 * cfg["theta_cells"]],
                                "mean_h_difference": np.array(_at(fine, "mean_h", hz))
                                - _at(base, "mean_h", hz),
                                "regret_difference": np.array(_at(fine, "regret", hz))
                                - _at(base, "regret", hz)}
    # finite N: the same Boltzmann cells at other N
    ncheck = []
    nc = cfg["n_check"]
    for n in nc["N"]:
        for alpha in nc["alphas"]:
            row = {"N": n, "alpha": alpha}
            for mode in ("instantaneous", "effective"):
                a = agents("boltzmann", alpha, mode, n, nc["seeds"], cfg)
                row[mode] = {k: _at(a, k, hz) for k in ("regret_mean", "regret_sd",
                                                        "regret_min", "regret_max")}
            ncheck.append(row)
    summary = _summarise(cells, cfg)
    res = {"machine": machine_info(), "date": now(), "quick": quick, "config": cfg,
           "parameters": {"K": K, "q": Q, "T0": T0, "b2": B2, "gamma": GAMMA, "eps": EPS,
                          "mutation_std": SIGMA_M, "window": WINDOW, "h_star": H_STAR,
                          "h_infinity": H_INF},
           "cells": cells, "pde_checks": checks, "n_check": ncheck, **summary,
           "wall_seconds": time.perf_counter() - t_start}
    write_json(outdir / f"{NAME}.json", res)
    _figure(res, outdir / f"{NAME}.png")
    return {"headline": summary["headline"], "passed": summary["passed"]}


def _summarise(cells: dict, cfg: dict) -> dict:
    """Who wins where: the mode of least mean regret per (rule, pressure, horizon), whether
    the effective runs beat every instantaneous seed, and the bar."""
    hz = cfg["horizons"]
    winners, not_helping = {}, []
    for key, c in cells.items():
        w = []
        for j, h in enumerate(hz):
            means = {m: c[m]["at_horizons"]["regret_mean"][j] for m in cfg["modes"]}
            best = min(means, key=means.get)
            e_max = c["effective"]["at_horizons"]["regret_max"][j]
            i_min = c["instantaneous"]["at_horizons"]["regret_min"][j]
            i_max = c["instantaneous"]["at_horizons"]["regret_max"][j]
            e_min = c["effective"]["at_horizons"]["regret_min"][j]
            verdict = ("effective better on every seed" if e_max < i_min else
                       "instantaneous better on every seed" if i_max < e_min else "overlap")
            w.append({"horizon": h, "best": best, "means": means, "effective_vs_inst": verdict})
            if verdict != "effective better on every seed":
                not_helping.append(f"{key} t={h:g}: {verdict}")
        winners[key] = w
    strong = [k for k, c in cells.items() if c["rule"] == "boltzmann" and c["pressure"] >= 100]
    late = [j for j, h in enumerate(hz) if h >= min(20.0, hz[-1])]
    passed = bool(strong) and all(winners[k][j]["effective_vs_inst"] ==
                                  "effective better on every seed" for k in strong for j in late)
    k10 = "boltzmann 10"
    extra = ""
    if k10 in cells and 20.0 in hz:
        j = hz.index(20.0)
        c = cells[k10]
        extra = (f"; α=10, t=20: inst {c['instantaneous']['at_horizons']['regret_mean'][j]:.3f} "
                 f"vs eff {c['effective']['at_horizons']['regret_mean'][j]:.3f} (reduced: "
                 f"{c['reduced_instantaneous']['regret_at_horizons'][j]:.3f} vs "
                 f"{c['reduced_effective']['regret_at_horizons'][j]:.3f}: the instantaneous "
                 f"population climbs faster, a mean-field transient)")
    big = strong[-1] if strong else list(cells)[-1]
    c = cells[big]
    n_cells = sum(len(w) for w in winners.values())
    n_eff = sum(1 for w in winners.values() for x in w
                if x["effective_vs_inst"] == "effective better on every seed")
    headline = (f"{big}, t={hz[-1]:g}: regret "
                f"{c['instantaneous']['at_horizons']['regret_mean'][-1]:.2e} (instantaneous) vs "
                f"{c['effective']['at_horizons']['regret_mean'][-1]:.2e} (effective), "
                f"{cfg['seeds']} seeds; effective better on every seed in {n_eff}/{n_cells} "
                f"(pressure, horizon) cells" + extra)
    return {"winners": winners, "effective_not_better": not_helping, "passed": passed,
            "headline": headline}


def _figure(res: dict, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cfg, cells = res["config"], res["cells"]
    hz = list(cfg["horizons"])
    rules = list(cfg["pressures"])
    fig, axes = plt.subplots(2, len(rules) + 1, figsize=(5.2 * (len(rules) + 1), 9.5),
                             squeeze=False)
    for j, rule in enumerate(rules):
        ps = cfg["pressures"][rule]
        ratio = np.array([[np.log10(cells[f"{rule} {p:g}"]["instantaneous"]["at_horizons"]
                                    ["regret_mean"][k]
                                    / cells[f"{rule} {p:g}"]["effective"]["at_horizons"]
                                    ["regret_mean"][k]) for k in range(len(hz))] for p in ps])
        ax = axes[0, j]
        im = ax.imshow(ratio, cmap="RdBu", vmin=-2, vmax=2, aspect="auto")
        for a in range(len(ps)):
            for b in range(len(hz)):
                v = res["winners"][f"{rule} {ps[a]:g}"][b]["effective_vs_inst"]
                mark = "E" if v.startswith("effective") else "I" if v.startswith("inst") else "~"
                ax.text(b, a, f"{ratio[a, b]:+.1f}\n{mark}", ha="center", va="center",
                        fontsize=7)
        ax.set_xticks(range(len(hz)), [f"{h:g}" for h in hz])
        ax.set_yticks(range(len(ps)), [f"{p:g}" for p in ps])
        ax.set(xlabel="horizon t", ylabel="α" if rule == "boltzmann" else "fraction q",
               title=f"{rule}: log10 R_inst/R_eff (E/I: better on every seed)")
        fig.colorbar(im, ax=ax)
        ax = axes[1, j]
        pick = ps[len(ps) // 2]
        c = cells[f"{rule} {pick:g}"]
        for mode, col in zip(cfg["modes"], ("C3", "C1", "C0", "C2")):
            a = c[mode]
            ax.semilogy(a["t"], a["regret_mean"], color=col, label=f"agents, {mode}")
            ax.fill_between(a["t"], a["regret_min"], a["regret_max"], color=col, alpha=0.2)
        for key, ls in (("joint_instantaneous", "--"), ("reduced_instantaneous", ":"),
                        ("reduced_effective", "-.")):
            ax.semilogy(c[key]["t"], c[key]["regret"], "k", ls=ls, lw=1,
                        label=key.replace("_", " "))
        ax.set(xlabel="t", ylabel="regret F̄(h*) − ⟨F̄⟩", ylim=(1e-5, 0.3),
               title=f"{rule} {pick:g}: seeds min–max shaded")
        ax.legend(fontsize=6)
    ax = axes[0, -1]
    hg = np.linspace(*H_BOX, 801)
    ax.plot(hg, fbar(hg), "k-", lw=2, label="F̄")
    for a in (1.0, 10.0, 1000.0):
        f = fbar_alpha(hg, a)
        ax.plot(hg, f - f.max() + fbar(hg).max(), lw=1, label=f"F̄_α, α={a:g} (shifted)")
    ax.set(xlabel="h", ylim=(-0.6, 0.0), title="effective and tilted fitness")
    ax.legend(fontsize=7)
    ax = axes[1, -1]
    for row in res["n_check"]:
        for mode, ls in (("instantaneous", "-"), ("effective", "--")):
            ax.semilogy(hz, row[mode]["regret_mean"], ls, marker="o",
                        label=f"N={row['N']}, α={row['alpha']:g}, {mode}")
    ax.set(xlabel="horizon t", ylabel="mean regret", title="finite N (Boltzmann)")
    ax.legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
