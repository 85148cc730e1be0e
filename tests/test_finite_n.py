"""The finite-N check (pde_popdyn.finite_n): founder labels carried in h, the genealogy of a
neutral population, the verdict on a weak and a strong case, and bad input."""

import json

import numpy as np
import pytest

import pde_popdyn as pp
from pde_popdyn import finite_n as fn

GRID = pp.Grid(theta=(-3.0, 3.0, 32), h=(-2.0, 2.0, 32))


def quadratic_model(selection, mutation=None, fitness=None):
    return pp.Model(lambda th, h: 0.5 * (th - h) ** 2,
                    fitness or (lambda th, h: -(th - 0.5) ** 2 + 0.0 * h),
                    temperature=0.05, eps=0.1, selection=selection, mutation=mutation,
                    quadratic=(1.0, lambda h: h))


def f0(grid=GRID, mean=(-0.5, -1.0), cov=((0.04, 0.0), (0.0, 0.04))):
    return pp.gaussian(grid, mean, [list(r) for r in cov])


# -- founder labels ------------------------------------------------------------------------
@pytest.mark.parametrize("periodic", [False, True])
def test_labels_decode_founders_and_the_folded_hyperparameter(periodic):
    lin = fn.Lineage(-2.0, 2.0, periodic)
    rng = np.random.default_rng(0)
    h = rng.uniform(-2, 2, 1000)
    enc = lin.encode(h)
    np.testing.assert_allclose(lin.real(enc), h, atol=1e-9)
    assert (lin.labels(enc) == np.arange(1, 1001)).all()
    # a move of the label-carrying value is the same move of h, folded by the box's rule
    step = rng.normal(0, 1.5, 1000)
    moved = lin.real(enc + step)
    x = h + step
    if periodic:
        want = -2.0 + np.mod(x + 2.0, 4.0)
    else:
        y = np.mod(x + 2.0, 8.0)
        want = -2.0 + 4.0 - np.abs(4.0 - y)
    np.testing.assert_allclose(moved, want, atol=1e-9)
    assert (lin.labels(enc + step) == np.arange(1, 1001)).all()     # founders unchanged
    assert lin.real(enc + step).min() >= -2.0 and lin.real(enc + step).max() <= 2.0


def test_a_labelled_run_is_the_unlabelled_run():
    """Same seed, same agents: wrapping the model and shifting h by the labels changes
    nothing but round-off when no agent reaches the edge of the box."""
    model = quadratic_model(pp.BoltzmannJump(1.0, 3.0, copy="h"), pp.GaussianJump(0.1))
    lin = fn.Lineage(-2.0, 2.0)
    rng = np.random.default_rng(3)
    theta, h = fn.sample_initial(GRID, f0(), 500, rng)
    plain = pp.simulate_particles(model, 500, (theta, h), 1.0, 0.05, seed=5, h_box=(-2, 2),
                                  save_every=5, progress=False)
    lab = pp.simulate_particles(lin.wrap(model), 500, (theta, lin.encode(h)), 1.0, 0.05, seed=5,
                                save_every=5, progress=False)
    assert np.abs(plain.h).max() < 1.9                     # nobody met the box
    np.testing.assert_allclose(lin.real(lab.h), plain.h, atol=1e-8)
    np.testing.assert_allclose(lab.theta, plain.theta, atol=1e-8)
    # copies carry the founder: fewer founders survive than agents exist
    counts = np.bincount(lin.labels(lab.h[-1]))
    assert counts.sum() == 500 and (counts > 0).sum() < 500


@pytest.mark.parametrize("selection", [pp.BoltzmannJump(1.0, 1.0), pp.Truncation(1.0, 0.25),
                                       pp.PBT(interval=0.25, fraction=0.2)],
                         ids=["boltzmann", "truncation", "pbt"])
def test_neutral_genealogy_gives_a_coalescent_size_near_n(selection):
    """When the fitness ignores h and θ re-equilibrates between copies, who copies whom is
    random: pairs share a parent at rate c/N, so c t/(−log(1 − F)) ≈ N."""
    model = pp.Model(lambda th, h: 0.5 * th ** 2, lambda th, h: -th ** 2 + 0.0 * h,
                     temperature=0.05, eps=0.01, selection=selection,
                     mutation=pp.GaussianJump(0.05), quadratic=(1.0, 0.0))
    n = 100
    reps = fn.run_replicas(model, n, GRID, f0(mean=(0.0, -0.5)), 2.0, 0.05, seeds=24, seed=1,
                           save_every=20)
    assert reps.lineage_note is None
    F = reps.pair_identity.mean(axis=0)[-1]
    ne = fn.neutral_coalescence(selection) * 2.0 / -np.log1p(-F)
    assert 0.75 * n < ne < 1.35 * n, ne
    assert (reps.founders[:, -1] < n).all()


def test_initial_draws_have_the_moments_of_the_piecewise_density():
    rng = np.random.default_rng(0)
    theta, h = fn.sample_initial(GRID, f0(), 400_000, rng)
    p = (f0() * GRID.weights).sum(axis=0)
    p /= p.sum()
    m = (p * GRID.h).sum()
    v = (p * GRID.h ** 2).sum() - m * m + (p * GRID.dh ** 2).sum() / 12
    assert h.mean() == pytest.approx(m, abs=4 * np.sqrt(v / 4e5))
    assert h.var() == pytest.approx(v, rel=0.01)


def test_neutral_coalescence_rates():
    assert fn.neutral_coalescence(pp.BoltzmannJump(2.0, 3.0)) == 4.0
    assert fn.neutral_coalescence(pp.Truncation(2.0, 0.25)) == 1.0
    assert fn.neutral_coalescence(pp.PBT(interval=0.5, fraction=0.2)) == pytest.approx(1.2)
    assert fn.neutral_coalescence(pp.Replicator(1.0)) is None


# -- the check ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def strong():
    model = quadratic_model(pp.BoltzmannJump(1.0, 10.0, copy="h"), pp.GaussianJump(0.1))
    return pp.mean_field_check(model, 30, GRID, f0(), 1.5, 0.05, seeds=12, seed=2)


def test_strong_selection_at_small_n_is_flagged_with_its_genealogy(strong):
    assert strong.verdict in ("caution", "do not trust")
    assert strong.worst > 1.0
    assert strong.bias["mean_h"][-1] < 0                      # the agents lag the PDE
    # the lag is resolved: several standard errors of the mean over runs
    assert abs(strong.bias["mean_h"][-1]) > 3 * strong.bias_stderr["mean_h"][-1]
    assert strong.ancestors[-1] < 10 and any("lineage takeover" in r for r in strong.reasons)
    assert strong.ne_coalescent[-1] < 30
    assert strong.pde_dt_error is not None and strong.pde_grid_error is not None
    text = str(strong)
    assert "N = 30" in text and strong.verdict.upper() in text
    json.dumps(strong.to_dict())                               # plain numbers


def test_weak_selection_is_trusted():
    model = quadratic_model(pp.Replicator(0.5), pp.Diffusion(0.01))
    rep = pp.mean_field_check(model, 200, GRID, f0(), 1.0, 0.05, seeds=16, seed=4,
                              check_grid=False)
    assert rep.verdict == "trust", str(rep)
    assert rep.ne_coalescent is None                  # the replicator has no neutral rate
    assert rep.pde_grid_error is None and rep.pde_dt_error is not None
    # resampling adds noise (about twice the independent-agent error), but no takeover
    ratio = rep.spread["mean_h"][-1] / rep.iid_stderr["mean_h"][-1]
    assert 0.6 < ratio < 3.0
    assert rep.ancestors[-1] > 20


def test_a_given_solution_is_reused_and_must_match_the_saves():
    model = quadratic_model(pp.BoltzmannJump(1.0, 1.0), pp.GaussianJump(0.1))
    sol = pp.solve(model, GRID, f0(), 0.5, 0.05, save_every=5, progress=False)
    rep = pp.mean_field_check(model, 50, GRID, f0(), 0.5, 0.05, seeds=4, save_every=5,
                              solution=sol)
    assert rep.pde_dt_error is None
    np.testing.assert_allclose(rep.pde["mean_h"], fn.pde_moments(sol)["mean_h"])
    with pytest.raises(ValueError, match="saved times"):
        pp.mean_field_check(model, 50, GRID, f0(), 0.5, 0.05, seeds=4, save_every=2,
                            solution=sol)


def test_untrackable_genealogy_is_skipped_with_a_reason():
    model = quadratic_model(pp.BoltzmannJump(1.0, 1.0), pp.GaussianJump(0.1, boundary="clip"))
    rep = pp.mean_field_check(model, 20, GRID, f0(), 0.2, 0.05, seeds=4, check_dt=False,
                              check_grid=False)
    assert rep.ancestors is None and "clip" in rep.lineage_note


@pytest.mark.parametrize("mutation, periodic, tracked", [
    (pp.GaussianJump(0.1), False, True),
    (pp.Diffusion(0.01), False, True),
    (pp.Perturb(factors=(1 / 1.2, 1.2)), False, True),
    (pp.Perturb(), False, False),                 # ×0.8/×1.2: asymmetric shifts, then a fold
    (pp.Perturb(), True, True),                   # a wrap is exact for any shift
    (pp.Perturb(scale="linear"), False, False),   # multiplies the label too
    (pp.GaussianJump(0.1, boundary="clip"), False, False),
    (pp.PriorResample(0.2), False, False),        # a redraw starts a new lineage
])
def test_which_mutations_keep_the_founder_labels(mutation, periodic, tracked):
    grid = pp.Grid(theta=(-3, 3, 8), h=(-2, 2, 8), periodic=("h",) if periodic else ())
    selection = pp.Replicator(1.0) if mutation.continuous else pp.PBT(0.5, 0.2)
    model = quadratic_model(selection, mutation)
    note = fn.lineage_support(model, grid, {})
    assert (note is None) == tracked, note


def test_bad_input_names_the_argument():
    model = quadratic_model(pp.BoltzmannJump(1.0, 1.0), pp.GaussianJump(0.1))
    args = (GRID, f0(), 0.5, 0.05)
    with pytest.raises(ValueError, match="n must be >= 2"):
        pp.mean_field_check(model, 1, *args)
    with pytest.raises(TypeError, match="n must be an integer"):
        pp.mean_field_check(model, 10.0, *args)
    with pytest.raises(ValueError, match="seeds must be >= 4"):
        pp.mean_field_check(model, 10, *args, seeds=2)
    with pytest.raises(TypeError, match="grid must be a pp.Grid"):
        pp.mean_field_check(model, 10, "grid", f0(), 0.5, 0.05)
    with pytest.raises(TypeError, match="sets 'progress'"):
        pp.mean_field_check(model, 10, *args, progress=True)
    with pytest.raises(ValueError, match="active selection"):
        pp.mean_field_check(quadratic_model(None), 10, *args)
    with pytest.raises(ValueError, match="dt"):
        pp.mean_field_check(model, 10, GRID, f0(), 0.5, 1.0)
    with pytest.raises(ValueError, match="init"):
        pp.mean_field_check(model, 10, GRID, np.ones((3, 3)), 0.5, 0.05)
