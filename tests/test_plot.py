"""Figures (issue 6): every figure is written, labelled, and has the legend entries it claims."""

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


def test_density_at_chosen_times(run, tmp_path):
    sol, _ = run
    axes = plot.densities(sol, times=[0.0, 0.5, 1.0])
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
    ax = plot.densities(reduced, times=[0.0, 1.0])
    assert legend_texts(ax) == ["t = 0", "t = 1"]
    assert ax.get_ylabel() == "density ρ(t, h)"
    np.testing.assert_array_equal(ax.lines[1].get_ydata(), sol.rho[-1])
    saved(ax.figure, tmp_path, "reduced.png")


def test_kymograph_marks_mean_and_hstar(run, tmp_path):
    sol, prob = run
    mu, _ = prob.exact(sol.t)
    ax = sol.plot_kymograph(hstar=0.5, theory=(sol.t, mu[:, 1], "exact"))
    assert legend_texts(ax) == ["mean of h (PDE)", "exact", "h* = 0.5"]
    assert ax.get_xlabel().startswith("time t") and ax.get_ylabel() == "hyperparameter h"
    np.testing.assert_allclose(ax.lines[0].get_ydata(), sol.mean_h)
    saved(ax.figure, tmp_path, "kymo.png")


def test_moments_against_theory(run, tmp_path):
    sol, prob = run
    mu, S = prob.exact(sol.t)
    m, v = prob.reduced(sol.t)
    a0, a1 = sol.plot_moments(theory=[(sol.t, mu[:, 1], S[:, 1, 1], "exact"),
                                      (sol.t, m, v, "reduced, ε → 0")])
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
    a0, a1 = plot.effective_fitness(g.h, prob.effective_fitness(g.h), gibbs=gibbs,
                                    theta=g.theta, hstar=0.5, rho=sol.rho[-1])
    assert legend_texts(a0) == ["effective fitness F̄(h)", "h* = argmax F̄ = 0.5",
                                "population ρ(h)"]
    assert legend_texts(a1) == ["mean of π_h"]
    assert a1.get_xlabel() == "hyperparameter h" and a1.get_ylabel() == "parameter θ"
    # the mean of the Gibbs measure drawn is θ*(h) = h for this loss
    np.testing.assert_allclose(a1.lines[0].get_ydata(), g.h, atol=1e-2)
    cbar = [a for a in a0.figure.axes if a.get_ylabel() == "Gibbs density π_h(θ)"]
    assert cbar
    saved(a0.figure, tmp_path, "fitness.png")


def test_particles_histogram_over_the_continuum(run, tmp_path):
    sol, _ = run
    rng = np.random.default_rng(0)
    rho = sol.rho[-1]
    p = rho * sol.grid.dh
    cells = rng.choice(sol.grid.n_h, size=4000, p=p / p.sum())
    samples = sol.grid.h[cells] + sol.grid.dh * (rng.random(4000) - 0.5)
    ax = sol.plot_particles(samples)
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
