"""The ``pde-popdyn`` command.

::

    pde-popdyn [run] [CONFIG.toml] [--out DIR] [--force] [--quiet]   solve; write HDF5 + figures
    pde-popdyn resume FILE --t-final T                                continue a run in its file
    pde-popdyn plot FILE [--out DIR]                                  figures from a snapshot file
    pde-popdyn info FILE                                              summarise a snapshot file
    pde-popdyn presets [--verbose]                                    list the built-in models
    pde-popdyn bench [NAME ...] [--quick] [--out DIR] [--list]        benchmarks (from a checkout)

Without a command (or with only options) it runs the built-in example. A config is TOML: a
built-in model with its parameters, or a model of your own, with the grid, the initial
density, the run and the output::

    preset = "quadratic-bilevel"   # a built-in model (pde-popdyn presets), or
    # model = "mymodels.py:make_model" with its keyword arguments in [model_args]
    name = "example"               # stem of the output files: example.h5, example.png, ...
    [params]                       # the preset's parameters, e.g.
    kappa = 4.0
    eps = 0.01
    [grid]
    n_theta = 128
    n_h = 96
    [run]
    t_final = 5.0
    dt = 0.02
    save_every = 2                 # steps between snapshots (default: about 100 snapshots)
    splitting = "strang"
    [output]
    figures = true
    animation = true

Every key is described in :mod:`pde_popdyn.config` (``[selection]``/``[mutation]`` rules by
class name, ``[initial]`` densities, boxes in ``[grid]``, ``scheme``). An unknown key is an
error naming it, and so is a bad value (``[run] dt = -1: must be > 0``). Command-line options
override the config.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

from ._version import __version__
from .config import RunConfig, build_run, check, config_from_dict, load_config  # noqa: F401  (re-exported)
from .presets import PRESETS, build, preset_parameters
from .report import make_figures, print_summary  # noqa: F401


def _problem_of(sol):
    preset = getattr(sol.model, "preset", None) if sol.model is not None else None
    return build(preset["name"], preset.get("params")) if isinstance(preset, dict) else None


# -- commands --------------------------------------------------------------------------------
_OVERRIDES = (("preset", "preset", "--preset"), ("t_final", "t_final", "--t-final"),
              ("dt", "dt", "--dt"), ("n_theta", "n_theta", "--n-theta"),
              ("n_h", "n_h", "--n-h"), ("save_every", "save_every", "--save-every"))


def _config(args: argparse.Namespace) -> RunConfig:
    """The config file (or the defaults) with the command-line options applied and checked."""
    cfg = load_config(args.config) if args.config else RunConfig()
    for opt, name, flag in _OVERRIDES:
        value = getattr(args, opt)
        if value is not None:
            setattr(cfg, name, value)
            cfg.origin[name] = flag
            if name == "preset":
                cfg.model, cfg.model_args = None, {}
    check(cfg)
    return cfg


def _run(args: argparse.Namespace) -> int:
    from .io import check_writable
    from .solve import solve

    cfg = _config(args)
    run = build_run(cfg)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    h5 = check_writable(out / f"{cfg.name}.h5", args.force)
    t0 = time.perf_counter()
    try:
        sol = solve(run.model, run.grid, run.f0, cfg.t_final, cfg.dt,
                    splitting=cfg.splitting, integrator=cfg.integrator, scheme=cfg.scheme,
                    save_every=cfg.save_every,
                    progress=False if args.quiet else None, output=h5, overwrite=args.force)
    except KeyboardInterrupt:
        print(f"\npde-popdyn: interrupted; {h5} holds the snapshots written so far "
              f"(continue with: pde-popdyn resume {h5} --t-final {cfg.t_final:g})",
              file=sys.stderr)
        return 130
    wall = time.perf_counter() - t0
    try:
        print_summary(sol, run, wall)
        print(f"  snapshots written to {h5} ({len(sol.t)} snapshots)")
        if cfg.figures:
            for path in make_figures(sol, run.problem, out, cfg.name, animation=cfg.animation):
                print(f"  figure written to {path}")
    except KeyboardInterrupt:
        # the run had finished and its file is closed: only the report is cut short
        print(f"\npde-popdyn: interrupted after the run; {h5} is complete "
              f"({len(sol.t)} snapshots); draw its figures with: pde-popdyn plot {h5}",
              file=sys.stderr)
        return 130
    return 0


def _resume(args: argparse.Namespace) -> int:
    from .io import inspect
    from .resume import resume
    before = inspect(args.file)
    t0 = time.perf_counter()
    sol = resume(args.file, args.t_final, save_every=args.save_every,
                 progress=False if args.quiet else None)
    wall = time.perf_counter() - t0
    n_new = len(sol.t) - before["n_snapshots"]
    print(f"resumed {args.file} from t = {before['t_last']:g} to t = {sol.t[-1]:g}: "
          f"{n_new} new snapshots ({len(sol.t)} in all) in {wall:.2f} s")
    print(f"  E[h] = {sol.mean_h[-1]:.6g}, Var[h] = {sol.var_h[-1]:.6g}, "
          f"mass = {sol.mass[-1]:.15g}")
    return 0


def _plot(args: argparse.Namespace) -> int:
    from .loading import load
    sol = load(args.file)
    path = Path(args.file)
    out = Path(args.out) if args.out else path.parent
    prob = _problem_of(sol) if np.ndim(sol.f) == 3 and sol.grid.ndim_h == 1 else None
    for p in make_figures(sol, prob, out, path.stem, animation=not args.no_animation):
        print(f"figure written to {p}")
    return 0


def _info(args: argparse.Namespace) -> int:
    from .io import inspect
    s = inspect(args.file)
    a = s["attrs"]
    state = "closed cleanly" if s["closed_cleanly"] else \
        "NOT closed: its writer was killed or is still running (pp.io.repair fixes a killed one)"
    print(f"{s['path']}: pde_popdyn {a.get('kind')} snapshots, status {a.get('status')!r}, "
          f"{state}")
    print(f"  {s['n_snapshots']} snapshots, t from {s['t_first']} to {s['t_last']}; "
          f"{s['size_bytes'] / 1e6:.3g} MB; written by pde_popdyn "
          f"{a.get('pde_popdyn_version')}, created {a.get('created')}")
    model = a.get("model") or {}
    preset = a.get("preset")
    print(f"  model: {model.get('name')!r}, eps = {model.get('eps')}, "
          f"selection {model.get('selection')}, mutation {model.get('mutation')}")
    print(f"  preset: {preset['name'] + ' (rebuilt on load/resume)' if preset else 'none (a user-defined model: pass model= to resume)'}")
    print(f"  grid: {a.get('grid')}")
    integ = f", integrator {a['integrator']!r}" if a.get("integrator") else ""
    print(f"  scheme {a.get('scheme')!r}, splitting {a.get('splitting')!r}{integ}, "
          f"dt = {a.get('dt')}, "
          f"save_every = {a.get('save_every')}, seed = {a.get('seed')}")
    dims = ", ".join(f"{k} = {v}" for k, v in s["dimensions"].items())
    print(f"  dimensions: {dims}")
    print("  variables:")
    for name, v in s["variables"].items():
        comp = f", {v['compression']}" if v["compression"] else ""
        print(f"    {name:16s} ({', '.join(v['dims'])}) {tuple(v['shape'])} {v['dtype']}{comp}")
    if s["last"]:
        print("  diagnostics (first -> last):")
        for name, last in s["last"].items():
            print(f"    {name:16s} {s['first'][name]: .6g} -> {last: .6g}")
    return 0


def _presets(args: argparse.Namespace) -> int:
    for name, make in PRESETS.items():
        doc = (make.__doc__ or "").strip().splitlines()[0]
        print(f"{name:20s} {doc}")
        if args.verbose:
            params = preset_parameters(name)
            print("    " + ", ".join(f"{k} = {v}" for k, v in params.items()))
    return 0


BENCH_HELP = """usage: pde-popdyn bench [NAME ...] [--quick] [--out DIR] [--list]

Run pde_popdyn's convergence and performance studies (the same as 'python -m benchmarks'
from the repository root): JSON results and figures in benchmarks/results/, and
benchmarks/RESULTS.md regenerated.

The benchmarks live in the repository's benchmarks/ folder, which 'pip install .' does not
install: run this from a checkout installed with 'pip install -e .' (then
'pde-popdyn bench --help' lists the studies' options), or 'python -m benchmarks' from the
repository root.
"""


def _benchmarks_root() -> Path | None:
    """The checkout holding this package and its benchmarks/, or None (an installed copy)."""
    root = Path(__file__).resolve().parent.parent
    return root if (root / "benchmarks" / "__init__.py").is_file() else None


def _bench(argv: list[str]) -> int:
    """``pde-popdyn bench ...`` = ``python -m benchmarks ...`` (same arguments and exit status).

    The benchmarks live in the repository's ``benchmarks/`` package, which is not installed
    with pde_popdyn, so this works from a checkout (an editable install) only; ``--help``
    works everywhere.
    """
    root = _benchmarks_root()
    if root is None:
        if any(a in ("-h", "--help") for a in argv):
            print(BENCH_HELP, end="")
            return 0
        print("pde-popdyn bench: error: the benchmarks are not part of the installed package; "
              "run this from a checkout of the pde_popdyn repository installed with "
              "'pip install -e .', or run 'python -m benchmarks' from the repository root",
              file=sys.stderr)
        return 2
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
    import benchmarks
    if Path(benchmarks.__file__).resolve().parent != root / "benchmarks":
        print(f"pde-popdyn bench: error: 'import benchmarks' found {benchmarks.__file__}, not "
              f"the repository's {root / 'benchmarks'}; run 'python -m benchmarks' from the "
              f"repository root", file=sys.stderr)
        return 2
    return int(benchmarks.main(argv, prog="pde-popdyn bench"))


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="pde-popdyn",
        description="Mean-field solver for population-based training. Without a command, "
                    "runs the built-in example (= pde-popdyn run).",
        epilog="Run 'pde-popdyn COMMAND --help' for the options of a command.")
    p.add_argument("--version", action="version", version=f"pde-popdyn {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    r = sub.add_parser(
        "run", help="solve a preset (default: the built-in example); write HDF5 and figures",
        description="Solve a built-in preset, print E[h] against the theory, write the "
                    "snapshots to OUT/NAME.h5 and figures to OUT/NAME*.png and a GIF. "
                    "CONFIG.toml sets the preset, its parameters, the grid and the run "
                    "(format: see the pde_popdyn.cli module docstring); options override it.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    r.add_argument("config", nargs="?", metavar="CONFIG.toml", help="TOML run configuration")
    r.add_argument("--out", default="pde_popdyn_output", help="output folder")
    r.add_argument("--force", action="store_true",
                   help="overwrite an existing snapshot file (otherwise an error)")
    r.add_argument("--quiet", action="store_true", help="no progress bar")
    r.add_argument("--preset", choices=sorted(PRESETS), help="built-in model "
                   "(default: the config's, else quadratic-bilevel)")
    r.add_argument("--t-final", type=float, help="final time (default: config, else 5)")
    r.add_argument("--dt", type=float, help="time step (default: config, else 0.02)")
    r.add_argument("--n-theta", type=int, help="θ cells (default: config, else 128)")
    r.add_argument("--n-h", type=int, help="h cells (default: config, else 96)")
    r.add_argument("--save-every", type=int, help="steps between snapshots "
                   "(default: config, else about 100 snapshots)")
    r.set_defaults(func=_run)

    s = sub.add_parser("resume", help="continue a run stored in a snapshot file",
                       description="Continue the run in FILE up to --t-final, appending to "
                                   "FILE. The model is rebuilt from its preset; the grid, dt, "
                                   "scheme and splitting are the stored ones, so the result "
                                   "equals an uninterrupted run.")
    s.add_argument("file", metavar="FILE", help="snapshot file (.h5)")
    s.add_argument("--t-final", type=float, required=True,
                   help="final time: the stored last time plus a whole number of steps")
    s.add_argument("--save-every", type=int, help="steps between snapshots (default: stored)")
    s.add_argument("--quiet", action="store_true", help="no progress bar")
    s.set_defaults(func=_resume)

    pl = sub.add_parser("plot", help="draw the figures of a snapshot file",
                        description="Write FILE-stem.png (ρ(t,h), mean and variance of h, "
                                    "with theory for presets), _density.png, _fitness.png "
                                    "(when the model is known) and _rho.gif. Figures are "
                                    "regenerated; the snapshot file is only read.")
    pl.add_argument("file", metavar="FILE", help="snapshot file (.h5)")
    pl.add_argument("--out", help="output folder (default: the file's folder)")
    pl.add_argument("--no-animation", action="store_true", help="skip the GIF")
    pl.set_defaults(func=_plot)

    i = sub.add_parser("info", help="summarise a snapshot file",
                       description="Print the kind, status, model, grid, settings, variables "
                                   "and first/last diagnostics of a snapshot file.")
    i.add_argument("file", metavar="FILE", help="snapshot file (.h5)")
    i.set_defaults(func=_info)

    ps = sub.add_parser("presets", help="list the built-in models",
                        description="List the built-in models usable as preset = ... in a "
                                    "config.")
    ps.add_argument("--verbose", "-v", action="store_true",
                    help="also list each preset's parameters and defaults")
    ps.set_defaults(func=_presets)

    # parsed by benchmarks.main (see main below); registered here for the command list
    sub.add_parser("bench", add_help=False,
                   help="run the benchmark studies (python -m benchmarks; from a checkout)")
    return p


def main(argv: list[str] | None = None) -> int:
    try:
        try:
            code = _dispatch(argv)
        finally:  # a closed pipe shows here (also after --help), inside the handler below
            sys.stdout.flush()
    except KeyboardInterrupt:
        # Ctrl-C outside a run (loading, a summary, figures): no traceback; a run's own
        # interruption is reported by its command, with what the file holds
        print("\npde-popdyn: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # the reader of our output went away (``pde-popdyn info FILE | head``): stop quietly.
        # stdout now points to /dev/null so that the interpreter's final flush cannot fail
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
        return 141  # 128 + SIGPIPE, what a shell reports for a command ended by a closed pipe
    return code


def _dispatch(argv: list[str] | None) -> int:
    parser = build_parser()
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0].startswith("-") and argv[0] not in ("-h", "--help", "--version"):
        argv = ["run", *argv]
    if argv[0] == "bench":
        return _bench(argv[1:])
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, TypeError, FileNotFoundError, FileExistsError) as exc:
        print(f"pde-popdyn: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
