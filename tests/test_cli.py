"""The pde-popdyn command (issue 6): every subcommand end to end in a subprocess."""

import re
import subprocess
from pathlib import Path
import sys

import h5py
import numpy as np
import pytest

import pde_popdyn as pp
from pde_popdyn import cli

SMALL = """
preset = "quadratic-bilevel"
name = "small"
[params]
eps = 0.05
[grid]
n_theta = 24
n_h = 16
[run]
t_final = 0.5
dt = 0.03125
save_every = 2
[output]
animation = false
"""


def pde_popdyn(*args, cwd=None):
    proc = subprocess.run([sys.executable, "-m", "pde_popdyn.cli", *map(str, args)],
                          capture_output=True, text=True, cwd=cwd, timeout=300)
    return proc.returncode, proc.stdout, proc.stderr


@pytest.fixture(scope="module")
def small_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("cli")
    config = tmp / "small.toml"
    config.write_text(SMALL)
    code, out, err = pde_popdyn("run", config, "--out", tmp / "out", "--quiet")
    assert code == 0, err
    # a pristine copy for the info/resume/plot test (the overwrite test replaces the original)
    (tmp / "pristine.h5").write_bytes((tmp / "out" / "small.h5").read_bytes())
    return tmp, config, out


def test_run_with_config_writes_hdf5_figures_and_summary(small_run):
    tmp, _, out = small_run
    h5 = tmp / "out" / "small.h5"
    assert "E[h] exact" in out and "E[h] ε→0" in out  # the theory beside the PDE
    assert f"snapshots written to {h5}" in out
    for name in ("small.png", "small_density.png", "small_fitness.png"):
        assert (tmp / "out" / name).stat().st_size > 1000
    assert not (tmp / "out" / "small_rho.gif").exists()  # animation = false
    sol = pp.load(h5)
    assert sol.f.shape == (9, 24, 16) and sol.t[-1] == 0.5
    assert sol.model.preset["params"]["eps"] == 0.05


def test_run_refuses_to_overwrite_without_force(small_run):
    tmp, config, _ = small_run
    h5 = tmp / "out" / "small.h5"
    before = h5.read_bytes()
    code, _, err = pde_popdyn("run", config, "--out", tmp / "out", "--quiet")
    assert code == 2 and "already exists" in err and "--force" in err
    assert "Traceback" not in err
    assert h5.read_bytes() == before
    quick = tmp / "nofig.toml"
    quick.write_text(SMALL.replace("animation = false", "figures = false"))
    code, _, err = pde_popdyn("run", quick, "--out", tmp / "out", "--quiet", "--force",
                              "--t-final", "0.25")
    assert code == 0, err
    assert pp.load(h5).t[-1] == 0.25


def test_ctrl_c_after_the_run_or_in_another_command_exits_130_without_a_traceback(
        small_run, tmp_path, monkeypatch, capsys):
    """A Ctrl-C that lands after the run has finished (in its summary) keeps the complete file
    and says so; one in another command (here `info`) just stops it: exit 130, one line, no
    traceback."""
    tmp, _, _ = small_run
    quick = tmp_path / "quick.toml"
    quick.write_text(SMALL.replace("animation = false", "figures = false"))

    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "print_summary", interrupt)
    code = cli.main(["run", str(quick), "--out", str(tmp_path / "out"), "--quiet"])
    err = capsys.readouterr().err
    h5 = tmp_path / "out" / "small.h5"
    assert code == 130 and "interrupted after the run" in err and "is complete" in err
    assert "Traceback" not in err
    sol = pp.load(h5)
    assert sol.t[-1] == 0.5 and sol.info["file_attrs"]["status"] == "complete"
    # elsewhere (loading a file, drawing figures) main() stops with one line
    monkeypatch.setattr(cli, "_dispatch", interrupt)
    assert cli.main(["info", str(h5)]) == 130
    assert capsys.readouterr().err.strip() == "pde-popdyn: interrupted"


def test_info_resume_and_plot(small_run, tmp_path):
    h5 = tmp_path / "small.h5"
    h5.write_bytes((small_run[0] / "pristine.h5").read_bytes())

    code, out, err = pde_popdyn("info", h5)
    assert code == 0, err
    assert "joint snapshots, status 'complete', closed cleanly" in out
    assert "9 snapshots" in out and "quadratic-bilevel" in out
    assert "density          (time, theta, h) (9, 24, 16) float64, gzip" in out
    assert "mean_h" in out

    code, out, err = pde_popdyn("resume", h5, "--t-final", 1.0, "--quiet")
    assert code == 0, err
    assert "to t = 1: 8 new snapshots (17 in all)" in out
    back = pp.load(h5)
    assert len(back.t) == 17
    direct = pp.solve(back.model, back.grid, back.f[0], 1.0, 0.03125, save_every=2,
                      progress=False)
    assert np.abs(back.f[-1] - direct.f[-1]).max() <= 1e-13

    # the GIF is tested in test_plot; skipping it here keeps this test fast
    code, out, err = pde_popdyn("plot", h5, "--out", tmp_path / "figs", "--no-animation")
    assert code == 0, err
    for name in ("small.png", "small_density.png", "small_fitness.png"):
        assert (tmp_path / "figs" / name).stat().st_size > 1000, name
        assert f"figure written to {tmp_path / 'figs' / name}" in out
    assert not (tmp_path / "figs" / "small_rho.gif").exists()


def test_presets_and_bad_input(tmp_path, capsys):
    code, out, _ = pde_popdyn("presets", "--verbose")
    assert code == 0
    assert out.startswith("quadratic-bilevel") and "\ngaussian" in out and "kappa = 4.0" in out
    assert cli.main(["info", str(tmp_path / "missing.h5")]) == 2
    err = capsys.readouterr().err
    assert "no such snapshot file" in err and "Traceback" not in err
    bad = tmp_path / "bad.toml"
    bad.write_text(SMALL.replace("t_final", "tfinal"))
    assert cli.main(["run", str(bad), "--out", str(tmp_path)]) == 2
    assert "[run] tfinal: unknown key" in capsys.readouterr().err


# -- in-process: config parsing, help, default command --------------------------------------
@pytest.mark.parametrize("text,message", [
    ("colour = 'red'", "colour: unknown key; the keys at the top level are model, name, preset"),
    ("[grid]\nn_x = 3", "[grid] n_x: unknown key"),
    ("[plots]\nx = 1", "[plots]: unknown section"),
    ("[params]\nkapa = 1.0", "[params]: parameter 'kapa' is not known"),
    ("[run]\ndt = 'small'", "[run] dt = 'small': must be of type int or float"),
    ("[run]\ndt = -1", "[run] dt = -1: must be > 0"),
    ("[run]\nt_final = -2.0", "[run] t_final = -2.0: must be a finite number >= 0"),
    ("[run]\nsave_every = 0", "[run] save_every = 0: must be a positive integer"),
    ("[run]\nsplitting = 'euler'", "[run] splitting = 'euler': must be one of strang, lie, exact"),
    ("[run]\nscheme = 'fd'", "[run] scheme = 'fd': must be one of fv, spectral"),
    ("[run]\nintegrator = 'rk4'",
     "[run] integrator = 'rk4': must be one of ap, split, uniformisation"),
    ("[grid]\nn_theta = 2", "[grid] n_theta = 2: must be an integer >= 3"),
    ("[grid]\nnodes = 'gauss'", "[grid] nodes = 'gauss': must be 'cells' or 'spectral'"),
    ("[output]\nanimation = 'avi'", "[output] animation = 'avi': must be true, false, 'gif' or 'mp4'"),
    ("preset = 'gaussian'\nmodel = 'm.py:f'", "preset = 'gaussian' and model = 'm.py:f': give one"),
    ("[model_args]\nx = 1", "[model_args]: sets the arguments of model ="),
    ("model = 'm.py:f'\n[params]\nx = 1", "[params]: sets a preset's parameters"),
    ("[selection]\nrate = 1.0", "[selection] rule = None: give the rule's class name"),
    ("[initial]\nkind = 'box'", "[initial] kind = 'box': must be"),
    ("preset = 'nope'", "preset 'nope' is not known"),
    ("[run\n", "not valid TOML"),
])
def test_config_errors_name_the_key(tmp_path, text, message):
    path = tmp_path / "c.toml"
    path.write_text(text)
    with pytest.raises(ValueError, match=re.escape(message)):
        cli.load_config(path)


def test_config_maps_to_preset_grid_and_run(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text(SMALL)
    cfg = cli.load_config(path)
    assert (cfg.preset, cfg.name, cfg.n_theta, cfg.n_h, cfg.t_final, cfg.dt, cfg.save_every,
            cfg.animation) == ("quadratic-bilevel", "small", 24, 16, 0.5, 0.03125, 2, False)
    assert cfg.params == {"eps": 0.05}


def test_config_integrator_reaches_the_solver(tmp_path):
    """[run] integrator = "uniformisation" runs the unsplit integrator, and the file says so."""
    import h5py

    config = tmp_path / "u.toml"
    config.write_text(SMALL.replace("save_every = 2\n", "save_every = 2\nintegrator = "
                                    "\"uniformisation\"\n").replace('name = "small"',
                                                                     'name = "u"'))
    assert cli.load_config(config).integrator == "uniformisation"
    code = cli.main(["run", str(config), "--out", str(tmp_path / "out"), "--quiet"])
    assert code == 0
    with h5py.File(tmp_path / "out" / "u.h5", "r") as f:
        assert f.attrs["integrator"] == "uniformisation"


@pytest.mark.parametrize("command", [[], ["run"], ["resume"], ["plot"], ["info"], ["presets"]])
def test_help_is_useful(command, capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main([*command, "--help"] if command else ["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert "usage: pde-popdyn" in out
    if not command:
        for sub in ("run", "resume", "plot", "info", "presets"):
            assert sub in out


def test_no_arguments_runs_the_built_in_example(monkeypatch):
    seen = {}

    def fake_run(args):
        seen.update(vars(args))
        return 0
    parser = cli.build_parser
    monkeypatch.setattr(cli, "build_parser", lambda: _with_run(parser(), fake_run))
    assert cli.main([]) == 0
    assert seen["config"] is None and seen["out"] == "pde_popdyn_output"
    assert cli.main(["--quiet"]) == 0 and seen["quiet"] is True


def _with_run(parser, func):
    for action in parser._subparsers._group_actions:
        action.choices["run"].set_defaults(func=func)
    return parser


@pytest.mark.slow
def test_default_command_end_to_end(tmp_path):
    """The README's main-job command, as a subprocess (about a minute on a loaded machine)."""
    proc = subprocess.run([sys.executable, "-m", "pde_popdyn.cli", "--quiet"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr
    for name in ("example.h5", "example.png", "example_rho.gif"):
        assert (tmp_path / "pde_popdyn_output" / name).exists()


def _installed_copy(tmp_path):
    """The package as `pip install .` lays it out: pde_popdyn/ without the benchmarks/."""
    import shutil
    site = tmp_path / "site"
    shutil.copytree(Path(cli.__file__).parent, site / "pde_popdyn",
                    ignore=shutil.ignore_patterns("__pycache__"))
    return site


def test_bench_help_works_with_and_without_the_benchmarks(tmp_path):
    """Issue 10: `pde-popdyn bench --help` exited 2 with an error after `pip install .`."""
    import os
    site = _installed_copy(tmp_path)
    env = {**os.environ, "PYTHONPATH": str(site)}
    for flag in ("--help", "-h"):
        proc = subprocess.run([sys.executable, "-m", "pde_popdyn.cli", "bench", flag],
                              capture_output=True, text=True, cwd=tmp_path, env=env,
                              timeout=120)
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.startswith("usage: pde-popdyn bench")
        assert "checkout" in proc.stdout and "Traceback" not in proc.stderr
    proc = subprocess.run([sys.executable, "-m", "pde_popdyn.cli", "bench", "--quick"],
                          capture_output=True, text=True, cwd=tmp_path, env=env, timeout=120)
    assert proc.returncode == 2 and "not part of the installed package" in proc.stderr
    # from the checkout the benchmarks' own options are listed, under this command's name
    code, out, err = pde_popdyn("bench", "--help")
    assert code == 0, err
    assert out.startswith("usage: pde-popdyn bench") and "--quick" in out and "--list" in out


# -- what the summary and the figures say (issue 16, item 5) ------------------------------------
def test_headline_says_whether_the_mean_reached_hstar():
    from pde_popdyn.report import headline
    assert headline([-1.0, 0.499], 0.5, 5.0).endswith("climbs to h* = argmax F̄ = 0.5")
    short = headline([-1.0, -0.2], 0.5, 1.0)
    assert "climbs toward h* = argmax F̄ = 0.5: -1 → -0.2 by t = 1, still 0.7 short" in short
    assert "moves from -1 to -1.5" in headline([-1.0, -1.5], 0.5, 1.0)
    assert "(1, 2)" in headline(np.array([[0.0, 0.0], [1.0, 2.0]]), (1.0, 2.0), 3.0)


def test_example_figure_title_and_variance_note(small_run, monkeypatch, tmp_path, capsys):
    """The small run stops at t = 0.5, far short of h*: the title must say so. The summary
    explains the Δh²/12 offset of Var[h] and its numbers hold."""
    import matplotlib.figure
    tmp, config, out = small_run
    assert "Var[h] PDE is the variance of the cell averages" in out
    sol = pp.load(tmp / "pristine.h5")
    offset = float(re.search(r"Δh²/12 = ([0-9.e+-]+)", out).group(1))
    assert offset == pytest.approx(sol.grid.dh ** 2 / 12, rel=1e-2)
    dev = float(re.search(r"max \|Var\[h\] PDE − Δh²/12 − Var exact\| = ([0-9.e+-]+)",
                          out).group(1))
    mu, S = cli._problem_of(sol).exact(sol.t)
    assert dev == pytest.approx(np.abs(sol.var_h - offset - S[:, 1, 1]).max(), rel=2e-2)
    # at t = 0 the offset is the whole difference (the data are the exact cell averages)
    first = float(re.search(r"Var\[h\] PDE − Var exact = ([0-9.e+-]+)", out).group(1))
    assert first == pytest.approx(sol.var_h[0] - S[0, 1, 1], rel=2e-2)
    assert first == pytest.approx(offset, rel=0.02)
    titles = []
    real = matplotlib.figure.Figure.savefig

    def spy(fig, *a, **k):
        if fig._suptitle is not None:
            titles.append(fig._suptitle.get_text())
        return real(fig, *a, **k)
    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", spy)
    assert cli.main(["plot", str(tmp / "pristine.h5"), "--out", str(tmp_path),
                     "--no-animation"]) == 0
    assert len(titles) == 1 and "climbs toward h* = argmax F̄ = 0.5" in titles[0]
    assert "short" in titles[0] and "climbs to h" not in titles[0]
