"""Convergence studies for any model: refine one parameter, fit the observed order.

A convergence study measures an error e(v) at a sequence of values v of one numerical
parameter (the number of cells, the time step Δt, the scale separation ε, the number of
agents N) and fits the model

    power law:    log e(v) = a + s · log v           (e ≈ C v^s),
    exponential:  log e(v) = a + s · v               (e ≈ C exp(s v), spectral methods)

by least squares over at least 4 values. The *order* p is the exponent with the sign that makes
a converging method positive: p = s when the parameter refines by getting smaller (Δt, ε) and
p = −s when it refines by getting larger (cells, N; e ∝ cells^(−p) = (Δx)^p). So finite volumes
in space have order 2 (e ∝ cells^−2), Strang splitting order 2 (e ∝ Δt²), Lie order 1,
particles order ½ (e ∝ N^−½, i.e. the slope s = −½).

The spread of a fitted order is the standard error of the least-squares slope,

    se(s) = sqrt( Σ r_i² / (n − 2) / Σ (x_i − x̄)² ),   r_i the residuals of the fit,

(x_i = log v_i, or v_i for the exponential fit), and the local orders are the slopes between
consecutive values, coarse to fine: p_i = ± (log e_{i+1} − log e_i) / (x_{i+1} − x_i).

With several random seeds (particles), each value's error is the mean over the seeds, reported
with its standard error std/√n_seeds; the slope is fitted to the log of the means, and the seed
noise propagated to the slope is reported separately as ``noise_stderr``.

Example: Strang splitting is second order in Δt (the error against a run at a much smaller Δt
on the same grid)::

    import numpy as np
    import pde_popdyn as pp
    from pde_popdyn.presets import GaussianProblem

    prob = GaussianProblem(eps=1.0, kappa=2.0, D=0.02)
    model, grid = prob.model(), prob.grid(32, 24)
    f0 = prob.initial(grid)

    def run(dt):
        return pp.solve(model, grid, f0, 1.0, dt, splitting="strang", progress=False).f[-1]

    def l1(f, f_ref):
        return float(np.abs(f - f_ref).sum() * grid.dtheta * grid.dh)

    study = pp.convergence(run, [1/4, 1/8, 1/16, 1/32], l1, reference=1/512,
                           parameter="dt", expected=2)
    print(study.table())        # values, errors, local orders, fitted order ± spread
    study.plot()                # log-log error against Δt with the fit and a slope triangle
    assert study.agrees(0.15)   # |order − 2| ≤ 0.15

and finite volumes are second order in space against the exact Gaussian solution (a box fitted
to the solution, so that 24 cells are already in the asymptotic range; on the default, wider
box the same cells give local orders 1.5 → 1.9, still pre-asymptotic)::

    prob = GaussianProblem(a=0.5, eps=1.0, kappa=2.0, D=0.02, T=0.1, theta_box=(-2.0, 1.0),
                           h_box=(-2.4, 0.4), cov0=[[0.0625, 0.0], [0.0, 0.0625]])
    model = prob.model()

    def run(n):
        g = prob.grid(n, n)
        return g, pp.solve(model, g, prob.initial(g), 0.5, 1/64, progress=False).f[-1]

    def err(result, n):
        g, f = result
        return float(np.abs(f - prob.exact_density(g, 0.5)).sum() * g.dtheta * g.dh)

    study = pp.convergence(run, [24, 32, 48, 64], err, parameter="cells", expected=2)
"""

from __future__ import annotations

import math
import numbers
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np

from ._validate import _short, finite_float, positive_float

#: how each known parameter refines: "larger" (more cells, more agents) or "smaller" (Δt, ε)
PARAMETERS = {"cells": "larger", "N": "larger", "dt": "smaller", "eps": "smaller"}
_LABELS = {"cells": "cells", "N": "number of agents N", "dt": "time step Δt",
           "eps": "scale separation ε"}
KINDS = ("power", "exponential")
MIN_VALUES = 4


@dataclass(frozen=True)
class Fit:
    """A least-squares line log e = intercept + slope · x, with the slope's standard error.

    ``x`` is log v for ``kind="power"`` and v for ``kind="exponential"``; ``dof = n − 2``.
    """

    slope: float
    stderr: float
    intercept: float
    n: int
    kind: str = "power"

    @property
    def dof(self) -> int:
        return self.n - 2

    def predict(self, values: Any) -> np.ndarray:
        """The fitted error at ``values``."""
        v = np.asarray(values, float)
        x = np.log(v) if self.kind == "power" else v
        return np.exp(self.intercept + self.slope * x)


def _check_errors(errors: Any, n: int, where: Sequence[Any] | None = None,
                  name: str = "errors") -> np.ndarray:
    e = np.asarray(errors, dtype=float)
    if e.shape != (n,):
        raise ValueError(f"{name} must have one entry per value ({n}), got shape {e.shape}")
    bad = ~np.isfinite(e) | (e <= 0)
    if bad.any():
        i = int(np.nonzero(bad)[0][0])
        at = f" at value {where[i]!r}" if where is not None else f" (entry {i})"
        raise ValueError(f"{name} must be finite and > 0 to fit log(error), got {e[i]!r}{at}; "
                         f"an error of exactly 0 usually means the reference is among the "
                         f"values or the error is below round-off, so drop that value")
    return e


def _check_values(values: Any, name: str = "values") -> list:
    if isinstance(values, (str, bytes)) or not hasattr(values, "__len__"):
        raise TypeError(f"{name} must be a sequence of at least {MIN_VALUES} positive numbers, "
                        f"got {_short(values)}")
    vals = list(np.asarray(values).tolist()) if isinstance(values, np.ndarray) else list(values)
    if len(vals) < MIN_VALUES:
        raise ValueError(f"{name} has {len(vals)} entries, but an observed order is a "
                         f"least-squares slope over at least {MIN_VALUES} values (with "
                         f"fewer the fit has no spread); add values, e.g. halve Δt or "
                         f"multiply the cells by 1.5 a few more times")
    for v in vals:
        positive_float(f"each entry of {name}", v)
    if len({float(v) for v in vals}) != len(vals):
        raise ValueError(f"{name} contains repeated entries: {vals}; each value must be "
                         f"distinct")
    return vals


def _fit(x: np.ndarray, y: np.ndarray, kind: str) -> Fit:
    n = x.size
    xm = x.mean()
    sxx = float(((x - xm) ** 2).sum())
    if sxx == 0:
        raise ValueError("the values must not all be equal")
    slope = float(((x - xm) * (y - y.mean())).sum() / sxx)
    intercept = float(y.mean() - slope * xm)
    resid = y - (intercept + slope * x)
    stderr = math.sqrt(float((resid ** 2).sum()) / (n - 2) / sxx)
    return Fit(slope, stderr, intercept, n, kind)


def fit_power(values: Any, errors: Any) -> Fit:
    """Least-squares fit of log e = a + s log v over ≥ 4 values; ``slope`` s ± ``stderr``."""
    vals = _check_values(values)
    e = _check_errors(errors, len(vals), vals)
    return _fit(np.log(np.asarray(vals, float)), np.log(e), "power")


def fit_exponential(values: Any, errors: Any) -> Fit:
    """Least-squares fit of log e = a + s v over ≥ 4 values (exponential convergence).

    For a spectral method with n nodes, e ≈ C exp(−r n): the rate is r = −``slope`` and its
    spread ``stderr``. Leave out values at the round-off plateau, which are not on the line.
    """
    vals = _check_values(values)
    e = _check_errors(errors, len(vals), vals)
    return _fit(np.asarray(vals, float), np.log(e), "exponential")


def _finer(parameter: str, finer: str | None) -> str:
    if finer is None:
        if parameter not in PARAMETERS:
            raise ValueError(f"parameter={parameter!r} is not one of {sorted(PARAMETERS)}; "
                             f"for another parameter say how it refines with "
                             f"finer='larger' or finer='smaller'")
        return PARAMETERS[parameter]
    if finer not in ("larger", "smaller"):
        raise ValueError(f"finer must be 'larger' or 'smaller', got {finer!r}")
    return finer


@dataclass
class ConvergenceStudy:
    """The result of :func:`convergence`: errors at each value and the fitted order.

    ``values`` are sorted coarse to fine. ``errors`` are the (seed-mean) errors,
    ``error_stderr`` their standard errors over seeds (None without seeds), ``seconds`` the
    mean wall time of one ``run`` at each value. ``order`` ± ``order_stderr`` is the fitted
    order (see the module docstring for the sign convention), ``slope`` the raw slope of
    log e against log v (or v), ``local_orders`` the pairwise orders between consecutive
    values. For ``kind="exponential"``, ``rate`` (= ``order``) is r in e ≈ C exp(−r v).
    """

    parameter: str
    values: np.ndarray
    errors: np.ndarray
    finer: str | None = None
    kind: str = "power"
    expected: float | None = None
    error_stderr: np.ndarray | None = None
    n_seeds: int | None = None
    seconds: np.ndarray | None = None
    results: list | None = field(default=None, repr=False)
    label: str | None = None
    fit: Fit = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {self.kind!r}")
        self.finer = _finer(self.parameter, self.finer)
        vals = _check_values(self.values)
        errs = _check_errors(self.errors, len(vals), vals)
        order = np.argsort(np.asarray(vals, float))
        if self.finer == "smaller":
            order = order[::-1]
        self.values = np.asarray(vals, float)[order]
        self.errors = errs[order]
        if self.error_stderr is not None:
            self.error_stderr = np.asarray(self.error_stderr, float)[order]
        if self.seconds is not None:
            self.seconds = np.asarray(self.seconds, float)[order]
        if self.results is not None:
            self.results = [self.results[i] for i in order]
        if self.expected is not None:
            self.expected = finite_float("expected", self.expected)
        x = np.log(self.values) if self.kind == "power" else self.values
        self.fit = _fit(x, np.log(self.errors), self.kind)

    @classmethod
    def from_errors(cls, values: Any, errors: Any, *, parameter: str = "cells",
                    finer: str | None = None, kind: str = "power",
                    expected: float | None = None, error_stderr: Any = None,
                    n_seeds: int | None = None, seconds: Any = None,
                    label: str | None = None) -> "ConvergenceStudy":
        """A study from errors measured elsewhere (same fit, table and figure)."""
        return cls(parameter=parameter, values=values, errors=errors,
                   finer=_finer(parameter, finer), kind=kind, expected=expected,
                   error_stderr=error_stderr, n_seeds=n_seeds, seconds=seconds, label=label)

    # -- the fit -------------------------------------------------------------------------------
    @property
    def _sign(self) -> float:
        return -1.0 if self.finer == "larger" else 1.0

    @property
    def slope(self) -> float:
        return self.fit.slope

    @property
    def order(self) -> float:
        return self._sign * self.fit.slope

    @property
    def order_stderr(self) -> float:
        return self.fit.stderr

    rate = order
    rate_stderr = order_stderr

    @property
    def local_orders(self) -> np.ndarray:
        """Orders between consecutive values (coarse to fine), length len(values) − 1."""
        x = np.log(self.values) if self.kind == "power" else self.values
        return self._sign * np.diff(np.log(self.errors)) / np.diff(x)

    @property
    def noise_stderr(self) -> float | None:
        """Seed noise propagated to the order: sqrt(Σ w_i² var(log ē_i)), w the LS weights."""
        if self.error_stderr is None:
            return None
        x = np.log(self.values) if self.kind == "power" else self.values
        w = (x - x.mean()) / ((x - x.mean()) ** 2).sum()
        var_log = (self.error_stderr / self.errors) ** 2
        return float(np.sqrt((w ** 2 * var_log).sum()))

    def interval(self, level: float = 0.95) -> tuple[float, float]:
        """A confidence interval for the order from the t-distribution with n − 2 dof."""
        from scipy import stats
        q = float(stats.t.ppf(0.5 + level / 2, self.fit.dof))
        return self.order - q * self.order_stderr, self.order + q * self.order_stderr

    def agrees(self, tol: float, expected: float | None = None) -> bool:
        """|order − expected| ≤ tol (``expected`` defaults to the study's)."""
        exp = self.expected if expected is None else finite_float("expected", expected)
        if exp is None:
            raise ValueError("no expected order: pass expected= here or to convergence()")
        return bool(abs(self.order - exp) <= tol)

    # -- reporting -----------------------------------------------------------------------------
    def _name(self) -> str:
        return "rate" if self.kind == "exponential" else "order"

    def table(self) -> str:
        """A printable text table: value, error (± stderr), local order, time; then the fit."""
        head = [self.parameter, "error"]
        if self.error_stderr is not None:
            head.append("± stderr")
        head.append(f"local {self._name()}")
        if self.seconds is not None:
            head.append("seconds")
        rows = []
        loc = self.local_orders
        for i, (v, e) in enumerate(zip(self.values, self.errors)):
            row = [f"{v:.6g}", f"{e:.4e}"]
            if self.error_stderr is not None:
                row.append(f"{self.error_stderr[i]:.2e}")
            row.append("" if i == 0 else f"{loc[i - 1]:.3f}")
            if self.seconds is not None:
                row.append(f"{self.seconds[i]:.3g}")
            rows.append(row)
        widths = [max(len(h), *(len(r[j]) for r in rows)) for j, h in enumerate(head)]
        lines = []
        if self.label:
            lines.append(self.label)
        lines.append("  ".join(h.rjust(w) for h, w in zip(head, widths)))
        lines.append("  ".join("-" * w for w in widths))
        lines += ["  ".join(c.rjust(w) for c, w in zip(r, widths)) for r in rows]
        law = (f"e ∝ exp({self.slope:.3g}·{self.parameter})" if self.kind == "exponential"
               else f"e ∝ {self.parameter}^{self.slope:.3g}")
        fit = (f"fitted {self._name()}: {self.order:.3f} ± {self.order_stderr:.3f} "
               f"(least squares over {self.fit.n} values; {law})")
        if self.noise_stderr is not None:
            fit += f"; seed noise ± {self.noise_stderr:.3f} ({self.n_seeds} seeds)"
        lines.append(fit)
        if self.expected is not None:
            lines.append(f"expected {self._name()}: {self.expected:g} "
                         f"(difference {self.order - self.expected:+.3f})")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.table()

    def to_dict(self) -> dict[str, Any]:
        """JSON-able summary (no results): values, errors, fit, local orders."""
        def lst(a):
            return None if a is None else [float(x) for x in a]
        return {
            "parameter": self.parameter, "kind": self.kind, "finer": self.finer,
            "label": self.label, "values": lst(self.values), "errors": lst(self.errors),
            "error_stderr": lst(self.error_stderr), "n_seeds": self.n_seeds,
            "seconds": lst(self.seconds), "order": float(self.order),
            "order_stderr": float(self.order_stderr), "slope": float(self.slope),
            "intercept": float(self.fit.intercept), "noise_stderr": self.noise_stderr,
            "local_orders": lst(self.local_orders), "expected": self.expected,
        }

    def plot(self, ax: Any = None, *, triangle: bool = True, label: str | None = None):
        """Error against value (log-log, or semi-log for ``kind="exponential"``) with the
        fitted line and a slope triangle of the expected (else the rounded fitted) order."""
        import matplotlib.pyplot as plt
        if ax is None:
            _, ax = plt.subplots(figsize=(5, 4))
        v, e = self.values, self.errors
        name = label or self.label or "measured"
        if self.error_stderr is not None:
            ax.errorbar(v, e, yerr=self.error_stderr, fmt="o", capsize=3,
                        label=f"{name} (mean of {self.n_seeds} seeds)")
        else:
            ax.plot(v, e, "o", label=name)
        vv = (np.geomspace(v.min(), v.max(), 50) if self.kind == "power"
              else np.linspace(v.min(), v.max(), 50))
        ax.plot(vv, self.fit.predict(vv), "-", lw=1,
                label=f"fit: {self._name()} {self.order:.2f} ± {self.order_stderr:.2f}")
        if self.kind == "power":
            from matplotlib.ticker import NullFormatter
            ax.set_xscale("log")
            ax.set_xticks(v, [f"{x:g}" for x in v])
            ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_yscale("log")
        if triangle and self.kind == "power":
            self._triangle(ax)
        ax.set_xlabel(_LABELS.get(self.parameter, self.parameter))
        ax.set_ylabel("error")
        ax.legend(fontsize="small")
        return ax

    def _triangle(self, ax: Any) -> None:
        ref = self.expected if self.expected is not None else round(2 * self.order) / 2
        if ref == 0:
            return
        # across the middle of the data, a factor 0.6 below the fitted line
        lo, hi = np.log(self.values.min()), np.log(self.values.max())
        x0, x1 = np.exp(lo + 0.3 * (hi - lo)), np.exp(lo + 0.7 * (hi - lo))
        s = self._sign * ref
        y0 = 0.6 * float(self.fit.predict(x0))
        y1 = y0 * (x1 / x0) ** s
        # hypotenuse (x0, y0)-(x1, y1) parallel to the fit; the right angle below it
        xc, yc = (x1, y0) if y1 > y0 else (x0, y1)
        ax.plot([x0, xc, x1, x0], [y0, yc, y1, y0], "k-", lw=0.8,
                label=f"slope {s:+g} ({self._name()} {ref:g})")
        ax.annotate(f"{ref:g}", (xc, math.sqrt(y0 * y1)), xytext=(3 if xc == x1 else -3, 0),
                    textcoords="offset points", va="center",
                    ha="left" if xc == x1 else "right", fontsize="small")


def _seed_list(seeds: Any) -> list | None:
    if seeds is None:
        return None
    if isinstance(seeds, numbers.Integral) and not isinstance(seeds, bool):
        if seeds < 2:
            raise ValueError(f"seeds={seeds}: averaging over seeds needs at least 2 (for "
                             f"the standard error); pass seeds=None for one deterministic run")
        return list(range(int(seeds)))
    try:
        lst = list(seeds)
    except TypeError:
        raise TypeError(f"seeds must be None, a number of seeds, or a sequence of seeds, got "
                        f"{_short(seeds)}") from None
    if len(lst) < 2:
        raise ValueError(f"seeds={lst}: averaging over seeds needs at least 2")
    return lst


def convergence(run: Callable[..., Any], values: Sequence[Any],
                error: Callable[[Any, Any], float], *, reference: Any = None,
                reference_result: Any = None, parameter: str = "cells",
                finer: str | None = None, expected: float | None = None,
                seeds: Any = None, kind: str = "power", keep_results: bool = False,
                label: str | None = None) -> ConvergenceStudy:
    """Refine one parameter, measure the error at each value, and fit the observed order.

    Parameters
    ----------
    run:
        ``run(value)`` (or ``run(value, seed)`` with ``seeds``) computes a result at one value
        of the parameter: a Solution, an array, a tuple, anything ``error`` understands.
    values:
        At least 4 distinct positive values of the parameter (any order; the study sorts
        them coarse to fine). Integers stay integers when passed to ``run``.
    error:
        ``error(result, value)`` returns the scalar error (> 0) of one result, e.g. against a
        closed form; with a reference it is called as ``error(result, reference_result)``.
    reference:
        A parameter value finer than all ``values`` (e.g. the smallest Δt): ``run`` is called
        there once (once per seed with ``seeds``) and each result is compared with it.
    reference_result:
        An already computed reference result (instead of ``reference``).
    parameter:
        'cells', 'dt', 'eps' or 'N', or any other name together with ``finer``.
    finer:
        'larger' or 'smaller': which way the parameter refines (known for the four names).
    expected:
        The expected order, shown in the table, the plot, and used by ``agrees``.
    seeds:
        None (deterministic runs), a number n of seeds (0, …, n−1) or a sequence of seeds:
        each value is run once per seed, the error is the mean over seeds with its standard
        error.
    kind:
        'power' (e ≈ C v^s; default) or 'exponential' (e ≈ C e^{s v}, spectral methods).
    keep_results:
        Keep each result in ``study.results`` (memory!); by default only errors are kept.

    Returns
    -------
    ConvergenceStudy with ``values, errors, order, order_stderr, local_orders``, ``table()``,
    ``to_dict()`` and ``plot(ax)``. Exceptions raised by ``run`` or ``error`` propagate with a
    note naming the value (and seed) that raised.
    """
    if not callable(run):
        raise TypeError(f"run must be callable as run(value), got {_short(run)}")
    if not callable(error):
        raise TypeError(f"error must be callable as error(result, value), got {_short(error)}")
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    finer = _finer(parameter, finer)
    vals = _check_values(values)
    if parameter in ("cells", "N"):
        for v in vals:
            if isinstance(v, bool) or not isinstance(v, numbers.Integral):
                raise TypeError(f"values for parameter={parameter!r} must be integers, got "
                                f"{v!r}")
    if expected is not None:
        expected = finite_float("expected", expected)
    seed_list = _seed_list(seeds)
    if reference is not None and reference_result is not None:
        raise ValueError("pass either reference (a parameter value to run) or "
                         "reference_result (a computed result), not both")
    if reference is not None:
        ref = positive_float("reference", reference)
        fv = np.asarray(vals, float)
        coarser = fv >= ref if finer == "larger" else fv <= ref
        if coarser.any():
            raise ValueError(f"reference={reference!r} must be finer than every value "
                             f"({parameter} refines to {finer} values), but "
                             f"{[vals[i] for i in np.nonzero(coarser)[0]]} are not")

    def call(fn, *args, what):
        try:
            return fn(*args)
        except Exception as exc:
            exc.add_note(f"(in pde_popdyn.convergence: {what})")
            raise

    runs = [None] if seed_list is None else seed_list
    refs: dict = {}
    if reference is not None:
        for s in runs:
            args = (reference,) if s is None else (reference, s)
            refs[s] = call(run, *args, what=f"run at the reference {parameter}={reference!r}"
                           + ("" if s is None else f", seed={s!r}"))
    elif reference_result is not None:
        refs = {s: reference_result for s in runs}

    errs = np.empty((len(vals), len(runs)))
    secs = np.empty((len(vals), len(runs)))
    kept: list = []
    for i, v in enumerate(vals):
        kept_v = []
        for j, s in enumerate(runs):
            where = f"{parameter}={v!r}" + ("" if s is None else f", seed={s!r}")
            t0 = time.perf_counter()
            res = call(run, *((v,) if s is None else (v, s)), what=f"run at {where}")
            secs[i, j] = time.perf_counter() - t0
            e = call(error, res, refs[s] if refs else v, what=f"error at {where}")
            if isinstance(e, bool) or np.ndim(e) != 0:
                raise TypeError(f"error must return a scalar, got {_short(e)} at {where}")
            try:
                e = float(e)
            except (TypeError, ValueError):
                raise TypeError(f"error must return a real number, got {_short(e)} at "
                                f"{where}") from None
            if not np.isfinite(e) or e <= 0:
                raise ValueError(f"error returned {e!r} at {where}; errors must be finite and "
                                 f"> 0 to fit log(error) (0 usually means the value equals "
                                 f"the reference, or the error is below round-off)")
            errs[i, j] = e
            if keep_results:
                kept_v.append(res)
        if keep_results:
            kept.append(kept_v[0] if seed_list is None else kept_v)

    if seed_list is None:
        mean, se = errs[:, 0], None
    else:
        mean = errs.mean(axis=1)
        se = errs.std(axis=1, ddof=1) / math.sqrt(len(seed_list))
    return ConvergenceStudy(parameter=parameter, values=vals, errors=mean, finer=finer,
                            kind=kind, expected=expected, error_stderr=se,
                            n_seeds=None if seed_list is None else len(seed_list),
                            seconds=secs.mean(axis=1), results=kept if keep_results else None,
                            label=label)
