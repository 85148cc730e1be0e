"""A ledger of the mass that clipping removes.

Two sub-steps end by clipping negative values: the mutation step with continuum eigenvalues
(its spectrally small undershoot) or with finite-volume ones (FFT round-off), and the
truncation map (round-off of f − bottom + gain). Clipping makes ``f ≥ 0`` true by construction,
so a test of positivity after it cannot fail; what can fail, and what the solvers report in
``info["clipped_mass"]``, is the mass each clip removed, relative to the mass of the state it
acted on: the total over the run and the largest single clip, per source.
"""

from __future__ import annotations

import numpy as np


class ClipLedger:
    """Accumulates, per named source, the relative mass removed by clipping to ≥ 0."""

    def __init__(self) -> None:
        self.total: dict[str, float] = {}
        self.largest: dict[str, float] = {}

    def clip(self, name: str, g: np.ndarray, mass: float) -> np.ndarray:
        """Clip ``g`` to ≥ 0 in place and record the removed mass relative to ``mass``."""
        neg = g < 0
        if neg.any():
            removed = float(-g[neg].sum()) / float(mass) if mass > 0 else 0.0
            g[neg] = 0.0
        else:
            removed = 0.0
        self.total[name] = self.total.get(name, 0.0) + removed
        self.largest[name] = max(self.largest.get(name, 0.0), removed)
        return g

    def summary(self) -> dict[str, dict[str, float]]:
        """{source: {"total": Σ removed, "largest": max removed in one clip}}."""
        return {k: {"total": self.total[k], "largest": self.largest[k]} for k in self.total}


#: a ledger for steps built outside a solver (nothing reads it)
def scratch() -> ClipLedger:
    return ClipLedger()
