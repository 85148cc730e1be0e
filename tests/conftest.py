"""Test configuration: numpy floating-point errors raise, matplotlib draws off-screen."""

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pytest  # noqa: E402


@pytest.fixture(autouse=True)
def _numpy_errors_raise():
    old = np.seterr(all="raise", under="ignore")
    yield
    np.seterr(**old)
