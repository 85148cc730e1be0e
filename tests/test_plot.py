"""Figures (issue 6): every figure is written, labelled, and has the legend entries it claims;
every function returns its figure and draws on given axes (issue 16)."""

from types import SimpleNamespace

import matplotlib.pyplot as plt
import numpy as np
import pytest

import pde_popdyn as pp
from pde_popdyn import plot
from pde_popdyn.presets import build


@pytest.fixture(scope="module")
def run():
    prob = build("quadratic-bilevel", {"eps": 0.05})
    grid = prob.grid(32, 24)
    sol = pp.solve(prob.model(), grid, prob.initial(grid), 1.0, 1 / 32, save_every=2,
                   progress=False)
    return sol, prob


def legend_texts(ax):
    leg = ax.get_legend()
    assert leg is not None, "no legend"
    return [t.get_text() for t in leg.get_texts()]


def saved(fig, tmp_path, name):
    path = tmp_path / name
    fig.savefig(path, dpi=60)
    plt.close(fig)
    assert path.stat().st_size > 1000
    return path


def panels(fig):
    """The figure's axes that are not colour bars."""
    return [ax for ax in fig.axes if not hasattr(ax, "_colorbar")]


def test_density_at_chosen_times(run, tmp_path):
    sol, _ = run
    fig = plot.densities(sol, times=[0.0, 0.5, 1.0])
    axes = panels(fig)
    assert len(axes) == 3
    assert [ax.get_title() for ax in axes] == ["t = 0", "t = 0.5", "t = 1"]
    assert all(ax.get_xlabel() == "hyperparameter h" for ax in axes)
    assert axes[0].get_ylabel() == "parameter θ"
    cbar_axes = [a for a in axes[0].figure.axes if a not in list(axes)]
    assert cbar_axes and cbar_axes[0].get_ylabel() == "density f(t, θ, h)"
    saved(axes[0].figure, tmp_path, "density.png")


def test_density_of_a_reduced_solution_is_a_set_of_curves(run, tmp_path):
    sol, _ = run
    reduced = SimpleNamespace(t=sol.t, f=sol.rho, grid=sol.grid)
    ax = plot.densities(reduced, times=[0.0, 1.0]).axes[0]
    assert legend_texts(ax) == ["t = 0", "t = 1"]
    assert ax.get_ylabel() == "density ρ(t, h)"
    np.testing.assert_array_equal(ax.lines[1].get_ydata(), sol.rho[-1])
    saved(ax.figure, tmp_path, "reduced.png")


def test_kymograph_marks_mean_and_hstar(run, tmp_path):
    sol, prob = run
    mu, _ = prob.exact(sol.t)
    ax = sol.plot_kymograph(hstar=0.5, theory=(sol.t, mu[:, 1], "exact")).axes[0]
    assert legend_texts(ax) == ["mean of h (PDE)", "exact", "h* = 0.5"]
    assert ax.get_xlabel().startswith("time t") and ax.get_ylabel() == "hyperparameter h"
    np.testing.assert_allclose(ax.lines[0].get_ydata(), sol.mean_h)
    saved(ax.figure, tmp_path, "kymo.png")


def test_moments_against_theory(run, tmp_path):
    sol, prob = run
    mu, S = prob.exact(sol.t)
    m, v = prob.reduced(sol.t)
    a0, a1 = sol.plot_moments(theory=[(sol.t, mu[:, 1], S[:, 1, 1], "exact"),
                                      (sol.t, m, v, "reduced, ε → 0")]).axes
    for ax in (a0, a1):
        assert legend_texts(ax) == ["PDE", "exact", "reduced, ε → 0"]
        assert ax.get_xlabel() == "time t"
    assert a0.get_ylabel() == "E[h]" and a1.get_ylabel() == "Var[h]"
    saved(a0.figure, tmp_path, "moments.png")


def test_effective_fitness_with_gibbs_measure(run, tmp_path):
    sol, prob = run
    g = sol.grid
    th, hh = g.mesh()
    gibbs = np.exp(-(th - hh) ** 2 / (2 * prob.T)) / np.sqrt(2 * np.pi * prob.T)
    fig = plot.effective_fitness(g.h, prob.effective_fitness(g.h), gibbs=gibbs,
                                 theta=g.theta, hstar=0.5, rho=sol.rho[-1])
    a0, a1 = panels(fig)[:2]
    assert legend_texts(a0) == ["effective fitness F̄(h)", "h* = argmax F̄ = 0.5",
                                "population ρ(h)"]
    assert legend_texts(a1) == [r"mean of $\pi_h$"]
    assert a1.get_xlabel() == "hyperparameter h" and a1.get_ylabel() == "parameter θ"
    # the mean of the Gibbs measure drawn is θ*(h) = h for this loss
    np.testing.assert_allclose(a1.lines[0].get_ydata(), g.h, atol=1e-2)
    cbar = [a for a in a0.figure.axes if a.get_ylabel() == r"Gibbs density $\pi_h(\theta)$"]
    assert cbar
    saved(a0.figure, tmp_path, "fitness.png")


def test_particles_histogram_over_the_continuum(run, tmp_path):
    sol, _ = run
    rng = np.random.default_rng(0)
    rho = sol.rho[-1]
    p = rho * sol.grid.dh
    cells = rng.choice(sol.grid.n_h, size=4000, p=p / p.sum())
    samples = sol.grid.h[cells] + sol.grid.dh * (rng.random(4000) - 0.5)
    ax = sol.plot_particles(samples).axes[0]
    assert legend_texts(ax) == ["agents (N = 4000)", "continuum (PDE)"]
    heights = np.array([patch.get_height() for patch in ax.patches])
    widths = np.array([patch.get_width() for patch in ax.patches])
    assert abs((heights * widths).sum() - 1) < 1e-12  # a density histogram
    # the histogram follows the density it was drawn from (4000 samples: loose bound)
    assert np.abs(heights - rho).max() < 0.35 * rho.max()
    assert ax.get_xlabel() == "hyperparameter h" and ax.get_ylabel() == "density"
    with pytest.raises(ValueError, match="rho= and grid_h="):
        plot.particles(samples)
    saved(ax.figure, tmp_path, "particles.png")


@pytest.mark.parametrize("field", ["rho", "f"])
def test_animation_is_a_gif_with_frames(run, tmp_path, field):
    from PIL import Image
    sol, _ = run
    path = sol.animate(tmp_path / f"{field}.gif", field=field, max_frames=6, dpi=40)
    with Image.open(path) as im:
        assert im.format == "GIF" and im.n_frames == 6


def test_animation_rejects_f_of_a_reduced_solution(run, tmp_path):
    sol, _ = run
    with pytest.raises(ValueError, match="joint solution"):
        plot.animate(SimpleNamespace(t=sol.t, f=sol.rho, grid=sol.grid, mean_h=sol.mean_h),
                     tmp_path / "x.gif", field="f")


# -- grids with two h-axes (issue 10) ---------------------------------------------------------
@pytest.fixture(scope="module")
def run3():
    model = pp.Model(loss=lambda th, h: 0.5 * (th - 0.2 * h[0]) ** 2,
                     fitness=lambda th, h: -(h[0] - 0.5) ** 2 - (h[1] + 0.3) ** 2 - th ** 2,
                     temperature=0.1, eps=0.05, selection=pp.Replicator(1.0),
                     mutation=pp.Diffusion(0.01))
    g = pp.Grid(theta=(-2, 2, 12), h=[(-2, 2, 10), (-1.5, 1.5, 8)])
    f0 = pp.gaussian(g, (0.0, -0.5, 0.4), [0.2, 0.2, 0.2])
    return pp.solve(model, g, f0, 0.4, 0.05, save_every=2, progress=False)


def test_kymograph_of_each_h_marginal(run3, tmp_path):
    sol = run3
    fig = sol.plot_kymograph()
    kymos = panels(fig)
    assert [ax.get_ylabel() for ax in kymos] == ["hyperparameter h1", "hyperparameter h2"]
    g = sol.grid
    for k, ax in enumerate(kymos):
        other = 1 - k
        marg = (sol.rho * np.expand_dims(g.h_axes[other].weights, 0 if other else 1)[None]
                ).sum(axis=1 + other)
        np.testing.assert_allclose(ax.collections[0].get_array().reshape(marg.T.shape),
                                   marg.T, rtol=1e-12)
        np.testing.assert_allclose(ax.lines[0].get_ydata(), sol.mean_h[:, k], rtol=1e-12)
    saved(fig, tmp_path, "kymo3.png")
    fig = sol.plot_kymograph(axis="h2", hstar=-0.3)
    ax = fig.axes[0]
    assert ax.get_ylabel() == "hyperparameter h2" and "h* = -0.3" in legend_texts(ax)
    with pytest.raises(ValueError, match="axis='h3' is not an h-axis"):
        sol.plot_kymograph(axis="h3")


def test_density_of_a_chosen_marginal_or_slice(run3, tmp_path):
    sol = run3
    g = sol.grid
    fig = sol.plot_density(times=[0.0, 0.4])                 # default: ρ(h1, h2)
    axs = panels(fig)
    assert len(axs) == 2 and axs[0].get_xlabel() == "hyperparameter h1"
    assert axs[0].get_ylabel() == "hyperparameter h2"
    np.testing.assert_allclose(axs[1].collections[0].get_array().reshape(8, 10),
                               sol.rho[-1].T, rtol=1e-12)
    saved(fig, tmp_path, "dens3.png")
    j = int(np.argmin(np.abs(g.h[1] - 0.3)))
    fig = sol.plot_density(times=[0.4], dims=("h1", "theta"), at={"h2": 0.3})
    ax = fig.axes[0]
    assert ax.get_xlabel() == "hyperparameter h1" and ax.get_ylabel() == "parameter θ"
    assert f"h2 = {g.h[1][j]:.3g}" in ax.get_title()
    np.testing.assert_allclose(ax.collections[0].get_array().reshape(12, 10), sol.f[-1][:, :, j],
                               rtol=1e-12)
    with pytest.raises(ValueError, match="dims"):
        sol.plot_density(dims=("h1", "h1"))


def test_cli_plot_of_a_file_with_two_h_axes(run3, tmp_path):
    from pde_popdyn import cli
    from pde_popdyn.io import write_solution
    path = tmp_path / "three.h5"
    write_solution(run3, path)
    assert cli.main(["plot", str(path), "--out", str(tmp_path / "figs"), "--no-animation"]) == 0
    for name in ("three.png", "three_density.png"):
        assert (tmp_path / "figs" / name).stat().st_size > 1000


# -- notebook friendliness (issue 16) ---------------------------------------------------------
def test_every_plot_returns_its_figure_and_draws_on_given_axes(run):
    sol, prob = run
    g = sol.grid
    th, hh = g.mesh()
    gibbs = np.exp(-(th - hh) ** 2 / (2 * prob.T))
    samples = np.random.default_rng(0).normal(0, 0.3, 200)
    calls = [
        (1, lambda ax: sol.plot_kymograph(ax=ax[0])),
        (2, lambda ax: sol.plot_moments(ax=ax)),
        (2, lambda ax: sol.plot_density(times=[0, 1], ax=ax)),
        (1, lambda ax: sol.plot_particles(samples, ax=ax[0])),
        (1, lambda ax: plot.density(sol, ax=ax[0])),
        (2, lambda ax: plot.effective_fitness(g.h, prob.effective_fitness(g.h), gibbs=gibbs,
                                              theta=g.theta, ax=ax)),
        (1, lambda ax: plot.particles(samples, rho=sol.rho[-1], grid_h=g.h, ax=ax[0])),
    ]
    for n, call in calls:
        fig, axs = plt.subplots(1, n + 1)
        out = call(list(axs[:n]))
        assert out is fig
        assert all(ax.has_data() for ax in axs[:n]) and not axs[n].has_data()
        plt.close(fig)
    fig, ax = plt.subplots()
    with pytest.raises(ValueError, match="this figure has 2 panels but 1 axes were given"):
        sol.plot_moments(ax=ax)
    plt.close(fig)
    for fig in (sol.plot_kymograph(), sol.plot_density(), plot.moments(sol)):
        assert isinstance(fig, plt.Figure)
        plt.close(fig)


def _texts(fig):
    out = [t.get_text() for t in fig.findobj(plt.Text)]
    return [t for t in out if t]


def test_effective_fitness_legend_clear_of_rho_and_no_literal_underscores(run):
    sol, prob = run
    g = sol.grid
    th, hh = g.mesh()
    gibbs = np.exp(-(th - hh) ** 2 / (2 * prob.T))
    fig = plot.effective_fitness(g.h, prob.effective_fitness(g.h), gibbs=gibbs, theta=g.theta,
                                 hstar=0.5, rho=sol.rho[-1])
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    a0 = panels(fig)[0]
    leg = a0.get_legend().get_window_extent(renderer)
    # the legend lies outside the data area (where F̄ and ρ are drawn) and clear of the x-label
    assert not leg.overlaps(a0.get_window_extent(renderer))
    assert not leg.overlaps(a0.xaxis.label.get_window_extent(renderer))
    assert fig.bbox.contains(leg.x0, leg.y0) and fig.bbox.contains(leg.x1, leg.y1)
    # subscripts are typeset: an underscore only inside $...$ (mathtext)
    for text in _texts(fig):
        outside = text.split("$")[::2]
        assert not any("_" in part for part in outside), text
    assert r"$\pi_h \propto \exp(-L/T)$" in panels(fig)[1].get_title()
    plt.close(fig)


def test_animation_mp4_with_ffmpeg_else_a_clear_error(run, tmp_path, monkeypatch):
    sol, _ = run
    with pytest.raises(ValueError, match=r"suffix; use \.gif"):
        sol.animate(tmp_path / "x.avi")
    if plot.ffmpeg_available():
        path = sol.animate(tmp_path / "rho.mp4", max_frames=4, dpi=40)
        head = path.read_bytes()[:12]
        assert head[4:8] == b"ftyp" and path.stat().st_size > 1000
    monkeypatch.setattr(plot, "ffmpeg_available", lambda: False)
    with pytest.raises(ValueError, match="needs the ffmpeg program.*or save a .gif"):
        sol.animate(tmp_path / "y.mp4")
    assert not (tmp_path / "y.mp4").exists()
    path = sol.animate(tmp_path / "y.gif", max_frames=3, dpi=30)   # GIF needs no ffmpeg
    assert path.read_bytes()[:3] == b"GIF"
