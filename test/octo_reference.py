"""Octo's actions for a sequence of observations, computed in-process through Octo's own wrappers.

Runs in the Octo policy environment: ``python test/octo_reference.py CHECKPOINT IN.npz OUT.npz``.
The observations are replayed by a gym env wrapped the way Octo's evaluation code wraps a
robot (``octo.utils.gym_wrappers``: ``NormalizeProprio``, ``ResizeImageWrapper`` without the
crop averaging of augmented keys, as Octo's robot example feeds images, and
``HistoryWrapper``); each step's window goes to ``OctoModel.sample_actions`` with the
statistics that ``unnorm_key`` names, walked as the ``agents`` project walks them
(``reduce(getitem, unnorm_key, dataset_statistics)``). The tests compare what the served
adapter returns with this.

IN.npz: one ``[T, ...]`` array per observation key (``image_*`` uint8, ``proprio``), and
``instruction`` (str), ``unnorm_key`` (JSON list), ``window`` (int).
OUT.npz: ``actions`` ``[T, action_horizon, action_dim]``.
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


def main(checkpoint, source, target):
    data = np.load(source)
    keys = [key for key in data.files if key.startswith("image_") or key == "proprio"]
    frames = [{key: data[key][t] for key in keys} for t in range(len(data[keys[0]]))]
    model = OctoModel.load_pretrained(checkpoint)
    statistics = reduce(getitem, json.loads(str(data["unnorm_key"])), model.dataset_statistics)
    example = model.example_batch["observation"]
    sizes = {key.removeprefix("image_"): tuple(np.shape(example[key])[2:4]) for key in keys if key.startswith("image_")}
    env = Replay(frames, len(statistics["action"]["mean"]))
    env = HistoryWrapper(ResizeImageWrapper(NormalizeProprio(env, statistics), sizes, augmented_keys=()), int(data["window"]))
    tasks = model.create_tasks(texts=[str(data["instruction"])])
    actions = []
    for t in range(len(frames)):
        obs = env.reset()[0] if t == 0 else env.step(None)[0]
        batch = jax.tree_map(lambda x: np.asarray(x)[None], obs)
        chunk = model.sample_actions(batch, tasks, unnormalization_statistics=statistics["action"], rng=jax.random.PRNGKey(0))
        actions.append(np.asarray(chunk)[0])
    np.savez(target, actions=np.stack(actions))


if __name__ == "__main__":
    main(*sys.argv[1:4])
