"""PBT of DQN agents on CartPole (the reference experiment): fitness windows k = 1, 2, 5.

Full setting: N = 500 agents, 10 generations of 500 steps, episodes cut at 100 steps, q = 0.2
truncation, explore noise 0.1 in unit coordinates, copiers' memory reset
(:mod:`pde_popdyn.experiments.cartpole`), for k ∈ {1, 2, 5} × 3 seeds; plus a separate run of
fixed-h agents (no exploit) on a grid of learning rates, whose time-averaged returns after
burn-in estimate F̄(log10 η) independently of the PBT runs.

Measured and plotted: wall time of each run (the k = 1, seed 0 run is "the reference run";
bar: ≤ 15 min); mean return per generation by k (mean and spread over seeds); the
learning-rate marginal ρ(t, log10 η) and its mean/std; the selection noise (rank correlation
of the ranking fitness with the next generation's return among the agents that carried over;
the fraction of exploit decisions that another window would reverse); surviving lineages;
a PCA of the parameter vectors of one run; F̄(log10 η) with standard errors.

Against the continuum: the reduced equation's prediction of ρ(t, log10 η) — the PBT
generation map ranking on F̄ (``pp.PBT(rank_on="effective")`` with a Gaussian explore of the
reference code's σ = 0.1 in unit coordinates, i.e. 0.15 in log10 η, clipped to the box) fed
with the F̄ of the fixed-h agents — is overlaid on the agents' histograms
(:func:`reduced_predictor`). The prediction assumes θ relaxed within a ready interval and an F̄
that does not change over the run; the DQN agents satisfy neither, which is what the overlay
shows.

Runs are cached as .npz in a runs folder (``PDE_POPDYN_CARTPOLE_RUNS``, default a folder in
the system's temporary directory), so an interrupted full study resumes; the reference run's
snapshot files (HDF5) are written there too.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace
from pathlib import Path

import numpy as np

from ._common import machine_info, now, write_json

NAME = "cartpole"
DESCRIPTION = (
    "PBT of 500 numpy-DQN agents on gymnasium CartPole (returns ≤ 100), 10 generations of 500 "
    "steps, fitness windows k = 1, 2, 5 × 3 seeds: returns by k with spread, learning-rate "
    "density over generations, selection noise (rank correlation with the next generation, "
    "decisions another window reverses), lineages, PCA of parameters; F̄(log10 lr) from "
    "separate fixed-h agents. Bar: the reference run (k = 1) in ≤ 15 min. Needs gymnasium.")

CONFIG = {
    "quick": {"n_agents": 32, "generations": 3, "steps": 300, "windows": (1, 2, 5),
              "seeds": (0,), "fbar_lr": (-5.0, -4.0, -3.0, -2.0), "fbar_per_lr": 8,
              "burn_in": 1, "workers": 2, "hidden": (64, 64)},
    "full": {"n_agents": 500, "generations": 10, "steps": 500, "windows": (1, 2, 5),
             "seeds": (0, 1, 2), "fbar_lr": tuple(np.round(np.linspace(-5, -2, 10), 4)),
             "fbar_per_lr": 50, "burn_in": 3, "workers": 2, "hidden": (64, 64)},
}
BAR_SECONDS = 15 * 60
LR_BINS = (-5.0, -2.0, 30)


def runs_dir(quick: bool) -> Path:
    d = os.environ.get("PDE_POPDYN_CARTPOLE_RUNS")
    p = Path(d) if d else Path(tempfile.gettempdir()) / "pde_popdyn_cartpole"
    p = p / ("quick" if quick else "full")
    p.mkdir(parents=True, exist_ok=True)
    return p


def _config(cfg: dict, window: int, seed: int, exploit: bool = True):
    from pde_popdyn.experiments.cartpole import CartPolePBTConfig
    from pde_popdyn.experiments.dqn import DQNConfig
    n = cfg["n_agents"] if exploit else len(cfg["fbar_lr"]) * cfg["fbar_per_lr"]
    return CartPolePBTConfig(n_agents=n, generations=cfg["generations"],
                             steps_per_generation=cfg["steps"], window=window, seed=seed,
                             exploit=exploit, dqn=DQNConfig(hidden=tuple(cfg["hidden"])))


def _key(config, extra="") -> str:
    text = json.dumps(config.describe(), sort_keys=True, default=str) + extra
    return hashlib.sha1(text.encode()).hexdigest()[:12]


def fixed_h_design(cfg: dict, seed: int = 1000) -> np.ndarray:
    """h0 for the F̄ runs: each learning rate of the grid for ``fbar_per_lr`` agents, the
    other hyperparameters drawn from their priors (so F̄ is marginalised over them)."""
    from pde_popdyn.experiments.cartpole import default_space
    rng = np.random.default_rng(seed)
    lr = np.repeat(10.0 ** np.asarray(cfg["fbar_lr"], float), cfg["fbar_per_lr"])
    h = default_space().sample(rng, lr.size)
    h[:, 0] = lr
    return h


def one_run(cfg: dict, window: int, seed: int, exploit: bool, folder: str,
            pca_theta: bool, write_h5: bool) -> dict:
    """Run (or load from the cache) one configuration; return its summary arrays."""
    from pde_popdyn.experiments import analysis as an
    from pde_popdyn.experiments import cartpole as cp
    from pde_popdyn.experiments.pbt import surviving_lineages

    config = _config(cfg, window, seed, exploit)
    h0 = None if exploit else fixed_h_design(cfg)
    # the fixed-h design (learning rates, agents per rate) is not in the config: key it too
    design = "" if exploit else json.dumps([list(cfg["fbar_lr"]), cfg["fbar_per_lr"]])
    stem = f"{'pbt' if exploit else 'fixedh'}_k{window}_s{seed}_{_key(config, design)}"
    cache = Path(folder) / f"{stem}.npz"
    if cache.exists():
        with np.load(cache, allow_pickle=False) as z:
            out = {k: z[k] for k in z.files}
        out["cached"] = True
        return out
    c0 = time.process_time()
    res = cp.run(config, h0=h0, keep_theta=pca_theta, lr_bins=LR_BINS,
                 output=(Path(folder) / f"{stem}.h5") if write_h5 else None, overwrite=True)
    cpu = time.process_time() - c0
    edges = np.linspace(*LR_BINS[:2], LR_BINS[2] + 1)
    out = {"h": res.h, "returns": res.returns, "fitness": res.fitness,
           "parent": res.parent, "episodes": res.episodes,
           "rho_lr": an.marginal_histograms(np.log10(res.h[..., 0]), edges),
           "lineages": surviving_lineages(list(res.parent[1:])),
           "wall_seconds": res.wall_seconds, "train_seconds": res.train_seconds,
           "cpu_seconds": cpu, "window": window, "seed": seed,
           "fraction": config.fraction}
    for k, v in res.fitness_k.items():
        out[f"fitness_k{k}"] = v
    for g, b in enumerate(res.bottom, start=1):
        out[f"bottom_{g}"] = b
    if pca_theta:
        G1, n, P = res.theta.shape
        scores, _, ratio = an.pca(res.theta.reshape(G1 * n, P), 2)
        out["pca_scores"] = scores.reshape(G1, n, 2)
        out["pca_ratio"] = ratio
    if write_h5:
        out["h5"] = np.array(str(res.path))
    np.savez(cache, **out)
    out["cached"] = False
    return out


def hot_path(n: int, steps: int) -> dict:
    """CPU and wall time of one learning step of n agents with full replay buffers (batch
    sizes from the prior): float32 vs float64, one vs two learning threads; and the hidden
    layer's batched product by matmul vs einsum."""
    from pde_popdyn.experiments.cartpole import default_space
    from pde_popdyn.experiments.dqn import BatchedDQN, DQNConfig

    rng = np.random.default_rng(0)
    h = default_space().sample(rng, n)
    out: dict = {"n_agents": n, "steps": steps}
    for name, kw in (("float32", {}), ("float64", {"dtype": "float64"}),
                     ("float32_2threads", {"threads": 2})):
        d = BatchedDQN(n, h[:, 0], h[:, 2], h[:, 1], np.random.default_rng(1),
                       DQNConfig(**kw))
        rb = d.replay
        rb.rec[...] = rng.standard_normal(rb.rec.shape)
        rb.rec[..., 8] = rng.integers(0, 2, rb.rec.shape[:2])
        rb.rec[..., 10] = 0.0
        rb.size[:] = rb.capacity
        d.learn()
        c0, t0 = time.process_time(), time.perf_counter()
        for _ in range(steps):
            d.learn()
        out[name] = {"cpu_ms_per_step": 1e3 * (time.process_time() - c0) / steps,
                     "wall_ms_per_step": 1e3 * (time.perf_counter() - t0) / steps}
    a = rng.standard_normal((48, 96, 64)).astype(np.float32)
    W = rng.standard_normal((48, 64, 64)).astype(np.float32)
    for name, fn in (("matmul", lambda: np.matmul(a, W)),
                     ("einsum", lambda: np.einsum("nbi,nij->nbj", a, W))):
        fn()
        c0 = time.process_time()
        for _ in range(20):
            fn()
        out[f"hidden_layer_{name}_ms"] = 1e3 * (time.process_time() - c0) / 20
    return out


def reduced_predictor(fraction: float = 0.2, sigma_unit: float = 0.1):
    """The reduced equation's PBT generation map as ``predict(fbar, h, rho0, G)`` on the
    log10-learning-rate cells centred at ``h``: ``pp.solve_reduced`` of a ``pp.PBT(
    rank_on="effective")`` model with the clipped Gaussian explore of the reference code
    (σ = ``sigma_unit`` in the unit coordinates of the box, mapped to log10 η)."""
    import pde_popdyn as pp
    from pde_popdyn.experiments.continuum import predict as continuum_predict
    lo, hi = LR_BINS[:2]
    std = sigma_unit * (hi - lo) / 2

    def predict(fbar, h, rho0, G):
        dh = float(h[1] - h[0])
        grid = pp.Grid(theta=(-1.0, 1.0, 3), h=(h[0] - dh / 2, h[-1] + dh / 2, h.size))
        return continuum_predict(fbar, grid, rho0, 1.0, G, fraction=fraction,
                                 explore_std=std).rho
    return predict, (f"reduced PBT map (pp.PBT, rank_on='effective', q = {fraction}, "
                     f"clipped Gaussian explore σ = {std:g} in log10 η) with F̄ of the fixed-h "
                     f"agents")


def _noise(r: dict, cfg: dict) -> dict:
    """Selection noise of a cached run, recomputed from its raw arrays."""
    from types import SimpleNamespace

    from pde_popdyn.experiments import analysis as an
    G = r["returns"].shape[0] - 1
    ks = sorted(int(k[len("fitness_k"):]) for k in r if k.startswith("fitness_k"))
    res = SimpleNamespace(
        returns=r["returns"], fitness=r["fitness"],
        fitness_k={k: r[f"fitness_k{k}"] for k in ks},
        bottom=[r[f"bottom_{g}"] for g in range(1, G) if f"bottom_{g}" in r],
        config=SimpleNamespace(fraction=float(r["fraction"])))
    return an.selection_noise(res)


def _summarise_pbt(runs: list[dict], windows, cfg: dict) -> dict:
    out = {}
    for r in runs:
        noise = _noise(r, cfg)
        r["rank_corr_next"] = np.array(noise["rank_corr_next"])
        r["ties"] = np.array(noise["ties"])
        for k, v in noise["reversed_by"].items():
            r[f"reversed_by_k{k}"] = np.array(v)
    for k in windows:
        rs = [r for r in runs if int(r["window"]) == k]
        mr = np.array([np.nanmean(r["returns"][1:], axis=1) for r in rs])      # (seeds, G)
        lr = np.array([np.log10(r["h"][..., 0]) for r in rs])                  # (seeds, G+1, N)
        lin = np.array([r["lineages"] for r in rs])
        corr = np.array([r["rank_corr_next"] for r in rs]) if rs and "rank_corr_next" in rs[0] \
            else np.zeros((0, 0))
        rev = {kk: np.array([r[f"reversed_by_k{kk}"] for r in rs]) for kk in windows}
        out[k] = {
            "seeds": [int(r["seed"]) for r in rs],
            "mean_return": mr.mean(axis=0), "mean_return_sd": mr.std(axis=0, ddof=1)
            if len(rs) > 1 else np.zeros(mr.shape[1]),
            "mean_return_per_seed": mr,
            "final_return": float(mr[:, -1].mean()),
            "final_return_sd": float(mr[:, -1].std(ddof=1)) if len(rs) > 1 else 0.0,
            "mean_log10_lr": lr.mean(axis=2).mean(axis=0),
            "std_log10_lr": lr.std(axis=2).mean(axis=0),
            "surviving_lineages": lin.mean(axis=0),
            "rank_corr_next": np.nanmean(corr, axis=0) if corr.size else [],
            "ties": np.array([r["ties"] for r in rs]).mean(axis=0),
            "reversed_by": {kk: v.mean(axis=0) for kk, v in rev.items()},
            "wall_seconds": [float(r["wall_seconds"]) for r in rs],
            "cpu_seconds": [float(r["cpu_seconds"]) for r in rs],
        }
    return out


def run(quick: bool, outdir: Path) -> dict:
    try:
        import gymnasium  # noqa: F401
    except ImportError:
        print("gymnasium is not installed: pip install 'pde_popdyn[gym]'; study skipped")
        write_json(Path(outdir) / f"{NAME}.json", {"study": NAME, "date": now(),
                                                   "skipped": "gymnasium not installed"})
        return {"headline": "skipped: gymnasium not installed", "passed": None}
    from pde_popdyn.experiments import analysis as an

    cfg = CONFIG["quick" if quick else "full"]
    folder = runs_dir(quick)
    t_start = time.perf_counter()
    info = machine_info()
    jobs = [(cfg, k, s, True, str(folder), s == cfg["seeds"][0], s == cfg["seeds"][0] and k ==
             cfg["windows"][0]) for s in cfg["seeds"] for k in cfg["windows"]]
    jobs.append((cfg, 1, 0, False, str(folder), False, False))
    if cfg["workers"] > 1:
        with ProcessPoolExecutor(cfg["workers"]) as pool:
            results = list(pool.map(one_run, *zip(*jobs)))
    else:
        results = [one_run(*j) for j in jobs]
    pbt_runs, fixed = results[:-1], results[-1]
    profile = hot_path(cfg["n_agents"], 5 if quick else 10)
    ref = next(r for r in pbt_runs if int(r["window"]) == cfg["windows"][0]
               and int(r["seed"]) == cfg["seeds"][0])
    summary = _summarise_pbt(pbt_runs, cfg["windows"], cfg)

    # F̄(log10 lr) from the fixed-h agents, independent of the PBT runs
    x_agent = np.log10(fixed["h"][0][:, 0])
    xs, fbar, se, per_gen = an.fbar_from_fixed_h(x_agent, fixed["returns"], cfg["burn_in"])
    edges = np.linspace(*LR_BINS[:2], LR_BINS[2] + 1)
    centres = 0.5 * (edges[1:] + edges[:-1])
    predict, why = reduced_predictor(cfg.get("fraction", 0.2), cfg.get("sigma", 0.1))
    comparison = None
    if predict is not None:
        comparison = {k: an.compare_with_prediction(
            np.mean([r["rho_lr"] for r in pbt_runs if int(r["window"]) == k], axis=0),
            centres, an.fbar_on_grid(xs, fbar, centres), predict) for k in cfg["windows"]}

    wall_ref = float(ref["wall_seconds"])
    passed = None if quick else bool(wall_ref <= BAR_SECONDS)
    data = {
        "study": NAME, "quick": quick, "date": now(), "machine": info, "config": cfg,
        "runs_folder": folder, "reference_run": {
            "window": int(ref["window"]), "seed": int(ref["seed"]), "wall_seconds": wall_ref,
            "cpu_seconds": float(ref["cpu_seconds"]), "h5": str(ref.get("h5", "")),
            "bar_seconds": BAR_SECONDS},
        "by_window": summary,
        "fixed_h": {"log10_lr": xs, "fbar": fbar, "stderr": se, "per_generation": per_gen,
                    "burn_in": cfg["burn_in"], "agents_per_lr": cfg["fbar_per_lr"],
                    "wall_seconds": float(fixed["wall_seconds"])},
        "rho_lr_edges": edges, "rho_lr_reference": ref["rho_lr"],
        "prediction": {"available": comparison is not None, "reason": why,
                       "comparison": comparison},
        "pca_ratio": ref.get("pca_ratio"),
        "hot_path": profile,
        "all_runs_wall_seconds": float(sum(float(r["wall_seconds"]) for r in results)),
        "study_wall_seconds": time.perf_counter() - t_start,
        "cached_runs": int(sum(bool(r["cached"]) for r in results)),
    }
    write_json(Path(outdir) / f"{NAME}.json", data)
    _figure(Path(outdir) / f"{NAME}.png", cfg, summary, ref, xs, fbar, se, edges, comparison)
    finals = ", ".join(f"k={k}: {summary[k]['final_return']:.1f}±"
                       f"{summary[k]['final_return_sd']:.1f}" for k in cfg["windows"])
    k0, klast = cfg["windows"][0], cfg["windows"][-1]
    rev = np.nanmean(summary[k0]["reversed_by"][klast]) if len(summary[k0]["reversed_by"][
        klast]) else float("nan")
    headline = (f"final mean return {finals} (seeds {list(cfg['seeds'])}); k={klast} would "
                f"reverse {100 * rev:.0f}% of k={k0}'s exploits; reference run "
                f"{wall_ref / 60:.1f} min (bar 15); prediction overlay: "
                f"{'shown' if comparison else 'missing (no pp.PBT)'}")
    return {"headline": headline, "passed": passed}


def _figure(path: Path, cfg, summary, ref, xs, fbar, se, edges, comparison) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ks = cfg["windows"]
    colours = dict(zip(ks, ("C0", "C1", "C2", "C3")))
    G = len(summary[ks[0]]["mean_return"])
    gens = np.arange(1, G + 1)
    fig, ax = plt.subplots(2, 3, figsize=(15, 8.5))
    a = ax[0, 0]
    for k in ks:
        s = summary[k]
        a.plot(gens, s["mean_return"], "o-", color=colours[k], label=f"k = {k}")
        a.fill_between(gens, s["mean_return"] - s["mean_return_sd"],
                       s["mean_return"] + s["mean_return_sd"], color=colours[k], alpha=0.2)
    a.set(xlabel="generation", ylabel="population mean return", title="returns by window k "
          f"(mean ± sd over {len(cfg['seeds'])} seeds)")
    a.legend()
    a = ax[0, 1]
    for k in ks:
        s = summary[k]
        g0 = np.arange(G + 1)
        a.plot(g0, s["mean_log10_lr"], "o-", color=colours[k], label=f"k = {k}")
        a.fill_between(g0, s["mean_log10_lr"] - s["std_log10_lr"],
                       s["mean_log10_lr"] + s["std_log10_lr"], color=colours[k], alpha=0.15)
    a.set(xlabel="generation", ylabel="log10 learning rate",
          title="learning-rate marginal: mean ± population sd")
    a.legend()
    a = ax[0, 2]
    rho = np.asarray(ref["rho_lr"])
    a.imshow(rho.T, origin="lower", aspect="auto", cmap="viridis",
             extent=(-0.5, rho.shape[0] - 0.5, edges[0], edges[-1]))
    a.set(xlabel="generation", ylabel="log10 learning rate",
          title=f"agents' ρ(t, log10 lr), k = {int(ref['window'])}, seed {int(ref['seed'])}"
          + ("" if comparison else "\n(reduced prediction: not available)"))
    a = ax[1, 0]
    for k in ks:
        s = summary[k]
        if len(s["rank_corr_next"]):
            gg = np.arange(1, len(s["rank_corr_next"]) + 1)
            a.plot(gg, s["rank_corr_next"], "o-", color=colours[k], label=f"k = {k}: corr")
            other = ks[-1] if k != ks[-1] else ks[0]
            a.plot(gg, s["reversed_by"][other], "s--", color=colours[k],
                   label=f"k = {k}: reversed by k = {other}")
    a.set(xlabel="generation (ranking after it)", ylim=(-1.0, 1.0),
          title="selection noise: Spearman(fitness, next return),\n"
                "fraction of exploits another window reverses")
    a.legend(fontsize=7)
    a = ax[1, 1]
    if "pca_scores" in ref:
        sc = np.asarray(ref["pca_scores"])
        for g in range(sc.shape[0]):
            a.scatter(sc[g, :, 0], sc[g, :, 1], s=4, color=plt.cm.viridis(g / max(
                sc.shape[0] - 1, 1)), label=f"gen {g}" if g in (0, sc.shape[0] - 1) else None)
        ratio = np.asarray(ref["pca_ratio"])
        a.set(xlabel=f"PC1 ({100 * ratio[0]:.1f}%)", ylabel=f"PC2 ({100 * ratio[1]:.1f}%)",
              title="PCA of the parameter vectors θ (colour: generation)")
        a.legend(fontsize=7)
    a = ax[1, 2]
    a.errorbar(xs, fbar, yerr=2 * np.asarray(se), fmt="o-", color="k", capsize=3,
               label="F̄ from fixed-h agents (± 2 se)")
    for k in ks:
        a.axvline(summary[k]["mean_log10_lr"][-1], color=colours[k], ls=":",
                  label=f"PBT mean log10 lr, k = {k}, last gen")
    a.set(xlabel="log10 learning rate", ylabel="mean return after burn-in",
          title="effective fitness F̄(log10 lr), independent of PBT")
    a.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
