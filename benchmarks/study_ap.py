"""Second order in Δt uniformly in ε (issue 15): the default step of ``pp.solve`` against the
Strang splitting it replaces, over the (ε, Δt) plane.

Replicator. (The whole density's error is recorded too where the semi-discrete density is
known, ε ≥ 1e-4: at step ends the θ-profiles lack the O(εD) part that mutation keeps out of
local equilibrium, so for Δt ≫ ε that error stops falling at O(εD) while the h-marginal stays
second order.) The stiff work-precision problem: L = ½(θ − h)², T = 0.05, D = 0.01, κ = 1,
F = −(θ − 0.5)² − 0.5(h + 0.3)², f0 Gaussian with mean (−0.5, 0.6) and covariance 0.04·I,
no-flux box [−2.5, 2.5]², t = 1, on an n² grid. The error of E[h] and Var[h] is measured
against the *semi-discrete* solution of the same grid (time error only): for ε ≥ 1e-4 by the
unsplit uniformisation integrator (exact in time to round-off); for ε < 1e-4 (where that costs
t·c ∝ 1/ε sweeps) from its regular expansion m(ε) = m(0) + a ε + b ε² + O(ε³), with m(0) the
exact semi-discrete solution of the reduced equation ρ' = (κF̄ + DΔ_h)ρ (matrix exponential,
F̄ the discrete Gibbs average) and a, b fitted to ε = 1e-3, 1e-4; the fit is checked against
the exact value at ε = 3e-4. The spatial error (semi-discrete − exact Gaussian) is reported
separately. Fitted order: the least-squares slope of |error| over Δt = 0.1 … 0.00625, per ε. The
same runs from the same h-marginal lifted onto the slow manifold, ρ0(h)·π_h(θ), separate the
initial layer's part of the error: off the manifold, mutation acts on θ-profiles that relax
within O(ε), which a step with Δt ≫ ε sees only at its midpoint (an O(ε²κD) error in E[h]
that Δt does not reduce while Δt ≫ ε, about 0.02·ε² here). The default step adds that part to
the data at t = 0 (pde_popdyn.ap.InitialLayer); without it the fitted order of E[h] was 1.66
and 1.58 at ε = 1e-2 and 1e-3.

Boltzmann jumps (pressure α, Gaussian-jump mutation σ, rate λ) with instantaneous fitness,
L = (K/2)(θ − h)², F = −(c/2)(θ − θ*)². As ε → 0 the h-marginal solves ρ' = λ(K_σ(Wρ)/⟨W⟩ − ρ)
with W = E_π e^{αF} = C e^{−αg_α(h−θ*)²/2}, g_α = c/(1 + αcT/K); a Gaussian fixed point N(m, v)
of ρ = K_σ(Wρ)/⟨W⟩ needs v = v/(1 + αg_α v) + σ², i.e. Σ* = [σ² + √(σ⁴ + 4σ²/(αg_α))]/2. This
is the stationary variance of the *reduced* (ε → 0) equation (and of discrete generations); at
finite ε copies carry a θ that has not relaxed and the joint stationary variance differs by
O(ε). The study measures: the reduced discrete stationary variance against Σ* over the grid
(O(Δh²)); the semi-discrete joint stationary state for ε = 1e-3 and 1e-6 (Perron vector of
λ(λ − 𝓛_ε)⁻¹ K_σ ω, by power iteration with the GTH resolvent); the stationary Var[h] of the
default step and of the split scheme for every Δt (runs to t = 30 from ρ*π_h); and transient
orders by self-convergence.

Truncation (fraction q). No closed form: self-convergence orders of E[h], Var[h] at t = 1.

Cost. Whole runs of ``pp.solve`` on the speed study's problem at 128², t = 1, Δt = 0.01, for
ε = 1e-1 … 1e-6 (set-up included, minimum of repeats, single-threaded BLAS; the one-time
load of numba's cached kernels is paid in a warm-up), for the default step and the split one.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import scipy.linalg as sla

import pde_popdyn as pp
from pde_popdyn.fast._column_kernels import gth_solve
from pde_popdyn.fast.columns import warm_up
from pde_popdyn.fast.fv import SGOperator
from pde_popdyn.presets import GaussianProblem
from pde_popdyn.slow.mutation import DiffusionStep, neumann_laplacian
from pde_popdyn.unsplit import UnsplitStep

from ._common import fit_slope, machine_info, now, write_json
from .study_speed import blas_threads, wrap
from .study_speed import problem as speed_problem

NAME = "ap"
DESCRIPTION = (
    "Uniform second order in dt for every eps (issue 15): replicator E[h], Var[h] errors vs the "
    "semi-discrete solution over eps=1e-1..1e-6, dt=0.1..0.00625 (bar: fitted order >= 1.8 for "
    "every eps); Boltzmann stationary Var[h] vs the closed form Sigma* and the semi-discrete "
    "stationary state at eps=1e-3, 1e-6 (bar: order >= 1.8 or exact); truncation "
    "self-convergence order and |err| <= C dt^2 bound; cost of pp.solve against eps at 128^2 "
    "(bar: max/min <= 1.5 and <= 1.5x eps=0.1, a 100-step run with set-up; the steps alone "
    "reported beside it); the split scheme it replaces alongside.")

EPS = (1e-1, 1e-2, 1e-3, 1e-4, 1e-5, 1e-6)
DTS = (0.1, 0.05, 0.025, 0.0125, 0.00625)
ORDER_BAR = 1.8
COST_BAR = 1.5
REPLICATOR = dict(K=1.0, a=1.0, b=0.0, T=0.05, kappa=1.0, D=0.01, Q=[[2.0, 0.0], [0.0, 1.0]],
                  zstar=(0.5, -0.3), mean0=(-0.5, 0.6), cov0=[[0.04, 0.0], [0.0, 0.04]],
                  theta_box=(-2.5, 2.5), h_box=(-2.5, 2.5))
JUMP = dict(K=1.0, T=0.05, c=1.0, theta_star=0.0, alpha=2.0, sigma=0.1, lam=1.0)
CONFIG = {"full": {"n": 64, "n_jump": 48, "sigma_grids": (32, 64, 128, 256), "repeats": 9,
                   "cost_eps": EPS, "t_stationary": 60.0, "conv_eps": (1e-1, 1e-3, 1e-6),
                   "starts": ("prepared", "off_manifold"), "plane_eps": EPS,
                   "cost_split": True},
          "quick": {"n": 24, "n_jump": 24, "sigma_grids": (32, 64), "repeats": 1,
                    "cost_eps": (1e-1, 1e-3, 1e-6), "t_stationary": None,
                    "conv_eps": (1e-3,), "starts": ("prepared",), "plane_eps": (1e-1, 1e-3, 1e-6),
                    "cost_split": False}}


# -- shared ------------------------------------------------------------------------------------
def h_moments(grid: pp.Grid, f: np.ndarray) -> np.ndarray:
    rho = grid.marginal(f, "h")
    rho = rho / (rho.sum() * grid.dh)
    m = (rho * grid.h).sum() * grid.dh
    return np.array([m, (rho * (grid.h - m) ** 2).sum() * grid.dh])


def split_solve(model, grid, f0, t_final, dt, **kw) -> np.ndarray:
    """The scheme pp.solve ran before: Strang splitting of selection (and mutation) sub-steps
    around the exact fast step."""
    return pp.solve(model, grid, f0, t_final, dt, integrator="split", progress=False,
                    save_every=10 ** 9, **kw).f[-1]


def new_solve(model, grid, f0, t_final, dt, **kw) -> np.ndarray:
    return pp.solve(model, grid, f0, t_final, dt, progress=False, save_every=10 ** 9,
                    **kw).f[-1]


def slope(dts, errs) -> float:
    e = np.abs(np.asarray(errs, float))
    return fit_slope(dts, np.maximum(e, 1e-300)).slope


# -- replicator plane --------------------------------------------------------------------------
def replicator_case(eps: float, n: int):
    prob = GaussianProblem(eps=eps, **REPLICATOR)
    grid = prob.grid(n, n)
    return prob, prob.model(), grid, prob.initial(grid)


def prepared(eps: float, n: int) -> np.ndarray:
    """The study's initial h-marginal lifted onto the slow manifold: ρ0(h)·π_h(θ), π_h the
    discrete Gibbs state (no initial layer)."""
    _, model, grid, f0 = replicator_case(eps, n)
    op = SGOperator.from_model(model, grid, check_gibbs=False)
    f = op.gibbs.reshape(grid.n_theta, -1) * grid.marginal(f0 / grid.mass(f0), "h")[None, :]
    return f / grid.mass(f)


def semidiscrete(eps: float, n: int, t: float, on_manifold: bool = False) -> np.ndarray:
    """The semi-discrete solution at t, exact in time (uniformisation)."""
    _, model, grid, f0 = replicator_case(eps, n)
    if on_manifold:
        f0 = prepared(eps, n)
    op = SGOperator.from_model(model, grid, check_gibbs=False)
    step = UnsplitStep(op, grid, model.fitness_on(grid), REPLICATOR["kappa"], REPLICATOR["D"],
                       max_sweeps=1e13)
    f = f0 / grid.mass(f0)
    for _ in range(4):
        f = step(f, t / 4)
    return f


def reduced_limit(n: int, t: float) -> np.ndarray:
    """ε = 0: ρ(t) = exp(t(κF̄ + DΔ_h)) ρ0, F̄ the discrete Gibbs average."""
    _, model, grid, f0 = replicator_case(1.0, n)
    op = SGOperator.from_model(model, grid, check_gibbs=False)
    fbar = (op.gibbs * model.fitness_on(grid)).sum(axis=0)
    M = REPLICATOR["kappa"] * np.diag(fbar) + REPLICATOR["D"] * neumann_laplacian(grid.n_h, grid.dh).toarray()
    rho = sla.expm(t * M) @ grid.marginal(f0 / grid.mass(f0), "h")
    return rho / (rho.sum() * grid.dh)


def _references(n: int, t: float, on_manifold: bool) -> tuple[dict, dict, float]:
    """h-marginals of the semi-discrete solution at t for every ε of the plane (exact for
    ε ≥ 1e-4, the ε-expansion below), the joint densities where exact, and the check of the
    expansion at ε = 3e-4."""
    grid = replicator_case(0.1, n)[2]
    joint = {e: semidiscrete(e, n, t, on_manifold) for e in (1e-1, 1e-2, 1e-3, 3e-4, 1e-4)}
    exact = {e: grid.marginal(f, "h") for e, f in joint.items()}
    rho0 = reduced_limit(n, t)          # the same h-marginal at t = 0 either way
    e1, e2 = 1e-3, 1e-4
    a, b = np.linalg.solve([[e1, e1 * e1], [e2, e2 * e2]],
                           np.stack([exact[e1] - rho0, exact[e2] - rho0]))
    pred = rho0 + 3e-4 * a + 9e-8 * b
    check = float(np.abs(h_moments(grid, pred) - h_moments(grid, exact[3e-4])).max())
    refs = dict(exact)
    for e in (1e-5, 1e-6):
        refs[e] = rho0 + e * a + e * e * b
    return refs, joint, check


def replicator_plane(n: int, eps_list=EPS, t: float = 1.0) -> dict:
    grid = replicator_case(0.1, n)[2]
    t0 = time.perf_counter()
    refs, joint, check = _references(n, t, on_manifold=False)
    refs_prep, _, check_prep = _references(n, t, on_manifold=True)
    exact = joint
    ref_seconds = time.perf_counter() - t0
    print(f"[ap] replicator references on {n}² in {ref_seconds:.0f} s; ε-expansion checked at "
          f"3e-4: {check:.1e}", flush=True)
    rows = []
    for eps in eps_list:
        prob, model, grid, f0 = replicator_case(eps, n)
        ref = h_moments(grid, refs[eps][None, :] / grid.dtheta)
        mu, S = prob.exact([t])
        spatial = ref - np.array([mu[0, 1], S[0, 1, 1]])
        row = {"eps": eps, "reference": "uniformisation" if eps in exact else "eps-expansion",
               "ref_moments": ref, "spatial_error": spatial}
        for which, solver in (("new", new_solve), ("split", split_solve)):
            errs, l1, l1_joint = [], [], []
            for dt in DTS:
                f = solver(model, grid, f0, t, dt, check_gibbs=False)
                errs.append(h_moments(grid, f) - ref)
                rho = grid.marginal(f, "h")
                l1.append(float(np.abs(rho - refs[eps]).sum() * grid.dh))
                if eps in joint:     # the whole density: θ-profiles included
                    l1_joint.append(float(grid.integrate(np.abs(f - joint[eps]), 1.0)))
            errs = np.array(errs)
            row[which] = {"err_mean": errs[:, 0], "err_var": errs[:, 1], "l1_rho": l1,
                          "order_mean": slope(DTS, errs[:, 0]),
                          "order_var": slope(DTS, errs[:, 1]), "order_l1": slope(DTS, l1),
                          "l1_joint": l1_joint or None,
                          "order_l1_joint": slope(DTS, l1_joint) if l1_joint else None}
        # the same runs from the same h-marginal lifted onto the slow manifold (no layer)
        ref_p = h_moments(grid, refs_prep[eps][None, :] / grid.dtheta)
        fp = prepared(eps, n)
        errs = np.array([h_moments(grid, new_solve(model, grid, fp, t, dt, check_gibbs=False))
                         - ref_p for dt in DTS])
        row["new_on_manifold"] = {"err_mean": errs[:, 0], "err_var": errs[:, 1],
                                  "order_mean": slope(DTS, errs[:, 0]),
                                  "order_var": slope(DTS, errs[:, 1])}
        print(f"    from ρ0·π_h (no initial layer): order E[h] "
              f"{row['new_on_manifold']['order_mean']:.2f}, Var "
              f"{row['new_on_manifold']['order_var']:.2f}", flush=True)
        joint_txt = ("" if row["new"]["l1_joint"] is None else
                     f", L1(f) {row['new']['l1_joint'][0]:.1e}…{row['new']['l1_joint'][-1]:.1e}")
        print(f"  ε={eps:g}: order E[h] {row['new']['order_mean']:.2f} (split "
              f"{row['split']['order_mean']:.2f}), Var {row['new']['order_var']:.2f} (split "
              f"{row['split']['order_var']:.2f}), L1(ρ) {row['new']['order_l1']:.2f}; "
              f"|err E[h]| at Δt=0.1: {abs(row['new']['err_mean'][0]):.1e} (split "
              f"{abs(row['split']['err_mean'][0]):.1e})" + joint_txt, flush=True)
        rows.append(row)
    # uniformity: the largest |error|/Δt² over all ε, and the order of the envelope
    env_m = np.max([np.abs(r["new"]["err_mean"]) for r in rows], axis=0)
    env_v = np.max([np.abs(r["new"]["err_var"]) for r in rows], axis=0)
    return {"n": n, "t": t, "rows": rows, "reference_seconds": ref_seconds,
            "expansion_check_at_3e-4": check, "expansion_check_on_manifold": check_prep,
            "envelope": {"err_mean": env_m, "err_var": env_v,
                         "order_mean": slope(DTS, env_m), "order_var": slope(DTS, env_v),
                         "max_err_over_dt2_mean": float(np.max(env_m / np.square(DTS))),
                         "max_err_over_dt2_var": float(np.max(env_v / np.square(DTS)))}}


# -- jump rules --------------------------------------------------------------------------------
def jump_model(eps: float, rule: str) -> pp.Model:
    p = JUMP
    sel = (pp.BoltzmannJump(p["lam"], p["alpha"]) if rule == "boltzmann"
           else pp.Truncation(p["lam"], 0.2))
    return pp.Model(loss=lambda th, h: 0.5 * p["K"] * (th - h) ** 2,
                    fitness=lambda th, h: -0.5 * p["c"] * (th - p["theta_star"]) ** 2,
                    temperature=p["T"], eps=eps, selection=sel,
                    mutation=pp.GaussianJump(p["sigma"]))


def jump_grid(n: int) -> pp.Grid:
    return pp.Grid(theta=(-3.5, 3.5, n), h=(-2.0, 2.0, n))


def sigma_star() -> float:
    p = JUMP
    g = p["c"] / (1 + p["alpha"] * p["c"] * p["T"] / p["K"])
    s2 = p["sigma"] ** 2
    return 0.5 * (s2 + np.sqrt(s2 * s2 + 4 * s2 / (p["alpha"] * g)))


def reduced_stationary(n: int) -> tuple[float, np.ndarray]:
    """Var of the fixed point ρ = K_σ(Wρ)/⟨W⟩ on the n² grid (power iteration)."""
    grid = jump_grid(n)
    model = jump_model(1.0, "boltzmann")
    op = SGOperator.from_model(model, grid)
    W = (op.gibbs * np.exp(JUMP["alpha"] * model.fitness_on(grid))).sum(axis=0)
    kern = DiffusionStep(1.0, grid.n_h, grid.dh)
    rho = np.ones(grid.n_h)
    for _ in range(200000):
        new = kern(W * rho, 0.5 * JUMP["sigma"] ** 2)
        new /= new.sum() * grid.dh
        if np.abs(new - rho).max() <= 1e-15 * new.max():
            break
        rho = new
    m = (rho * grid.h).sum() * grid.dh
    return float((rho * (grid.h - m) ** 2).sum() * grid.dh), rho


def joint_stationary(eps: float, n: int) -> np.ndarray:
    """The semi-discrete stationary state: (λ − 𝓛_ε) f = λ K_σ(ωf)/⟨ω⟩_f, i.e. the Perron
    vector of λ(λ − 𝓛_ε)⁻¹ K_σ ω, by power iteration (resolvent by GTH elimination)."""
    grid = jump_grid(n)
    model = jump_model(eps, "boltzmann")
    op = SGOperator.from_model(model, grid)
    lam = JUMP["lam"]
    omega = np.exp(JUMP["alpha"] * model.fitness_on(grid))
    kern = DiffusionStep(1.0, grid.n_h, grid.dh)
    kill = np.full((grid.n_h, grid.n_theta), lam)
    f = op.gibbs * reduced_stationary(n)[1]
    for _ in range(100000):
        g = lam * gth_solve(op.up.T, op.down.T, kill, kern(omega * f, 0.5 * JUMP["sigma"] ** 2).T).T
        g /= grid.mass(g)
        if np.abs(g - f).max() <= 1e-15 * g.max():
            break
        f = g
    return g


def boltzmann(cfg: dict) -> dict:
    n = cfg["n_jump"]
    star = sigma_star()
    grids = [(m, reduced_stationary(m)[0]) for m in cfg["sigma_grids"]]
    t_long = cfg["t_stationary"]
    conv = slope([4.0 / m for m, _ in grids], [abs(v - star) for _, v in grids])
    grid = jump_grid(n)
    out = {"sigma_star": star, "reduced_grid_convergence": grids, "reduced_order_dh": conv,
           "n": n, "rows": []}
    print(f"[ap] Boltzmann: Σ* = {star:.8f}; reduced discrete Var − Σ* ∝ Δh^{conv:.2f}",
          flush=True)
    v_red = dict(grids).get(n, reduced_stationary(n)[0])
    for eps in (1e-3, 1e-6):
        fs = joint_stationary(eps, n)
        v_semi = h_moments(grid, fs)[1]
        model = jump_model(eps, "boltzmann")
        op = SGOperator.from_model(model, grid)
        start = op.gibbs * reduced_stationary(n)[1]
        row = {"eps": eps, "var_semidiscrete": v_semi, "var_reduced_discrete": v_red,
               "semi_minus_sigma_star": v_semi - star, "eps_effect": v_semi - v_red,
               "grid_effect": v_red - star}
        for which, solver in (("new", new_solve), ("split", split_solve)):
            # one step from the stationary state: how far it moves, per unit time
            res = [float(np.abs(solver(model, grid, fs, dt, dt) - fs).sum() * grid.dtheta
                         * grid.dh / dt) for dt in DTS]
            row[which] = {"residual_per_time": res, "residual_order": slope(DTS, res)}
            if t_long is not None:   # the stationary Var the scheme settles at, from ρ*π_h
                v = [h_moments(grid, solver(model, grid, start, t_long, dt))[1] for dt in DTS]
                err = np.array(v) - v_semi
                row[which].update({"var": v, "err_vs_semidiscrete": err,
                                   "order": slope(DTS, err),
                                   "max_abs_err": float(np.abs(err).max())})
        txt = (f"  ε={eps:g}: semi-discrete Var − Σ* = {v_semi - star:+.3e} (grid "
               f"{v_red - star:+.3e}, ε {v_semi - v_red:+.3e}); one step from it moves "
               f"‖Δf‖₁/Δt ≤ {max(row['new']['residual_per_time']):.1e} (split: order "
               f"{row['split']['residual_order']:.2f}, "
               f"{row['split']['residual_per_time'][0]:.1e} at Δt=0.1)")
        if t_long is not None:
            txt += (f"; Var at t={t_long:g}: max error {row['new']['max_abs_err']:.1e} (split "
                    f"order {row['split']['order']:.2f})")
        print(txt, flush=True)
        out["rows"].append(row)
    return out


def self_convergence(rule: str, n: int, cfg: dict) -> dict:
    """E[h], Var[h] at t = 1 for Δt = 0.1 … 0.003125 from ρ0 π_h (and from data off the slow
    manifold), errors against the Richardson value of the two finest runs."""
    grid = jump_grid(n)
    dts = DTS + (DTS[-1] / 2,)
    out = {}
    op = SGOperator.from_model(jump_model(1.0, rule), grid)
    th, hh = grid.mesh()
    starts = {"prepared": op.gibbs * np.exp(-(grid.h - 1.0) ** 2 / 0.08),
              "off_manifold": np.exp(-((th + 0.5) ** 2 + (hh - 1.0) ** 2) / 0.08)}
    for eps in cfg["conv_eps"]:
        model = jump_model(eps, rule)
        for start in cfg["starts"]:
            f0 = starts[start]
            for which, solver in (("new", new_solve), ("split", split_solve)):
                m = np.array([h_moments(grid, solver(model, grid, f0, 1.0, dt)) for dt in dts])
                ref = m[-1] + (m[-1] - m[-2]) / 3
                err = m[:-1] - ref
                out[f"{eps:g}/{start}/{which}"] = {
                    "eps": eps, "start": start, "scheme": which, "err_mean": err[:, 0],
                    "err_var": err[:, 1], "order_mean": slope(DTS, err[:, 0]),
                    "order_var": slope(DTS, err[:, 1]),
                    # the bound |err| ≤ C Δt²: truncation's set boundaries cross cell faces,
                    # where its right-hand side has kinks, so its error is O(Δt²) with a
                    # constant that oscillates in Δt and a fitted slope can mislead
                    "c_mean": float(np.abs(err[:, 0] / np.square(DTS)).max()),
                    "c_var": float(np.abs(err[:, 1] / np.square(DTS)).max())}
        r, sp = out[f"{eps:g}/prepared/new"], out[f"{eps:g}/prepared/split"]
        txt = (f"  {rule} ε={eps:g}: order E[h] {r['order_mean']:.2f}, Var {r['order_var']:.2f}"
               f" (split {sp['order_mean']:.2f}, {sp['order_var']:.2f})")
        off = out.get(f"{eps:g}/off_manifold/new")
        if off is not None:
            txt += (f"; from off-manifold data {off['order_mean']:.2f}, {off['order_var']:.2f} "
                    f"(|err E[h]| {np.abs(off['err_mean']).min():.1e}…"
                    f"{np.abs(off['err_mean']).max():.1e})")
        print(txt, flush=True)
    return out


# -- cost --------------------------------------------------------------------------------------
def cost(cfg: dict) -> dict:
    """Wall time of pp.solve (set-up included) at 128² for t = 1, Δt = 0.01, per ε. The repeats
    go round the ε list (ε₁ … ε₆, then again), and each ε keeps its best: a slow spell of the
    machine then hits every ε alike instead of one of them, which matters for a ratio. The
    default step gets three times the repeats (its rounds are short)."""
    cases = []
    for eps in cfg["cost_eps"]:
        prob = speed_problem(eps)
        model, grid = prob.model(), prob.grid(128, 128)
        cases.append((eps, model, grid, prob.initial(grid)))
    which_list = ("new", "split") if cfg["cost_split"] else ("new",)
    best = {(eps, w): (np.inf, 0.0, 0.0) for eps, *_ in cases for w in which_list}
    infos = {}
    # the default step's rounds are short (six runs of ~0.07 s): its repeats are taken on their
    # own, so that a slow spell of the machine hits all ε of a round alike; then the split
    # scheme's (the runs it replaced, 0.1–1 s each)
    for which in which_list:
        for _ in range(cfg["repeats"] * (3 if which == "new" else 1)):
            for eps, model, grid, f0 in cases:
                t0 = time.perf_counter()
                if which == "new":
                    sol = pp.solve(model, grid, f0, 1.0, 0.01, progress=False, save_every=100)
                    setup, run = sol.info["setup_seconds"], sol.info["run_seconds"]
                    infos[eps] = list(sol.info["fast_step"].values())[0]
                else:
                    split_solve(model, grid, f0, 1.0, 0.01)
                    setup = run = np.nan
                wall = time.perf_counter() - t0
                if wall < best[eps, which][0]:
                    best[eps, which] = (wall, setup, run)
    rows = []
    for eps, *_ in cases:
        rec = {"eps": eps}
        for which in which_list:
            wall, setup, run = best[eps, which]
            rec[which] = {"wall_seconds": wall, "setup_seconds": setup, "run_seconds": run}
        info = infos[eps]
        rec["new"]["fast_step"] = info
        split_txt = (f"; split scheme {rec['split']['wall_seconds']:.3f} s" if "split" in rec
                     else "")
        print(f"  [cost] ε={eps:g}: {rec['new']['wall_seconds']:.3f} s (set-up "
              f"{rec['new']['setup_seconds']:.3f} s; {info['projection']} rank-one, "
              f"{info['dense']} dense, {info['uniformisation']} uniformisation, "
              f"{info.get('rational', 0)} rational columns)"
              + split_txt, flush=True)
        rows.append(rec)
    walls = np.array([r["new"]["wall_seconds"] for r in rows])
    base = walls[0]
    # the steps alone, without the set-up: the limit of the whole-run ratio for long runs (the
    # stiff end's set-up is the larger, so this ratio is the larger)
    runs = np.array([r["new"]["run_seconds"] for r in rows])
    setups = np.array([r["new"]["setup_seconds"] for r in rows])
    # the Scope's reading, part by part: the set-up and the steps each against ε = 0.1's
    out = {"rows": rows, "max_over_min": float(walls.max() / walls.min()),
           "max_over_eps_0.1": float(walls.max() / base),
           "steps_max_over_min": float(runs.max() / runs.min()),
           "steps_max_over_eps_0.1": float(runs.max() / runs[0]),
           "setup_max_over_eps_0.1": float(setups.max() / setups[0]), "repeats": cfg["repeats"]}
    if cfg["cost_split"]:
        split = [r["split"]["wall_seconds"] for r in rows]
        out["split_max_over_min"] = float(max(split) / min(split))
    return out


# -- figure ------------------------------------------------------------------------------------
def _figure(data: dict, path: Path) -> None:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(17, 9.5), layout="constrained")
    axs = fig.subplots(2, 3)
    rep = data["replicator"]
    colors = {e: f"C{i}" for i, e in enumerate(EPS)}
    colors.update({e: "k" for r in rep["rows"] for e in [r["eps"]] if e not in colors})
    for ax, key, title in ((axs[0, 0], "err_mean", "E[h]"), (axs[0, 1], "err_var", "Var[h]")):
        for r in rep["rows"]:
            c = colors[r["eps"]]
            ax.loglog(DTS, np.abs(r["new"][key]), "o-", color=c,
                      label=f"ε={r['eps']:g}: {r['new']['order_' + key[4:]]:.2f}")
            ax.loglog(DTS, np.abs(r["split"][key]), "x--", color=c, alpha=0.6)
        d = np.array(DTS)
        ax.loglog(d, 1e-4 * d ** 2, "k:", lw=1, label="∝ Δt²")
        ax.set(xlabel="Δt", ylabel=f"|error of {title}| vs semi-discrete",
               title=f"replicator, {rep['n']}²: {title} (solid: pp.solve, dashed: split "
                     f"scheme)")
        ax.legend(fontsize=7, ncol=2)
        ax.grid(True, which="both", alpha=0.3)
    ax = axs[0, 2]
    for r in rep["rows"]:
        ratio = np.array(r["new"]["err_mean"]) / np.square(DTS)
        ax.semilogx(np.array(DTS) / r["eps"], ratio, "o-", color=colors[r["eps"]],
                    label=f"ε={r['eps']:g}")
    ax.axhline(0, color="k", lw=0.5)
    ax.set(xlabel="Δt / ε", ylabel="error of E[h] / Δt²",
           title="bounded uniformly: second order for every ε\n(the constant moves between "
                 "its non-stiff and stiff values)")
    ax.legend(fontsize=7)
    ax.grid(True, which="both", alpha=0.3)
    ax = axs[1, 0]
    bz = data["boltzmann"]
    long_run = all(r["new"].get("err_vs_semidiscrete") is not None for r in bz["rows"])
    for r in bz["rows"]:
        if long_run:      # the stationary Var each scheme settles at, against the exact one
            ax.loglog(DTS, np.maximum(np.abs(r["new"]["err_vs_semidiscrete"]), 1e-16), "o-",
                      label=f"pp.solve, ε={r['eps']:g}")
            ax.loglog(DTS, np.abs(r["split"]["err_vs_semidiscrete"]), "x--",
                      label=f"split, ε={r['eps']:g} (order {r['split']['order']:.2f})")
        else:
            ax.loglog(DTS, np.maximum(r["new"]["residual_per_time"], 1e-17), "o-",
                      label=f"pp.solve, ε={r['eps']:g}: ‖S f* − f*‖₁/Δt")
    ylabel = ("|stationary Var[h] − semi-discrete one|" if long_run else
              "‖S_Δt f* − f*‖₁ / Δt  (f*: semi-discrete stationary state)")
    ax.set(xlabel="Δt", ylabel=ylabel,
           title=f"Boltzmann: stationary Var[h] (Σ* = {bz['sigma_star']:.5f};\nreduced discrete "
                 f"− Σ* ∝ Δh^{bz['reduced_order_dh']:.2f}; semi-discrete − reduced = O(ε))")
    ax.legend(fontsize=7)
    ax.grid(True, which="both", alpha=0.3)
    ax = axs[1, 1]
    for rule, mk, key_ in (("boltzmann", "o", "boltzmann_orders"),
                           ("truncation", "s", "truncation")):
        for key, r in data[key_].items():
            if r["scheme"] != "new" or r["start"] != "prepared":
                continue
            ax.loglog(DTS, np.abs(r["err_var"]), mk + "-",
                      label=f"{rule} ε={r['eps']:g}: {r['order_var']:.2f}")
    ax.set(xlabel="Δt", ylabel="|Var[h] − Richardson value| at t = 1",
           title="jump rules: self-convergence (data ρ0 π_h)")
    ax.legend(fontsize=7)
    ax.grid(True, which="both", alpha=0.3)
    ax = axs[1, 2]
    cr = data["cost"]["rows"]
    e = [r["eps"] for r in cr]
    ax.loglog(e, [r["new"]["wall_seconds"] for r in cr], "o-", label="pp.solve (whole run)")
    ax.loglog(e, [r["new"]["setup_seconds"] for r in cr], "s--", mfc="none", label="set-up")
    ax.loglog(e, [r["new"]["run_seconds"] for r in cr], "d-.", mfc="none",
              label="the 100 steps alone")
    if all("split" in r for r in cr):
        ax.loglog(e, [r["split"]["wall_seconds"] for r in cr], "x:", label="split scheme")
    ax.set(xlabel="ε", ylabel="seconds", title="cost, 128², t = 1, Δt = 0.01")
    ax.legend(fontsize=7)
    ax.grid(True, which="both", alpha=0.3)
    fig.suptitle(wrap(data["headline"], 210), fontsize=8)
    fig.savefig(path, dpi=110)


# -- the study ---------------------------------------------------------------------------------
def run(quick: bool, outdir: Path) -> dict:
    cfg = CONFIG["quick" if quick else "full"]
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    started = now()
    with np.errstate(under="ignore"), blas_threads(1) as threads:
        warm_up()
        clock = {}
        t0 = time.perf_counter()
        rep = replicator_plane(cfg["n"], cfg["plane_eps"])
        clock["replicator"] = time.perf_counter() - t0
        bz = boltzmann(cfg)
        clock["boltzmann_stationary"] = time.perf_counter() - t0 - sum(clock.values())
        bz_conv = self_convergence("boltzmann", cfg["n_jump"], cfg)
        tr_conv = self_convergence("truncation", cfg["n_jump"], cfg)
        clock["jump_orders"] = time.perf_counter() - t0 - sum(clock.values())
        cst = cost(cfg)
        clock["cost"] = time.perf_counter() - t0 - sum(clock.values())
        print(f"[ap] seconds per part: {clock}", flush=True)
    rep_ok = all(min(r["new"]["order_mean"], r["new"]["order_var"]) >= ORDER_BAR
                 for r in rep["rows"])
    # the stationary state is a fixed point of the step (to round-off) for every Δt: a
    # stronger statement than convergence at order 1.8
    bz_ok = all(max(r["new"]["residual_per_time"]) <= 1e-10 for r in bz["rows"])
    tr_orders = [min(r["order_mean"], r["order_var"]) for r in tr_conv.values()
                 if r["scheme"] == "new" and r["start"] == "prepared"]
    bz_orders = [min(r["order_mean"], r["order_var"]) for r in bz_conv.values()
                 if r["scheme"] == "new" and r["start"] == "prepared"]
    jump_ok = min(bz_orders) >= ORDER_BAR
    off = {rule: [(r["order_mean"], r["order_var"], r["c_mean"], r["c_var"])
                  for r in conv.values()
                  if r["scheme"] == "new" and r["start"] == "off_manifold"]
           for rule, conv in (("Boltzmann", bz_conv), ("truncation", tr_conv))}
    off_txt = "; ".join(
        f"{rule} " + ", ".join(f"{a:.2f}/{b:.2f}" for a, b, *_ in rows)
        + f" (|err| <= {max(r[2] for r in rows):.2g}/{max(r[3] for r in rows):.2g} dt^2)"
        for rule, rows in off.items() if rows)
    cost_ok = cst["max_over_min"] <= COST_BAR
    worst = min(rep["rows"], key=lambda r: min(r["new"]["order_mean"], r["new"]["order_var"]))
    headline = (
        "replicator order (E[h], Var[h]) per eps: " + ", ".join(
            f"{r['eps']:g}: {r['new']['order_mean']:.2f}/{r['new']['order_var']:.2f}"
            for r in rep["rows"]) + f" [bar >= {ORDER_BAR}: {'met' if rep_ok else 'NOT met'}"
        f" (worst eps={worst['eps']:g})]; from data on the slow manifold (rho0*pi_h, no "
        f"initial layer) the worst order is " + f"{min(min(r['new_on_manifold']['order_mean'], r['new_on_manifold']['order_var']) for r in rep['rows']):.2f}"
        + "; envelope over eps: order "
        f"{rep['envelope']['order_mean']:.2f}/{rep['envelope']['order_var']:.2f}, |err| <= "
        f"{rep['envelope']['max_err_over_dt2_mean']:.1e} dt^2; split scheme at eps="
        f"{rep['rows'][-1]['eps']:g}: "
        f"{rep['rows'][-1]['split']['order_mean']:.2f}/{rep['rows'][-1]['split']['order_var']:.2f}"
        + "; Boltzmann: the semi-discrete stationary state moves by ||df||/dt <= "
        + "/".join(f"{max(r['new']['residual_per_time']):.0e}" for r in bz["rows"])
        + " (eps=1e-3/1e-6) in a step of any dt (split: order " + "/".join(
            f"{r['split']['residual_order']:.2f}" for r in bz["rows"])
        + f"), Sigma* - semi-discrete = grid O(dh^{bz['reduced_order_dh']:.1f}) + O(eps); "
        f"Boltzmann transient orders >= {min(bz_orders):.2f}, truncation >= "
        f"{min(tr_orders):.2f} (data rho0*pi_h)"
        + (f"; from off-manifold data (E/Var per eps {', '.join(f'{e:g}' for e in cfg['conv_eps'])}"
           f", JumpLayer correction): {off_txt}" if off_txt else "")
        + "; cost 128^2 max/min "
        f"{cst['max_over_min']:.2f} (max / eps=0.1: {cst['max_over_eps_0.1']:.2f}) "
        f"[bar <= {COST_BAR}, 100-step run with set-up: {'met' if cost_ok else 'NOT met'}]; "
        f"the steps alone (long runs) {cst['steps_max_over_min']:.2f}; against eps=0.1 "
        f"part by part: set-up {cst['setup_max_over_eps_0.1']:.2f}, steps "
        f"{cst['steps_max_over_eps_0.1']:.2f}")
    passed = bool(rep_ok and bz_ok and jump_ok and cost_ok)
    data = {"study": NAME, "date": started, "machine": machine_info(), "quick": quick,
            "config": cfg, "blas_threads": threads, "dts": DTS, "replicator_problem": REPLICATOR,
            "jump_problem": JUMP, "replicator": rep, "boltzmann": bz, "boltzmann_orders": bz_conv,
            "truncation": tr_conv, "cost": cst, "headline": headline, "passed": passed,
            "bars": {"order": ORDER_BAR, "cost": COST_BAR, "replicator": rep_ok,
                     "boltzmann_stationary": bz_ok, "jump_transient": jump_ok,
                     "cost_max_over_min": cost_ok}}
    write_json(outdir / f"{NAME}.json", data)
    _figure(data, outdir / f"{NAME}.png")
    return {"headline": headline, "passed": passed}
