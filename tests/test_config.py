"""Custom models, rules, grids and initial densities from a TOML config (issue 16, item 3)."""

import re
import sys
import textwrap

import numpy as np
import pytest

import pde_popdyn as pp
from pde_popdyn import cli
from pde_popdyn.config import build_run, load_config, make_rule

MODEL_PY = '''
import numpy as np
import pde_popdyn as pp


def make_model(temperature=0.05, kappa=1.0, eps=0.05):
    return pp.Model(loss=lambda th, h: 0.5 * (th - np.tanh(h)) ** 2,
                    fitness=lambda th, h: -(th - 0.3) ** 2, temperature=temperature,
                    eps=eps, selection=pp.Replicator(kappa), mutation=pp.Diffusion(0.01),
                    name="tanh")


def not_a_model():
    return 42


def bump(grid, centre=0.0):
    th, h = grid.mesh()
    return np.exp(-((th - centre) ** 2 + (h - centre) ** 2) / 0.1)
'''

RUN = '''
[grid]
theta = [-3.0, 3.0, 24]
h = [-2.0, 2.0, 16]
[initial]
mean = [0.0, -0.5]
cov = [0.05, 0.05]
[run]
t_final = 0.2
dt = 0.05
[output]
figures = false
'''


def write(tmp_path, text, name="c.toml"):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


@pytest.fixture()
def model_file(tmp_path):
    (tmp_path / "mymodel.py").write_text(MODEL_PY)
    return tmp_path


def test_run_a_model_from_a_file(model_file, capsys):
    cfg = write(model_file, 'model = "mymodel.py:make_model"\nname = "mine"\n'
                '[model_args]\nkappa = 2.0\n' + RUN)
    assert cli.main(["run", str(cfg), "--out", str(model_file / "out"), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "model 'mymodel.py:make_model'" in out and "Model(name='tanh'" in out
    assert "initial density: Gaussian, mean [0.0, -0.5]" in out and "E[h]" in out
    sol = pp.load(model_file / "out" / "mine.h5")
    assert sol.info["scheme"] == "fv" and sol.f.shape[1:] == (24, 16)
    # the same run by hand: the model function with kappa = 2, the grid, the Gaussian
    sys.path.insert(0, str(model_file))
    try:
        import mymodel
    finally:
        sys.path.remove(str(model_file))
    grid = pp.Grid(theta=(-3, 3, 24), h=(-2, 2, 16))
    model = mymodel.make_model(kappa=2.0)
    assert model.selection == pp.Replicator(2.0)
    direct = pp.solve(model, grid, pp.gaussian(grid, (0, -0.5), [0.05, 0.05]), 0.2, 0.05,
                      progress=False)
    np.testing.assert_allclose(sol.f[-1], direct.f[-1], rtol=0, atol=1e-14)


def test_model_from_a_module_and_rules_by_name(model_file, monkeypatch):
    monkeypatch.syspath_prepend(str(model_file))
    cfg = load_config(write(model_file, '''
        model = "mymodel:make_model"
        [selection]
        rule = "BoltzmannJump"
        rate = 2.0
        pressure = 3.0
        [mutation]
        rule = "GaussianJump"
        std = 0.1
        ''' + RUN))
    run = build_run(cfg)
    assert run.model.selection == pp.BoltzmannJump(2.0, 3.0)
    assert run.model.mutation == pp.GaussianJump(0.1)
    assert run.model.name == "tanh" and run.model.eps == 0.05 and run.problem is None
    cfg.selection = {"rule": "none"}
    cfg.mutation = {"rule": "none"}
    run = build_run(cfg)
    assert run.model.selection is None and run.model.mutation is None


def test_rules_override_a_preset_and_drop_its_theory(tmp_path):
    run = build_run(load_config(write(tmp_path, '''
        preset = "quadratic-bilevel"
        [selection]
        rule = "Truncation"
        rate = 1.0
        fraction = 0.25
        [mutation]
        rule = "GaussianJump"
        std = 0.05
        ''')))
    assert run.model.selection == pp.Truncation(1.0, 0.25)
    # the preset's closed forms assume replicator selection: no theory, and the file must not
    # claim the model is the preset (resume would rebuild the wrong one)
    assert run.problem is None and getattr(run.model, "preset", None) is None
    plain = build_run(load_config(write(tmp_path, 'preset = "quadratic-bilevel"\n', "p.toml")))
    assert plain.problem is not None and plain.model.preset["name"] == "quadratic-bilevel"


def test_rules_are_found_by_name_so_later_rules_need_no_cli_change(monkeypatch):
    from pde_popdyn.rules.base import MutationRule

    class Perturb(MutationRule):          # a rule added later: found by its base class
        def __init__(self, scale=0.1):
            if scale <= 0:
                raise ValueError(f"Perturb scale must be > 0, got {scale}")
            self.scale = scale

    monkeypatch.setattr(pp, "Perturb", Perturb, raising=False)
    monkeypatch.setattr(pp, "__all__", [*pp.__all__, "Perturb"])
    rule = make_rule({"rule": "Perturb", "scale": 0.3}, "mutation")
    assert isinstance(rule, Perturb) and rule.scale == 0.3
    with pytest.raises(ValueError, match=re.escape(
            "[mutation] rule = 'Perturb' with scale = -1: Perturb: Perturb scale must be > 0")):
        make_rule({"rule": "Perturb", "scale": -1}, "mutation")
    with pytest.raises(ValueError, match=r"\[mutation\] rule = 'Tournament': not a mutation "
                                         r"rule of pde_popdyn; they are .*Diffusion.*Perturb"):
        make_rule({"rule": "Tournament"}, "mutation")
    with pytest.raises(ValueError, match=r"not a selection rule of pde_popdyn; they are "
                                         r"BoltzmannJump, PBT, Replicator, Truncation \("):
        make_rule({"rule": "Perturb"}, "selection")        # a mutation rule, in [selection]
    assert isinstance(make_rule({"rule": "PBT", "interval": 0.5}, "selection"), pp.PBT)


@pytest.mark.parametrize("text,message", [
    ('model = "mymodel.py:nope"', "model = 'mymodel.py:nope': mymodel.py has no function 'nope'"),
    ('model = "missing.py:f"', "model = 'missing.py:f': the file"),
    ('model = "no_such_module_xyz:f"', "model = 'no_such_module_xyz:f': cannot import"),
    ('model = "mymodel.py"', "model = 'mymodel.py': expected 'package.module:function'"),
    ('model = "mymodel.py:not_a_model"', "returned int, not a pp.Model"),
    ('model = "mymodel.py:make_model"\n[model_args]\ncolour = 1',
     "[model_args]: make_model() does not take these arguments"),
    ('model = "mymodel.py:make_model"\n[model_args]\ntemperature = -1.0',
     "model = 'mymodel.py:make_model' with [model_args]: make_model(): temperature"),
    ('model = "mymodel.py:make_model"\n[selection]\nrule = "Replicator"\nrate = -1.0',
     "[selection] rule = 'Replicator' with rate = -1.0: Replicator:"),
    ('model = "mymodel.py:make_model"\n[mutation]\nrule = "GaussianJump"\nstd = 0.1',
     "[mutation] rule = 'GaussianJump': mutation=GaussianJump acts at copy events"),
    ('model = "mymodel.py:make_model"\n[selection]\nrule = "Grid"', "not a selection rule of pde_popdyn"),
])
def test_model_errors_name_the_key(model_file, text, message):
    cfg = load_config(write(model_file, text + "\n" + RUN))
    with pytest.raises(ValueError, match=re.escape(message)):
        build_run(cfg)


def test_grid_scheme_and_initial_from_the_config(model_file):
    base = 'model = "mymodel.py:make_model"\n'
    cfg = load_config(write(model_file, base + '''
        [grid]
        theta = [-3.0, 3.0]
        n_theta = 20
        h = [-2.0, 2.0, 12]
        [initial]
        function = "mymodel.py:bump"
        args = { centre = 0.2 }
        [run]
        scheme = "spectral"
        t_final = 0.1
        dt = 0.05
        '''))
    run = build_run(cfg)
    assert run.grid == pp.Grid(theta=(-3, 3, 20), h=(-2, 2, 12), nodes="spectral")
    th, h = run.grid.mesh()
    np.testing.assert_allclose(run.f0, np.exp(-((th - 0.2) ** 2 + (h - 0.2) ** 2) / 0.1))
    sol = pp.solve(run.model, run.grid, run.f0, cfg.t_final, cfg.dt, scheme=cfg.scheme,
                   progress=False)
    assert abs(sol.mass[-1] - 1) < 1e-12
    for text, message in [
        (base + "[grid]\nh = [-2.0, 2.0, 12]", "[grid] theta: required with model = ..."),
        (base + "[grid]\ntheta = [3.0, -3.0, 12]\nh = [-2.0, 2.0, 12]",
         "[grid] theta = [3.0, -3.0, 12], h = [-2.0, 2.0, 12]: theta"),
        (base + "[grid]\ntheta = [-3.0, 3.0]\nh = [-2.0, 2.0, 12]",
         "[grid] theta = [-3.0, 3.0]: give [low, high, cells] (or [low, high] and n_theta)"),
        (base + RUN.replace("mean = [0.0, -0.5]", "mean = [0.0]"),
         "[initial] mean = [0.0], cov = [0.05, 0.05]: mean must be 2 finite numbers"),
        (base + RUN.replace("cov = [0.05, 0.05]\n", ""), "[initial] cov: required"),
        (base + RUN.replace("mean = [0.0, -0.5]\ncov = [0.05, 0.05]",
                            'function = "mymodel.py:not_a_model"'),
         "[initial] function = 'mymodel.py:not_a_model': not_a_model() does not take these arguments"),
    ]:
        with pytest.raises(ValueError, match=re.escape(message)):
            build_run(load_config(write(model_file, text, "bad.toml")))


def test_command_line_overrides_are_named_in_errors(tmp_path, capsys):
    assert cli.main(["run", "--dt", "-1", "--out", str(tmp_path)]) == 2
    assert "--dt = -1.0: must be > 0" in capsys.readouterr().err
    cfg = write(tmp_path, "[grid]\nn_theta = 24\nn_h = 16\n")
    assert cli.main(["run", str(cfg), "--n-h", "2", "--out", str(tmp_path)]) == 2
    assert "--n-h = 2: must be an integer >= 3" in capsys.readouterr().err
