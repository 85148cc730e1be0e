"""Trackers: objects that watch a run and may stop it.

Every entry point (:func:`pde_popdyn.solve`, :func:`pde_popdyn.solve_reduced`,
:func:`pde_popdyn.simulate_particles`) takes ``trackers=[...]``. A tracker is one of the
classes below, or any callable ``fn(t, state)``, called after every step, that returns True to
stop the run (``stop_reason="tracker"``). The state is the density f (joint run, shape
``grid.shape``), ρ (reduced run, shape ``grid.h_shape``) or the population (particles: an
object with ``.theta`` and ``.h`` arrays of the N agents).

Each tracker runs every ``every`` steps, or every ``interval`` of model time (the first step
whose time reaches the next multiple), or, with neither, every step.

* :class:`ProgressTracker` — a progress bar (tqdm; shown on a terminal and in Jupyter).
* :class:`SteadyStateTracker` — stops when the state changes by less than
  ``atol + rtol·max|state|`` per unit time (``stop_reason="steady_state"``).
* :class:`GuardTracker` — stops when the state holds NaN/inf or values below −``tol``·max
  (``stop_reason="guard"``), with a warning naming what it found.
* :class:`CallbackTracker` — calls ``fn(t, state)`` on its schedule; True stops the run.
* :class:`PlotTracker` — live plot of ρ(h) (or the agents' h-histogram) in a notebook.
"""

from __future__ import annotations

import math
import warnings
from typing import Any, Callable

import numpy as np
from tqdm.auto import tqdm

from ._progress import in_jupyter, progress_enabled
from ._validate import _short, positive_float


class Tracker:
    """Base class: decides when it runs and what it does with ``(t, state)``.

    Subclasses implement :meth:`handle`, returning a stop reason (a string) or None.
    """

    stop_reason = "tracker"

    def __init__(self, every: int | None = None, interval: float | None = None):
        if every is not None and interval is not None:
            raise ValueError("give a tracker every=<steps> or interval=<model time>, not both")
        if every is not None:
            if isinstance(every, bool) or not isinstance(every, (int, np.integer)) or every < 1:
                raise ValueError(f"every must be a positive integer number of steps, got "
                                 f"{_short(every)}")
        self.every = None if every is None else int(every)
        self.interval = None if interval is None else positive_float("interval", interval)
        self._next_time = math.inf

    def start(self, t: float, state: Any, schedule: Any) -> None:
        """Called once before the first step."""
        if self.interval is not None:
            self._next_time = t + self.interval

    def next_due(self, k: int, schedule) -> int:
        """The first step after k at which this tracker wants to see the state (the run loop
        takes the steps before it at once)."""
        if self.every is not None:
            return (k // self.every + 1) * self.every
        if self.interval is not None:
            return max(k + 1, int(math.ceil((self._next_time - schedule.t0) / schedule.dt
                                            * (1 - 1e-12))))
        return k + 1

    def due(self, k: int, t: float) -> bool:
        if self.every is not None:
            return k % self.every == 0
        if self.interval is not None:
            if t >= self._next_time * (1 - 1e-12):
                while self._next_time <= t * (1 + 1e-12):
                    self._next_time += self.interval
                return True
            return False
        return True

    def observe(self, k: int, t: float, state: Any) -> str | None:
        """Called after every step; runs :meth:`handle` when due."""
        if not self.due(k, t):
            return None
        return self.handle(t, state)

    def handle(self, t: float, state: Any) -> str | None:
        return None

    def finish(self, t: float, state: Any, stop_reason: str) -> None:
        """Called once at the end of the run."""


class CallbackTracker(Tracker):
    """Calls ``fn(t, state)`` on its schedule; a True return stops the run."""

    def __init__(self, fn: Callable[[float, Any], Any], every: int | None = None,
                 interval: float | None = None):
        if not callable(fn):
            raise TypeError(f"CallbackTracker needs a callable fn(t, state), got {_short(fn)}")
        super().__init__(every, interval)
        self.fn = fn

    def handle(self, t, state):
        return self.stop_reason if self.fn(t, state) is True else None


class ProgressTracker(Tracker):
    """A tqdm progress bar over the steps (``progress=None``: shown on a terminal or in
    Jupyter only; tqdm.auto picks the notebook widget there)."""

    def __init__(self, progress: bool | None = None, total: int = 0,
                 desc: str = "pde_popdyn"):
        super().__init__()
        self.enabled = progress_enabled(progress)
        self.total = total
        self.desc = desc
        self.bar = None

    def start(self, t, state, schedule) -> None:
        if self.enabled:
            self.bar = tqdm(total=self.total, desc=self.desc, unit="step", leave=False)

    def next_due(self, k: int, schedule) -> int:
        return schedule.n_steps           # counts the steps taken; needs no state of its own

    def observe(self, k, t, state):
        if self.bar is not None:
            self.bar.update(k - self.bar.n)
        return None

    def finish(self, t, state, stop_reason) -> None:
        if self.bar is not None:
            self.bar.close()


class SteadyStateTracker(Tracker):
    """Stops the run once the state changes by less than ``atol + rtol·max|state|`` per unit
    of model time between two checks (default: every step)."""

    stop_reason = "steady_state"

    def __init__(self, atol: float = 1e-8, rtol: float = 1e-5, every: int | None = None,
                 interval: float | None = None):
        super().__init__(every, interval)
        self.atol = positive_float("atol", atol, allow_zero=True)
        self.rtol = positive_float("rtol", rtol, allow_zero=True)
        self._last: tuple[float, np.ndarray] | None = None

    def start(self, t, state, schedule) -> None:
        super().start(t, state, schedule)
        if not isinstance(state, np.ndarray):
            raise TypeError("SteadyStateTracker watches a density (pp.solve or "
                            "pp.solve_reduced); a particle population never stops moving")
        self._last = (t, state.copy())

    def handle(self, t, state):
        t0, prev = self._last
        self._last = (t, state.copy())
        if t <= t0:
            return None
        rate = float(np.abs(state - prev).max()) / (t - t0)
        return self.stop_reason if rate <= self.atol + self.rtol * float(
            np.abs(state).max()) else None


class GuardTracker(Tracker):
    """Stops the run (with a warning) when the state holds NaN/inf, or values below
    −``tol``·max|state| (a negative density)."""

    stop_reason = "guard"

    def __init__(self, tol: float = 1e-12, every: int | None = None,
                 interval: float | None = None):
        super().__init__(every, interval)
        self.tol = positive_float("tol", tol, allow_zero=True)
        self.found: str | None = None

    def handle(self, t, state):
        arrays = [state] if isinstance(state, np.ndarray) else \
            [np.asarray(getattr(state, n)) for n in ("theta", "h") if hasattr(state, n)]
        for a in arrays:
            if not np.all(np.isfinite(a)):
                self.found = f"non-finite values at t={t:g}"
                break
            if isinstance(state, np.ndarray) and a.min() < -self.tol * np.abs(a).max():
                self.found = f"negative density {a.min():.3g} at t={t:g}"
                break
        if self.found:
            warnings.warn(f"GuardTracker stopped the run: {self.found}", RuntimeWarning,
                          stacklevel=2)
            return self.stop_reason
        return None


class PlotTracker(Tracker):
    """Live plot of the h-marginal ρ(t, h) (or of the agents' h-histogram): redrawn in place
    in a notebook (IPython display), or saved to ``path`` (PNG) on each update elsewhere.

    ``grid`` is needed for joint states (to take the h-marginal) and for particle histograms.
    """

    def __init__(self, grid=None, every: int | None = None, interval: float | None = None,
                 path: str | None = None):
        super().__init__(every, interval)
        self.grid = grid
        self.path = path
        self.fig = self.ax = self.handle_ = None

    def _rho(self, state) -> tuple[np.ndarray, np.ndarray]:
        g = self.grid
        if isinstance(state, np.ndarray):
            if g is None:
                raise ValueError("PlotTracker needs grid= to plot a density")
            rho = state if state.ndim == g.ndim_h else g.marginal(state, "h")
            if g.ndim_h > 1:
                rho = rho.reshape(g.h_shape[0], -1).sum(axis=1) * np.prod(g.dh[1:])
            return g.h_axes[0].centres, rho
        h = np.asarray(state.h).reshape(len(state.h), -1)[:, 0]
        edges = g.h_axes[0].edges if g is not None else np.histogram_bin_edges(h, 40)
        counts, edges = np.histogram(h, bins=edges, density=True)
        return 0.5 * (edges[1:] + edges[:-1]), counts

    def handle(self, t, state):
        import matplotlib.pyplot as plt      # noqa: PLC0415 - plotting is optional at run time
        x, rho = self._rho(state)
        if self.fig is None:
            self.fig, self.ax = plt.subplots(figsize=(5, 3))
            self.ax.set_xlabel("h")
            self.ax.set_ylabel("ρ(t, h)")
        for line in self.ax.lines:           # earlier states fade to grey
            line.set_color("0.75")
            line.set_linewidth(0.8)
        self.ax.plot(x, rho, color="C0", lw=1.8)
        self.ax.relim()
        self.ax.autoscale_view()
        self.ax.set_title(f"t = {t:.4g}")
        if self.path is not None:
            self.fig.savefig(self.path, dpi=80)
        elif in_jupyter():
            from IPython.display import clear_output, display   # noqa: PLC0415
            clear_output(wait=True)
            display(self.fig)
        return None

    def finish(self, t, state, stop_reason) -> None:
        if self.fig is not None and self.path is None and in_jupyter():
            import matplotlib.pyplot as plt  # noqa: PLC0415
            plt.close(self.fig)


def as_trackers(trackers: Any) -> list[Tracker]:
    """``trackers`` (None, a tracker, a callable, or a sequence of them) as a list of
    :class:`Tracker` objects; plain callables run every step."""
    if trackers is None:
        return []
    items = list(trackers) if isinstance(trackers, (list, tuple)) else [trackers]
    out: list[Tracker] = []
    for tr in items:
        if isinstance(tr, Tracker):
            out.append(tr)
        elif callable(tr):
            out.append(CallbackTracker(tr))
        else:
            raise TypeError(f"trackers must hold pp.trackers objects or callables fn(t, state) "
                            f"returning True to stop; got {_short(tr)}")
    return out


__all__ = ["Tracker", "CallbackTracker", "ProgressTracker", "SteadyStateTracker",
           "GuardTracker", "PlotTracker", "as_trackers", "progress_enabled"]
