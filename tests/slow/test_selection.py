import numpy as np

from pde_popdyn.slow.selection import ReplicatorStep


def test_replicator_step_is_exact_and_composes():
    rng = np.random.default_rng(0)
    f = rng.random((10, 7))
    F = rng.normal(size=(10, 7))
    step = ReplicatorStep(F, rate=2.0, weights=0.1)
    g = step(f, 0.3)
    expected = f * np.exp(0.6 * F)
    expected *= (f.sum()) / expected.sum()
    np.testing.assert_allclose(g, expected, rtol=1e-13)
    np.testing.assert_allclose(step(step(f, 0.1), 0.2), g, rtol=1e-13)   # semigroup
    assert abs(g.sum() - f.sum()) < 1e-13


def test_replicator_log_domain_no_overflow_or_total_underflow():
    f = np.zeros((5, 3))
    f[4, 2] = 1.0                      # all mass where the fitness is lowest
    F = np.full((5, 3), 1e4)
    F[4, 2] = -1e4
    g = ReplicatorStep(F, rate=10.0, weights=1.0)(f, 100.0)
    assert np.all(np.isfinite(g)) and g.sum() == 1.0 and g[4, 2] == 1.0
