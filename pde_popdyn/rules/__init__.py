"""Selection and mutation rules, one class per rule (see :mod:`pde_popdyn.rules.base` for the
faces every rule provides)."""

from .base import (REGISTRY, MutationRule, Rule, SelectionRule, Setting, rule_from_dict)
from .jump import BoltzmannJump, Truncation
from .mutation import Diffusion, GaussianJump, Perturb, PriorResample, check_mutations
from .pbt import PBT
from .replicator import Replicator

__all__ = ["Rule", "SelectionRule", "MutationRule", "Setting", "REGISTRY", "rule_from_dict",
           "Replicator", "BoltzmannJump", "Truncation", "PBT", "Diffusion", "GaussianJump",
           "Perturb", "PriorResample", "check_mutations"]
