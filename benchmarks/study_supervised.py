"""Supervised PBT on real networks against the reduced equation (issue 12, part 2).

Agents: one-hidden-layer tanh MLPs (32 units) trained by minibatch SGD (step 0.3, batch 16) on
scikit-learn's digits (200 training images, 600 validation images), h = log₁₀ weight decay on
[−5, 0], fitness −CE_val averaged over the evaluations of the last ready interval; PBT
truncation q = 0.2 (copy θ and h, clipped Gaussian explore σ = 0.25, memory cleared) every
``interval`` SGD steps, starting from h ~ U(box), on ≥ 5 independent populations
(:mod:`pde_popdyn.experiments.supervised`).

The prediction: F̄(h) estimated **independently** of the PBT populations, from agents trained
at fixed h on a grid of 21 values (6 seeds each), averaged over time after a burn-in of a
quarter of the run and over seeds; interpolated (PCHIP) to 200 cells; the reduced PBT
generation map on ρ ranking by F̄ (:func:`pde_popdyn.experiments.continuum.predict`; the
reduced face of ``PBT(interval, fraction, copy="both", rank_on="effective")``) from the
uniform ρ₀, for as many generations as the agents ran. Its band: the same prediction from F̄
re-estimated on bootstrap resamples of the fixed-h seeds.

Diagnostics that tell the failure modes apart: the prediction with F̄(h, t) re-estimated at
every ready time from the fixed-h runs (non-stationary F̄ as the networks keep training);
ranking on the law of the agents' noisy fitness instead of F̄ (``rank_on="instantaneous"``,
the spread of G at each h from the fixed-h runs); idealised finite populations of the same N
under the same rule (:func:`~pde_popdyn.experiments.continuum.surrogate_pbt`, finite N alone).

Reported, per generation: E[h] and Var[h] of the populations (mean over seeds ± standard
error), each prediction, and the deviation in standard errors. Bar: the reduced prediction of
E[h] lies within 2 standard errors (over seeds) plus the prediction's own bootstrap spread at
every generation of the selection phase (until the predicted Var[h] has fallen to within 25 %
of its final value), and within 0.5 decades of the population's E[h] at every generation.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np

import pde_popdyn as pp
from pde_popdyn.experiments import continuum as cont
from pde_popdyn.experiments import supervised as sv

from ._common import machine_info, now, write_json

NAME = "supervised"
DESCRIPTION = (
    "Supervised PBT of numpy MLPs on sklearn digits (h = log10 weight decay, truncation "
    "q = 0.2, ≥ 5 populations) against the reduced PBT generation map driven by F̄(h) estimated "
    "independently from fixed-h runs; E[h] and Var[h] over time with seed spread, and diagnostics "
    "(time-resolved F̄, ranking on the noisy fitness, finite-N surrogate). Bar: E[h] within "
    "2 SE + bootstrap spread during selection and within 0.5 decades throughout.")

FULL = {"interval": 500, "eval_every": 125, "generations": 24, "agents": 64, "seeds": 6,
        "h_values": 21, "fixed_seeds": 6, "bootstrap": 40, "surrogates": 400,
        "long_interval": 2000}
QUICK = {"interval": 200, "eval_every": 100, "generations": 6, "agents": 16, "seeds": 3,
         "h_values": 7, "fixed_seeds": 3, "bootstrap": 8, "surrogates": 50,
         "long_interval": None}
GRID_CELLS = 200


def experiment(quick: bool) -> dict:
    """Train the fixed-h agents and the PBT populations (the expensive part): the main run,
    and (full setting) the same total SGD steps with a 4× longer ready interval."""
    cfg = QUICK if quick else FULL
    setup = sv.Setup(interval=cfg["interval"], eval_every=cfg["eval_every"])
    data = setup.data()
    n_steps = cfg["generations"] * setup.interval
    h_values = np.linspace(*setup.box, cfg["h_values"])
    runs = sv.fixed_h_runs(setup, h_values, cfg["fixed_seeds"], n_steps, seed=101, data=data)
    out = {"cfg": cfg, "setup": setup, "runs": runs,
           "rec": sv.run_pbt(setup, cfg["agents"], cfg["generations"], cfg["seeds"],
                             seed=202, data=data)}
    if cfg["long_interval"]:
        long = sv.Setup(interval=cfg["long_interval"], eval_every=cfg["eval_every"])
        out["setup_long"] = long
        out["rec_long"] = sv.run_pbt(long, cfg["agents"], n_steps // long.interval,
                                     cfg["seeds"], seed=203, data=data)
    return out


def analyse(cfg: dict, setup: sv.Setup, runs: sv.FixedHRuns, rec: sv.PBTRecord,
            burn_in: int | None = None) -> dict:
    """The predictions, their comparison with the populations, and the diagnostics."""
    G, N, S = rec.info["n_generations"], rec.info["n_agents"], rec.info["n_seeds"]
    burn_in = G * setup.interval // 4 if burn_in is None else burn_in
    est = sv.estimate_fitness(runs, burn_in, window=setup.window)
    grid = pp.Grid(theta=(-1.0, 1.0, 3), h=(*setup.box, GRID_CELLS))
    rho0 = np.ones(grid.n_h)                     # the agents start from h ~ U(box)
    q = math.ceil(setup.fraction * N) / N        # the fraction the agents actually copy
    kw = {"fraction": q, "explore_std": setup.explore_std}
    hv = est.h

    def pred(fbar, **extra):
        p = cont.predict(cont.on_grid(fbar, hv, grid.h), grid, rho0, setup.interval, G,
                         **kw, **extra)
        return p.mean[:, 0], p.var[:, 0], p

    mean_eff, var_eff, p_eff = pred(est.fbar)
    # the band: F̄ re-estimated from bootstrap resamples of the fixed-h seeds
    rng = np.random.default_rng(7)
    n_fixed = est.seed_means.shape[1]
    boot = [pred(est.seed_means[:, rng.integers(0, n_fixed, n_fixed)].mean(axis=1))[:2]
            for _ in range(cfg["bootstrap"])]
    boot_mean = np.std([b[0] for b in boot], axis=0)
    boot_var = np.std([b[1] for b in boot], axis=0)
    # F̄(h, t) at each ready time: the window of evaluations ending there
    ready = setup.interval * np.arange(1, G + 1)
    rows = np.searchsorted(est.block_steps, ready)
    mean_t, var_t, _ = pred(est.by_time[rows])
    std_h = est.windowed_std
    mean_inst, var_inst, _ = pred(est.fbar, rank_on="instantaneous",
                                  fitness_std=cont.on_grid(std_h, hv, grid.h))
    # idealised populations of the same size under the same rule (finite N alone)
    fbar_fn = lambda h: cont.on_grid(est.fbar, hv, h)                          # noqa: E731
    h0 = np.random.default_rng(11).uniform(*setup.box, (cfg["surrogates"], N))
    sur = cont.surrogate_pbt(fbar_fn, h0, G, setup.box, seed=12, **kw)
    sur_noisy = cont.surrogate_pbt(fbar_fn, h0, G, setup.box, seed=13,
                                   fitness_std=lambda h: cont.on_grid(std_h, hv, h), **kw)

    m, v = rec.mean_h, rec.var_h                                               # (S, G+1)
    se_m, se_v = m.std(axis=0, ddof=1) / math.sqrt(S), v.std(axis=0, ddof=1) / math.sqrt(S)
    pop = {"mean_h": m.mean(0), "mean_h_se": se_m, "mean_h_sd": m.std(0, ddof=1),
           "var_h": v.mean(0), "var_h_se": se_v, "var_h_sd": v.std(0, ddof=1),
           "mean_h_seeds": m, "var_h_seeds": v}
    dev_m = pop["mean_h"] - mean_eff
    dev_v = pop["var_h"] - var_eff
    z_m = dev_m / np.sqrt(se_m ** 2 + boot_mean ** 2)
    z_v = dev_v / np.sqrt(se_v ** 2 + boot_var ** 2)
    final = var_eff[-1]
    selecting = np.abs(var_eff - final) > 0.25 * final
    selecting[0] = True
    n_sel = int(np.argmin(selecting)) if not selecting.all() else G + 1
    passed = bool(np.all(np.abs(z_m[:n_sel]) <= 2) and np.all(np.abs(dev_m) <= 0.5))
    hg = np.linspace(*setup.box, 2001)
    h_arg = float(hg[np.argmax(fbar_fn(hg))])
    return {
        "burn_in": burn_in, "fraction_copied": q, "grid_cells": GRID_CELLS,
        "fbar": {"h": hv, "fbar": est.fbar, "stderr": est.stderr, "g_std": std_h,
                 "by_time": est.by_time, "block_steps": est.block_steps,
                 "argmax": h_arg},
        "population": pop,
        "prediction": {"mean_h": mean_eff, "var_h": var_eff, "mean_h_boot_sd": boot_mean,
                       "var_h_boot_sd": boot_var, "rho": p_eff.rho, "h": grid.h},
        "time_resolved": {"mean_h": mean_t, "var_h": var_t},
        "instantaneous": {"mean_h": mean_inst, "var_h": var_inst},
        "surrogate": {"mean_h": sur.mean(2).mean(0), "mean_h_sd": sur.mean(2).std(0),
                      "var_h": sur.var(2).mean(0), "var_h_sd": sur.var(2).std(0)},
        "surrogate_noisy": {"mean_h": sur_noisy.mean(2).mean(0),
                            "mean_h_sd": sur_noisy.mean(2).std(0),
                            "var_h": sur_noisy.var(2).mean(0),
                            "var_h_sd": sur_noisy.var(2).std(0)},
        "deviation": {"mean_h": dev_m, "var_h": dev_v, "z_mean_h": z_m, "z_var_h": z_v},
        "inherited_fitness": sv.inherited_fitness(rec, est),
        # θ relaxes under weight decay in ≈ 1/(η λ) SGD steps; over the ready interval this is
        # the time-scale ratio ε that the reduced map assumes small
        "relaxation_steps": {"at_argmax_fbar": 1 / (setup.lr * 10 ** h_arg),
                             "at_final_mean_h": 1 / (setup.lr * 10 ** float(m.mean(0)[-1]))},
        "eps_at_argmax_fbar": 1 / (setup.lr * 10 ** h_arg) / setup.interval,
        "t": rec.steps, "interval": setup.interval, "generations": G,
        "val_loss_mean": rec.val_loss.mean(axis=(0, 2)),
        "val_loss_best": rec.val_loss.min(axis=2).mean(axis=0),
        "accuracy_mean": rec.accuracy.mean(axis=(0, 2)),
        "h_agents": rec.h, "seconds_pbt": rec.seconds,
        "selection_phase_generations": n_sel, "passed": passed,
    }


def run(quick: bool, outdir: Path) -> dict:
    outdir = Path(outdir)
    t_start, cpu_start = time.perf_counter(), time.process_time()
    exp = experiment(quick)
    cfg, runs = exp["cfg"], exp["runs"]
    main = analyse(cfg, exp["setup"], runs, exp["rec"])
    res = {"machine": machine_info(), "date": now(), "quick": quick, "settings": cfg,
           "setup": exp["setup"].describe(), "seconds_fixed_h": runs.seconds, "main": main}
    if "rec_long" in exp:
        res["long_interval"] = analyse(cfg, exp["setup_long"], runs, exp["rec_long"])
        res["setup_long"] = exp["setup_long"].describe()
    pm, pr = main["population"], main["prediction"]
    k = main["generations"]
    inh = main["inherited_fitness"]
    down_up = inh["down"]["mean"] - inh["up"]["mean"]
    headline = (
        f"E[h] agrees for {_agreeing(main)} of {k} generations (|z| ≤ 2); at the end agents "
        f"{pm['mean_h'][-1]:.2f} ± {pm['mean_h_se'][-1]:.2f} vs reduced {pr['mean_h'][-1]:.2f} "
        f"(finite-N surrogate {main['surrogate']['mean_h'][-1]:.2f}, F̄(h, t) "
        f"{main['time_resolved']['mean_h'][-1]:.2f}); Var[h] {pm['var_h'][-1]:.3f} vs "
        f"{pr['var_h'][-1]:.3f} (noisy ranking {main['instantaneous']['var_h'][-1]:.3f}); "
        f"inherited fitness {inh['kept']['mean']:+.3f}, down-jumps favoured by "
        f"{down_up:+.3f}; ε ≈ {main['eps_at_argmax_fbar']:.1f}")
    if "long_interval" in res:
        lg = res["long_interval"]
        g = lg["generations"]
        headline += (f"; 4× interval (ε ≈ {lg['eps_at_argmax_fbar']:.1f}): E[h] at generation "
                     f"{g} {lg['population']['mean_h'][-1]:.2f} vs "
                     f"{lg['prediction']['mean_h'][-1]:.2f} (main run {pm['mean_h'][g]:.2f} vs "
                     f"{pr['mean_h'][g]:.2f})")
    res.update(passed=main["passed"], headline=headline,
               wall_seconds=time.perf_counter() - t_start,
               cpu_seconds=time.process_time() - cpu_start)
    write_json(outdir / f"{NAME}.json", res)
    _figure(res, outdir / f"{NAME}.png")
    return {"headline": headline, "passed": main["passed"]}


def _agreeing(r: dict) -> int:
    """Generations (after the start) at which the predicted E[h] is within 2 SE."""
    return int((np.abs(r["deviation"]["z_mean_h"][1:]) <= 2).sum())


def _figure(res: dict, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    main = res["main"]
    fig, axes = plt.subplots(2, 3, figsize=(16, 9))
    # -- F̄(h): the burn-in average with error bars, and F̄(h, t) early and late --------------
    ax = axes[0, 0]
    fb = main["fbar"]
    bt = np.asarray(fb["by_time"])
    for row, c in ((0, "0.7"), (len(bt) // 3, "0.5"), (len(bt) - 1, "0.2")):
        ax.plot(fb["h"], bt[row], color=c, lw=1,
                label=f"window ending at step {fb['block_steps'][row]}")
    ax.errorbar(fb["h"], fb["fbar"], yerr=2 * np.asarray(fb["stderr"]), fmt="o-", color="C3",
                ms=3, label=f"F̄ (after step {main['burn_in']}, ±2 SE)")
    ax.axvline(fb["argmax"], color="C3", ls=":", lw=1)
    top = max(np.max(fb["fbar"]), bt.max())
    ax.set(xlabel="h = log10 weight decay", ylabel="fitness −CE_val",
           ylim=(top - 0.12, top + 0.01), title="effective fitness from fixed-h runs")
    ax.legend(fontsize=7)
    # -- E[h] and Var[h] over generations (the map's clock; the runs differ in interval) ----
    runs = [("main", main, "C0")]
    if "long_interval" in res:
        runs.append(("long", res["long_interval"], "C2"))
    for ax, key, log in ((axes[0, 1], "mean_h", False), (axes[0, 2], "var_h", True)):
        gen = np.arange(main["generations"] + 1)
        pr = main["prediction"]
        bsd = np.asarray(pr[f"{key}_boot_sd"])
        ax.fill_between(gen, np.maximum(np.asarray(pr[key]) - 2 * bsd, 1e-3 if log else -9),
                        np.asarray(pr[key]) + 2 * bsd, color="k", alpha=0.12)
        ax.plot(gen, pr[key], "k--", lw=1.5, label="reduced map, F̄ ranking (±2 bootstrap SD)")
        ax.plot(gen, main["time_resolved"][key], "k:", lw=1, label="reduced map, F̄(h, t)")
        ax.plot(gen, main["instantaneous"][key], color="C1", ls="-.", lw=1,
                label="reduced map, noisy-fitness ranking")
        ax.plot(gen, main["surrogate"][key], color="C4", ls=(0, (1, 3)), lw=1.5,
                label="idealised agents, same N")
        for name, r, c in runs:
            p = r["population"]
            g = np.arange(r["generations"] + 1)
            for seed_curve in np.asarray(p[f"{key}_seeds"]):
                ax.plot(g, seed_curve, color=c, lw=0.4, alpha=0.4)
            lo = np.asarray(p[key]) - 2 * np.asarray(p[f"{key}_se"])
            ax.fill_between(g, np.maximum(lo, 1e-3) if log else lo,
                            np.asarray(p[key]) + 2 * np.asarray(p[f"{key}_se"]),
                            color=c, alpha=0.25)
            ax.plot(g, p[key], color=c, lw=2,
                    label=f"agents, interval {r['interval']} (mean ± 2 SE over seeds)")
        ax.set(xlabel="generation", ylabel=key.replace("_", " "),
               yscale="log" if log else "linear",
               title="E[h]: agents vs reduced PBT map" if key == "mean_h" else
               "Var[h]: agents vs reduced PBT map")
        ax.legend(fontsize=7)
    # -- densities -------------------------------------------------------------------------
    ax = axes[1, 0]
    hg = np.asarray(main["prediction"]["h"])
    rho = np.asarray(main["prediction"]["rho"])
    hag = np.asarray(main["h_agents"])
    G = main["generations"]
    edges = np.linspace(hg[0] - 0.5 * (hg[1] - hg[0]), hg[-1] + 0.5 * (hg[1] - hg[0]), 41)
    picks = sorted({1, 2, G // 4, G})
    for c, k in zip(plt.cm.viridis(np.linspace(0, 0.9, len(picks))), picks):
        ax.hist(hag[:, k].ravel(), bins=edges, density=True, color=c, alpha=0.35)
        ax.plot(hg, rho[k], color=c, lw=1.8, label=f"generation {k}")
    ax.set(xlabel="h = log10 weight decay", ylabel="density", xlim=(hg[0], hg[-1]),
           title="agents pooled over seeds (bars) vs reduced ρ (lines)")
    ax.legend(fontsize=7)
    # -- inherited fitness -----------------------------------------------------------------
    ax = axes[1, 1]
    groups = ("kept", "down", "up")
    width = 0.8 / len(runs)
    for j, (name, r, c) in enumerate(runs):
        inh = r["inherited_fitness"]
        x = np.arange(3) + j * width
        ax.bar(x, [inh[g]["mean"] for g in groups], width,
               yerr=[2 * inh[g]["stderr"] for g in groups], color=c, alpha=0.7,
               label=f"interval {r['interval']}")
    ax.set_xticks(np.arange(3) + 0.4 - width / 2)
    ax.set_xticklabels(["kept own θ", "copied,\njumped down", "copied,\njumped up"])
    ax.axhline(0, color="k", lw=0.8)
    ax.set(ylabel="G − F̄(h, t)  (±2 SE)",
           title="agents' fitness above fixed-h agents at the same h and time")
    ax.legend(fontsize=7)
    # -- training progress -----------------------------------------------------------------
    ax = axes[1, 2]
    for name, r, c in runs:
        t = np.asarray(r["t"])[1:]
        ax.plot(t, r["val_loss_mean"], color=c, label=f"mean CE_val, interval {r['interval']}")
        ax.plot(t, r["val_loss_best"], color=c, ls="--", label="best agent's CE_val")
    ax.axhline(-max(main["fbar"]["fbar"]), color="C3", ls=":", label="−max F̄ (fixed h)")
    ax.set(xlabel="SGD steps", ylabel="validation cross-entropy",
           title="training progress of the populations")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
