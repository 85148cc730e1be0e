"""The state of a particle run: the agents' θ and h, and each agent's fitness memory."""

from __future__ import annotations

import numpy as np


class Population:
    """θ of shape (N,) or (N, d), h of shape (N,), and per-agent fitness-window memory
    (``wavg`` for an exponential window; ``wbuf``/``wsum`` for a running one), which copies
    carry along."""

    __slots__ = ("theta", "h", "wavg", "wbuf", "wsum")

    def __init__(self, theta, h, wavg=None, wbuf=None, wsum=None):
        self.theta, self.h, self.wavg, self.wbuf, self.wsum = theta, h, wavg, wbuf, wsum

    def _map(self, fn) -> "Population":
        return Population(*(None if a is None else fn(a, 1 if name == "wbuf" else 0)
                            for name, a in zip(self.__slots__, self._arrays())))

    def _arrays(self):
        return (self.theta, self.h, self.wavg, self.wbuf, self.wsum)

    def repeat(self, counts: np.ndarray) -> "Population":
        """Agent i repeated counts[i] times (resampling by offspring numbers)."""
        return self._map(lambda a, ax: np.repeat(a, counts, axis=ax))

    def take(self, idx: np.ndarray) -> "Population":
        """The agents ``idx`` (with repetition)."""
        return self._map(lambda a, ax: np.take(a, idx, axis=ax))

    def copy(self) -> "Population":
        return self._map(lambda a, ax: a.copy())


__all__ = ["Population"]
