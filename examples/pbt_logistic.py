"""Population-based training of real models, against the reduced equation.

A population of N logistic-regression classifiers (numpy, 30 features + bias) is trained by
minibatch SGD on scikit-learn's breast-cancer data (150 training and 419 validation samples,
standardised). Agent i has weights θ_i ∈ R^31 and one hyperparameter, its log10 weight decay
h_i ∈ [−5, 0]; its training loss is

    L(θ, h) = mean cross-entropy on the training set + (10^h / 2) |θ|²,

and its fitness is minus the validation log-loss, F(θ, h) = −CE_val(θ). Every round (Δt = 1)
each agent takes 25 SGD steps (learning rate 0.5, batch 32: ``simulate_particles`` with
``fast="euler"``, a stochastic-gradient callable and ``noise=False``, so the fast dynamics *is*
plain SGD; ε = Δt/(lr × steps)), then the population is selected by the replicator rule on F
(weights e^{κΔtF}, resampling: the agents copy weights and hyperparameter of fitter agents)
and h diffuses (D).

The reduced equation. For the replicator the h-marginal obeys exactly

    ∂_t ρ = κ (F̂ − ⟨F̂⟩_ρ) ρ + D ∂²_h ρ,     F̂(t, h) = E[F | h] over the population,

whatever the θ-dynamics (the replicator is linear in F). The script estimates F̂(t, h) from the
agents at every round by Nadaraya–Watson kernel regression of {(h_j, F_j)} (the "estimated"
effective fitness), feeds it to ``pp.solve_reduced`` on a grid of h (trapezoidal in time
between rounds), and compares the population's density of h with ρ(t, h): moments, the W1
distance (``pp.compare``) and histograms. The agreement is limited by N (finite-population
noise, N^{-1/2}) and by the estimation error of F̂, not by a modelling assumption.

Run:  python examples/pbt_logistic.py [--agents 128] [--rounds 60] [--out pbt_logistic.png]
Needs scikit-learn (``pip install pde_popdyn[examples]``). Runtime: a few seconds.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

import pde_popdyn as pp
from pde_popdyn.particles import kernel_regression


def load_data(n_train: int = 150, seed: int = 0):
    """Standardised breast-cancer features with a bias column, split train / validation."""
    from sklearn.datasets import load_breast_cancer

    X, y = load_breast_cancer(return_X_y=True)
    rng = np.random.default_rng(seed)
    idx = rng.permutation(y.size)
    mu, sd = X[idx[:n_train]].mean(0), X[idx[:n_train]].std(0) + 1e-12
    X = np.hstack([(X - mu) / sd, np.ones((y.size, 1))])
    tr, va = idx[:n_train], idx[n_train:]
    return X[tr], y[tr].astype(float), X[va], y[va].astype(float)


def _cross_entropy(theta: np.ndarray, X: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Mean binary cross-entropy of every agent (θ of shape (N, d)) on (X, y)."""
    z = theta @ X.T                                    # (N, samples)
    # log(1 + e^{z}) − y z, computed stably
    return (np.logaddexp(0.0, z) - y[None, :] * z).mean(axis=1)


def build_model(X_tr, y_tr, X_va, y_va, *, kappa: float, diffusion: float, lr: float,
                steps: int, batch: int):
    """The PBT model, and the minibatch-gradient callable that makes SGD its fast dynamics."""

    def loss(theta, h):
        return _cross_entropy(theta, X_tr, y_tr) + 0.5 * 10.0 ** h * (theta ** 2).sum(axis=1)

    def fitness(theta, h):
        return -_cross_entropy(theta, X_va, y_va)

    def minibatch_gradient(theta, h, rng):
        """∇_θ of the loss on an independent minibatch per agent (unbiased, noisy)."""
        idx = rng.integers(0, y_tr.size, (theta.shape[0], batch))
        Xb, yb = X_tr[idx], y_tr[idx]                  # (N, B, d), (N, B)
        p = 1.0 / (1.0 + np.exp(-np.einsum("nbd,nd->nb", Xb, theta)))
        return np.einsum("nbd,nb->nd", Xb, p - yb) / batch + 10.0 ** h[:, None] * theta

    eps = 1.0 / (lr * steps)          # Δt = 1 round = `steps` SGD steps of size lr
    model = pp.Model(loss, fitness, temperature=1e-3, eps=eps,
                     selection=pp.Replicator(kappa), mutation=pp.Diffusion(diffusion),
                     name="pbt-logistic")
    return model, minibatch_gradient


def run(n_agents: int = 128, rounds: int = 60, *, seed: int = 0, kappa: float = 40.0,
        diffusion: float = 0.01, lr: float = 0.5, steps: int = 25, batch: int = 32,
        h0: tuple[float, float] = (-4.0, 0.4), out: str | Path | None = "pbt_logistic.png"
        ) -> dict:
    """Run PBT and the reduced equation; return the comparison (and write the figure)."""
    t0 = time.perf_counter()
    X_tr, y_tr, X_va, y_va = load_data(seed=seed)
    model, grad = build_model(X_tr, y_tr, X_va, y_va, kappa=kappa, diffusion=diffusion,
                              lr=lr, steps=steps, batch=batch)
    h_box = (-5.0, 0.0)
    rng = np.random.default_rng(seed)
    h_init = h0[0] + h0[1] * rng.standard_normal(n_agents)
    theta_init = np.zeros((n_agents, X_tr.shape[1]))
    ens = pp.simulate_particles(model, n_agents, (theta_init, h_init), float(rounds), 1.0,
                                seed=seed + 1, save_every=1, h_box=h_box, fast="euler",
                                substeps=steps, gradient=grad, noise=False, check=False)
    F = ens.fitness                                     # (rounds + 1, N): −validation loss
    t_agents = time.perf_counter() - t0

    # -- the reduced equation fed by the population-estimated effective fitness ---------------
    grid = pp.Grid(theta=(-1.0, 1.0, 4), h=(*h_box, 200))
    fhat = np.stack([kernel_regression(ens.h[k], F[k], grid.h) for k in range(len(ens.t))])
    rho = np.exp(-0.5 * ((grid.h - h0[0]) / h0[1]) ** 2)
    rho /= rho.sum() * grid.dh
    rhos = [rho]
    for k in range(len(ens.t) - 1):
        # F̂ between two rounds: trapezoidal (the average of the two estimates)
        sol = pp.solve_reduced(model, grid, rho, 1.0, 0.25,
                               fitness=0.5 * (fhat[k] + fhat[k + 1]), save_every=4)
        rho = sol.f[-1]
        rhos.append(rho)
    reduced = pp.Solution(t=ens.t.copy(), f=np.stack(rhos), grid=grid, model=model)
    cmp = pp.compare(ens, reduced)
    result = {
        "t": ens.t, "mean_h_agents": cmp["mean_h"], "mean_h_reduced": cmp["mean_h_pde"],
        "sd_h_agents": np.sqrt(cmp["var_h"]), "sd_h_reduced": np.sqrt(np.maximum(
            cmp["var_h_pde"], 0)), "w1_h": cmp["w1_h"], "se_mean_h": cmp["se_mean_h"],
        "val_loss_mean": -F.mean(axis=1), "val_loss_best": -F.max(axis=1),
        "val_accuracy_mean": np.array([
            ((1 / (1 + np.exp(-th @ X_va.T)) > 0.5) == (y_va > 0.5)).mean()
            for th in ens.theta]),
        "fhat": fhat, "h_grid": grid.h, "rho": reduced.f, "h_agents": ens.h,
        "seconds_agents": t_agents, "seconds_total": time.perf_counter() - t0,
    }
    if out is not None:
        _figure(result, Path(out))
        result["figure"] = str(out)
    return result


def _figure(r: dict, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 2, figsize=(12, 8.5))
    t, hg = r["t"], r["h_grid"]
    ax = axes[0, 0]
    last = len(t) - 1
    picks = sorted({0, last // 4, last // 2, (3 * last) // 4, last})
    colors = plt.cm.viridis(np.linspace(0, 0.9, len(picks)))
    edges = np.linspace(hg[0] - 0.5 * (hg[1] - hg[0]), hg[-1] + 0.5 * (hg[1] - hg[0]), 41)
    for c, k in zip(colors, picks):
        ax.hist(r["h_agents"][k], bins=edges, density=True, color=c, alpha=0.35)
        ax.plot(hg, r["rho"][k], color=c, lw=2, label=f"t = {t[k]:g}")
    ax.set(xlabel="h = log10 weight decay", ylabel="density",
           title="agents (histograms) vs reduced equation ρ(t, h) (lines)")
    ax.legend(fontsize=8)
    ax = axes[0, 1]
    ax.plot(t, r["mean_h_agents"], "C0-", label="mean of h, agents")
    ax.plot(t, r["mean_h_reduced"], "C0--", label="mean of h, reduced")
    ax.fill_between(t, r["mean_h_agents"] - 2 * r["se_mean_h"],
                    r["mean_h_agents"] + 2 * r["se_mean_h"], color="C0", alpha=0.2,
                    label="±2 iid standard errors")
    ax.plot(t, r["sd_h_agents"], "C1-", label="sd of h, agents")
    ax.plot(t, r["sd_h_reduced"], "C1--", label="sd of h, reduced")
    ax.plot(t, r["w1_h"], "k:", label="W1(agents, ρ)")
    ax.set(xlabel="round t", ylabel="h", title="moments and W1 distance")
    ax.legend(fontsize=8)
    ax = axes[1, 0]
    lo, hi = np.inf, -np.inf
    for c, k in zip(colors[1:], picks[1:]):
        inside = (hg >= r["h_agents"][k].min()) & (hg <= r["h_agents"][k].max())
        ax.plot(hg[inside], -r["fhat"][k][inside], color=c, label=f"t = {t[k]:g}")
        lo, hi = min(lo, (-r["fhat"][k][inside]).min()), max(hi, (-r["fhat"][k][inside]).max())
    ax.set(xlabel="h = log10 weight decay", ylabel="validation log-loss",
           title="population estimate −F̂(t, h), where agents are (kernel regression)",
           ylim=(lo - 0.1 * (hi - lo), hi + 0.1 * (hi - lo)))
    ax.legend(fontsize=8)
    ax = axes[1, 1]
    ax.plot(t, r["val_loss_mean"], label="mean validation log-loss")
    ax.plot(t, r["val_loss_best"], label="best agent's validation log-loss")
    ax.plot(t, 1 - r["val_accuracy_mean"], label="mean validation error rate")
    ax.set(xlabel="round t", ylabel="loss / error", yscale="log",
           title="training progress of the population")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--agents", type=int, default=128)
    ap.add_argument("--rounds", type=int, default=60)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="pbt_logistic.png")
    a = ap.parse_args(argv)
    r = run(a.agents, a.rounds, seed=a.seed, out=a.out)
    k = len(r["t"]) - 1
    print(f"{a.agents} agents, {a.rounds} rounds: {r['seconds_total']:.1f} s")
    print(f"mean h: agents {r['mean_h_agents'][k]:.3f}, reduced {r['mean_h_reduced'][k]:.3f}; "
          f"sd h: agents {r['sd_h_agents'][k]:.3f}, reduced {r['sd_h_reduced'][k]:.3f}; "
          f"W1 {r['w1_h'][k]:.3f}; max W1 over time {r['w1_h'].max():.3f}")
    print(f"validation log-loss: mean {r['val_loss_mean'][k]:.4f}, best "
          f"{r['val_loss_best'][k]:.4f}; accuracy {r['val_accuracy_mean'][k]:.3f}")
    print(f"figure: {r['figure']}")


if __name__ == "__main__":
    main()
