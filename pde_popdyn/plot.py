"""Matplotlib figures of solutions. Functions take an optional ``ax`` and return it."""

from __future__ import annotations

from typing import Sequence

import numpy as np


def _axes(ax=None):
    import matplotlib.pyplot as plt
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 4), layout="constrained")
    return ax


def density(sol, t: float | None = None, ax=None):
    """The joint density f(θ, h) at the saved time nearest to ``t`` (default: the last)."""
    ax = _axes(ax)
    k = -1 if t is None else int(np.argmin(np.abs(sol.t - t)))
    g = sol.grid
    mesh = ax.pcolormesh(g.h_edges, g.theta_edges, sol.f[k], shading="flat", cmap="viridis")
    ax.figure.colorbar(mesh, ax=ax, label="density f(θ, h)")
    ax.set_xlabel("hyperparameter h")
    ax.set_ylabel("parameter θ")
    ax.set_title(f"f(t, θ, h) at t = {sol.t[k]:.3g}")
    return ax


def kymograph(sol, ax=None, hstar: float | None = None, theory: tuple | None = None):
    """ρ(t, h) = ∫ f dθ over time, with the population mean of h (and h*, a theory curve)."""
    ax = _axes(ax)
    rho = sol.rho
    g = sol.grid
    t = sol.t
    t_edges = np.concatenate([[t[0]], 0.5 * (t[1:] + t[:-1]), [t[-1]]]) if len(t) > 1 \
        else np.array([t[0] - 0.5, t[0] + 0.5])
    mesh = ax.pcolormesh(t_edges, g.h_edges, rho.T, shading="flat", cmap="magma")
    ax.figure.colorbar(mesh, ax=ax, label="h-marginal ρ(t, h)")
    ax.plot(t, sol.mean_h, color="cyan", lw=2, label="mean of h (PDE)")
    if theory is not None:
        tt, mm, label = theory
        ax.plot(tt, mm, "w--", lw=1.5, label=label)
    if hstar is not None:
        ax.axhline(hstar, color="lime", ls=":", lw=2, label=f"h* = {hstar:.3g}")
    ax.set_xlabel("time t (slow scale)")
    ax.set_ylabel("hyperparameter h")
    ax.legend(loc="lower right", fontsize=8, framealpha=0.8)
    return ax


def moments(sol, ax=None, theory: Sequence[tuple] = ()):
    """Mean and variance of h over time, with theory curves ``(t, mean, var, label)``."""
    import matplotlib.pyplot as plt
    if ax is None:
        _, ax = plt.subplots(1, 2, figsize=(9, 3.5), layout="constrained")
    a0, a1 = ax
    a0.plot(sol.t, sol.mean_h, "k-", lw=2, label="PDE")
    a1.plot(sol.t, sol.var_h, "k-", lw=2, label="PDE")
    for style, (tt, mm, vv, label) in zip(["C0--", "C1:", "C2-."], theory):
        a0.plot(tt, mm, style, lw=1.5, label=label)
        a1.plot(tt, vv, style, lw=1.5, label=label)
    a0.set(xlabel="time t", ylabel="E[h]", title="mean of h")
    a1.set(xlabel="time t", ylabel="Var[h]", title="variance of h")
    a0.legend(fontsize=8)
    a1.legend(fontsize=8)
    return ax
