"""The spectral scheme: Chebyshev / Fourier collocation in θ, continuum-eigenvalue DCT in h."""

import numpy as np
import pytest
import scipy.fft as sfft
import scipy.special as sps
from scipy.interpolate import BarycentricInterpolator

import pde_popdyn as pp
from pde_popdyn.densities import cell_average
from pde_popdyn.fast.spectral import SpectralOperator, chebyshev_diff, fourier_diff

HB = (-1.5, 1.5)
ELL = HB[1] - HB[0]


def c(h):
    """Neumann-compatible h-dependence: every derivative of odd order vanishes at the ends."""
    return np.cos(np.pi * (h - HB[0]) / ELL)


def smooth_model():
    """Non-quadratic loss, h-dependent temperature, replicator selection and diffusion."""
    return pp.Model(loss=lambda th, h: 0.1 * th ** 4 + 0.5 * (th - 0.5 * c(h)) ** 2,
                    fitness=lambda th, h: -(th - 0.3) ** 2 + 0.3 * c(h),
                    temperature=lambda h: 0.5 + 0.1 * c(h), eps=0.1,
                    selection=pp.Replicator(1.0), mutation=pp.Diffusion(0.05))


def f0fun(th, h):
    return np.exp(-(th + 0.3) ** 2 / 0.5) * (1 + 0.5 * c(h))


def run(n, scheme):
    grid = pp.Grid(theta=(-2.5, 2.5, n), h=(*HB, n),
                   nodes="spectral" if scheme == "spectral" else "cells")
    if scheme == "fv":
        f0 = cell_average(grid, f0fun)
    else:
        f0 = f0fun(*grid.mesh())
    return grid, pp.solve(smooth_model(), grid, f0, 0.5, 0.05, scheme=scheme, progress=False)


def cosine_interp(vals, x):
    """Evaluate the cosine series through cell-centred values at the points x."""
    n = vals.size
    a = sfft.dct(vals, type=2, norm="ortho") * np.where(np.arange(n) == 0, np.sqrt(1 / n),
                                                         np.sqrt(2 / n))
    return a @ np.cos(np.pi * np.arange(n)[:, None] * (x[None, :] - HB[0]) / ELL)


@pytest.fixture(scope="module")
def reference():
    return run(64, "spectral")


def marginal_error(grid, sol, reference):
    gr, sr = reference
    rho_r, rth_r = sr.rho[-1], sr.marginal("theta")[-1]
    e_h = np.abs(sol.rho[-1] - cosine_interp(rho_r, grid.h)).max() / rho_r.max()
    e_t = np.abs(sol.marginal("theta")[-1]
                 - BarycentricInterpolator(gr.theta, rth_r)(grid.theta)).max() / rth_r.max()
    return max(e_h, e_t)


def test_spectral_convergence_is_exponential_and_beats_fv(reference):
    """Same Δt for every run, so the splitting error cancels against the reference."""
    ns = np.array([16, 24, 32, 40])
    errs = np.array([marginal_error(*run(n, "spectral"), reference) for n in ns])
    assert errs[-1] < 1e-8, errs
    # exponential: log(error) is linear in N with a steep slope, not linear in log N
    rate = -np.polyfit(ns, np.log(errs), 1)[0]
    assert rate > 0.5, (rate, errs)
    assert np.all(np.diff(np.log(errs)) < -3.0)
    # finite volumes on the same problem: second order, far from 1e-8
    fv = [marginal_error(*run(n, "fv"), reference) for n in (32, 64)]
    assert 3.5 < fv[0] / fv[1] < 4.5
    assert fv[1] > 1e-6


def test_spectral_mass_and_gibbs_residual():
    for n in (16, 24, 32):
        grid, sol = run(n, "spectral")
        assert np.abs(sol.mass - 1).max() < 1e-12
    # Gibbs residual ‖A π‖ falls exponentially with the number of nodes
    res = []
    for n in (16, 24, 32, 40):
        grid = pp.Grid(theta=(-2.5, 2.5, n), h=(*HB, 6), nodes="spectral")
        op = SpectralOperator.from_model(smooth_model(), grid)
        res.append(np.abs(op.apply(op.gibbs)).max() / np.abs(op.A).max())
    assert res[-1] < 1e-9 and np.all(np.diff(np.log(res)) < -2), res


def test_fourier_scheme_reproduces_von_mises_effective_fitness():
    """Periodic θ, L = −k cos(θ − h): from a non-equilibrium start with ε ≪ Δt, the fast step
    projects onto the von Mises state; F̄ = I₁(k/T)/I₀(k/T) cos(h − θ*) to ≤ 1e-10."""
    k, T, ts = 1.2, 0.5, 0.4
    grid = pp.Grid(theta=(-np.pi, np.pi, 32), h=(-np.pi, np.pi, 16), periodic=("theta", "h"))
    model = pp.Model(loss=lambda th, h: -k * np.cos(th - h),
                     fitness=lambda th, h: np.cos(th - ts), temperature=T, eps=1e-6)
    th, hh = grid.mesh()
    f0 = 1 + 0.5 * np.sin(2 * th) * np.cos(hh)
    sol = pp.solve(model, grid, f0, 0.1, 0.05, scheme="spectral", progress=False)
    f = sol.f[-1]
    F = model.fitness_on(grid)
    fbar = (f * F).sum(axis=0) / f.sum(axis=0)
    exact = sps.i1(k / T) / sps.i0(k / T) * np.cos(grid.h - ts)
    assert np.abs(fbar - exact).max() <= 1e-10
    assert np.abs(sol.mass - 1).max() < 1e-12


def test_differentiation_matrices_are_spectral():
    x = -np.cos(np.pi * np.arange(20) / 19)
    D = chebyshev_diff(20, -1.0, 1.0)
    np.testing.assert_allclose(D @ np.sin(2 * x), 2 * np.cos(2 * x), atol=1e-10)
    y = np.linspace(0, 2 * np.pi, 24, endpoint=False)
    np.testing.assert_allclose(fourier_diff(24, 2 * np.pi) @ np.sin(3 * y), 3 * np.cos(3 * y),
                               atol=1e-12)
    z = np.linspace(0, 2 * np.pi, 25, endpoint=False)
    np.testing.assert_allclose(fourier_diff(25, 2 * np.pi) @ np.cos(z), -np.sin(z), atol=1e-12)


def test_spectral_scheme_on_a_grid_it_cannot_serve():
    model = smooth_model()
    cells = pp.Grid(theta=(-2.5, 2.5, 16), h=(*HB, 8))
    with pytest.raises(ValueError, match="bounded theta-axis needs Chebyshev nodes"):
        pp.solve(model, cells, pp.uniform(cells), 0.1, 0.05, scheme="spectral")
    cheb = pp.Grid(theta=(-2.5, 2.5, 16), h=(*HB, 8), nodes="spectral")
    with pytest.raises(ValueError, match="scheme='fv' needs a grid of cells"):
        pp.solve(model, cheb, np.ones(cheb.shape), 0.1, 0.05, scheme="fv")
    with pytest.raises(ValueError, match="nodes='chebyshev' is not known"):
        pp.Grid(theta=(0, 1, 8), h=(0, 1, 8), nodes="chebyshev")
