"""Convergence and performance benchmarks of pde_popdyn.

Run ``python -m benchmarks [NAME ...] [--quick] [--out DIR]`` from the repository root.

A *study* is a module ``benchmarks/study_<name>.py`` exposing

* ``NAME: str`` and ``DESCRIPTION: str``;
* ``run(quick: bool, outdir: pathlib.Path) -> dict``, which writes ``<outdir>/<NAME>.json``
  (raw numbers, fitted slopes with their spread, machine info, date) and ``<outdir>/<NAME>.png``
  and returns at least ``{"headline": "<one line>", "passed": bool | None}``.

The runner (:func:`run_studies`) discovers the studies, runs the selected ones, catches a
failing study's exception and reports it without losing the others, stores a ``"summary"``
record (headline, passed, status, date, machine, wall time) in each study's JSON file and
regenerates ``RESULTS.md`` from *all* the JSON files of the output directory, so rows of
studies not run this time are kept.
"""

from __future__ import annotations

import importlib
import os
import pkgutil
import sys
import time
import traceback
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from ._common import (DEFAULT_OUTDIR, DEFAULT_RESULTS_MD, machine_info, machine_summary, now,
                      read_json, write_json)

STUDY_PREFIX = "study_"


class BrokenStudy:
    """Stands in for a study module that failed to import; running it re-raises the error."""

    def __init__(self, name: str, error: BaseException, tb: str):
        self.NAME = name
        self.DESCRIPTION = f"(import failed: {type(error).__name__}: {error})"
        self.error = error
        self.traceback = tb

    def run(self, quick: bool, outdir: Path) -> dict:
        raise ImportError(f"benchmarks.{STUDY_PREFIX}{self.NAME} could not be imported:\n"
                          f"{self.traceback}") from self.error


def discover() -> dict[str, Any]:
    """Every ``benchmarks/study_*.py``, keyed by its ``NAME``, in name order.

    A module that fails to import is returned as a :class:`BrokenStudy` so that the failure is
    reported as that study's result instead of stopping the others.
    """
    studies: dict[str, Any] = {}
    for info in pkgutil.iter_modules(__path__):
        if not info.name.startswith(STUDY_PREFIX):
            continue
        key = info.name[len(STUDY_PREFIX):]
        try:
            mod = importlib.import_module(f"{__name__}.{info.name}")
        except Exception as exc:  # noqa: BLE001 - reported as the study's failure
            studies[key] = BrokenStudy(key, exc, traceback.format_exc())
            continue
        studies[str(getattr(mod, "NAME", key))] = mod
    return dict(sorted(studies.items()))


def _loadavg() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except (AttributeError, OSError):  # pragma: no cover - not on Unix
        return None


def _results_md_for(outdir: Path) -> Path:
    """benchmarks/RESULTS.md for the default output directory, else <outdir>/RESULTS.md."""
    if outdir.resolve() == DEFAULT_OUTDIR.resolve():
        return DEFAULT_RESULTS_MD
    return outdir / "RESULTS.md"


def _check_result(name: str, result: Any) -> dict:
    if not isinstance(result, dict):
        raise TypeError(f"study {name!r}: run() must return a dict with 'headline' and "
                        f"'passed', got {type(result).__name__}")
    missing = [k for k in ("headline", "passed") if k not in result]
    if missing:
        raise KeyError(f"study {name!r}: run() returned no {missing}; the contract needs "
                       f"'headline' (str) and 'passed' (bool or None)")
    if result["passed"] is not None and not isinstance(result["passed"], bool):
        raise TypeError(f"study {name!r}: 'passed' must be True, False or None, got "
                        f"{result['passed']!r}")
    return result


def run_one(name: str, study: Any, *, quick: bool, outdir: Path,
            machine: dict | None = None, echo: bool = True) -> dict:
    """Run one study, catching its exception; write its summary into ``<outdir>/<name>.json``.

    Returns the summary record: study, description, headline, passed, status ('ok' or
    'error'), error, quick, date, machine, wall_seconds, json, figure.
    """
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    json_path = outdir / f"{name}.json"
    png_path = outdir / f"{name}.png"
    started = now()
    t0 = time.perf_counter()
    status, error, tb, result = "ok", None, None, {}
    try:
        result = _check_result(name, study.run(quick, outdir))
        if not json_path.exists():
            raise FileNotFoundError(f"study {name!r} did not write {json_path}")
    except Exception as exc:  # noqa: BLE001 - one study's failure must not lose the others
        status, error, tb = "error", f"{type(exc).__name__}: {exc}", traceback.format_exc()
    wall = time.perf_counter() - t0
    summary = {
        "study": name,
        "description": str(getattr(study, "DESCRIPTION", "")),
        "headline": str(result.get("headline", "")) if status == "ok" else f"ERROR: {error}",
        "passed": result.get("passed") if status == "ok" else None,
        "status": status,
        "error": error,
        "traceback": tb,
        "quick": bool(quick),
        "date": started,
        "machine": machine if machine is not None else machine_info(),
        "wall_seconds": wall,
        "loadavg_end": _loadavg(),
        "json": json_path.name,
        "figure": png_path.name if (status == "ok" and png_path.exists()) else None,
    }
    data: dict = {}
    if status == "ok":
        loaded = read_json(json_path)
        data = loaded if isinstance(loaded, dict) else {"data": loaded}
    # on error the file holds only the failure record, so a row never shows stale numbers
    data["summary"] = summary
    write_json(json_path, data)
    if echo:
        if status == "ok":
            print(f"[{name}] done in {wall:.1f} s: {summary['headline']}", flush=True)
        else:
            print(f"[{name}] FAILED after {wall:.1f} s: {error}", flush=True)
            print(tb, file=sys.stderr, flush=True)
    return summary


def collect_summaries(outdir: Path) -> list[dict]:
    """The ``"summary"`` records of every ``<outdir>/*.json``, ordered by study name."""
    rows = []
    for path in sorted(Path(outdir).glob("*.json")):
        try:
            data = read_json(path)
        except (OSError, ValueError):
            continue
        if isinstance(data, dict) and isinstance(data.get("summary"), dict) \
                and "study" in data["summary"]:
            rows.append(data["summary"])
    return sorted(rows, key=lambda s: str(s["study"]))


def _cell(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _passed_cell(s: dict) -> str:
    if s.get("status") == "error":
        return "error"
    return {True: "yes", False: "**no**", None: "—"}[s.get("passed")]


def _wall_cell(seconds: Any) -> str:
    if not isinstance(seconds, (int, float)):
        return "?"
    return f"{seconds:.1f} s" if seconds < 120 else f"{seconds / 60:.1f} min"


def render_results_md(summaries: Sequence[dict], outdir: Path, results_md: Path) -> str:
    """The text of RESULTS.md: one table row per study, then each study's description and
    figure. Paths are relative to RESULTS.md."""
    outdir = Path(outdir)
    rel = Path(os.path.relpath(outdir.resolve(), results_md.parent.resolve()))
    lines = [
        "# Benchmark results",
        "",
        "Generated by `python -m benchmarks` from the JSON files in "
        f"`{rel.as_posix()}/`: do not edit by hand. Rerun every study with "
        "`python -m benchmarks`, one with `python -m benchmarks NAME`, and add `--quick` "
        "for a short smoke run (mode `quick` below).",
        "",
        "| study | headline | passed | mode | date (UTC) | machine | wall time |",
        "|---|---|---|---|---|---|---|",
    ]
    for s in summaries:
        name = _cell(s["study"])
        study = f"[{name}]({(rel / s['json']).as_posix()})" if s.get("json") else name
        lines.append("| " + " | ".join([
            study, _cell(s.get("headline", "")), _passed_cell(s),
            "quick" if s.get("quick") else "full", _cell(s.get("date", "?")),
            _cell(machine_summary(s.get("machine") or {})), _wall_cell(s.get("wall_seconds")),
        ]) + " |")
    for s in summaries:
        lines += ["", f"## {s['study']}", ""]
        if s.get("description"):
            lines += [str(s["description"]), ""]
        if s.get("status") == "error":
            lines += ["```", str(s.get("traceback") or s.get("error")).rstrip(), "```"]
        elif s.get("figure"):
            lines.append(f"![{s['study']}]({(rel / s['figure']).as_posix()})")
    return "\n".join(lines) + "\n"


def write_results_md(outdir: Path, results_md: Path | None = None) -> Path:
    """Regenerate RESULTS.md from the JSON summaries in ``outdir``; return its path."""
    outdir = Path(outdir)
    results_md = Path(results_md) if results_md is not None else _results_md_for(outdir)
    text = render_results_md(collect_summaries(outdir), outdir, results_md)
    results_md.parent.mkdir(parents=True, exist_ok=True)
    results_md.write_text(text, encoding="utf-8")
    return results_md


def run_studies(names: Iterable[str] | None = None, *, quick: bool = False,
                outdir: str | Path | None = None, studies: Mapping[str, Any] | None = None,
                results_md: str | Path | None = None, echo: bool = True) -> list[dict]:
    """Run the named studies (all by default) and regenerate RESULTS.md.

    ``studies`` maps names to study objects (default: :func:`discover`). Unknown names raise
    ValueError before anything runs. Returns the summaries of the studies run now.
    """
    studies = discover() if studies is None else dict(studies)
    outdir = Path(outdir) if outdir is not None else DEFAULT_OUTDIR
    selected = list(studies) if not names else list(dict.fromkeys(names))
    unknown = [n for n in selected if n not in studies]
    if unknown:
        raise ValueError(f"unknown benchmark(s) {unknown}; available: {sorted(studies)}")
    machine = machine_info()
    summaries = []
    for name in selected:
        if echo:
            print(f"[{name}] running ({'quick' if quick else 'full'}) ...", flush=True)
        summaries.append(run_one(name, studies[name], quick=quick, outdir=outdir,
                                 machine=machine, echo=echo))
    path = write_results_md(outdir, None if results_md is None else Path(results_md))
    if echo:
        print(f"wrote {path}", flush=True)
    return summaries


def main(argv: Sequence[str] | None = None, prog: str = "python -m benchmarks") -> int:
    """Command line: ``python -m benchmarks [NAME ...] [--quick] [--out DIR] [--list]``.

    Exit status 0 if every selected study ran (whether or not it met its bar), 1 if one
    raised, 2 for unknown names.
    """
    import argparse

    parser = argparse.ArgumentParser(
        prog=prog,
        description="Run pde_popdyn's convergence and performance studies and regenerate "
                    "benchmarks/RESULTS.md.")
    parser.add_argument("names", nargs="*", metavar="NAME",
                        help="studies to run (default: all); see --list")
    parser.add_argument("--quick", action="store_true",
                        help="small settings: a smoke run of a few minutes in total")
    parser.add_argument("--out", type=Path, default=None, metavar="DIR",
                        help=f"output directory for JSON and figures (default: "
                             f"{os.path.relpath(DEFAULT_OUTDIR)}); RESULTS.md goes to "
                             f"benchmarks/ for the default, else into DIR")
    parser.add_argument("--list", action="store_true", help="list the studies and exit")
    args = parser.parse_args(argv)
    studies = discover()
    if args.list:
        for name, mod in studies.items():
            print(f"{name:16s} {getattr(mod, 'DESCRIPTION', '')}")
        return 0
    try:
        summaries = run_studies(args.names, quick=args.quick, outdir=args.out, studies=studies)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 1 if any(s["status"] == "error" for s in summaries) else 0


__all__ = ["discover", "run_one", "run_studies", "collect_summaries", "render_results_md",
           "write_results_md", "main", "BrokenStudy"]
