"""Matplotlib figures of solutions.

Every function takes an optional ``ax`` (an Axes, or a sequence of them for figures with
several panels) and returns the :class:`~matplotlib.figure.Figure` it drew on; the panels are
``fig.axes``. Without ``ax`` a new figure is made. In a notebook, end the cell with ``;`` (or
assign the figure) so that the figure is not shown twice.

Grids with several h- or θ-axes: :func:`kymograph` draws one panel per h-axis (the marginal
density of that coordinate) or the one chosen by ``axis=``; :func:`densities`, :func:`density`
and :func:`animate` draw a two-dimensional view ``dims=(x, y)`` (two axis names), integrating
the other axes out or slicing them at the nodes nearest to ``at={"h2": 0.3, ...}``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np


# -- helpers ---------------------------------------------------------------------------------
def _new(ax, n: int = 1, *, width: float = 6.0, height: float = 4.0, sharey: bool = False):
    """``n`` axes: the given ones (checked), or a new figure's."""
    import matplotlib.pyplot as plt
    if ax is None:
        fig, axs = plt.subplots(1, n, figsize=(width if n == 1 else 3.4 * n + 1.2, height),
                                layout="constrained", squeeze=False, sharey=sharey)
        return fig, list(axs[0])
    axs = list(np.atleast_1d(np.asarray(ax, dtype=object)).ravel())
    if len(axs) < n:
        raise ValueError(f"ax: this figure has {n} panels but {len(axs)} axes were given; "
                         f"pass {n} axes (e.g. plt.subplots(1, {n})[1]) or ax=None")
    return axs[0].figure, axs[:n]


def _ax_kwarg(ax, axes):
    """``ax=`` is the keyword; ``axes=`` is kept for code written before it."""
    if ax is not None and axes is not None:
        raise ValueError("give ax= or axes=, not both")
    return ax if ax is not None else axes


def _label(grid, name: str) -> str:
    """Axis label: 'parameter θ', 'hyperparameter h', or with the axis index ('… h1')."""
    kind = "parameter θ" if name.startswith("theta") else "hyperparameter h"
    return kind + name[len("theta"):] if name.startswith("theta") else kind + name[1:]


def _state_axes(sol) -> list:
    """The grid axes of one saved state: all of them (joint), the h-axes (reduced ρ)."""
    g = sol.grid
    return list(g.axes) if np.ndim(sol.f) == 1 + len(g.shape) else list(g.h_axes)


def _default_dims(sol) -> tuple[str, str] | None:
    axes = _state_axes(sol)
    hs = [a.name for a in axes if not a.name.startswith("theta")]
    ths = [a.name for a in axes if a.name.startswith("theta")]
    if len(hs) >= 2:
        return hs[0], hs[1]
    if hs and ths:
        return hs[0], ths[0]
    return None                       # a reduced solution with one h-axis: curves


def _project(sol, dims, at) -> tuple[np.ndarray, object, object, str]:
    """The saved states as 2-D arrays over ``dims = (x, y)``: shape (n_saved, n_y, n_x), the
    other axes integrated out with their weights or sliced at ``at``; returns the arrays, the
    two Axis objects and a title suffix naming the slices."""
    axes = _state_axes(sol)
    names = [a.name for a in axes]
    at = dict(at or {})
    if (len(dims) != 2 or dims[0] == dims[1] or not all(d in names for d in dims)):
        raise ValueError(f"dims={tuple(dims)!r} must name two different axes of this "
                         f"solution, among {names}")
    bad = [k for k in at if k not in names or k in dims]
    if bad:
        raise ValueError(f"at={at!r}: {bad} are not axes outside dims={tuple(dims)!r}; the "
                         f"other axes are {[n for n in names if n not in dims]}")
    arr = np.asarray(sol.f, float)
    suffix = ""
    for i in reversed(range(len(axes))):          # last axes first: indices stay valid
        a = axes[i]
        if a.name in dims:
            continue
        if a.name in at:
            j = int(np.argmin(np.abs(a.centres - float(at[a.name]))))
            arr = np.take(arr, j, axis=1 + i)
            suffix = f", {a.name} = {a.centres[j]:.3g}" + suffix
        else:
            arr = np.tensordot(arr, a.weights, axes=([1 + i], [0]))
    kept = [n for n in names if n in dims]
    if kept != [dims[1], dims[0]]:                # want (n, y, x)
        arr = np.swapaxes(arr, 1, 2)
    return arr, axes[names.index(dims[0])], axes[names.index(dims[1])], suffix


def _what(sol, dims, at) -> str:
    """'f(t, θ, h)' for the plain 2-D joint density, else 'marginal density' or 'slice'."""
    if len(_state_axes(sol)) == 2 and not at:
        return "density f(t, θ, h)" if len(sol.grid.axes) == 2 and np.ndim(sol.f) == 3 \
            else "density ρ(t, h1, h2)"
    return "density (slice)" if at else "marginal density"


def _nearest(sol, times) -> list[int]:
    if times is None:
        return sorted(set(np.linspace(0, len(sol.t) - 1, min(4, len(sol.t))).astype(int)))
    return [int(np.argmin(np.abs(sol.t - t))) for t in np.atleast_1d(times)]


def _rho(sol) -> np.ndarray:
    """ρ(t, h) of a joint or a reduced solution."""
    f = np.asarray(sol.f)
    return f if f.ndim == 1 + sol.grid.ndim_h else sol.rho


def _h_marginal(sol, k: int) -> np.ndarray:
    """The density of the k-th h-coordinate over time, (n_saved, cells_k)."""
    g = sol.grid
    rho = np.asarray(_rho(sol), float)
    for j in reversed(range(g.ndim_h)):
        if j != k:
            rho = np.tensordot(rho, g.h_axes[j].weights, axes=([1 + j], [0]))
    return rho


def _h_axis_index(grid, axis) -> int:
    names = [a.name for a in grid.h_axes]
    if isinstance(axis, (int, np.integer)) and not isinstance(axis, bool) \
            and 0 <= axis < len(names):
        return int(axis)
    if axis in names:
        return names.index(axis)
    raise ValueError(f"axis={axis!r} is not an h-axis of this grid; use one of {names} "
                     f"(or its index)")


# -- figures ---------------------------------------------------------------------------------
def density(sol, t: float | None = None, ax=None, *, dims=None, at=None):
    """The density at the saved time nearest to ``t`` (default: the last): f(θ, h), or the
    view ``dims`` of a grid with more axes (see the module docstring). Returns the figure."""
    return densities(sol, [sol.t[-1] if t is None else t], ax=ax, dims=dims, at=at,
                     _single=True)


def kymograph(sol, ax=None, hstar=None, theory: tuple | None = None, *, axis=None):
    """ρ(t, h) = ∫ f dθ over time, with the population mean of h (and h*, a theory curve).

    With several h-axes: one panel per h-axis, each the density of that coordinate (the other
    h-axes integrated out), or only ``axis`` (a name such as ``"h2"``, or an index).
    ``hstar`` is then one value per panel (or one value with ``axis``). Returns the figure.
    """
    g = sol.grid
    ks = list(range(g.ndim_h)) if axis is None else [_h_axis_index(g, axis)]
    fig, axs = _new(ax, len(ks), height=4.0)
    t = np.asarray(sol.t)
    t_edges = np.concatenate([[t[0]], 0.5 * (t[1:] + t[:-1]), [t[-1]]]) if len(t) > 1 \
        else np.array([t[0] - 0.5, t[0] + 0.5])
    means = np.asarray(sol.mean_h).reshape(len(t), -1)
    hstars = [None] * len(ks) if hstar is None else list(np.atleast_1d(hstar))
    if len(hstars) != len(ks):
        raise ValueError(f"hstar: give one value per panel ({len(ks)}), got {hstar!r}")
    for a, k, hs in zip(axs, ks, hstars):
        h_ax = g.h_axes[k]
        multi = g.ndim_h > 1
        mesh = a.pcolormesh(t_edges, h_ax.edges, _h_marginal(sol, k).T, shading="flat",
                            cmap="magma")
        fig.colorbar(mesh, ax=a, label=f"density of {h_ax.name}" if multi
                     else "h-marginal ρ(t, h)")
        a.plot(t, means[:, k], color="cyan", lw=2, label=f"mean of {h_ax.name} (PDE)")
        if theory is not None and (not multi or axis is not None):
            tt, mm, label = theory
            a.plot(tt, mm, "w--", lw=1.5, label=label)
        if hs is not None:
            a.axhline(hs, color="lime", ls=":", lw=2, label=f"h* = {hs:.3g}")
        a.set_xlabel("time t (slow scale)")
        a.set_ylabel(_label(g, h_ax.name))
        a.legend(loc="lower right", fontsize=8, framealpha=0.8)
    return fig


def moments(sol, ax=None, theory: Sequence[tuple] = ()):
    """Mean and variance of h over time (two panels), with theory curves
    ``(t, mean, var, label)``; one curve per h-axis with several. Returns the figure."""
    fig, (a0, a1) = _new(ax, 2, width=9, height=3.5)
    m = np.asarray(sol.mean_h).reshape(len(sol.t), -1)
    v = np.asarray(sol.var_h).reshape(len(sol.t), -1)
    names = [a.name for a in sol.grid.h_axes]
    for k in range(m.shape[1]):
        lab = "PDE" if m.shape[1] == 1 else f"PDE, {names[k]}"
        style = dict(color="k", lw=2) if m.shape[1] == 1 else dict(color=f"C{k + 4}", lw=2)
        a0.plot(sol.t, m[:, k], label=lab, **style)
        a1.plot(sol.t, v[:, k], label=lab, **style)
    for style, (tt, mm, vv, label) in zip(["C0--", "C1:", "C2-."], theory):
        a0.plot(tt, mm, style, lw=1.5, label=label)
        a1.plot(tt, vv, style, lw=1.5, label=label)
    a0.set(xlabel="time t", ylabel="E[h]", title="mean of h")
    a1.set(xlabel="time t", ylabel="Var[h]", title="variance of h")
    a0.legend(fontsize=8)
    a1.legend(fontsize=8)
    return fig


def densities(sol, times: Sequence[float] | None = None, ax=None, *, dims=None, at=None,
              axes=None, _single: bool = False):
    """The density at the saved times nearest to ``times`` (default: four, first to last).

    A joint solution gives one panel per time on a common colour scale: f(θ, h), or on a grid
    with more axes the view ``dims=(x, y)`` (default: ``("h1", "h2")`` with two h-axes), the
    other axes integrated out or sliced at ``at``. A reduced solution with one h-axis gives
    the curves ρ(t, h) in one panel. Returns the figure.
    """
    from matplotlib.colors import Normalize
    ax = _ax_kwarg(ax, axes)
    ks = _nearest(sol, times)
    g = sol.grid
    dims = tuple(dims) if dims is not None else _default_dims(sol)
    if dims is None:
        if at:
            raise ValueError("at= slices a grid with more axes; this solution has one h-axis")
        fig, (a,) = _new(ax)
        for k in ks:
            a.plot(g.h, sol.f[k], lw=1.8, label=f"t = {sol.t[k]:.3g}")
        a.set(xlabel="hyperparameter h", ylabel="density ρ(t, h)",
              title="reduced density at selected times")
        a.legend(fontsize=8)
        return fig
    arr, xa, ya, suffix = _project(sol, dims, at)
    fig, axs = _new(ax, len(ks), sharey=True, height=3.6)
    norm = Normalize(0.0, float(max(arr[k].max() for k in ks)))
    mesh = None
    for a, k in zip(axs, ks):
        mesh = a.pcolormesh(xa.edges, ya.edges, arr[k], shading="flat", cmap="viridis",
                            norm=norm)
        a.set_title(("f(t, θ, h) at t = " if _single and not suffix and len(g.axes) == 2
                     else "t = ") + f"{sol.t[k]:.3g}{suffix}")
        a.set_xlabel(_label(g, xa.name))
    axs[0].set_ylabel(_label(g, ya.name))
    fig.colorbar(mesh, ax=list(axs), label=_what(sol, dims, at))
    return fig


def effective_fitness(h, fbar, *, gibbs=None, theta=None, hstar: float | None = None,
                      rho=None, ax=None, axes=None):
    """The effective fitness F̄(h) = ∫ F dπ_h, and the Gibbs measure π_h(θ) it averages over.

    Takes arrays, so it does not depend on how they were computed: ``fbar`` on the points
    ``h``; optionally ``gibbs`` of shape (len(theta), len(h)), π_h(θ) per column, drawn as a
    second panel; ``rho`` (on ``h``) overlays a population density on a twin axis; ``hstar``
    marks the best hyperparameter. The legend sits below the panel, clear of the curves.
    Returns the figure.
    """
    from matplotlib.transforms import offset_copy
    h, fbar = np.asarray(h, float), np.asarray(fbar, float)
    two = gibbs is not None
    fig, axs = _new(_ax_kwarg(ax, axes), 2 if two else 1, width=6, height=4.4)
    if two and ax is None and axes is None:
        fig.set_size_inches(11, 4.4)
    a0 = axs[0]
    a0.plot(h, fbar, "k-", lw=2, label="effective fitness F̄(h)")
    if hstar is not None:
        a0.axvline(hstar, color="C3", ls=":", lw=2, label=f"h* = argmax F̄ = {hstar:.3g}")
    handles, labels = a0.get_legend_handles_labels()
    if rho is not None:
        tw = a0.twinx()
        tw.fill_between(h, np.asarray(rho, float), color="C0", alpha=0.25,
                        label="population ρ(h)")
        tw.set_ylabel("density ρ(h)")
        tw.set_ylim(bottom=0)
        more = tw.get_legend_handles_labels()
        handles, labels = handles + more[0], labels + more[1]
    # below the x-label (0.55 in under the axes): the legend never covers F̄ or ρ
    a0.legend(handles, labels, fontsize=8, loc="upper center", ncols=min(3, len(labels)),
              bbox_to_anchor=(0.5, 0.0),
              bbox_transform=offset_copy(a0.transAxes, fig=fig, y=-0.55, units="inches"),
              frameon=False)
    a0.set(xlabel="hyperparameter h", ylabel=r"$\bar{F}(h) = \mathbb{E}_{\pi_h}[F]$",
           title="effective fitness")
    if two:
        theta = np.asarray(theta, float)
        a1 = axs[1]
        mesh = a1.pcolormesh(h, theta, np.asarray(gibbs, float), shading="nearest",
                             cmap="viridis")
        fig.colorbar(mesh, ax=a1, label=r"Gibbs density $\pi_h(\theta)$")
        mean = (np.asarray(gibbs) * theta[:, None]).sum(0) / np.asarray(gibbs).sum(0)
        a1.plot(h, mean, "w--", lw=1.5, label=r"mean of $\pi_h$")
        a1.set(xlabel="hyperparameter h", ylabel="parameter θ",
               title=r"Gibbs measure $\pi_h \propto \exp(-L/T)$")
        a1.legend(fontsize=8, loc="upper left")
    return fig


def particles(samples, sol=None, t: float | None = None, *, rho=None, grid_h=None,
              axis: str = "h", bins=None, ax=None):
    """Agents against the continuum: a histogram of ``samples`` (agents' h, or θ with
    ``axis="theta"``) over the marginal density of the solution at the nearest saved time
    (or over ``rho`` given on the points ``grid_h``). Returns the figure."""
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
    fig, (a,) = _new(ax)
    if bins is None:
        bins = edges if edges is not None and len(edges) <= 80 else \
            max(10, int(np.sqrt(samples.size)))
    a.hist(samples, bins=bins, density=True, color="C0", alpha=0.5, edgecolor="C0",
           label=f"agents (N = {samples.size})")
    a.plot(x, dens, "k-", lw=2, label="continuum (PDE)")
    a.set(xlabel=label_axis, ylabel="density", title=f"agents against the continuum{t_label}")
    a.legend(fontsize=8)
    return fig


# -- animations ------------------------------------------------------------------------------
WRITERS = {".gif": "pillow", ".mp4": "ffmpeg"}


def ffmpeg_available() -> bool:
    """Whether matplotlib can write .mp4: ffmpeg on the PATH (or at
    ``rcParams["animation.ffmpeg_path"]``), or the binary of the ``imageio-ffmpeg`` package
    (``pip install "pde_popdyn[animation]"``), which is then used."""
    import matplotlib
    from matplotlib import animation
    if animation.writers.is_available("ffmpeg"):
        return True
    try:
        import imageio_ffmpeg
        exe = imageio_ffmpeg.get_ffmpeg_exe()
    except (ImportError, RuntimeError):
        return False
    matplotlib.rcParams["animation.ffmpeg_path"] = exe
    return animation.writers.is_available("ffmpeg")


def _writer(path: Path, fps: int):
    """Pillow for .gif; ffmpeg for .mp4, with a clear error when ffmpeg is missing."""
    from matplotlib import animation
    suffix = path.suffix.lower()
    if suffix not in WRITERS:
        raise ValueError(f"path={str(path)!r}: the animation format is chosen by the suffix; "
                         f"use .gif (always available) or .mp4 (needs ffmpeg)")
    if suffix == ".gif":
        return animation.PillowWriter(fps=fps)
    if not ffmpeg_available():
        raise ValueError(f"path={str(path)!r}: saving .mp4 needs the ffmpeg program, which "
                         f"matplotlib cannot find: install it (e.g. 'apt install ffmpeg', or "
                         f"pip install \"pde_popdyn[animation]\" for a bundled one), or save "
                         f"a .gif instead")
    return animation.FFMpegWriter(fps=fps, codec="h264", extra_args=["-pix_fmt", "yuv420p"])


def animate(sol, path, *, field: str = "rho", fps: int = 8, max_frames: int = 60,
            dpi: int = 80, hstar: float | None = None, dims=None, at=None):
    """Save an animation of ρ(t, h) (``field="rho"``) or f(t, θ, h) (``field="f"``, joint
    solutions) and return its path. The format follows the suffix of ``path``: ``.gif``
    (Pillow) or ``.mp4`` (ffmpeg, an error naming the fix if it is not installed). On grids
    with more axes ``field="f"`` shows the view ``dims``/``at`` of :func:`densities`, and
    ``field="rho"`` with two h-axes the image of ρ(t, h1, h2)."""
    import matplotlib.pyplot as plt
    from matplotlib.animation import FuncAnimation
    if field not in ("rho", "f"):
        raise ValueError(f"field={field!r} is not known; use 'rho' or 'f'")
    g = sol.grid
    if field == "f" and np.ndim(sol.f) != 1 + len(g.shape):
        raise ValueError("field='f' needs a joint solution; a reduced one has only ρ: use "
                         "field='rho'")
    path = Path(path)
    writer = _writer(path, fps)
    frames = np.unique(np.linspace(0, len(sol.t) - 1, min(max_frames, len(sol.t))).astype(int))
    fig, ax = plt.subplots(figsize=(6, 4), layout="constrained")
    if field == "rho" and g.ndim_h == 1:
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
        if field == "rho":
            from types import SimpleNamespace
            view = SimpleNamespace(t=sol.t, f=_rho(sol), grid=g)
            dims = dims or (g.h_axes[0].name, g.h_axes[1].name)
        else:
            view, dims = sol, dims or _default_dims(sol)
        arr, xa, ya, suffix = _project(view, dims, at)
        mesh = ax.pcolormesh(xa.edges, ya.edges, arr[0], shading="flat", cmap="viridis",
                             vmin=0, vmax=float(arr.max()))
        fig.colorbar(mesh, ax=ax, label=_what(view, dims, at))
        ax.set(xlabel=_label(g, xa.name), ylabel=_label(g, ya.name))

        def update(k):
            mesh.set_array(arr[k].ravel())
            ax.set_title(f"t = {sol.t[k]:.3g}{suffix}")
            return (mesh,)
    fig.canvas.draw()  # lay the figure out once; re-doing it for every frame is slow
    fig.set_layout_engine("none")
    anim = FuncAnimation(fig, update, frames=frames, blit=False)
    try:
        anim.save(path, writer=writer, dpi=dpi)
    finally:
        plt.close(fig)
    return path
