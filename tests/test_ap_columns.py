"""Per-column propagators exp(τ(A + diag d)) and Φ(τ) of pde_popdyn.fast.columns."""

import numpy as np
import pytest
import scipy.linalg as sla

import pde_popdyn as pp
from pde_popdyn.fast._column_kernels import gth_solve, top_two_eigenvalues
from pde_popdyn.fast.columns import ColumnGenerator, ColumnPropagator, blas_single_thread
from pde_popdyn.fast.fv import SGOperator

N = 28


def dense_A(op):
    n, m = op.phi.shape
    A = np.zeros((m, n, n))
    i = np.arange(n)
    A[:, i, i] = -op.out_rate.T
    A[:, i[1:], i[:-1]] = op.up.T
    A[:, i[:-1], i[1:]] = op.down.T
    if op.periodic:
        A[:, 0, -1] += op.up_wrap
        A[:, -1, 0] += op.down_wrap
    return A


def case(eps, periodic=False):
    if periodic:
        grid = pp.Grid(theta=(-np.pi, np.pi, N), h=(-1, 1, 6), periodic=("theta",))
        model = pp.Model(loss=lambda th, h: -np.cos(th - h), fitness=lambda th, h: np.cos(th - 0.3),
                         temperature=0.3, eps=eps)
    else:
        grid = pp.Grid(theta=(-3, 3, N), h=(-1, 1, 6))
        model = pp.Model(loss=lambda th, h: 0.5 * (th - h) ** 2,
                         fitness=lambda th, h: -(th - 0.5) ** 2 - 0.3 * h, temperature=0.05,
                         eps=eps)
    op = SGOperator.from_model(model, grid)
    return op, model.fitness_on(grid), grid


def reference(op, d, tau, lam=None):
    """exp(τ(A + diag d − max d)) and ∫_0^τ e^{−λs} e^{sA} ds by scipy, per column."""
    A = dense_A(op)
    E, Phi = [], []
    for j, a in enumerate(A):
        dj = np.zeros(a.shape[0]) if d is None else d[:, j]
        E.append(sla.expm(tau * (a + np.diag(dj) - d.max() * np.eye(len(dj))))
                 if d is not None else sla.expm(tau * a))
        if lam is not None:
            n = a.shape[0]
            Z = np.zeros((2 * n, 2 * n))
            Z[:n, :n] = tau * (a - lam * np.eye(n))
            Z[:n, n:] = tau * np.eye(n)
            Phi.append(sla.expm(Z)[:n, n:])
    return np.array(E), (np.array(Phi) if lam is not None else None)


@pytest.mark.parametrize("periodic", [False, True])
@pytest.mark.parametrize("eps", [1.0, 1e-2, 1e-4, 1e-7])
@pytest.mark.parametrize("branch", ["auto", "uniformisation", "dense", "rational"])
@pytest.mark.parametrize("kind", ["fast", "selection", "jump"])
def test_every_branch_is_the_exponential(periodic, eps, branch, kind):
    op, F, grid = case(eps, periodic)
    d = 2.0 * F if kind == "selection" else None
    lam = 1.3 if kind == "jump" else None
    gen = ColumnGenerator(op, d)
    if branch == "uniformisation" and gen.c.max() * 0.02 > 1e4:
        pytest.skip("forced uniformisation of a stiff column: cτ terms per step")
    if branch == "rational" and (periodic or lam is not None):
        with pytest.raises(ValueError, match="branch='rational'"):
            ColumnPropagator(gen, 0.01, lam=lam, branch=branch)
        return
    prop = ColumnPropagator(gen, 0.01, lam=lam, branch=branch)
    rng = np.random.default_rng(3)
    far = rng.random(grid.shape)                                    # far from equilibrium
    near = op.gibbs * (1 + 0.3 * np.sin(grid.theta)[:, None]) * rng.random(grid.n_h)
    for k in (1, 2):
        E, Phi = reference(op, d, 0.01 * k, lam)
        for f in (far, near):
            out = prop.apply(f, k)
            ref = np.einsum("jil,lj->ij", E, f)
            assert out.min() >= 0.0
            # scipy's expm of a stiff matrix is itself accurate to ~1e-11 relative
            assert np.abs(out - ref).max() <= 1e-9 * np.abs(ref).max()
            if lam is not None:
                out = prop.integral(f, k)
                ref = np.einsum("jil,lj->ij", Phi, f)
                assert out.min() >= 0.0
                assert np.abs(out - ref).max() <= 1e-9 * np.abs(ref).max()
    assert prop.clipped_mass <= 1e-15


def test_branches_are_chosen_by_stiffness():
    summaries = {}
    for eps in (1.0, 1e-3, 1e-7):
        op, F, _ = case(eps)
        summaries[eps] = ColumnPropagator(ColumnGenerator(op, 2.0 * F), 0.01).summary
    assert summaries[1.0]["projection"] == 0
    assert (summaries[1e-3]["dense"] + summaries[1e-3]["uniformisation"]
            + summaries[1e-3]["rational"]) > 0
    assert summaries[1e-7]["projection"] == 6 and summaries[1e-7]["dense"] == 0


def test_stiff_columns_relax_inputs_far_from_equilibrium_first():
    """ε where τ·gap passes 40 but not the input-free bound: a density far in the tail of π
    is first advanced by a short exact step and then projected (or sent to an exact dense
    propagator), a density near ρπ is projected at once; all of it exact."""
    op, F, grid = case(1.5e-4)
    prop = ColumnPropagator(ColumnGenerator(op), 0.01)
    assert prop.summary["projection_tested"] > 0
    near = op.gibbs * np.linspace(1, 2, grid.n_h)
    prop.apply(near, 1)
    assert prop.relaxed_inputs == 0 and prop.fallback_builds == 0
    tail = np.zeros(grid.shape)
    tail[0] = 1.0                                   # all mass in the lowest θ-cell
    E, _ = reference(op, None, 0.01)
    out = prop.apply(tail, 1)
    assert prop.relaxed_inputs > 0
    ref = np.einsum("jil,lj->ij", E, tail)
    assert np.abs(out - ref).max() <= 1e-9 * ref.max()
    # the integral Φ of a jump rule, and the short exact steps E(δ), Φ(δ) themselves
    jump = ColumnPropagator(ColumnGenerator(op), 0.01, lam=1.3)
    _, Phi = reference(op, None, 0.02, lam=1.3)
    out = jump.integral(tail, 2)
    ref = np.einsum("jil,lj->ij", Phi, tail)
    assert np.abs(out - ref).max() <= 1e-9 * ref.max()
    loc = np.arange(grid.n_h)
    E, Phi = reference(op, None, 3e-5, lam=1.3)
    Eg, Pg = jump._relax(loc, tail, 3e-5, phi=True)
    for got, M in ((Eg, E), (Pg, Phi)):
        ref = np.einsum("jil,lj->ij", M, tail)
        assert np.abs(got - ref).max() <= 1e-12 * ref.max()


def test_perron_vectors_have_relative_accuracy_in_the_tails():
    """GTH elimination: inverse iteration gives r₀, l₀ entry by entry (checked against the
    residual of the eigen-equation divided entrywise, which a symmetrised eigensolver
    cannot meet in the tails), and λ₀ = ⟨d⟩_{r₀} exactly as ε → 0 tends to κ F̄."""
    op, F, grid = case(1e-6)
    gen = ColumnGenerator(op, 2.0 * F)
    r, l, rate, ok = gen.perron(np.arange(grid.n_h))
    assert ok.all() and r.min() > 0 and l.min() > 0
    A = dense_A(op)
    for j in range(grid.n_h):
        G = A[j] + np.diag(gen.dp[:, j])
        res = (G @ r[:, j] - rate[j] * r[:, j])
        # the residual's entries are sums of terms of size (rates × r); compare with those
        scale = np.abs(A[j]) @ r[:, j] + np.abs(gen.dp[:, j] * r[:, j])
        assert np.abs(res / scale).max() < 1e-12
    fbar = (op.gibbs * 2.0 * F).sum(axis=0)
    np.testing.assert_allclose(rate + gen.dmax, fbar, rtol=1e-4)


@pytest.mark.parametrize("loss", ["quadratic", "double well"])
def test_gap_bound_is_an_upper_bound_of_the_gap(loss):
    """ColumnGenerator.gap_bound (a two-vector Ritz bound) is never below the gap from the
    bisection, for any diagonal d, and is tight where the first mode is linear (quadratic loss,
    d = 0)."""
    grid = pp.Grid(theta=(-3, 3, 40), h=(-1, 1, 7))
    L = ((lambda th, h: 0.5 * (th - h) ** 2) if loss == "quadratic"
         else (lambda th, h: (th ** 2 - 1) ** 2 + 0.3 * h * th))
    rng = np.random.default_rng(1)
    for eps in (1.0, 1e-3):
        model = pp.Model(loss=L, fitness=lambda th, h: -th ** 2, temperature=0.1, eps=eps)
        op = SGOperator.from_model(model, grid)
        for scale in (0.0, 1.0, 30.0):
            gen = ColumnGenerator(op, scale * rng.normal(size=op.phi.shape))
            bound = gen.gap_bound()
            # the reference gap from LAPACK (the bisection's error, 1e-12 of the Gershgorin
            # width, can exceed the bound's slack on fine grids)
            gap = np.array([np.subtract(*sla.eigvalsh_tridiagonal(
                -gen.out[:, j], np.sqrt(op.up[:, j] * op.down[:, j]))[::-1][:2])
                for j in range(gen.ncol)])
            assert np.all(bound >= gap * (1 - 1e-12))
            if loss == "quadratic" and scale == 0.0:
                assert np.all(bound <= gap * (1 + 1e-3))


def test_the_eigenvalue_bisection_is_skipped_where_no_column_can_be_projected():
    """At intermediate ε the gap bound shows τ·gap ≪ 37 on every column: the propagator
    does not run the two-eigenvalue bisection (only λ₀'s), and still projects at small ε."""
    for eps, projected in ((1e-2, False), (1e-7, True)):
        op, F, _ = case(eps)
        gen = ColumnGenerator(op, 2.0 * F)
        prop = ColumnPropagator(gen, 0.01)
        assert (gen._gap is not None) == projected
        assert (prop.summary["projection"] > 0) == projected


def test_kernels_against_numpy():
    rng = np.random.default_rng(0)
    up, down = rng.random((3, 9)) + 0.1, rng.random((3, 9)) + 0.1
    kill = rng.random((3, 10))
    b = rng.random((3, 10))
    for transpose in (False, True):
        x = gth_solve(up, down, kill, b, transpose)
        for j in range(3):
            M = np.diag(kill[j] + np.r_[up[j], 0] + np.r_[0, down[j]])
            M -= np.diag(up[j], -1) + np.diag(down[j], 1)
            np.testing.assert_allclose((M.T if transpose else M) @ x[j], b[j], rtol=1e-13)
    diag, off = -rng.random((4, 12)) * 100, rng.random((4, 11)) * 30
    top = top_two_eigenvalues(diag, off)
    for j in range(4):
        ev = np.linalg.eigvalsh(np.diag(diag[j]) + np.diag(off[j], 1) + np.diag(off[j], -1))
        np.testing.assert_allclose(top[j], ev[::-1][:2], rtol=0, atol=1e-9 * 130)


def _gershgorin(diag, off):
    """The bisection's starting bracket per row of (diag, off), widened as the kernel does."""
    radius = np.zeros_like(diag)
    radius[:, 1:] += off
    radius[:, :-1] += off
    lo = (diag - radius).min(axis=1) - 1e-300
    hi = (diag + radius).max(axis=1) + 1e-300
    span = hi - lo
    return lo - 1e-12 * span, hi + 1e-12 * span


@pytest.mark.parametrize("ncol", [1, 5, 37])     # 37: the compiled loops' vector body and tail
def test_top_eigenvalue_of_all_columns_at_once_matches_the_per_column_bisection(ncol):
    """λ₀ alone (count=1) is bisected for all columns at once: the same midpoints as the
    per-column bisection, so the same value bit for bit, also where zero couplings split a
    matrix into blocks and for brackets of very different widths; and within the tolerance
    of LAPACK's eigenvalues."""
    from scipy.linalg import eigvalsh_tridiagonal

    from pde_popdyn.fast import _column_kernels as K
    rng = np.random.default_rng(ncol)
    n = 17
    diag = -rng.random((ncol, n)) * 10.0 ** rng.uniform(-2, 3, (ncol, 1))
    off = rng.random((ncol, n - 1)) * 10.0 ** rng.uniform(-2, 2, (ncol, 1))
    off[0, 3:6] = 0.0
    for rtol in (1e-10, 1e-12):
        got = top_two_eigenvalues(diag, off, rtol=rtol, count=1)[:, 0]
        lo, hi = _gershgorin(diag, off)
        one = np.empty((ncol, 1))
        K._top_two_py(diag, off * off, lo, hi, rtol * (hi - lo), one)
        np.testing.assert_array_equal(got, one[:, 0])
        if K.HAVE_NUMBA:
            py = K._top_vec_py(np.ascontiguousarray(diag.T), np.ascontiguousarray((off * off).T),
                               lo, hi, rtol * (hi - lo), 0)
            np.testing.assert_array_equal(got, py)
        for j in range(ncol):
            ev = eigvalsh_tridiagonal(diag[j], off[j])[-1]
            assert abs(got[j] - ev) <= 2 * rtol * (hi[j] - lo[j]) + 1e-12 * abs(ev)


@pytest.mark.parametrize("ncol", [1, 5, 37])     # 37: the compiled loops' vector body and tail
def test_both_top_eigenvalues_of_all_columns_match_the_per_column_bisection(ncol):
    """count=2 (the gap of the projection test) bisects λ₀ and then λ₁ for all columns at
    once: the midpoints, and so the values, of the column-by-column kernel, bit for bit."""
    from pde_popdyn.fast import _column_kernels as K
    rng = np.random.default_rng(100 + ncol)
    n = 19
    diag = -rng.random((ncol, n)) * 10.0 ** rng.uniform(-2, 3, (ncol, 1))
    off = rng.random((ncol, n - 1)) * 10.0 ** rng.uniform(-2, 2, (ncol, 1))
    off[0, 4:7] = 0.0                      # a matrix split into blocks
    got = top_two_eigenvalues(diag, off)
    lo, hi = _gershgorin(diag, off)
    ref = np.empty((ncol, 2))
    K._top_two_py(diag, off * off, lo, hi, 1e-12 * (hi - lo), ref)
    np.testing.assert_array_equal(got, ref)
    assert (got[:, 0] >= got[:, 1]).all()


def test_narrowed_brackets_give_the_same_eigenvalues_and_survive_wrong_bounds():
    """Bounds narrow the bisection (the gap of the stiff set-up brackets λ₀ and λ₁ by Ritz
    values): the eigenvalues stay within the tolerance of LAPACK's; a lower bound above the
    eigenvalue, or an upper one below it, is caught and that column bisected again."""
    from scipy.linalg import eigvalsh_tridiagonal

    from pde_popdyn.fast._column_kernels import top_eigenvalues_cols
    rng = np.random.default_rng(7)
    ncol, n = 23, 31
    diag = -rng.random((n, ncol)) * 10.0 ** rng.uniform(-1, 3, (1, ncol))
    off = rng.random((n - 1, ncol)) * 10.0 ** rng.uniform(-1, 2, (1, ncol))
    ev = np.array([eigvalsh_tridiagonal(diag[:, j], off[:, j])[::-1][:2] for j in range(ncol)])
    width = np.abs(diag).max(axis=0) + 2 * off.max(axis=0)
    good = ev - 0.1 * np.abs(ev) - 1.0
    bad = good.copy()
    bad[::3, 0] = ev[::3, 0] + 0.5 * np.abs(ev[::3, 0]) + 0.1     # above λ₀: does not hold
    bad[1::3, 1] = ev[1::3, 1] + 0.01 * np.abs(ev[1::3, 1]) + 1e-3  # above λ₁
    upper = np.where(np.arange(ncol) % 4 == 2, ev[:, 0] - 1.0, 0.0)  # below λ₀ on some
    for lower, up in ((good, np.zeros(ncol)), (bad, upper)):
        got = top_eigenvalues_cols(diag, off, lower=lower, upper=up)
        assert np.all(np.abs(got - ev) <= 3e-12 * width[:, None])


def _gth_per_column(up, down, kill, b, transpose):
    """The GTH recurrence column by column, as the kernel did before it ran the columns side
    by side (layout (ncol, ·))."""
    ncol, n = b.shape
    out = np.empty_like(b)
    for j in range(ncol):
        p = np.empty(n)
        s = kill[j, 0]
        p[0] = s + (up[j, 0] if n > 1 else 0.0)
        for i in range(1, n):
            s = kill[j, i] + down[j, i - 1] * s / p[i - 1]
            p[i] = s + (up[j, i] if i < n - 1 else 0.0)
        y = np.empty(n)
        if not transpose:
            y[0] = b[j, 0]
            for i in range(1, n):
                y[i] = b[j, i] + up[j, i - 1] * y[i - 1] / p[i - 1]
            out[j, n - 1] = y[n - 1] / p[n - 1]
            for i in range(n - 2, -1, -1):
                out[j, i] = (y[i] + down[j, i] * out[j, i + 1]) / p[i]
        else:
            y[0] = b[j, 0] / p[0]
            for i in range(1, n):
                y[i] = (b[j, i] + down[j, i - 1] * y[i - 1]) / p[i]
            out[j, n - 1] = y[n - 1]
            for i in range(n - 2, -1, -1):
                out[j, i] = y[i] + up[j, i] / p[i] * out[j, i + 1]
    return out


@pytest.mark.parametrize("n, ncol", [(1, 3), (2, 5), (23, 37)])
def test_gth_solve_of_all_columns_at_once_matches_the_per_column_recurrence(n, ncol):
    """The GTH kernel runs the columns side by side (vectorised): each column's arithmetic is
    the column-by-column recurrence's, so the solution agrees bit for bit, with rates over
    six decades and a killing vector that vanishes on most cells; both layouts agree."""
    from pde_popdyn.fast._column_kernels import gth_solve_cols
    rng = np.random.default_rng(n * ncol)
    scale = 10.0 ** rng.uniform(-3, 3, (ncol, 1))
    up = rng.random((ncol, n - 1)) * scale
    down = rng.random((ncol, n - 1)) * scale
    kill = rng.random((ncol, n)) * (rng.random((ncol, n)) < 0.3)
    kill[:, 0] += 1e-3
    b = rng.random((ncol, n))
    for transpose in (False, True):
        ref = _gth_per_column(up, down, kill, b, transpose)
        np.testing.assert_array_equal(gth_solve(up, down, kill, b, transpose), ref)
        np.testing.assert_array_equal(gth_solve_cols(up.T, down.T, kill.T, b.T, transpose),
                                      ref.T)


def test_dense_kernels_run_single_threaded():
    threadpoolctl = pytest.importorskip("threadpoolctl", reason="threadpoolctl limits BLAS")
    with blas_single_thread():
        blas = [p for p in threadpoolctl.threadpool_info() if p.get("user_api") == "blas"]
        assert blas and all(p["num_threads"] == 1 for p in blas)


# -- the rational branch (fast.rational) -----------------------------------------------------
def test_rational_nodes_approximate_exp_on_the_half_line():
    from pde_popdyn.fast.rational import exp_nodes, rational_exp
    z, gamma, r_inf, delta = exp_nodes()
    assert rational_exp(0.0, z, gamma, r_inf) == pytest.approx(1.0, abs=1e-14)  # top mode
    s = -np.concatenate([np.linspace(0, 3, 301), np.logspace(0.5, 12, 500)])
    err = np.abs(rational_exp(s, z, gamma, r_inf) - np.exp(s)).max()
    assert err <= delta * 1.05 and delta < 1e-13


@pytest.mark.parametrize("m", [4, 37])     # 37: the compiled loops' vector body and tail
def test_rational_factors_solve_the_shifted_systems(m):
    from pde_popdyn.fast._tridiag_kernels import RationalFactors
    rng = np.random.default_rng(0)
    n = 9
    up, down = rng.random((n - 1, m)), rng.random((n - 1, m))
    diag = -(np.r_[up, np.zeros((1, m))] + np.r_[np.zeros((1, m)), down]) - rng.random((n, m))
    shifts = np.array([[1.0 + 2.0j] * m, [0.5 - 0.1j] * m, [3.0 + 0j] * m])
    gamma = np.array([0.3 - 1.0j, 2.0 + 0.5j, -0.7 + 0j])
    x = rng.random((n, m))
    R = RationalFactors(up, down, diag, shifts, gamma)
    got = R.apply(x, np.zeros((n, m)))
    for j in range(m):
        T = np.diag(diag[:, j]) + np.diag(up[:, j], -1) + np.diag(down[:, j], 1)
        ref = sum((g * np.linalg.solve(T - s * np.eye(n), x[:, j])).real
                  for g, s in zip(gamma, shifts[:, j]))
        np.testing.assert_allclose(got[:, j], ref, rtol=1e-12, atol=1e-14)
    # the first applications eliminate pole by pole, later ones with the pivots of all poles
    # kept: the same arithmetic, bit for bit
    assert R.iv is None
    for _ in range(R.keep_after):
        np.testing.assert_array_equal(R.apply(x, np.zeros((n, m))), got)
    assert R.iv is not None
    np.testing.assert_array_equal(R.apply(x, np.zeros((n, m))), got)


def test_rational_factors_refuse_a_zero_pivot():
    """A shifted matrix singular at an elimination step (here T − s with T[0, 0] = s) raises
    instead of filling the result with inf and nan (the compiled division is unchecked)."""
    from pde_popdyn.fast._tridiag_kernels import RationalFactors, shifted_solves
    n, m = 5, 3
    sub = sup = np.ones((n - 1, m))
    diag = np.full((n, m), -3.0)
    diag[0, 1] = 2.0
    shifts = np.full((1, m), 2.0 + 0j)
    with pytest.raises(ZeroDivisionError, match="1 zero pivot"):
        RationalFactors(sub, sup, diag, shifts, np.ones(1)).apply(np.ones((n, m)),
                                                                  np.zeros((n, m)))
    with pytest.raises(ZeroDivisionError, match="zero pivot"):
        shifted_solves(sub.T, sup.T, np.zeros((m, n)), np.array([[0.0, 1.0]]), np.ones((m, n)))


@pytest.mark.parametrize("kind", ["fast", "selection"])
def test_rational_branch_near_equilibrium_needs_no_fallback(kind):
    """Near ρπ every column goes through the shifted solves (no uniformisation fallback) and
    matches expm; with d = 0 the Gibbs state is fixed and the column masses are exact."""
    op, F, grid = case(1e-3)
    d = 2.0 * F if kind == "selection" else None
    prop = ColumnPropagator(ColumnGenerator(op, d), 0.01, branch="rational")
    assert prop.summary["rational"] == grid.n_h
    near = op.gibbs * (1 + 0.3 * np.sin(grid.theta)[:, None]) * np.linspace(1, 2, grid.n_h)
    for k in (1, 2):
        E, _ = reference(op, d, 0.01 * k)
        out = prop.apply(near, k)
        ref = np.einsum("jil,lj->ij", E, near)
        assert np.abs(out - ref).max() <= 1e-11 * np.abs(ref).max()
    assert prop.rational_fallbacks == 0
    if d is None:
        rho_pi = op.gibbs * np.linspace(1, 2, grid.n_h)
        out = prop.apply(rho_pi, 2)
        np.testing.assert_allclose(out.sum(0), rho_pi.sum(0), rtol=1e-14)
        assert np.abs(out - rho_pi).max() <= 1e-13 * rho_pi.max()


def test_rational_branch_tails_and_far_inputs():
    """Round-off-sized content far in the tails of π is carried by the positive tail map and
    its mass recorded; a column with real mass far from π is advanced by uniformisation."""
    op, F, grid = case(1e-3)
    prop = ColumnPropagator(ColumnGenerator(op), 0.01, branch="rational")
    E, _ = reference(op, None, 0.01)
    base = op.gibbs * np.linspace(1, 2, grid.n_h)
    junk = base.copy()
    junk[0] += 1e-17 * base.sum(0)                  # at the lowest θ-cell, where π ≈ 1e-40
    out = prop.apply(junk, 1)
    assert prop.rational_fallbacks == 0
    assert 0 < prop.rational_tail_mass <= 1e-13 * base.sum(0).max() * grid.n_h
    ref = np.einsum("jil,lj->ij", E, junk)
    assert np.abs(out - ref).sum() <= 1e-11 * ref.sum()
    far = base.copy()
    far[0, 2] += 0.1 * base[:, 2].sum()            # 10% of a column's mass in that cell
    out = prop.apply(far, 1)
    assert prop.rational_fallbacks == 1
    ref = np.einsum("jil,lj->ij", E, far)
    assert np.abs(out - ref).max() <= 1e-9 * ref.max()
    assert out.min() >= 0.0


def test_shifted_perron_iteration_matches_the_plain_one():
    """The initial layer's Perron data by shifted inverse iteration (σ just above λ₀ from
    bisection) agree with the plain iteration run to round-off."""
    op, F, grid = case(0.1)
    gen = ColumnGenerator(op, 2.0 * F)
    cols = np.arange(grid.n_h)
    r, l, lam, ok = gen.perron(cols, tol=1e-14)
    rs, ls, lams, oks = gen.perron(cols, tol=1e-6, shifted=True)
    assert ok.all() and oks.all()
    assert np.abs(rs / r - 1).max() < 1e-5 and np.abs(ls / l - 1).max() < 1e-5
    assert np.abs(lams - lam).max() < 1e-6 * np.abs(lam).max()
    # λ₀ by bisection alone is the top eigenvalue of the symmetric form
    S = np.diag(-gen.out[:, 2]) + np.diag(np.sqrt(op.up[:, 2] * op.down[:, 2]), 1)
    S = S + np.triu(S, 1).T
    assert gen.top()[2] == pytest.approx(np.linalg.eigvalsh(S)[-1], abs=1e-8)


def test_rational_branch_measures_errors_against_the_decayed_output():
    """Strong selection over a long step shrinks some columns' output by e^{-60}: round-off
    left in their tails must then be judged against that output, not the input (else it
    dominates); the result matches uniformisation to round-off."""
    op, F, grid = case(0.1)
    d = 20.0 * F
    rng = np.random.default_rng(1)
    f = op.gibbs * np.linspace(1, 2, grid.n_h) + 1e-16 * rng.random(grid.shape)
    rat = ColumnPropagator(ColumnGenerator(op, d), 0.5, branch="rational")
    uni = ColumnPropagator(ColumnGenerator(op, d), 0.5, branch="uniformisation")
    for k in (1, 2):
        a, b = rat.apply(f, k), uni.apply(f, k)
        assert np.abs(a - b).sum() <= 1e-11 * np.abs(b).sum()


def test_rational_branch_is_linear_on_signed_inputs():
    """A zero-mass signed column (a transient mode) is propagated, not clipped away."""
    op, F, grid = case(1e-3)
    prop = ColumnPropagator(ColumnGenerator(op), 0.01, branch="rational")
    E, _ = reference(op, None, 0.01)
    f = op.gibbs * np.linspace(1, 2, grid.n_h)
    f[:, 2] = op.gibbs[:, 2] * (grid.theta - (grid.theta * op.gibbs[:, 2]).sum())
    out = prop.apply(f, 1)
    ref = np.einsum("jil,lj->ij", E, f)
    err = np.abs(out[:, 2] - ref[:, 2]).sum()
    # round-off-sized negatives in the far tails may be clipped (errors are measured against
    # the whole density: 1e-12 of the mean column mass); the mode itself is kept
    assert err <= 1e-11 * np.abs(f.sum(0)).mean() and err <= 1e-6 * np.abs(ref[:, 2]).sum()


def test_rational_branch_metastable_columns_use_a_kept_dense_propagator():
    """Mass in the other well of a double well fails the bound at every step; a column whose
    uniformisation series is long is then given its dense propagator once (kept)."""
    grid = pp.Grid(theta=(-3, 3, N), h=(-1, 1, 6))
    model = pp.Model(loss=lambda th, h: (th ** 2 - 4) ** 2 / 16 + 0.1 * h * th,
                     temperature=0.05, eps=1e-6)
    op = SGOperator.from_model(model, grid)
    prop = ColumnPropagator(ColumnGenerator(op), 0.01, branch="rational")
    f = np.zeros(grid.shape)
    f[grid.theta < 0] = 1.0                         # all mass in the left well
    for _ in range(3):
        out = prop.apply(f, 1)
    assert prop.fallback_builds == grid.n_h and prop.rational_fallbacks == 3 * grid.n_h
    E, _ = reference(op, None, 0.01)
    ref = np.einsum("jil,lj->ij", E, f)
    assert np.abs(out - ref).max() <= 1e-9 * ref.max()


def test_compiled_column_kernels_match_their_python_sources():
    """The rational branch's kernels (factor, apply, input split, finish), compiled and as
    plain Python, on the same data: identical results."""
    from pde_popdyn.fast import _tridiag_kernels as K
    if not K.HAVE_NUMBA:
        pytest.skip("numba is not installed: only the Python kernels exist")
    rng = np.random.default_rng(5)
    n, m, k = 11, 6, 3
    sub, sup = rng.random((n - 1, m)), rng.random((n - 1, m))
    diag = -(np.r_[sub, np.zeros((1, m))] + np.r_[np.zeros((1, m)), sup]) - rng.random((n, m))
    shifts = rng.normal(size=(k, m)) + 1j * rng.uniform(1, 3, (k, m))
    iv = K._rational_factor_nb(sub, sup, diag, shifts.real.copy(), shifts.imag.copy())
    assert iv[2] == 0                                   # no zero pivot
    gr, gi, x = rng.normal(size=k), rng.normal(size=k), rng.random((n, m))
    outs = []
    for f in (K._rational_apply_nb, K._rational_apply_py):
        out = np.ones((n, m))
        f(sub, sup, *iv[:2], gr, gi, x, out)
        outs.append(out)
    np.testing.assert_array_equal(*outs)
    pi = rng.random((n, m))
    pi /= pi.sum(axis=0)
    args = (x - 0.3 * pi, pi, K.inverse_gibbs(pi), rng.random(m) < 0.5, rng.random(m) + 0.5,
            float(m), 1e-3, 1e-2, np.stack([np.full(m, 1e-3), np.ones(m)]), 1e-3)
    split = [f(*args) for f in (K._rational_split_nb, K._rational_split_py)]
    for a, b in zip(*split):
        np.testing.assert_array_equal(a, b)
    y, z, base, zm, ok, scale, _ = split[0]
    fin = []
    for f in (K._rational_finish_nb, K._rational_finish_py):
        res = np.zeros(2)
        fin.append((f(x - 0.5, pi, z, base, zm, ok, args[3], args[4], np.ones(m), scale, 1e-2,
                      res), res))
    np.testing.assert_array_equal(fin[0][0][:, ok], fin[1][0][:, ok])
    assert ok.any()
    np.testing.assert_array_equal(fin[0][1], fin[1][1])
    iv_py = K._rational_factor_py(sub, sup, diag, shifts.real.copy(), shifts.imag.copy())
    for a, b in zip(iv[:2], iv_py[:2]):
        np.testing.assert_array_equal(a, b)
