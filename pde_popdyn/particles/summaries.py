"""Summaries of a particle run over time: moments of (θ, h), ⟨F⟩ and, on a grid, the
histogram densities, recorded every few steps without keeping the agents' positions.

Memory: (7 + n_θ·n_h) floats per record, whatever the number of agents.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..trackers import Tracker


def stack_records(records: list[tuple[float, dict]]) -> dict[str, np.ndarray]:
    """{"t": times, name: values over time} from a list of (t, summary) records."""
    if not records:
        return {}
    out: dict[str, Any] = {"t": np.array([t for t, _ in records])}
    for key in records[0][1]:
        out[key] = np.array([r[key] for _, r in records])
    return out


class SummaryRecorder(Tracker):
    """Records ``summarize(state)`` at the start and every ``every`` steps (never stops the
    run); ``summarize`` returns a dict of moments (see :func:`combine_summaries`)."""

    def __init__(self, summarize, every: int):
        super().__init__(every=every)
        self.summarize = summarize
        self.records: list[tuple[float, dict]] = []

    def start(self, t, state, schedule) -> None:
        super().start(t, state, schedule)
        self.records.append((float(t), self.summarize(state)))

    def handle(self, t, state):
        if not self.records or self.records[-1][0] != float(t):
            self.records.append((float(t), self.summarize(state)))
        return None

    def result(self) -> dict[str, np.ndarray]:
        return stack_records(self.records)


__all__ = ["SummaryRecorder", "stack_records"]
