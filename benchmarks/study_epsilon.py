"""The ε → 0 limit: the joint solution's h-marginal approaches the reduced solution at O(ε).

What is compared, and why
-------------------------
The joint solver splits the fast θ-part from selection and mutation. Its discrete solution
depends on ε and Δt together:

* for Δt ≫ ε the fast step is the projection onto the Gibbs state, so the discrete solution
  no longer depends on ε at all: it converges to a time discretisation of the reduced equation
  whose selection sees E_π e^{κΔtF} instead of e^{κΔtF̄}, an O(Δt) error (measured below as
  "AP limit"). No O(ε) term can be seen in that regime;
* for Δt ≲ ε the splitting resolves the fast relaxation and the O(ε) term of
  f = ρπ_h + O(ε) appears; the fast–slow splitting adds an error that behaves like
  ε (Δt/ε)².

So for every ε the joint solver runs with Δt = ε/8 and Δt = ε/16 and the reduced solver
(:func:`pde_popdyn.solve_reduced`, same sub-steps, same grid, fitness F̄ = the discrete Gibbs
average on the θ-nodes, i.e. the ε → 0 limit of this discretisation) with the same two Δt.
Both are Richardson-extrapolated to Δt → 0 (Strang: error expansion in Δt²), and the L¹
distance of the extrapolated h-marginals at t = t_final is the O(ε) term alone. The raw
distance at Δt = ε/8 and the size of the splitting correction are reported too.
Initial data are well prepared, f₀ = ρ₀ π_h, so there is no initial layer.

The fast step is the joint solver's own exact propagator e^{ΔtA}, built densely once per Δt
(``SGOperator.propagator(Δt, dense_above=0)``; identical to ``pp.solve`` to round-off, which
the study checks once) and driven by the solver's own :class:`~pde_popdyn.equations.JointSystem` and run loop.

Problems: the Gaussian README-type problem (quadratic L = ½(θ − h)², F = −(θ − ½)², T = 0.05)
and a tilted double well L = (θ² − 1)²/4 − 0.4 h θ at T = 0.15 with F = −(θ − 0.8)² − 0.3 h².
ε only means something relative to the fast relaxation rate m·gap/ε: the mobilities m = 3
(gap K = 1) and m = 30 (Kramers gap ≈ 0.083 at h = 0) make that ≈ 3/ε and 2.5/ε, so that the
largest ε = 0.1 is already scale-separated. With m = 1 the O(ε²) term is visible at ε = 0.1
and the fit over 1e-1…1e-3 gives 0.90 (Gaussian) and, with m = 10, 0.94 (double well), while
the last three points give 0.98–0.99 (measured while setting up this study).
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

import pde_popdyn as pp
from pde_popdyn.gibbs import effective_fitness, gibbs
from pde_popdyn.presets import GaussianProblem
from pde_popdyn.equations import JointSystem
from pde_popdyn.run import Schedule, run as run_loop

from ._common import fit_slope, machine_info, now, write_json

NAME = "epsilon"
DESCRIPTION = (
    "ε → 0: L¹ distance at t = 0.25 between the h-marginal of the joint solution and the "
    "reduced solution, both at Δt = ε/8 and ε/16 and Richardson-extrapolated to Δt → 0 (so "
    "the O(ε) term is isolated from the splitting error), for a Gaussian and a double-well "
    "problem, ε = 1e-1 … 1e-4; plus the joint solver's own O(Δt) limit error for ε ≪ Δt.")

T_FINAL = 0.25
RATIOS = (8, 16)
# fast relaxation rate = m·gap/ε with gap = K = 1 (Gaussian) and the Kramers gap ≈ 0.083 of the
# double well: m = 3 and 30 make it ≈ 3/ε and 2.5/ε, so that ε = 0.1 is already separated
MOBILITY = (3.0, 30.0)


def _problems() -> dict:
    gauss = GaussianProblem(K=1.0, a=1.0, b=0.0, T=0.05, kappa=1.0, D=0.02, mobility=MOBILITY[0],
                            Q=[[2.0, 0.0], [0.0, 0.0]], zstar=(0.5, 0.0), theta_box=(-3.0, 3.0),
                            h_box=(-2.0, 2.0))

    def gauss_model(eps):
        gauss.eps = eps
        return gauss.model()

    def dw_model(eps):
        return pp.Model(loss=lambda th, h: (th ** 2 - 1) ** 2 / 4 - 0.4 * h * th,
                        fitness=lambda th, h: -(th - 0.8) ** 2 - 0.3 * h ** 2,
                        temperature=0.15, mobility=MOBILITY[1], eps=eps,
                        selection=pp.Replicator(1.0), mutation=pp.Diffusion(0.02),
                        name="double-well")

    return {
        "gaussian": {"model": gauss_model, "grid": pp.Grid(theta=(-3, 3, 40), h=(-2, 2, 24)),
                     "rho0": (-0.5, 0.04)},
        "double-well": {"model": dw_model,
                        "grid": pp.Grid(theta=(-2.2, 2.2, 40), h=(-1.5, 1.5, 24)),
                        "rho0": (-0.8, 0.04)},
    }


def _discrete_fbar(model, grid) -> np.ndarray:
    """F̄ as the discrete Gibbs average on the θ-nodes: the ε → 0 limit of the FV scheme."""
    pi = gibbs(model, grid, check=False)
    return (pi * model.fitness_on(grid) * grid.theta_weights[:, None]).sum(axis=0)


def _joint_final(model, grid, f0, dt: float) -> np.ndarray:
    system = JointSystem(model, grid)
    schedule = Schedule.make(0.0, T_FINAL, dt, None)
    schedule.save_every = schedule.n_steps
    system.fast.cache[schedule.dt] = system.op.propagator(schedule.dt, dense_above=0)
    rec = run_loop(system, f0, schedule, progress=False)
    return grid.marginal(rec.states[-1], "h")


def _reduced_final(model, grid, rho0, dt: float, fbar) -> np.ndarray:
    sol = pp.solve_reduced(model, grid, rho0, T_FINAL, dt, fitness=fbar, progress=False,
                           save_every=10 ** 9)
    return sol.f[-1]


def _l1(a, b, grid) -> float:
    return float(np.abs(a - b).sum() * grid.dh)


def _run_problem(spec: dict, eps_list) -> dict:
    grid = spec["grid"]
    m0, v0 = spec["rho0"]
    rho0 = np.exp(-(grid.h - m0) ** 2 / (2 * v0))
    rho0 /= rho0.sum() * grid.dh
    base = spec["model"](1.0)
    fbar = _discrete_fbar(base, grid)
    fquad = effective_fitness(base, grid)
    pi = gibbs(base, grid, check=False)
    f0 = pi * rho0[None, :]
    f0 /= grid.mass(f0)
    out = {"eps": list(eps_list), "err_extrapolated": [], "err_raw": [], "splitting_part": [],
           "mean_h_difference": [], "seconds": [],
           "fbar_discrete_minus_quadrature": float(np.abs(fbar - fquad).max())}
    # one check that the dense fast propagator reproduces pp.solve
    model = spec["model"](eps_list[0])
    dt = eps_list[0] / RATIOS[0]
    ref = pp.solve(model, grid, f0, T_FINAL, dt, progress=False, save_every=10 ** 9)
    out["dense_vs_solve"] = _l1(grid.marginal(ref.f[-1], "h"),
                                _joint_final(model, grid, f0, dt), grid)
    for eps in eps_list:
        t0 = time.perf_counter()
        model = spec["model"](eps)
        joint = {r: _joint_final(model, grid, f0, eps / r) for r in RATIOS}
        red = {r: _reduced_final(model, grid, rho0, eps / r, fbar) for r in RATIOS}
        r1, r2 = RATIOS
        w = (r2 / r1) ** 2
        jx = (w * joint[r2] - joint[r1]) / (w - 1)
        rx = (w * red[r2] - red[r1]) / (w - 1)
        out["err_extrapolated"].append(_l1(jx, rx, grid))
        out["err_raw"].append(_l1(joint[r1], red[r1], grid))
        out["splitting_part"].append(_l1(joint[r1] - red[r1], jx - rx, grid))
        out["mean_h_difference"].append(float(((jx - rx) * grid.h).sum() * grid.dh))
        out["seconds"].append(time.perf_counter() - t0)
    s = fit_slope(out["eps"], out["err_extrapolated"])
    out["slope"], out["slope_stderr"] = s.slope, s.stderr
    s = fit_slope(out["eps"], out["err_raw"])
    out["slope_raw"], out["slope_raw_stderr"] = s.slope, s.stderr
    s = fit_slope(out["eps"][-3:], out["err_extrapolated"][-3:])
    out["slope_last3"], out["slope_last3_stderr"] = s.slope, s.stderr
    return out


def _ap_limit(spec: dict, dts) -> dict:
    """ε = 1e-9 ≪ Δt: the joint solver (projection regime) against the reduced equation at a
    fine Δt: the splitting's own O(Δt) limit error."""
    grid = spec["grid"]
    m0, v0 = spec["rho0"]
    rho0 = np.exp(-(grid.h - m0) ** 2 / (2 * v0))
    rho0 /= rho0.sum() * grid.dh
    model = spec["model"](1e-9)
    fbar = _discrete_fbar(model, grid)
    f0 = gibbs(model, grid, check=False) * rho0[None, :]
    f0 /= grid.mass(f0)
    fine = _reduced_final(model, grid, rho0, 1e-4, fbar)
    errs = []
    for dt in dts:
        sol = pp.solve(model, grid, f0, T_FINAL, dt, progress=False, save_every=10 ** 9)
        errs.append(_l1(sol.rho[-1], fine, grid))
    s = fit_slope(dts, errs)
    s2 = fit_slope(dts[-2:], errs[-2:])
    return {"dt": list(dts), "err": errs, "slope": s.slope, "slope_stderr": s.stderr,
            "slope_last2": s2.slope}


def _figure(data: dict, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    ax = axes[0]
    for (name, res), c in zip(data["problems"].items(), ("C0", "C3")):
        e = np.asarray(res["eps"])
        ax.loglog(e, res["err_extrapolated"], "o-", color=c,
                  label=f"{name}: slope {res['slope']:.3f} ± {res['slope_stderr']:.3f}")
        ax.loglog(e, res["err_raw"], "x:", color=c, alpha=0.6, label=f"{name}, raw Δt = ε/8")
        ax.loglog(e, res["err_extrapolated"][0] * e / e[0], "k--", lw=0.7)
    ax.set_xlabel("ε")
    ax.set_ylabel(r"$\|\rho_{joint} - \rho_{reduced}\|_{L^1}$ at t = %g" % T_FINAL)
    ax.set_title("joint → reduced as ε → 0 (dashed: slope 1)")
    ax.legend(fontsize=7)
    ax = axes[1]
    for (name, res), c in zip(data["ap_limit"].items(), ("C0", "C3")):
        ax.loglog(res["dt"], res["err"], "s-", color=c,
                  label=f"{name}: slope {res['slope']:.3f} ± {res['slope_stderr']:.3f}")
    ax.set_xlabel("Δt")
    ax.set_ylabel("L¹ distance to the reduced solution")
    ax.set_title("ε = 1e-9 ≪ Δt: the splitting's O(Δt) limit")
    ax.legend(fontsize=7)
    fig.suptitle(data["headline"], fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def run(quick: bool, outdir: Path) -> dict:
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    started = now()
    eps_list = list(np.logspace(-1, -3 if quick else -4, 5 if quick else 7))
    probs = _problems()
    results = {name: _run_problem(spec, eps_list) for name, spec in probs.items()}
    dts = [0.04, 0.02, 0.01, 0.005, 0.0025]
    ap = {name: _ap_limit(spec, dts) for name, spec in probs.items()}
    ok = all(abs(r["slope"] - 1) <= 0.1 for r in results.values())
    headline = ("‖ρ_joint − ρ_reduced‖ = O(ε^p), ε = 1e-1…" + ("1e-3" if quick else "1e-4")
                + ": " + ", ".join(f"{n} p = {r['slope']:.3f} ± {r['slope_stderr']:.3f}"
                                   for n, r in results.items())
                + "; AP limit error O(Δt^q): "
                + ", ".join(f"q = {r['slope']:.2f} (last pair {r['slope_last2']:.2f})"
                            for r in ap.values()))
    data = {"study": NAME, "date": started, "machine": machine_info(), "quick": quick,
            "t_final": T_FINAL, "dt_over_eps": list(RATIOS), "problems": results,
            "ap_limit": ap, "headline": headline, "passed": bool(ok)}
    write_json(outdir / f"{NAME}.json", data)
    _figure(data, outdir / f"{NAME}.png")
    return {"headline": headline, "passed": bool(ok)}


if __name__ == "__main__":  # python -m benchmarks.study_epsilon [--quick]
    import sys
    from ._common import DEFAULT_OUTDIR
    print(run("--quick" in sys.argv, DEFAULT_OUTDIR)["headline"])
