"""Population-based training of real networks, agent by agent, for comparison with the
mean-field equations: numpy networks batched over a population (:mod:`.nets`), DQN agents
(:mod:`.dqn`) on CartPole (:mod:`.cartpole`, needs the optional ``gymnasium``), and a generic
PBT driver (:mod:`.pbt`). Nothing here is imported by ``import pde_popdyn``; gymnasium is
imported only when an environment is made.
"""
