"""Cost and size of HDF5 snapshots (issue 6's overhead bar).

Problem. The README example (preset ``quadratic-bilevel``: replicator κ = 4, D = 0.02,
ε = 0.01) on a 256² grid with Δt = 0.02, 100 Strang steps (quick: 128², 40 steps).

Overhead. The time loop (:func:`pde_popdyn.run.run`) is run with the same stepper,
whose propagator e^{ΔtA} is built once beforehand (so set-up, identical with and without
output, does not dilute the ratio), three ways: without output, with a
:class:`pde_popdyn.io.SnapshotWriter` observer writing every 10 steps (the bar: ≤ 10 % extra
wall time), and writing every step (informative). Each also keeps its saved states in memory,
as ``pp.solve`` does, so the difference is the writer alone: one density (256² float64 cells,
gzip level 1), seven diagnostics, two flushes per snapshot in SWMR mode. The variants are
interleaved over repeats and the minimum of each is kept; CPU times are recorded beside the
wall times since the machine is shared. LZF compression is measured too (informative).

Size. The file written every 10 steps against the same float64 densities compressed by zlib at
the same level in one stream (the bar: file ≤ 2× that), and against the raw bytes.
"""

from __future__ import annotations

import os
import tempfile
import time
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from pde_popdyn.io import SnapshotWriter
from pde_popdyn.presets import readme_example
from pde_popdyn.equations import JointSystem
from pde_popdyn.run import FunctionSystem, Schedule, run as run_loop

from ._common import machine_info, now, write_json

NAME = "io"
DESCRIPTION = (
    "HDF5 snapshot overhead: wall time of the 256² README example (100 Strang steps, dt=0.02) "
    "with a SWMR snapshot writer every 10 steps against no output (bar <= 10% extra), and the "
    "file size against the same float64 densities compressed by zlib (bar <= 2x).")

OVERHEAD_BAR = 0.10
SIZE_BAR = 2.0
CONFIG = {"full": {"n": 256, "steps": 100, "repeats": 3},
          "quick": {"n": 128, "steps": 40, "repeats": 2}}
DT = 0.02


def _loop(stepper, f0, schedule, writer: SnapshotWriter | None) -> tuple[float, float]:
    t0, c0 = time.perf_counter(), time.process_time()
    run_loop(FunctionSystem(stepper), f0, schedule, progress=False, writer=writer)
    if writer is not None:
        writer.finish()
    return time.perf_counter() - t0, time.process_time() - c0


def run(quick: bool, outdir: Path) -> dict[str, Any]:
    cfg = CONFIG["quick" if quick else "full"]
    n, steps, repeats = cfg["n"], cfg["steps"], cfg["repeats"]
    prob = readme_example()
    grid = prob.grid(n, n)
    model = prob.model()
    f0 = prob.initial(grid)
    stepper = JointSystem(model, grid).step
    t_setup = time.perf_counter()
    stepper(f0, DT)  # builds e^{Δt A} once, outside every timing
    t_setup = time.perf_counter() - t_setup

    variants = {"none": (10, None), "every10_gzip": (10, "gzip"),
                "every1_gzip": (1, "gzip"), "every10_lzf": (10, "lzf")}
    wall: dict[str, list[float]] = {k: [] for k in variants}
    cpu: dict[str, list[float]] = {k: [] for k in variants}
    sizes: dict[str, int] = {}
    write_times: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for rep in range(repeats):
            for name, (every, comp) in variants.items():
                schedule = Schedule.make(0.0, steps * DT, DT, every)
                writer = None
                path = Path(tmp) / f"{name}.h5"
                if comp is not None:
                    writer = SnapshotWriter(path, kind="joint", grid=grid, model=model,
                                            overwrite=True, compression=comp,
                                            attrs={"scheme": "fv", "splitting": "strang",
                                                   "dt": schedule.dt, "save_every": every})
                w, c = _loop(stepper, f0, schedule, writer)
                wall[name].append(w)
                cpu[name].append(c)
                if writer is not None:
                    sizes[name] = path.stat().st_size
        # the cost of one snapshot write, timed directly (gzip, every 10 steps' states)
        schedule = Schedule.make(0.0, steps * DT, DT, 10)
        states = np.asarray(run_loop(FunctionSystem(stepper), f0, schedule,
                                     progress=False).states)
        writer = SnapshotWriter(Path(tmp) / "direct.h5", kind="joint", grid=grid, model=model,
                                attrs={"dt": DT})
        per = []
        for k, f in enumerate(states):
            t0 = time.perf_counter()
            writer(k * 10 * DT, f)
            per.append(time.perf_counter() - t0)
        writer.finish()
        write_times["gzip_mean_s"] = float(np.mean(per[1:]))  # the first creates the layout
        write_times["gzip_first_s"] = per[0]

    best = {k: min(v) for k, v in wall.items()}
    best_cpu = {k: min(v) for k, v in cpu.items()}
    overhead = {k: best[k] / best["none"] - 1 for k in variants if k != "none"}
    overhead_cpu = {k: best_cpu[k] / best_cpu["none"] - 1 for k in variants if k != "none"}
    raw = states.nbytes
    zlib_size = len(zlib.compress(np.ascontiguousarray(states).tobytes(), 1))
    size_ratio = sizes["every10_gzip"] / zlib_size
    passed = overhead["every10_gzip"] <= OVERHEAD_BAR and size_ratio <= SIZE_BAR

    data = {
        "name": NAME, "date": now(), "machine": machine_info(), "quick": quick,
        "problem": {"preset": "quadratic-bilevel", "grid": [n, n], "dt": DT, "steps": steps,
                    "compression_level_gzip": 1},
        "setup_seconds_once": t_setup,
        "wall_seconds": wall, "cpu_seconds": cpu, "best_wall": best, "best_cpu": best_cpu,
        "overhead_wall": overhead, "overhead_cpu": overhead_cpu,
        "step_seconds": best["none"] / steps,
        "write_seconds_per_snapshot": write_times,
        "file_bytes": sizes, "snapshots_every10": int(len(states)),
        "raw_float64_bytes": raw, "zlib1_bytes": zlib_size,
        "file_over_zlib": size_ratio, "file_over_raw": sizes["every10_gzip"] / raw,
        "bars": {"overhead": OVERHEAD_BAR, "size_ratio": SIZE_BAR}, "passed": passed,
    }
    write_json(outdir / f"{NAME}.json", data)
    _figure(data, outdir / f"{NAME}.png")
    headline = (f"{n}² README example, {steps} steps: writing every 10 steps costs "
                f"{100 * overhead['every10_gzip']:+.1f}% wall ({100 * overhead_cpu['every10_gzip']:+.1f}% CPU; "
                f"bar ≤ {100 * OVERHEAD_BAR:.0f}%), every step {100 * overhead['every1_gzip']:+.1f}%; "
                f"file = {size_ratio:.2f}× zlib-compressed float64 data (bar ≤ {SIZE_BAR:g}×), "
                f"{sizes['every10_gzip'] / raw:.2f}× raw")
    return {"headline": headline, "passed": passed}


def _figure(data: dict, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, (a0, a1) = plt.subplots(1, 2, figsize=(11, 4), layout="constrained")
    names = list(data["best_wall"])
    labels = {"none": "no output", "every10_gzip": "every 10 steps\n(gzip)",
              "every1_gzip": "every step\n(gzip)", "every10_lzf": "every 10 steps\n(lzf)"}
    x = np.arange(len(names))
    a0.bar(x - 0.2, [data["best_wall"][k] for k in names], 0.4, label="wall (min)")
    a0.bar(x + 0.2, [data["best_cpu"][k] for k in names], 0.4, label="CPU (min)")
    base = data["best_wall"]["none"]
    a0.axhline(base * (1 + OVERHEAD_BAR), color="C3", ls=":", label="bar: +10% wall")
    a0.set_xticks(x, [labels[k] for k in names])
    a0.set(ylabel="time loop [s]", title=f"{data['problem']['grid'][0]}² grid, "
           f"{data['problem']['steps']} steps")
    a0.legend(fontsize=8)
    mb = 1e-6
    bars = {"raw float64": data["raw_float64_bytes"], "zlib level 1": data["zlib1_bytes"],
            "HDF5 gzip": data["file_bytes"]["every10_gzip"],
            "HDF5 lzf": data["file_bytes"]["every10_lzf"]}
    a1.bar(list(bars), [v * mb for v in bars.values()], color=["0.6", "C0", "C2", "C1"])
    a1.axhline(SIZE_BAR * data["zlib1_bytes"] * mb, color="C3", ls=":",
               label="bar: 2× zlib size")
    a1.set(ylabel="size [MB]", title=f"{data['snapshots_every10']} snapshots")
    a1.legend(fontsize=8)
    fig.suptitle("HDF5 snapshot cost and size")
    fig.savefig(path, dpi=100)
    plt.close(fig)


if __name__ == "__main__":  # pragma: no cover
    import sys
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).parent / "results"
    print(run("--quick" in sys.argv, out)["headline"])
