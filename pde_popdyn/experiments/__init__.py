"""Experiments on real networks, checked against the continuum.

These modules train populations of small numpy networks (batched over the agents: stacked
weights, one matrix product per layer for the whole population) under population-based
training, and compare what the population does with what the reduced equation for ρ(t, h)
predicts from an effective fitness F̄(h) estimated independently of the population.

* :mod:`.nets`, :mod:`.dqn`, :mod:`.cartpole` — DQN agents on CartPole (needs the optional
  ``gymnasium``: ``pip install pde_popdyn[gym]``), with the reference PBT code's conventions;
* :mod:`.pbt`, :mod:`.record`, :mod:`.analysis` — a generic PBT driver for batched agents, its
  recording in the particle snapshot format, and the analyses (selection noise, PCA,
  lineages, F̄ from fixed-h agents, comparison with a prediction);
* :mod:`.supervised` — multilayer perceptrons trained by minibatch SGD on a dataset
  scikit-learn ships, with the log weight decay as hyperparameter (needs the ``examples``
  extra);
* :mod:`.continuum` — the reduced PBT map's prediction of ρ(t, h) for such runs.

Nothing here is imported by ``import pde_popdyn``; optional dependencies are imported when
used.
"""
