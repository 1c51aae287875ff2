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

    def act(self, obs, episode):
        return self.act_batch([obs], [episode])[0]

    def act_batch(self, observations, episodes):
        time.sleep(self.act_seconds)
        outputs = []
        for obs, episode in zip(observations, episodes):
            chunk = np.arange(self.metadata.chunk_length, dtype=np.float32)
            row = [episode["step"], len(observations), len(episode["instruction"]), float(obs["state"].sum())]
            outputs.append({"actions": np.array(row, np.float32)[None] + np.stack([0 * chunk, 0 * chunk, 0 * chunk, chunk], 1)})
            episode["step"] += 1
        return outputs


class ImageSumPolicy(Policy):
    """Sums each of two uint8 images and the state: checks that large arrays arrive intact."""

    metadata = PolicyMetadata("image-sum", {"state": ((64,), "float32"), "left": ((224, 224, 3), "uint8"), "right": ((224, 224, 3), "uint8")}, (3,))

    def act(self, obs, episode):
        sums = [obs["left"].sum(dtype=np.int64), obs["right"].sum(dtype=np.int64), obs["state"].sum()]
        return {"actions": np.array([sums], np.float32)}


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
    """Raises on observations whose state sums to a negative number."""

    def act_batch(self, observations, episodes):
        if any(obs["state"].sum() < 0 for obs in observations):
            raise ValueError("negative state")
        return super().act_batch(observations, episodes)


class CameraPolicy(Policy):
    """One 640x480 camera image in, its sum out: a client's image fills most of a 1 MiB segment."""

    metadata = PolicyMetadata("camera", {"image": ((480, 640, 3), "uint8")}, (1,))

    def act(self, obs, episode):
        return {"actions": np.array([[obs["image"].sum(dtype=np.int64)]], np.float32)}
