"""Issue 7's fitted orders, asserted on small settings with the benchmark studies' own code:
ε → 0 at order 1 ± 0.15 (the other orders are asserted in tests/test_convergence.py,
tests/test_solve.py and tests/test_particles.py)."""

from benchmarks.study_epsilon import _problems, _run_problem


def test_joint_h_marginal_approaches_reduced_at_order_one_in_eps():
    out = _run_problem(_problems()["gaussian"], [0.1, 0.05, 0.025, 0.0125])
    assert abs(out["slope"] - 1) <= 0.15, (out["slope"], out["err_extrapolated"])
