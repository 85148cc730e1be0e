"""Bad input: each case raises a ValueError/TypeError naming the argument."""

import numpy as np
import pytest

import pde_popdyn as pp


def loss(th, h):
    return 0.5 * (th - h) ** 2


def fit(th, h):
    return -(th - 0.5) ** 2


GRID = pp.Grid(theta=(-3, 3, 32), h=(-1, 1, 16))


def model(**kw):
    args = dict(loss=loss, fitness=fit, temperature=0.1, eps=0.1,
                selection=pp.Replicator(1.0), mutation=pp.Diffusion(0.01))
    args.update(kw)
    return pp.Model(**args)


def solve(m=None, f0=None, **kw):
    args = dict(t_final=0.1, dt=0.05, progress=False)
    args.update(kw)
    return pp.solve(m or model(), GRID, pp.uniform(GRID) if f0 is None else f0, **args)


@pytest.mark.parametrize("kw,exc,match", [
    (dict(temperature=0.0), ValueError, "temperature must be > 0"),
    (dict(temperature=-1.0), ValueError, "temperature must be > 0"),
    (dict(temperature=np.inf), ValueError, "temperature must be finite"),
    (dict(temperature="hot"), TypeError, "temperature"),
    (dict(eps=0.0), ValueError, "eps must be > 0"),
    (dict(eps=-1e-3), ValueError, "eps must be > 0"),
    (dict(eps=np.nan), ValueError, "eps must be finite"),
    (dict(mobility=0), ValueError, "mobility must be > 0"),
    (dict(loss=3.0), TypeError, "loss must be a callable"),
    (dict(fitness=None), ValueError, "fitness is None but selection"),
    (dict(selection="replicator"), TypeError, "selection must be"),
    (dict(mutation=0.1), TypeError, "mutation must be"),
])
def test_model_rejects(kw, exc, match):
    with pytest.raises(exc, match=match):
        model(**kw)


@pytest.mark.parametrize("make,match", [
    (lambda: pp.Replicator(-1.0), "Replicator rate must be >= 0"),
    (lambda: pp.Diffusion(-0.1), "Diffusion coefficient must be >= 0"),
    (lambda: pp.Diffusion(np.nan), "Diffusion coefficient must be finite"),
])
def test_rules_reject(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_callable_temperature_checked_on_the_grid():
    with pytest.raises(ValueError, match=r"temperature\(h\) must be > 0.*h="):
        solve(model(temperature=lambda h: h))
    with pytest.raises(ValueError, match="temperature returned a non-finite"):
        solve(model(temperature=lambda h: 1 / (h - h)))


def test_loss_shape_and_nan_errors():
    with pytest.raises(ValueError, match="loss returned an array of shape"):
        solve(model(loss=lambda th, h: np.ones(7)))
    with pytest.raises(ValueError, match="loss returned a non-finite value"):
        solve(model(loss=lambda th, h: np.where(th > 0, np.nan, th ** 2)))
    with pytest.raises(ValueError, match="fitness returned a non-finite value"):
        solve(model(fitness=lambda th, h: np.log(th)))
    with pytest.raises(TypeError, match="loss raised .*vectorised"):
        solve(model(loss=lambda th, h: float(th)))


@pytest.mark.parametrize("f0,match", [
    (np.ones((5, 5)), r"f0 has shape \(5, 5\) but the grid needs \(32, 16\)"),
    (np.full((32, 16), np.nan), "f0 contains 512 NaN or inf"),
    (np.where(np.arange(32)[:, None] > 3, 1.0, -1.0) * np.ones((32, 16)), "negative values"),
    (np.zeros((32, 16)), "f0 has zero mass"),
    ("abc", "f0 must be an array"),
])
def test_bad_density(f0, match):
    with pytest.raises((ValueError, TypeError), match=match):
        solve(f0=f0)


@pytest.mark.parametrize("kw,match", [
    (dict(t_final=-1.0), "t_final must be >= 0"),
    (dict(t_final=np.inf), "t_final must be finite"),
    (dict(dt=0.0), "dt must be > 0"),
    (dict(dt=-0.1), "dt must be > 0"),
    (dict(splitting="yoshida"), "splitting='yoshida' is not known"),
    (dict(scheme="dg"), "scheme='dg' is not known"),
    (dict(save_every=0), "save_every must be a positive integer"),
])
def test_bad_run_arguments(kw, match):
    with pytest.raises(ValueError, match=match):
        solve(**kw)


def test_wrong_types_for_model_and_grid():
    with pytest.raises(TypeError, match="model must be a pp.Model"):
        pp.solve("m", GRID, pp.uniform(GRID), 1.0, 0.1)
    with pytest.raises(TypeError, match="grid must be a pp.Grid"):
        pp.solve(model(), (1, 2), pp.uniform(GRID), 1.0, 0.1)


def test_gibbs_weight_underflow_suggests_narrower_box():
    """A temperature so low that exp(−L/T) lives inside one cell."""
    with pytest.raises(ValueError, match="underflows.*narrower theta-box or more theta-cells"):
        solve(model(temperature=1e-6))


def test_gibbs_weight_underflow_between_cells():
    with pytest.raises(ValueError, match="underflows between neighbouring cells"):
        solve(model(loss=lambda th, h: 1e4 * (th - h) ** 4, temperature=0.01))


def test_gibbs_weight_growing_at_the_edge_suggests_wider_box():
    """L decreasing toward the box edge: the Gibbs weight piles up (overflows) there."""
    with pytest.raises(ValueError, match="grows toward the upper edge.*wider theta-box"):
        solve(model(loss=lambda th, h: -th))
    # the same loss is accepted when the truncated Gibbs state is meant
    sol = solve(model(loss=lambda th, h: -th), check_gibbs=False)
    assert np.isfinite(sol.f).all()
