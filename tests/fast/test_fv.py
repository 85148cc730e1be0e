"""The Scharfetter–Gummel operator and its exact step."""

import numpy as np
import pytest
import scipy.linalg as sla

from pde_popdyn.fast.fv import SGOperator, bernoulli


def make_op(eps, n=48, nh=6, T=0.1, span=1.0):
    th = np.linspace(-3, 3, n + 1)
    th = 0.5 * (th[1:] + th[:-1])
    dth = th[1] - th[0]
    h = np.linspace(-1, 1, nh)
    L = 0.5 * (th[:, None] - h[None, :]) ** 2 + 0.2 * span * np.cos(3 * th[:, None])
    return SGOperator(L / T, np.full(nh, T / (eps * dth ** 2))), th


def test_bernoulli_identity_and_limits():
    x = np.array([-800.0, -30.0, -1e-9, 0.0, 1e-9, 2.5, 30.0, 800.0])
    b = bernoulli(x)
    assert np.all(np.isfinite(b)) and np.all(b >= 0)
    assert b[3] == 1.0
    # B(−x) = eˣ B(x), the identity behind detailed balance
    mid = np.abs(x) < 50
    np.testing.assert_allclose(bernoulli(-x[mid]), np.exp(x[mid]) * b[mid], rtol=1e-13)


def test_generator_structure_and_gibbs_kernel():
    op, _ = make_op(0.1)
    A = op.sparse().toarray()
    off = A - np.diag(np.diag(A))
    assert off.min() >= 0.0                              # non-negative off-diagonal
    np.testing.assert_allclose(A.sum(axis=0), 0.0, atol=1e-10 * np.abs(A).max())
    residual = op.apply(op.gibbs)                        # A π = 0 column by column
    assert np.abs(residual).max() < 1e-13 * np.abs(A).max()
    f = np.random.default_rng(0).random(op.phi.shape)
    np.testing.assert_allclose(op.apply(f).ravel(), A @ f.ravel(), rtol=1e-12, atol=1e-9)


@pytest.mark.parametrize("eps", [1.0, 0.1, 1e-2, 1e-3, 1e-5])
def test_step_is_exact_positive_and_mass_conserving(eps):
    op, _ = make_op(eps)
    tau = 0.01
    prop = op.propagator(tau)
    f = np.random.default_rng(1).random(op.phi.shape)
    g = prop(f)
    A = op.sparse().toarray()
    nh = op.phi.shape[1]
    for j in range(nh):
        idx = np.arange(op.n) * nh + j
        ref = sla.expm(tau * A[np.ix_(idx, idx)]) @ f[:, j]
        np.testing.assert_allclose(g[:, j], ref, rtol=0, atol=1e-11 * ref.max())
    assert g.min() >= 0.0
    np.testing.assert_allclose(g.sum(0), f.sum(0), rtol=1e-14)
    np.testing.assert_allclose(prop(op.gibbs), op.gibbs, rtol=0, atol=1e-15)


def test_every_branch_is_used_and_agrees():
    """Projection, uniformisation and dense squaring give the same step where they overlap."""
    op, _ = make_op(1e-2, nh=4)
    f = np.random.default_rng(2).random(op.phi.shape)
    unif = op.propagator(0.01, dense_above=10 ** 9)
    dense = op.propagator(0.01, dense_above=0)
    assert unif.dense_cols.size == 0 and dense.unif_cols.size == 0
    np.testing.assert_allclose(unif(f), dense(f), rtol=1e-12, atol=1e-14)


def test_asymptotic_preserving_projection():
    """As Δt/ε → ∞ the step is the projection onto the discrete Gibbs state."""
    op, _ = make_op(1e-7, span=3.0)
    prop = op.propagator(0.01)
    assert prop.proj_cols.size == op.phi.shape[1]
    f = np.random.default_rng(3).random(op.phi.shape)
    expected = op.gibbs * f.sum(0)
    np.testing.assert_allclose(prop(f), expected, rtol=1e-14)


def test_no_symmetrisation_blow_up_in_the_tails():
    """A potential spanning hundreds (e^{ΔΦ/2} ~ 1e50) with mass in the far tail: the step
    stays accurate, positive and stochastic."""
    th = np.linspace(-3, 3, 65)
    th = 0.5 * (th[1:] + th[:-1])
    dth = th[1] - th[0]
    T = 0.02
    phi = (0.5 * (th - 1.0) ** 2 / T)[:, None]          # span ≈ 400
    op = SGOperator(phi, np.array([T / (0.05 * dth ** 2)]))
    f = np.zeros_like(phi)
    f[0] = 1.0                                           # all mass at the far edge
    g = op.propagator(0.02)(f)
    assert g.min() >= 0 and abs(g.sum() - 1) < 1e-14
    # compare with a long run of tiny steps of the same propagator family
    small = op.propagator(0.02 / 64)
    x = f.copy()
    for _ in range(64):
        x = small(x)
    np.testing.assert_allclose(g, x, rtol=0, atol=1e-12)


# -- the Gibbs check where the θ-box cuts the Gibbs state (issue 10) ---------------------------
def _standard_problem():
    """L = ½(θ − h)² on [−2.5, 2.5]²: at the h-edges θ*(h) = h sits in the last θ-cell, so the
    Gibbs state there is cut by the θ-box."""
    import pde_popdyn as pp
    model = pp.Model(loss=lambda th, h: 0.5 * (th - h) ** 2,
                     fitness=lambda th, h: -(th - 0.5) ** 2, temperature=0.05, eps=0.01,
                     selection=pp.Replicator(1.0), mutation=pp.Diffusion(0.01))
    return model, pp.Grid(theta=(-2.5, 2.5, 64), h=(-2.5, 2.5, 64))


def test_gibbs_cut_where_there_is_no_mass_warns_and_runs():
    import pde_popdyn as pp
    model, grid = _standard_problem()
    f0 = pp.gaussian(grid, (0.0, 0.0), [0.1, 0.1])
    with pytest.warns(UserWarning, match=r"h in \[-2\.461, -2\.461\] and \[2\.461, 2\.461\].*"
                                         r"2 of 64 h-columns") as rec:
        sol = pp.solve(model, grid, f0, 0.5, 0.05, progress=False)
    assert len(rec) == 1 and "wider theta-box" in str(rec[0].message)
    assert abs(sol.mass[-1] - 1) < 1e-13 and sol.f.min() >= 0
    # the columns that were cut still hold no mass at the end
    assert sol.rho[-1][[0, -1]].max() * grid.dh < 1e-10


def test_gibbs_cut_where_there_is_mass_is_refused():
    import pde_popdyn as pp
    model, grid = _standard_problem()
    f0 = pp.gaussian(grid, (0.0, 2.2), [0.1, 0.1])      # mass at the upper h-edge
    with pytest.raises(ValueError, match=r"grows toward the upper edge of the theta-box.*"
                                         r"h=2\.461.*holds a fraction [0-9.e-]+ of the mass"):
        pp.solve(model, grid, f0, 0.5, 0.05, progress=False)


def test_gibbs_check_with_and_without_h_mass():
    from pde_popdyn.fast.fv import check_gibbs_on_box
    model, grid = _standard_problem()
    phi = model.loss_on(grid) / 0.05
    with pytest.raises(ValueError, match="grows toward the lower edge"):
        check_gibbs_on_box(phi, grid)                      # no mass given: refuse, as before
    mass = np.ones(grid.n_h)
    mass[[0, -1]] = 0.0
    with pytest.warns(UserWarning, match="hold no mass"):
        check_gibbs_on_box(phi, grid, h_mass=mass)
    mass[-1] = 1e-3
    with pytest.raises(ValueError, match="upper edge"):
        check_gibbs_on_box(phi, grid, h_mass=mass)
    with pytest.raises(ValueError, match="h_mass must have 64 entries"):
        check_gibbs_on_box(phi, grid, h_mass=np.ones(3))
