"""The checkpoint format of a training run: written by ``scripts/train.py``, read by ``python -m agenthive eval``.

A run directory holds ``checkpoints/step_<frames, 9 digits>/``, each with

* ``policy.pt``: the policy module, ``torch.save``d (what ``eval`` and the
  ``torchrl-checkpoint`` policy server load);
* ``state.pt``: networks and optimizer (``loss``, ``optimizer``), ``frames``, ``wall_s``,
  the learning-curve ``history``, ``torch_rng``, the ``logger`` state and ``pending_eval``;
* ``config.json``: ``{"args": the training arguments, "env": the env config}``;
* ``replay_buffer.json`` (off-policy runs): where the memory-mapped replay buffer lies and
  its length then.

The learning-curve ``history`` is ``{"train": [...], "eval": [...]}``; each evaluation point
has ``frames``, ``wall_s`` and the :data:`EVAL_METRICS`.

Example:
    >>> checkpoint_dir("runs/reach", 40_000).as_posix()
    'runs/reach/checkpoints/step_000040000'
"""
from __future__ import annotations

import copy
import json
from pathlib import Path

import torch

from agenthive.env_config import EnvConfig

CHECKPOINT_PREFIX = "step_"
EVAL_METRICS = ("return", "success_rate", "episode_length", "success_end", "success_any")
"""What each evaluation point of the learning curve records (besides ``frames`` and ``wall_s``)."""


def checkpoint_dir(run_dir, frames: int) -> Path:
    """Where the checkpoint at ``frames`` of a run lies."""
    return Path(run_dir) / "checkpoints" / f"{CHECKPOINT_PREFIX}{frames:09d}"


def list_checkpoints(run_dir) -> dict[int, Path]:
    """``{frames: checkpoint directory}`` of a training run (complete checkpoints only)."""
    found = {}
    for path in sorted((Path(run_dir) / "checkpoints").glob(f"{CHECKPOINT_PREFIX}*")):
        if path.name[len(CHECKPOINT_PREFIX):].isdigit():
            found[int(path.name[len(CHECKPOINT_PREFIX):])] = path
    return found


def write_checkpoint(run_dir, frames: int, *, policy, state: dict, args: dict, env_config: EnvConfig, replay_buffer=None) -> Path:
    """Writes ``checkpoints/step_<frames>/``; the directory appears complete or not at all.

    ``state`` is what ``state.pt`` holds (see the module's docstring); ``args`` the training
    arguments as a JSON-able dict. The replay buffer's storage stays where it is (it is
    memory-mapped under ``run_dir/replay_buffer``); only its metadata is written there.
    """
    run_dir, final = Path(run_dir), checkpoint_dir(run_dir, frames)
    tmp = final.with_name(final.name + ".tmp")
    tmp.mkdir(parents=True, exist_ok=True)
    torch.save(copy.deepcopy(policy).cpu().eval(), tmp / "policy.pt")
    torch.save({"frames": frames, **state}, tmp / "state.pt")
    (tmp / "config.json").write_text(json.dumps({"args": args, "env": env_config.to_dict()}, indent=2))
    if replay_buffer is not None:
        replay_buffer.dumps(run_dir / "replay_buffer")  # in place: writes only its metadata
        (tmp / "replay_buffer.json").write_text(json.dumps({"path": str(run_dir / "replay_buffer"), "len": len(replay_buffer)}))
    tmp.rename(final)
    return final


def read_args(checkpoint) -> dict:
    """The training arguments saved in a checkpoint directory."""
    return json.loads(_config_path(checkpoint).read_text())["args"]


def read_env_config(checkpoint) -> EnvConfig:
    """The env config saved in a checkpoint directory."""
    return EnvConfig.from_dict(json.loads(_config_path(checkpoint).read_text())["env"])


def read_state(checkpoint) -> dict:
    """What ``state.pt`` of a checkpoint directory holds (unpickles: load only checkpoints you trust)."""
    return torch.load(Path(checkpoint) / "state.pt", weights_only=False)


def load_policy(checkpoint) -> torch.nn.Module:
    """The policy module saved in a checkpoint directory (its ``policy.pt``)."""
    path = Path(checkpoint) / "policy.pt"
    try:  # torch.save'd modules unpickle code: load only checkpoints you trust
        return torch.load(path, map_location="cpu", weights_only=False)
    except Exception as err:  # torch raises several types for a missing or damaged file
        raise RuntimeError(f"{path} does not load as a torch.save'd policy module ({type(err).__name__}: {err}).") from err


def _config_path(checkpoint) -> Path:
    path = Path(checkpoint) / "config.json"
    if not path.is_file():
        raise FileNotFoundError(f"{checkpoint} is not a train.py checkpoint: it has no config.json (nor, likely, policy.pt).")
    return path
