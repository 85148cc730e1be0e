"""Mean toward the fittest, and survival of the flattest, for the reduced replicator equation

    ∂_t ρ = κ (F̄ − ⟨F̄⟩_ρ) ρ + D ∂²_h ρ        (docs/model.md, Reduced equation)

1. **Unimodal F̄, with mutation (D > 0).** The mean approaches its steady-state value
   exponentially, at the spectral gap Λ₀ − Λ₁ of D Δ_h + κ F̄ (:func:`pp.steady_state`). For
   the quadratic F̄ = −(g/2)(h − h*)² the steady mean is h* and the gap is r = √(2Dκg), with
   m(t) − h* = (m₀ − h*)/(cosh rt + (v₀/v∞) sinh rt). For a non-quadratic, asymmetric F̄ the
   steady mean m∞ differs from h* (mutation biases it toward the flatter side) and
   |m − m∞| decays at the numerical gap.
2. **Unimodal F̄, without mutation.** The population concentrates, Var ∝ 1/(κ g t), and the
   mean approaches h* only algebraically: m − h* = (m₀ − h*)/(1 + κ g v₀ t) ∝ 1/t for the
   quadratic; ∝ 1/t too for the non-quadratic F̄ (Laplace: the skewness of e^{κtF̄} gives an
   offset F̄'''/(2κ F̄''² t)).
3. **Survival of the flattest.** F̄ with a narrow high peak (height H₁, width w₁) and a broad
   lower one (H₂ < H₁, w₂ ≫ w₁). Without mutation the replicator picks the higher peak; with
   mutation the steady state is the principal eigenfunction, whose eigenvalue near peak i is
   ≈ κH_i − √(Dκg_i/2) (harmonic approximation, g_i = H_i/w_i²): above
   D_c = 2κ(H₁ − H₂)²/(√g₁ − √g₂)² the broad, lower peak holds the population.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

import pde_popdyn as pp
from pde_popdyn.diagnostics import argmax_fitness

from ._common import fit_slope, machine_info, now, write_json

NAME = "fittest"
DESCRIPTION = (
    "Reduced replicator–mutator: the mean's distance to h* = argmax F̄ decays exponentially at "
    "the spectral gap with mutation and like 1/t without (quadratic and non-quadratic F̄); a "
    "narrow high peak vs a broad low peak shows survival of the flattest above a mutation "
    "threshold D_c (steady states by eigsh, and dynamics).")

KAPPA = 2.0


def _model(fitness, D):
    """A model whose F̄ is ``fitness(h)`` − T/2: L = ½(θ − h)², F = fitness(h) − ½(θ − h)²."""
    return pp.Model(loss=lambda th, h: 0.5 * (th - h) ** 2,
                    fitness=lambda th, h: fitness(h) - 0.5 * (th - h) ** 2, temperature=0.05,
                    selection=pp.Replicator(KAPPA),
                    mutation=pp.Diffusion(D) if D > 0 else None)


def _fit_exponential(t, d) -> tuple[float, float]:
    """Least-squares decay rate r of log d ≈ c − r t, and its standard error."""
    t = np.asarray(t, float)
    y = np.log(np.asarray(d, float))
    dt = t - t.mean()
    sxx = float(dt @ dt)
    p = float(dt @ (y - y.mean())) / sxx
    resid = y - y.mean() - p * dt
    se = float(np.sqrt(resid @ resid / max(t.size - 2, 1) / sxx))
    return -p, se


def _gauss(h, m, v):
    return np.exp(-(h - m) ** 2 / (2 * v))


def _unimodal(quick: bool) -> dict:
    out = {}
    hstar, g = 0.5, 2.0
    m0, v0 = -1.0, 0.1
    landscapes = {
        "quadratic": lambda h: -(g / 2) * (h - hstar) ** 2,
        # concave, asymmetric, non-quadratic; argmax at h = 0.5 − atanh(0.15)/2
        "log-cosh": lambda h: -np.log(np.cosh(2 * (h - hstar))) - 0.3 * (h - hstar),
    }
    grid = pp.Grid(theta=(-4.0, 4.5, 48), h=(-3.0, 3.5, 256 if quick else 512))
    for name, fn in landscapes.items():
        res = {}
        # -- with mutation: exponential -------------------------------------------------
        D = 0.02
        model = _model(fn, D)
        fbar = pp.effective_fitness(model, grid)
        h_opt = argmax_fitness(fbar, grid.h)
        st = pp.steady_state(model, grid)
        m_inf = float((st.rho * grid.h).sum() * grid.dh)
        tf = 25.0
        sol = pp.solve_reduced(model, grid, _gauss(grid.h, m0, v0), tf, 0.01, progress=False,
                               save_every=25)
        t = sol.t
        dist = np.abs(sol.mean_h - h_opt)
        dinf = np.abs(sol.mean_h - m_inf)
        win = (t > 6) & (dinf > 1e-9)
        rate_fit, rate_se = _fit_exponential(t[win], dinf[win])
        res["mutation"] = {
            "D": D, "t": t, "distance_to_hstar": dist, "distance_to_steady_mean": dinf,
            "hstar": h_opt, "steady_mean": m_inf, "gap_eigsh": st.gap,
            "rate_fitted": rate_fit, "rate_fitted_stderr": rate_se, "fit_window": [6, tf]}
        if name == "quadratic":
            vinf = np.sqrt(2 * D / (KAPPA * g))
            r = KAPPA * g * vinf
            res["mutation"]["rate_theory"] = r
            # the closed form for Gaussian data (exact up to the grid's O(Δh²))
            from pde_popdyn.exact import reduced_gaussian
            m_ex, _ = reduced_gaussian(t, m0, v0, g, hstar, KAPPA, D)
            res["mutation"]["max_error_vs_closed_form"] = float(np.abs(sol.mean_h - m_ex).max())
        # -- without mutation: algebraic ----------------------------------------------------
        model0 = _model(fn, 0.0)
        tf0 = 200.0 if quick else 400.0
        sol0 = pp.solve_reduced(model0, grid, _gauss(grid.h, m0, v0), tf0, 0.05,
                                progress=False, save_every=20)
        t0 = sol0.t
        d0 = np.abs(sol0.mean_h - h_opt)
        w0 = t0 >= tf0 / 4
        s0 = fit_slope(t0[w0], d0[w0])
        res["no_mutation"] = {"t": t0, "distance_to_hstar": d0, "slope_fitted": s0.slope,
                              "slope_fitted_stderr": s0.stderr, "fit_window": [tf0 / 4, tf0],
                              "final_var_h": float(sol0.var_h[-1]),
                              "dh": grid.dh}
        if name == "quadratic":
            # the slope of the exact 1/(1 + κgv₀t) over the same window
            ex = 1.0 / (1 + KAPPA * g * v0 * t0[w0])
            res["no_mutation"]["slope_exact_same_window"] = fit_slope(t0[w0], ex).slope
        out[name] = res
    return out


def _flattest(quick: bool) -> dict:
    H1, w1, h1 = 1.0, 0.05, -0.5
    H2, w2, h2 = 0.8, 0.4, 0.8

    def fn(h):
        return H1 * np.exp(-(h - h1) ** 2 / (2 * w1 ** 2)) + H2 * np.exp(-(h - h2) ** 2 / (2 * w2 ** 2))

    g1, g2 = H1 / w1 ** 2, H2 / w2 ** 2
    Dc = 2 * KAPPA * (H1 - H2) ** 2 / (np.sqrt(g1) - np.sqrt(g2)) ** 2
    grid = pp.Grid(theta=(-3.0, 4.0, 48), h=(-2.0, 2.5, 1024 if quick else 2048))
    split = 0.5 * (h1 + h2)
    Ds = np.geomspace(1e-6, 1e-2, 9 if quick else 17)
    frac, lam, states = [], [], {}
    for D in Ds:
        st = pp.steady_state(_model(fn, D), grid)
        frac.append(float(st.rho[grid.h > split].sum() * grid.dh))
        lam.append(st.eigenvalue)
        states[f"{D:.3g}"] = st.rho
    frac = np.array(frac)

    def broad(D):
        st = pp.steady_state(_model(fn, D), grid)
        return float(st.rho[grid.h > split].sum() * grid.dh)

    # the numerical threshold: the D at which the broad basin holds half the steady mass
    # (bisection in log D between the bracketing sampled values)
    k = int(np.argmax(frac > 0.5))
    if 0 < k:
        lo, hi = np.log(Ds[k - 1]), np.log(Ds[k])
        for _ in range(25):
            mid = 0.5 * (lo + hi)
            lo, hi = (mid, hi) if broad(np.exp(mid)) < 0.5 else (lo, mid)
        Dc_num = float(np.exp(0.5 * (lo + hi)))
    else:
        Dc_num = float("nan")
    # dynamics from a uniform population: without mutation vs D = 10 D_c
    dyn = {}
    rho0 = np.ones(grid.n_h)
    for label, D in (("no mutation", 0.0), ("D = 10 D_c", 10 * Dc)):
        sol = pp.solve_reduced(_model(fn, D), grid, rho0, 60.0, 0.02, progress=False,
                               save_every=30)
        broad = (sol.rho[:, grid.h > split].sum(axis=1) * grid.dh)
        dyn[label] = {"D": D, "t": sol.t, "broad_mass": broad, "mean_h": sol.mean_h}
    sub = slice(None, None, 4)   # the profiles are stored on every 4th node (JSON size)
    return {"H": [H1, H2], "w": [w1, w2], "centres": [h1, h2], "g": [g1, g2],
            "Dc_harmonic": Dc, "Dc_numerical": Dc_num, "D": Ds, "broad_mass": frac,
            "eigenvalue": lam, "h": grid.h[sub], "fbar": fn(grid.h)[sub], "dynamics": dyn,
            "states": {k: v[sub] for k, v in list(states.items())[:: max(1, len(states) // 4)]}}


def _figure(data: dict, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(2, 3, figsize=(14, 7.5))
    for (name, res), c in zip(data["unimodal"].items(), ("C0", "C3")):
        mu = res["mutation"]
        t = np.asarray(mu["t"])
        ax[0, 0].semilogy(t, mu["distance_to_steady_mean"], color=c,
                          label=f"{name}: rate {mu['rate_fitted']:.4f} (gap {mu['gap_eigsh']:.4f})")
        ax[0, 0].semilogy(t, mu["distance_to_hstar"], ":", color=c, lw=0.8,
                          label=f"{name}: |m − h*|")
        nm = res["no_mutation"]
        ax[0, 1].loglog(nm["t"][1:], nm["distance_to_hstar"][1:], color=c,
                        label=f"{name}: slope {nm['slope_fitted']:.3f}")
    tt = np.asarray(data["unimodal"]["quadratic"]["mutation"]["t"])
    r = data["unimodal"]["quadratic"]["mutation"]["rate_theory"]
    ax[0, 0].semilogy(tt, 2 * np.exp(-r * tt), "k--", lw=0.7, label=f"e^(−√(2Dκg) t), {r:.3f}")
    ax[0, 0].set(xlabel="t", ylabel="|E[h] − m∞|", title="with mutation: exponential")
    ax[0, 0].set_ylim(1e-12, 10)
    ax[0, 0].legend(fontsize=7)
    t0 = np.asarray(data["unimodal"]["quadratic"]["no_mutation"]["t"][1:])
    ax[0, 1].loglog(t0, 1.5 / t0 * 10, "k--", lw=0.7, label="∝ 1/t")
    ax[0, 1].set(xlabel="t", ylabel="|E[h] − h*|", title="without mutation: algebraic")
    ax[0, 1].legend(fontsize=7)
    fl = data["flattest"]
    h = np.asarray(fl["h"])
    ax[0, 2].plot(h, fl["fbar"], "k")
    ax[0, 2].set(xlabel="h", ylabel="F̄(h) + T/2", title="two peaks: narrow high, broad low")
    ax[1, 0].semilogx(fl["D"], fl["broad_mass"], "o-")
    ax[1, 0].axvline(fl["Dc_harmonic"], color="k", ls="--", lw=0.8,
                     label=f"harmonic D_c = {fl['Dc_harmonic']:.2e}")
    ax[1, 0].axvline(fl["Dc_numerical"], color="C3", ls=":", lw=0.8,
                     label=f"numerical D_c = {fl['Dc_numerical']:.2e}")
    ax[1, 0].set(xlabel="D", ylabel="steady mass on the broad peak",
                 title="survival of the flattest")
    ax[1, 0].legend(fontsize=7)
    for label, st in fl["states"].items():
        ax[1, 1].plot(h, st, lw=0.8, label=f"D = {label}")
    ax[1, 1].set(xlabel="h", ylabel="ρ∞", title="steady states (eigsh)", yscale="log",
                 ylim=(1e-6, None))
    ax[1, 1].legend(fontsize=7)
    for label, d in fl["dynamics"].items():
        ax[1, 2].plot(d["t"], d["broad_mass"], label=label)
    ax[1, 2].set(xlabel="t", ylabel="mass on the broad peak", title="dynamics from uniform ρ₀")
    ax[1, 2].legend(fontsize=7)
    fig.suptitle(data["headline"], fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def run(quick: bool, outdir: Path) -> dict:
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    started = now()
    uni = _unimodal(quick)
    fl = _flattest(quick)
    q = uni["quadratic"]
    nq = uni["log-cosh"]
    checks = {
        "quadratic rate within 2% of √(2Dκg)":
            abs(q["mutation"]["rate_fitted"] / q["mutation"]["rate_theory"] - 1) < 0.02,
        "non-quadratic rate within 2% of the eigsh gap":
            abs(nq["mutation"]["rate_fitted"] / nq["mutation"]["gap_eigsh"] - 1) < 0.02,
        "no-mutation slopes within 0.05 of −1":
            all(abs(u["no_mutation"]["slope_fitted"] + 1) < 0.05 for u in uni.values()),
        "broad peak wins above D_c, narrow below":
            fl["broad_mass"][0] < 0.05 and fl["broad_mass"][-1] > 0.95,
        "numerical D_c within a factor 2 of the harmonic estimate":
            0.5 < fl["Dc_numerical"] / fl["Dc_harmonic"] < 2,
        "dynamics: narrow peak without mutation, broad with D = 10 D_c":
            fl["dynamics"]["no mutation"]["broad_mass"][-1] < 0.05
            and fl["dynamics"]["D = 10 D_c"]["broad_mass"][-1] > 0.95,
    }
    headline = (f"mutation: |m − m∞| ∝ e^(−rt), r = {q['mutation']['rate_fitted']:.4f} "
                f"(theory √(2Dκg) = {q['mutation']['rate_theory']:.4f}), non-quadratic "
                f"{nq['mutation']['rate_fitted']:.4f} (gap {nq['mutation']['gap_eigsh']:.4f}); "
                f"no mutation: slope {q['no_mutation']['slope_fitted']:.3f} / "
                f"{nq['no_mutation']['slope_fitted']:.3f} (∝ 1/t); flattest wins above "
                f"D_c = {fl['Dc_numerical']:.2e} (harmonic {fl['Dc_harmonic']:.2e})")
    passed = bool(all(checks.values()))
    data = {"study": NAME, "date": started, "machine": machine_info(), "quick": quick,
            "kappa": KAPPA, "unimodal": uni, "flattest": fl, "checks": checks,
            "headline": headline, "passed": passed}
    write_json(outdir / f"{NAME}.json", data)
    _figure(data, outdir / f"{NAME}.png")
    return {"headline": headline, "passed": passed}


if __name__ == "__main__":  # python -m benchmarks.study_fittest [--quick]
    import sys
    from ._common import DEFAULT_OUTDIR
    print(run("--quick" in sys.argv, DEFAULT_OUTDIR)["headline"])
