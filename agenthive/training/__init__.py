"""The pieces ``scripts/train.py`` is built from, torchrl sota-style: named builders and one update step per algorithm.

* ``networks``: the tanh-Gaussian actor and the Q/V critics (``make_actor``, ``make_critic``).
* ``algorithms``: ``make_algorithm`` -> ``SAC`` or ``PPO``: the loss, its optimizer and
  ``update(batch)``, the gradient steps of one collected batch.
* ``builders``: ``make_replay_buffer``, ``make_collector``, ``make_evaluator``, ``make_logger``.
* ``run``: the run directory: starting or resuming (``start_run``), checkpoints
  (:mod:`agenthive.checkpoint`), and the learning curve (``LearningCurve``: history, plot, CSV).

The builders read the script's arguments (``scripts/train.py``'s ``Args``) by attribute.
"""
