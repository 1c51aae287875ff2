"""Envs served by the RemoteEnv tests through ``serve-env --backend factory`` (importable from test/).

``counting_batched``: torchrl's own test env, a batch of 3 counters that end at different
steps, so a rollout resets some of them and not others (torchrl's ``"_reset"`` masks).
``FragileEnv``: a counter whose step raises when the action is above 0.9, like a driver
refusing a command.
``BareStepEnv``: a counter whose step outputs need torchrl's completion (missing done keys, reward shape).
"""
import torch
from tensordict import TensorDict
from torchrl.data import Bounded, Composite, Unbounded
from torchrl.envs import EnvBase
from torchrl.testing.mocking_classes import CountingBatchedEnv


def counting_batched():
    return CountingBatchedEnv(batch_size=[3], max_steps=torch.tensor([2, 3, 4]))


class FragileEnv(EnvBase):
    """observation = steps since reset; stepping with an action above 0.9 raises."""

    def __init__(self):
        super().__init__(batch_size=[])
        self.observation_spec = Composite(observation=Unbounded((1,), dtype=torch.float32))
        self.action_spec = Bounded(-1.0, 1.0, (1,))
        self.reward_spec = Unbounded((1,))
        self.count = 0

    def _reset(self, tensordict=None, **kwargs):
        self.count = 0
        return TensorDict({"observation": torch.zeros(1), "done": torch.zeros(1, dtype=torch.bool), "terminated": torch.zeros(1, dtype=torch.bool)}, [])

    def _step(self, tensordict):
        if tensordict["action"].item() > 0.9:
            raise ValueError(f"action {tensordict['action'].item():.2f} exceeds the joint limit 0.9")
        self.count += 1
        return TensorDict(
            {"observation": torch.full((1,), float(self.count)), "reward": torch.ones(1),
             "done": torch.zeros(1, dtype=torch.bool), "terminated": torch.zeros(1, dtype=torch.bool)},
            [],
        )

    def _set_seed(self, seed):
        pass


class BareStepEnv(FragileEnv):
    """FragileEnv's counter, whose ``_step`` leaves the rest to torchrl: no "terminated", a reward
    of shape [] where the spec says [1]. torchrl's ``_step_proc_data`` completes it."""

    def _reset(self, tensordict=None, **kwargs):
        self.count = 0
        return TensorDict({"observation": torch.zeros(1), "done": torch.zeros(1, dtype=torch.bool)}, [])

    def _step(self, tensordict):
        self.count += 1
        done = torch.tensor([self.count % 4 == 0])
        return TensorDict({"observation": torch.full((1,), float(self.count)), "reward": tensordict["action"].sum(), "done": done}, [])
