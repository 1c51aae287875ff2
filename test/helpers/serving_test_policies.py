"""Small policies whose outputs reveal what the server did: served by the server tests.

Each returns numbers the tests can predict: the per-episode step, the batch size the
policy saw, the instruction's length, sums of the images it received.
"""
import time

import numpy as np

from agenthive.serving import Policy, PolicyMetadata


class CountingPolicy(Policy):
    """actions[k] = [episode step, batch size seen, len(instruction), state sum + k] for k in the chunk."""

    def __init__(self, chunk_length=1, act_seconds=0.0, takes_instruction=False):
        self.act_seconds = act_seconds
        self.metadata = PolicyMetadata("counting", {"state": ((3,), "float32")}, (4,), chunk_length=chunk_length, takes_instruction=takes_instruction)

    def reset(self, instruction=None):
        return {"instruction": instruction or "", "step": 0}

    def act_batch(self, observations, episodes):
        time.sleep(self.act_seconds)
        chunk = np.arange(self.metadata.chunk_length, dtype=np.float32)
        actions = []
        for state, episode in zip(observations["state"], episodes):
            row = [episode["step"], len(episodes), len(episode["instruction"]), float(state.sum())]
            actions.append(np.array(row, np.float32)[None] + np.stack([0 * chunk, 0 * chunk, 0 * chunk, chunk], 1))
            episode["step"] += 1
        return {"actions": np.stack(actions)}


class ImageSumPolicy(Policy):
    """Sums each of two uint8 images and the state: checks that large arrays arrive intact."""

    metadata = PolicyMetadata("image-sum", {"state": ((64,), "float32"), "left": ((224, 224, 3), "uint8"), "right": ((224, 224, 3), "uint8")}, (3,))

    def act_batch(self, observations, episodes):
        sums = [observations["left"].sum(axis=(1, 2, 3), dtype=np.int64), observations["right"].sum(axis=(1, 2, 3), dtype=np.int64), observations["state"].sum(axis=1)]
        return {"actions": np.stack(sums, axis=1).astype(np.float32)[:, None]}


class SlowInitPolicy(CountingPolicy):
    """Takes ``seconds`` to initialize."""

    def __init__(self, seconds=1.5):
        super().__init__()
        self.seconds = seconds

    def initialize(self):
        time.sleep(self.seconds)


class FailingInitPolicy(CountingPolicy):
    """Its initialize raises, as a missing checkpoint would."""

    def initialize(self):
        raise FileNotFoundError("checkpoint /nonexistent/ckpt not found")


class RaisingPolicy(CountingPolicy):
    """Raises on observations whose state sums to a negative number; a batch that raised
    still counts as a step of its episodes (so a test sees that an episode was in it)."""

    def act_batch(self, observations, episodes):
        if (observations["state"].sum(axis=1) < 0).any():
            for episode in episodes:
                episode["step"] += 1
            raise ValueError("negative state")
        return super().act_batch(observations, episodes)


class CameraPolicy(Policy):
    """One 640x480 camera image in, its sum out: a client's image fills most of a 1 MiB segment."""

    metadata = PolicyMetadata("camera", {"image": ((480, 640, 3), "uint8")}, (1,))

    def act_batch(self, observations, episodes):
        return {"actions": observations["image"].sum(axis=(1, 2, 3), dtype=np.int64).astype(np.float32)[:, None, None]}


class ConstantPolicy(Policy):
    """The same action, ``value`` in every dimension, for any ``observation`` of ``obs_dim``; chunks of ``chunk_length``.

    A teacher whose pull on a student is easy to measure (test_teacher.py); ``observation_key``
    names the observation it announces (a teacher whose names differ from the env's).
    """

    def __init__(self, obs_dim, action_dim, value=0.5, chunk_length=2, observation_key="observation"):
        self.value, self.action_dim, self.chunk_length = value, action_dim, chunk_length
        self.metadata = PolicyMetadata("constant", {observation_key: ((obs_dim,), "float32")}, (action_dim,), chunk_length=chunk_length)

    def act_batch(self, observations, episodes):
        return {"actions": np.full((len(episodes), self.chunk_length, self.action_dim), self.value, np.float32)}


class ImageMeanPolicy(Policy):
    """A teacher that reads only a camera image: every action dimension is the image's mean, scaled from [0, 255] to [-1, 1]."""

    def __init__(self, size=32, action_dim=9, image_key="image"):
        self.image_key, self.action_dim = image_key, action_dim
        self.metadata = PolicyMetadata("image-mean", {image_key: ((size, size, 3), "uint8")}, (action_dim,))

    def act_batch(self, observations, episodes):
        means = observations[self.image_key].mean(axis=(1, 2, 3), dtype=np.float64) / 255.0 * 2.0 - 1.0
        return {"actions": np.repeat(means.astype(np.float32)[:, None, None], self.action_dim, axis=2)}
