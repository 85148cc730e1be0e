"""The slow h-part: selection and mutation sub-steps."""

from .mutation import DiffusionStep, neumann_eigenvalues
from .selection import ReplicatorStep

__all__ = ["DiffusionStep", "ReplicatorStep", "neumann_eigenvalues"]
