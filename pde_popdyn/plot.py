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


# -- further figures (issue 6) -------------------------------------------------------------
def _rho(sol) -> np.ndarray:
    """ρ(t, h) of a joint or a reduced solution."""
    f = np.asarray(sol.f)
    return f if f.ndim == 2 else sol.rho


def _nearest(sol, times) -> list[int]:
    if times is None:
        return sorted(set(np.linspace(0, len(sol.t) - 1, min(4, len(sol.t))).astype(int)))
    return [int(np.argmin(np.abs(sol.t - t))) for t in np.atleast_1d(times)]


def densities(sol, times: Sequence[float] | None = None, axes=None):
    """f(θ, h) at the saved times nearest to ``times`` (default: four, first to last).

    A joint solution gives one panel per time on a common colour scale; a reduced solution
    (f = ρ of shape (n_saved, n_h)) gives the curves ρ(t, h) in one panel. Returns the axes.
    """
    import matplotlib.pyplot as plt
    from matplotlib.colors import Normalize
    ks = _nearest(sol, times)
    g = sol.grid
    if np.ndim(sol.f) == 2:
        ax = _axes(axes)
        for k in ks:
            ax.plot(g.h, sol.f[k], lw=1.8, label=f"t = {sol.t[k]:.3g}")
        ax.set(xlabel="hyperparameter h", ylabel="density ρ(t, h)",
               title="reduced density at selected times")
        ax.legend(fontsize=8)
        return ax
    if axes is None:
        _, axes = plt.subplots(1, len(ks), figsize=(3.4 * len(ks) + 1.2, 3.6),
                               layout="constrained", sharey=True, squeeze=False)
        axes = axes[0]
    axes = np.atleast_1d(axes)
    norm = Normalize(0.0, float(max(sol.f[k].max() for k in ks)))
    mesh = None
    for ax, k in zip(axes, ks):
        mesh = ax.pcolormesh(g.h_edges, g.theta_edges, sol.f[k], shading="flat",
                             cmap="viridis", norm=norm)
        ax.set_title(f"t = {sol.t[k]:.3g}")
        ax.set_xlabel("hyperparameter h")
    axes[0].set_ylabel("parameter θ")
    axes[0].figure.colorbar(mesh, ax=list(axes), label="density f(t, θ, h)")
    return axes


def effective_fitness(h, fbar, *, gibbs=None, theta=None, hstar: float | None = None,
                      rho=None, axes=None):
    """The effective fitness F̄(h) = ∫ F dπ_h, and the Gibbs measure π_h(θ) it averages over.

    Takes arrays, so it does not depend on how they were computed: ``fbar`` on the points
    ``h``; optionally ``gibbs`` of shape (len(theta), len(h)), π_h(θ) per column, drawn as a
    second panel; ``rho`` (on ``h``) overlays a population density on a twin axis; ``hstar``
    marks the best hyperparameter. Returns the axes (one or two).
    """
    import matplotlib.pyplot as plt
    h, fbar = np.asarray(h, float), np.asarray(fbar, float)
    two = gibbs is not None
    if axes is None:
        _, axes = plt.subplots(1, 2 if two else 1, figsize=(11 if two else 6, 4),
                               layout="constrained", squeeze=False)
        axes = axes[0]
    axes = np.atleast_1d(axes)
    a0 = axes[0]
    a0.plot(h, fbar, "k-", lw=2, label="effective fitness F̄(h)")
    if hstar is not None:
        a0.axvline(hstar, color="C3", ls=":", lw=2, label=f"h* = argmax F̄ = {hstar:.3g}")
    if rho is not None:
        tw = a0.twinx()
        tw.fill_between(h, np.asarray(rho, float), color="C0", alpha=0.25,
                        label="population ρ(h)")
        tw.set_ylabel("density ρ(h)")
        lines = a0.get_legend_handles_labels()
        more = tw.get_legend_handles_labels()
        a0.legend(lines[0] + more[0], lines[1] + more[1], fontsize=8, loc="lower center")
    else:
        a0.legend(fontsize=8, loc="lower center")
    a0.set(xlabel="hyperparameter h", ylabel=r"$\bar{F}(h) = \mathbb{E}_{\pi_h}[F]$",
           title="effective fitness")
    if two:
        theta = np.asarray(theta, float)
        a1 = axes[1]
        mesh = a1.pcolormesh(h, theta, np.asarray(gibbs, float), shading="nearest",
                             cmap="viridis")
        a1.figure.colorbar(mesh, ax=a1, label="Gibbs density π_h(θ)")
        mean = (np.asarray(gibbs) * theta[:, None]).sum(0) / np.asarray(gibbs).sum(0)
        a1.plot(h, mean, "w--", lw=1.5, label="mean of π_h")
        a1.set(xlabel="hyperparameter h", ylabel="parameter θ",
               title="Gibbs measure π_h ∝ exp(−L/T)")
        a1.legend(fontsize=8, loc="upper left")
    return axes


def particles(samples, sol=None, t: float | None = None, *, rho=None, grid_h=None,
              axis: str = "h", bins=None, ax=None):
    """Agents against the continuum: a histogram of ``samples`` (agents' h, or θ with
    ``axis="theta"``) over the marginal density of the solution at the nearest saved time
    (or over ``rho`` given on the points ``grid_h``). Returns the axes."""
    ax = _axes(ax)
    samples = np.asarray(samples, float).ravel()
    label_axis = "hyperparameter h" if axis == "h" else "parameter θ"
    if sol is not None:
        k = -1 if t is None else int(np.argmin(np.abs(sol.t - t)))
        if axis == "h":
            x, dens, edges = sol.grid.h, _rho(sol)[k], sol.grid.h_edges
        else:
            x, dens, edges = sol.grid.theta, sol.marginal("theta")[k], sol.grid.theta_edges
        t_label = f" at t = {sol.t[k]:.3g}"
    else:
        if rho is None or grid_h is None:
            raise ValueError("give sol=Solution, or rho= and grid_h= (the density and its "
                             "points) to compare the agents with")
        x, dens, edges, t_label = np.asarray(grid_h, float), np.asarray(rho, float), None, ""
    if bins is None:
        bins = edges if edges is not None and len(edges) <= 80 else \
            max(10, int(np.sqrt(samples.size)))
    ax.hist(samples, bins=bins, density=True, color="C0", alpha=0.5, edgecolor="C0",
            label=f"agents (N = {samples.size})")
    ax.plot(x, dens, "k-", lw=2, label="continuum (PDE)")
    ax.set(xlabel=label_axis, ylabel="density",
           title=f"agents against the continuum{t_label}")
    ax.legend(fontsize=8)
    return ax


def animate(sol, path, *, field: str = "rho", fps: int = 8, max_frames: int = 60,
            dpi: int = 80, hstar: float | None = None):
    """Save an animation of ρ(t, h) (``field="rho"``) or f(t, θ, h) (``field="f"``, joint
    solutions) as a GIF with matplotlib's Pillow writer; returns the path."""
    import matplotlib.pyplot as plt
    from matplotlib.animation import FuncAnimation, PillowWriter
    from pathlib import Path
    if field not in ("rho", "f"):
        raise ValueError(f"field={field!r} is not known; use 'rho' or 'f'")
    if field == "f" and np.ndim(sol.f) != 3:
        raise ValueError("field='f' needs a joint solution; a reduced one has only ρ: use "
                         "field='rho'")
    frames = np.unique(np.linspace(0, len(sol.t) - 1, min(max_frames, len(sol.t))).astype(int))
    g = sol.grid
    fig, ax = plt.subplots(figsize=(6, 4), layout="constrained")
    if field == "rho":
        rho = _rho(sol)
        (line,) = ax.plot(g.h, rho[0], "k-", lw=2, label="ρ(t, h)")
        mean = ax.axvline(float(sol.mean_h[0]), color="C0", ls="--", label="mean of h")
        if hstar is not None:
            ax.axvline(hstar, color="C3", ls=":", lw=2, label=f"h* = {hstar:.3g}")
        ax.set(xlim=(g.h_edges[0], g.h_edges[-1]), ylim=(0, 1.05 * float(rho.max())),
               xlabel="hyperparameter h", ylabel="density ρ(t, h)")
        ax.legend(fontsize=8, loc="upper left")
        means = sol.mean_h

        def update(k):
            line.set_ydata(rho[k])
            mean.set_xdata([means[k], means[k]])
            ax.set_title(f"h-marginal at t = {sol.t[k]:.3g}")
            return line, mean
    else:
        mesh = ax.pcolormesh(g.h_edges, g.theta_edges, sol.f[0], shading="flat",
                             cmap="viridis", vmin=0, vmax=float(sol.f.max()))
        fig.colorbar(mesh, ax=ax, label="density f(t, θ, h)")
        ax.set(xlabel="hyperparameter h", ylabel="parameter θ")

        def update(k):
            mesh.set_array(sol.f[k].ravel())
            ax.set_title(f"f(t, θ, h) at t = {sol.t[k]:.3g}")
            return (mesh,)
    fig.canvas.draw()  # lay the figure out once; re-doing it for every frame is slow
    fig.set_layout_engine("none")
    anim = FuncAnimation(fig, update, frames=frames, blit=False)
    path = Path(path)
    anim.save(path, writer=PillowWriter(fps=fps), dpi=dpi)
    plt.close(fig)
    return path
