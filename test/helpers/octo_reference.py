"""Octo's actions for a sequence of observations, computed in-process through Octo's own wrappers.

Runs in the Octo policy environment: ``python test/helpers/octo_reference.py CHECKPOINT IN.npz OUT.npz``.
The observations are replayed by a gym env wrapped the way Octo's evaluation code wraps a
robot (``octo.utils.gym_wrappers``: ``NormalizeProprio``, ``ResizeImageWrapper`` without the
crop averaging of augmented keys, as Octo's robot example feeds images, and
``HistoryWrapper``); each step's window goes to ``OctoModel.sample_actions`` with the
statistics that ``unnorm_key`` names, walked as the ``agents`` project walks them
(``reduce(getitem, unnorm_key, dataset_statistics)``). The tests compare what the served
adapter returns with this.

IN.npz: ``unnorm_key`` (JSON list), ``window`` (int), ``instructions`` (one per episode) and,
per episode ``i``, one ``[T_i, ...]`` array per observation key named ``"{i}/{key}"``
(``image_*`` uint8, ``proprio``).
OUT.npz: per episode ``i``, ``"{i}"``: ``[T_i, action_horizon, action_dim]``.
"""
import json
import sys
from functools import reduce
from operator import getitem

import gym
import jax
import numpy as np
from octo.model.octo_model import OctoModel
from octo.utils.gym_wrappers import HistoryWrapper, NormalizeProprio, ResizeImageWrapper


class Replay(gym.Env):
    """Returns the given observations, one per step."""

    def __init__(self, frames, action_dim):
        self.frames = frames
        spaces = {key: gym.spaces.Box(0, 255, value.shape, np.uint8) if key.startswith("image_") else gym.spaces.Box(-np.inf, np.inf, value.shape, np.float32) for key, value in frames[0].items()}
        self.observation_space = gym.spaces.Dict(spaces)
        self.action_space = gym.spaces.Box(-np.inf, np.inf, (action_dim,), np.float32)
        self.t = 0

    def reset(self, **kwargs):
        self.t = 0
        return dict(self.frames[0]), {}

    def step(self, action):
        self.t += 1
        return dict(self.frames[self.t]), 0.0, False, False, {}


def episode_actions(model, statistics, window, instruction, frames):
    """Octo's chunks for one episode's observations, step by step."""
    example = model.example_batch["observation"]
    sizes = {key.removeprefix("image_"): tuple(np.shape(example[key])[2:4]) for key in frames[0] if key.startswith("image_")}
    env = Replay(frames, len(statistics["action"]["mean"]))
    env = HistoryWrapper(ResizeImageWrapper(NormalizeProprio(env, statistics), sizes, augmented_keys=()), window)
    tasks = model.create_tasks(texts=[instruction])
    actions = []
    for t in range(len(frames)):
        obs = env.reset()[0] if t == 0 else env.step(None)[0]
        batch = jax.tree_map(lambda x: np.asarray(x)[None], obs)
        chunk = model.sample_actions(batch, tasks, unnormalization_statistics=statistics["action"], rng=jax.random.PRNGKey(0))
        actions.append(np.asarray(chunk)[0])
    return np.stack(actions)


def main(checkpoint, source, target):
    data = np.load(source)
    model = OctoModel.load_pretrained(checkpoint)
    statistics = reduce(getitem, json.loads(str(data["unnorm_key"])), model.dataset_statistics)
    out = {}
    for i, instruction in enumerate(data["instructions"]):
        keys = [name.split("/", 1)[1] for name in data.files if name.startswith(f"{i}/")]
        frames = [{key: data[f"{i}/{key}"][t] for key in keys} for t in range(len(data[f"{i}/{keys[0]}"]))]
        out[str(i)] = episode_actions(model, statistics, int(data["window"]), str(instruction), frames)
    np.savez(target, **out)


if __name__ == "__main__":
    main(*sys.argv[1:4])
