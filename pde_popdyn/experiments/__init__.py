"""Experiments on real networks, checked against the continuum.

These modules train populations of small numpy networks (batched over the agents: stacked
weights, one matrix product per layer for the whole population) under population-based
training, and compare what the population does with what the reduced equation for ρ(t, h)
predicts from an effective fitness F̄(h) estimated independently of the population.

* :mod:`pde_popdyn.experiments.supervised` — multilayer perceptrons trained by minibatch SGD on
  a dataset scikit-learn ships, with the log weight decay as hyperparameter (needs the
  ``examples`` extra: ``pip install pde_popdyn[examples]``).

Nothing here is imported by ``import pde_popdyn``; optional dependencies are imported when
used.
"""
