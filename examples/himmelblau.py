"""A two-dimensional hyperparameter space with a multimodal effective fitness.

θ ∈ R trains on L = ½(θ − h₁/5)² at T = 0.05 (so π_h = N(h₁/5, T)); the fitness
F = −H(h)/20 − (θ − h₁/5)², with Himmelblau's function H(h₁, h₂) = (h₁² + h₂ − 11)² +
(h₁ + h₂² − 7)², gives the effective fitness F̄(h) = −H(h)/20 − T, which has four equal maxima.
From a uniform population, replicator selection with weak mutation finds all four, each keeping
a share of the population. Run ``python examples/himmelblau.py [OUT.png]``.
"""

from __future__ import annotations

import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

import pde_popdyn as pp  # noqa: E402


def himmelblau(h1, h2):
    return (h1 ** 2 + h2 - 11) ** 2 + (h1 + h2 ** 2 - 7) ** 2


def main(out: str = "himmelblau.png") -> pp.Solution:
    model = pp.Model(loss=lambda th, h: 0.5 * (th - 0.2 * h[0]) ** 2,
                     fitness=lambda th, h: -himmelblau(*h) / 20 - (th - 0.2 * h[0]) ** 2,
                     temperature=0.05, eps=0.01, selection=pp.Replicator(1.0),
                     mutation=pp.Diffusion(0.01), name="himmelblau")
    grid = pp.Grid(theta=(-2, 2, 24), h=[(-5, 5, 64), (-5, 5, 64)])
    sol = pp.solve(model, grid, pp.uniform(grid), 4.0, 0.05, save_every=20)
    h1, h2 = grid.h
    fig, axes = plt.subplots(1, len(sol.t), figsize=(3.2 * len(sol.t), 3.2),
                             layout="constrained", sharey=True)
    for ax, t, rho in zip(axes, sol.t, sol.rho):
        ax.contour(h1, h2, himmelblau(*np.meshgrid(h1, h2, indexing="ij")).T,
                   levels=[1, 5, 20, 60, 150], colors="0.6", linewidths=0.7)
        ax.pcolormesh(grid.h_edges[0], grid.h_edges[1], rho.T, cmap="magma", shading="flat")
        ax.set_title(f"ρ(t, h) at t = {t:g}")
        ax.set_xlabel("h₁")
    axes[0].set_ylabel("h₂")
    fig.suptitle("population of hyperparameters on Himmelblau's landscape (contours: H)")
    fig.savefig(out, dpi=110)
    return sol


if __name__ == "__main__":
    main(*sys.argv[1:2])
