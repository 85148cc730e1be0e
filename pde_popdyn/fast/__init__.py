"""The fast θ-part 𝓛_ε: discretisations and their exact or L-stable steps."""

from .fv import FastPropagator, SGOperator, bernoulli, check_gibbs_on_box

__all__ = ["FastPropagator", "SGOperator", "bernoulli", "check_gibbs_on_box"]
