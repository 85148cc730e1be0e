"""What ``pde-popdyn run`` prints and what ``run`` and ``plot`` draw.

The printed summary compares the run with the closed forms when it solves a preset with its
own rules (the exact Gaussian solution of the joint equation and the ε → 0 reduced solution),
and otherwise lists the moments of h and the mean fitness over time.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .gibbs import discrete_effective_fitness, discrete_gibbs

from ._version import __version__


def effective_fitness_for_figures(sol, prob) -> tuple[np.ndarray | None, np.ndarray | None]:
    """(π, F̄): the discrete Gibbs state π_h(θ) of the grid and F̄(h) = Σ_θ π_h F w_θ (the
    closed form for a preset), or (None, None) without a model fitness."""
    if sol.model is None or sol.model.fitness is None:
        return None, None
    pi = discrete_gibbs(sol.model, sol.grid)
    fbar = discrete_effective_fitness(sol.model, sol.grid)
    if prob is not None:
        fbar = prob.effective_fitness(sol.grid.h)
    return pi, fbar


def best_h(sol, prob, fbar):
    """h* = argmax F̄: the preset's closed form, else the refined grid argmax (a tuple with
    several h-axes), or None without a fitness."""
    if prob is not None:
        return prob.effective_fitness_coeffs()[1]
    if fbar is None:
        return None
    from .diagnostics import argmax_fitness
    return argmax_fitness(fbar, sol.grid.h)


def headline(mean_h, hstar, t_end: float) -> str:
    """The figure's title: whether the mean of h reached h*, is on its way, or moved off."""
    m = np.asarray(mean_h, float).reshape(len(mean_h), -1)
    hs = np.atleast_1d(np.asarray(hstar, float))
    d0, d1 = np.linalg.norm(m[0] - hs), np.linalg.norm(m[-1] - hs)
    shown = (f"{hs[0]:.3g}" if hs.size == 1
             else "(" + ", ".join(f"{x:.3g}" for x in hs) + ")")
    start = (f"{m[0, 0]:.3g}" if m.shape[1] == 1
             else "(" + ", ".join(f"{x:.3g}" for x in m[0]) + ")")
    end = (f"{m[-1, 0]:.3g}" if m.shape[1] == 1
           else "(" + ", ".join(f"{x:.3g}" for x in m[-1]) + ")")
    if d1 <= 0.05 * d0 or d1 < 1e-3:
        return (f"pde-popdyn: the population's mean hyperparameter climbs to "
                f"h* = argmax F̄ = {shown}")
    if d1 < d0:
        return (f"pde-popdyn: the mean hyperparameter climbs toward h* = argmax F̄ = {shown}: "
                f"{start} → {end} by t = {t_end:.3g}, still {d1:.2g} short")
    return (f"pde-popdyn: the mean hyperparameter moves from {start} to {end} by "
            f"t = {t_end:.3g}; h* = argmax F̄ = {shown}")


def make_figures(sol, prob, out: Path, stem: str, *, animation: bool | str = True
                 ) -> list[Path]:
    """The figures of a run: ``{stem}.png`` (ρ(t,h) per h-axis and the moments of h, against
    theory for a preset), ``{stem}_density.png``, ``{stem}_fitness.png`` (F̄ with π_h, when the
    model is known) and the animation ``{stem}_rho.gif`` (``.mp4`` with
    ``animation="mp4"``). ``prob`` is the preset problem (for theory curves) or None."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from . import plot

    out.mkdir(parents=True, exist_ok=True)
    written = []
    grid = sol.grid
    k = grid.ndim_h
    pi, fbar = effective_fitness_for_figures(sol, prob)
    hstar = best_h(sol, prob, fbar)
    fig, axes = plt.subplots(1, k + 2, figsize=(5 * (k + 2), 4.2), layout="constrained")
    if prob is not None:
        mu, S = prob.exact(sol.t)
        m_red, v_red = prob.reduced(sol.t)
        plot.kymograph(sol, ax=axes[:k], hstar=hstar,
                       theory=(sol.t, mu[:, 1], "exact (Gaussian ODE)"))
        plot.moments(sol, ax=axes[k:],
                     theory=[(sol.t, mu[:, 1], S[:, 1, 1], "exact, ε = %g" % prob.eps),
                             (sol.t, m_red, v_red, "reduced, ε → 0")])
    else:
        plot.kymograph(sol, ax=axes[:k], hstar=hstar)
        plot.moments(sol, ax=axes[k:])
    fig.suptitle(headline(sol.mean_h, hstar, sol.t[-1]) if hstar is not None
                 else "pde-popdyn: the population of hyperparameters over time")
    if k == 1:
        axes[0].set_title("population of hyperparameters ρ(t, h)")
    path = out / f"{stem}.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    written.append(path)

    fig = plot.densities(sol)
    path = out / f"{stem}_density.png"
    fig.savefig(path, dpi=100)
    plt.close(fig)
    written.append(path)

    if fbar is not None:
        rho_end = np.asarray(sol.rho[-1])
        if k == 1:
            one = grid.ndim_theta == 1
            fig = plot.effective_fitness(grid.h, fbar, gibbs=pi if one else None,
                                         theta=grid.theta if one else None, hstar=hstar,
                                         rho=rho_end)
        else:
            fig = _fitness_2d(grid, fbar, rho_end, hstar)
        fig.axes[0].set_title(f"effective fitness, population at t = {sol.t[-1]:.3g}")
        path = out / f"{stem}_fitness.png"
        fig.savefig(path, dpi=100)
        plt.close(fig)
        written.append(path)
    if animation:
        ext = animation if isinstance(animation, str) else "gif"
        written.append(plot.animate(sol, out / f"{stem}_rho.{ext}",
                                    hstar=hstar if k == 1 else None, max_frames=40))
    return written


def _fitness_2d(grid, fbar, rho, hstar):
    """F̄(h1, h2) as an image, the final population as contours, h* marked."""
    import matplotlib.pyplot as plt
    (a1, a2) = grid.h_axes
    fig, ax = plt.subplots(figsize=(6.4, 4.8), layout="constrained")
    mesh = ax.pcolormesh(a1.edges, a2.edges, np.asarray(fbar).T, shading="flat",
                         cmap="viridis")
    fig.colorbar(mesh, ax=ax, label="effective fitness F̄(h)")
    if rho.max() > 0:
        ax.contour(a1.centres, a2.centres, rho.T, levels=4, colors="w", linewidths=0.8)
    ax.plot(*hstar, "r*", ms=12, label="h* = argmax F̄")
    ax.plot([], [], "w-", lw=0.8, label="population ρ(h) (contours)")
    ax.set(xlabel=f"hyperparameter {a1.name}", ylabel=f"hyperparameter {a2.name}")
    ax.legend(fontsize=8, loc="upper left", facecolor="0.85")
    return fig


# -- the printed summary -----------------------------------------------------------------------
def print_summary(sol, run, wall: float) -> None:
    """The run's summary: against the closed forms for a preset, else moments over time."""
    grid = sol.grid
    from .presets import PRESETS
    kind = "preset" if run.label in PRESETS else "model"
    print(f"pde-popdyn {__version__}: {kind} '{run.label}'")
    if run.problem is not None:
        _theory_summary(sol, run.problem, grid, wall)
    else:
        _plain_summary(sol, run, grid, wall)
    # (+ 0.0: a clipped round-off value is stored as −0.0, which would print as "-0.0e+00")
    print(f"\n  mass drift {np.abs(sol.mass - 1).max():.1e}; min f = {sol.f.min() + 0.0:.1e}")


def _theory_summary(sol, prob, grid, wall: float) -> None:
    mu, S = prob.exact(sol.t)
    m_red, _ = prob.reduced(sol.t)
    g, hstar = prob.effective_fitness_coeffs()
    print(f"  inner: L = {prob.K:g}/2 (θ − {prob.a:g} h)^2 at T = {prob.T:g}, ε = {prob.eps:g}")
    print(f"  outer: F = −(θ − {prob.zstar[0]:g})^2, replicator κ = {prob.kappa:g}, "
          f"mutation D = {prob.D:g}")
    print(f"  effective fitness F̄(h) = −({g / 2:g})(h − {hstar:g})^2 + const, "
          f"best hyperparameter h* = {hstar:g}")
    print(f"  grid {grid.n_theta}x{grid.n_h}, dt = {sol.info['dt']:g}, "
          f"{sol.info['n_steps']} steps in {wall:.2f} s")
    print()
    print(f"  {'t':>6}  {'E[h] PDE':>10}  {'E[h] exact':>10}  {'E[h] ε→0':>10}  "
          f"{'Var[h] PDE':>10}  {'Var exact':>10}  {'|E[h]−h*|':>10}")
    for k in np.unique(np.linspace(0, len(sol.t) - 1, 6).astype(int)):
        print(f"  {sol.t[k]:6.2f}  {sol.mean_h[k]:10.5f}  {mu[k, 1]:10.5f}  {m_red[k]:10.5f}  "
              f"{sol.var_h[k]:10.5f}  {S[k, 1, 1]:10.5f}  {abs(sol.mean_h[k] - hstar):10.5f}")
    err = np.abs(sol.mean_h - mu[:, 1]).max()
    print(f"\n  max |E[h] PDE − exact Gaussian solution| = {err:.2e}")
    if grid.nodes == "cells":
        offset = grid.dh ** 2 / 12
        first = sol.var_h[0] - S[0, 1, 1]
        dev = np.abs(sol.var_h - offset - S[:, 1, 1]).max()
        print(f"  Var[h] PDE is the variance of the cell averages placed at the cell centres: "
              f"it exceeds the\n  variance of the density by Δh²/12 = {offset:.2e} (the "
              f"variance of a uniform law on one cell),\n  the whole difference at t = 0 "
              f"(Var[h] PDE − Var exact = {first:.2e}); the rest,\n  max |Var[h] PDE − Δh²/12 "
              f"− Var exact| = {dev:.2e}, is the discretisation error of the run.")


def _plain_summary(sol, run, grid, wall: float) -> None:
    model = sol.model
    print(f"  {model!r}")
    print(f"  grid {grid!r}; initial density: {run.initial}")
    print(f"  scheme {sol.info['scheme']!r}, splitting {sol.info['splitting']!r}, "
          f"dt = {sol.info['dt']:g}, {sol.info['n_steps']} steps in {wall:.2f} s")
    names = [a.name for a in grid.h_axes]
    m = np.asarray(sol.mean_h).reshape(len(sol.t), -1)
    v = np.asarray(sol.var_h).reshape(len(sol.t), -1)
    fit = sol.mean_fitness if model.fitness is not None else None
    head = "".join(f"  {'E[' + n + ']':>10}  {'Var[' + n + ']':>10}" for n in names)
    print()
    print(f"  {'t':>6}{head}" + (f"  {'⟨F⟩':>10}" if fit is not None else ""))
    for k in np.unique(np.linspace(0, len(sol.t) - 1, 6).astype(int)):
        row = "".join(f"  {m[k, i]:10.5f}  {v[k, i]:10.5f}" for i in range(len(names)))
        print(f"  {sol.t[k]:6.2f}{row}" + (f"  {fit[k]:10.5f}" if fit is not None else ""))
