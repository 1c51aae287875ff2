"""Evaluate policies: success rate, return and episode length over K episodes, with videos.

``python -m agenthive eval`` (``cli``) evaluates

* a checkpoint written by ``scripts/train.py`` (``--checkpoint DIR``), in the environment
  it was trained in or in others (``--envs``);
* or a policy served by a server that it starts from a command line (``--server-command``),
  possibly in another Python environment (``conda run -n octo python -m agenthive
  start-server ...``), queried through :class:`~agenthive.modules.RemotePolicyModule`;
* or a range of checkpoints of one run (``--run-dir RUN --steps 10000:100000:10000``), one
  worker process per checkpoint, on ``--devices`` round-robin, each with its own server
  port when the policy is served. A worker that crashes is reported with its checkpoint;
  the others' results are kept.

It writes ``summary.json``, ``summary.csv``, ``episodes.csv``, ``summary.png`` and MP4s of
a few episodes under ``--out-dir``.

An episode counts as a success when the env's ``"success"`` held on more than
:attr:`~agenthive.env_config.EnvConfig.success_steps` of its steps (RoboHive's rule: 5).
For goal-reaching tasks two more rates are reported: success at the episode's last step
(``success_end``: the goal is held) and at any step (``success_any``: it was reached).

* ``metrics``: episodes of a policy and what they count (``run_episodes``, ``success_rate``).
* ``video``: one filmed episode (``record_video``).
* ``policy``: one policy on several env configs, with its summary files (``evaluate``).
* ``checkpoints``: many checkpoints of a run, one worker process each (``evaluate_checkpoints``).
* ``report``: the summary files: CSVs, plots, the printed table.
* ``cli``: ``python -m agenthive eval``.

Checkpoints are read with :mod:`agenthive.checkpoint`; served policies are started with
:class:`agenthive.serving.process.ServerProcess`.
"""
