"""The ``pde-popdyn`` command.

``pde-popdyn`` (or ``pde-popdyn run``) solves the built-in example, prints a summary with the
theory beside the solver, and saves a figure. ``pde-popdyn presets`` lists the built-in models.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from . import __version__
from .presets import PRESETS


def _run(args: argparse.Namespace) -> int:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from . import plot
    from .solve import solve

    prob = PRESETS[args.preset]()
    grid = prob.grid(args.n_theta, args.n_h)
    model = prob.model()
    t0 = time.perf_counter()
    sol = solve(model, grid, prob.initial(grid), args.t_final, args.dt,
                progress=False if args.quiet else None)
    wall = time.perf_counter() - t0
    mu, S = prob.exact(sol.t)
    m_red, v_red = prob.reduced(sol.t)
    g, hstar = prob.effective_fitness_coeffs()

    print(f"pde-popdyn {__version__}: preset '{args.preset}'")
    print(f"  inner: L = {prob.K:g}/2 (θ − {prob.a:g} h)^2 at T = {prob.T:g}, ε = {prob.eps:g}")
    print(f"  outer: F = −(θ − {prob.zstar[0]:g})^2, replicator κ = {prob.kappa:g}, "
          f"mutation D = {prob.D:g}")
    print(f"  effective fitness F̄(h) = −({g / 2:g})(h − {hstar:g})^2 + const, "
          f"best hyperparameter h* = {hstar:g}")
    print(f"  grid {grid.n_theta}x{grid.n_h}, dt = {sol.info['dt']:g}, "
          f"{sol.info['n_steps']} steps in {wall:.2f} s")
    print()
    print(f"  {'t':>6}  {'E[h] PDE':>10}  {'E[h] exact':>10}  {'E[h] ε→0':>10}  "
          f"{'Var[h] PDE':>10}  {'|E[h]−h*|':>10}")
    for k in np.unique(np.linspace(0, len(sol.t) - 1, 6).astype(int)):
        print(f"  {sol.t[k]:6.2f}  {sol.mean_h[k]:10.5f}  {mu[k, 1]:10.5f}  {m_red[k]:10.5f}  "
              f"{sol.var_h[k]:10.5f}  {abs(sol.mean_h[k] - hstar):10.5f}")
    err = np.abs(sol.mean_h - mu[:, 1]).max()
    print(f"\n  max |E[h] PDE − exact Gaussian solution| = {err:.2e}; "
          f"mass drift {np.abs(sol.mass - 1).max():.1e}; min f = {sol.f.min():.1e}")

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2), layout="constrained")
    plot.kymograph(sol, ax=axes[0], hstar=hstar,
                   theory=(sol.t, mu[:, 1], "exact (Gaussian ODE)"))
    axes[0].set_title("population of hyperparameters ρ(t, h)")
    plot.moments(sol, ax=axes[1:], theory=[(sol.t, mu[:, 1], S[:, 1, 1], "exact, ε = %g" % prob.eps),
                                          (sol.t, m_red, v_red, "reduced, ε → 0")])
    fig.suptitle("pde-popdyn: the population's mean hyperparameter climbs to h* = argmax F̄")
    path = out / "example.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    print(f"  figure written to {path}")
    return 0


def _presets(_args: argparse.Namespace) -> int:
    for name, make in PRESETS.items():
        doc = (make.__doc__ or "").strip().splitlines()[0]
        print(f"{name:20s} {doc}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="pde-popdyn",
        description="Mean-field solver for population-based training. Without a command, "
                    "runs the built-in example.")
    p.add_argument("--version", action="version", version=f"pde-popdyn {__version__}")
    sub = p.add_subparsers(dest="command")
    r = sub.add_parser("run", help="solve a built-in example and write a figure",
                       description="Solve a built-in preset, print E[h] against the theory "
                                   "and write a figure.")
    r.add_argument("--preset", default="quadratic-bilevel", choices=sorted(PRESETS),
                   help="built-in model (default: quadratic-bilevel)")
    r.add_argument("--t-final", type=float, default=5.0, help="final time (default 5)")
    r.add_argument("--dt", type=float, default=0.02, help="time step (default 0.02)")
    r.add_argument("--n-theta", type=int, default=128, help="θ cells (default 128)")
    r.add_argument("--n-h", type=int, default=96, help="h cells (default 96)")
    r.add_argument("--out", default="pde_popdyn_output", help="output folder")
    r.add_argument("--quiet", action="store_true", help="no progress bar")
    r.set_defaults(func=_run)
    s = sub.add_parser("presets", help="list the built-in models")
    s.set_defaults(func=_presets)
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0].startswith("--") and argv[0] not in ("--help", "--version"):
        argv = ["run", *argv]
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, TypeError) as exc:
        print(f"pde-popdyn: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
