"""One VLA rollout, written against torchrl's VLA conventions, for any VLA policy module.

``vla_rollout(policy, ...)`` runs ``PointReachPixels`` (below) through torchrl's
``MultiStepActorWrapper``, which plays the ``("vla_action", "chunk")`` a policy writes and
re-plans every ``replan`` steps: the way a rollout with ``torchrl.modules.vla`` policies is
written. The tests run it with torchrl's in-process ``LeRobotPolicyWrapper`` (in the LeRobot
environment) and with ``RemotePolicyModule(vla_keys=True)`` against a served LeRobot policy
(in the project's environment, which has no LeRobot), and compare.

``PointReachPixels`` is a small deterministic closed-loop environment that emits the schema's
keys, ``("observation", "image", <camera>)`` uint8 ``(3, H, W)`` and ``("observation",
"state")``, and a per-trajectory ``"language_instruction"``: a point moves by the action's
first two entries and each camera draws it as a bright square. It stands in for a camera
simulator, which the LeRobot environment does not have; what is compared is the policy
path, in closed loop.
"""
import torch
from tensordict import NonTensorData, TensorDict
from torchrl.data import Bounded, Composite, NonTensor, Unbounded
from torchrl.envs import EnvBase, InitTracker, TransformedEnv
from torchrl.modules.tensordict_module.actors import MultiStepActorWrapper

STATE_DIM, ACTION_DIM = 8, 7
INSTRUCTION = "reach the bright square"


class PointReachPixels(EnvBase):
    """A batch of points that actions move, seen by square cameras (deterministic per seed)."""

    def __init__(self, batch=2, cameras=("top",), size=96, seed=0):
        super().__init__(batch_size=torch.Size([batch]))
        self.cameras, self.size, self.seed_value = tuple(cameras), size, seed
        images = Composite(
            {camera: Bounded(0, 255, shape=(batch, 3, size, size), dtype=torch.uint8) for camera in cameras}, shape=(batch,)
        )
        self.observation_spec = Composite(
            observation=Composite(image=images, state=Unbounded(shape=(batch, STATE_DIM)), shape=(batch,)),
            language_instruction=NonTensor(shape=(batch,), example_data=INSTRUCTION),
            shape=(batch,),
        )
        self.action_spec = Bounded(-1.0, 1.0, shape=(batch, ACTION_DIM))
        self.reward_spec = Unbounded(shape=(batch, 1))
        self._state = torch.zeros(batch, STATE_DIM)

    def _observation(self):
        images = {}
        pixels = ((self._state[:, :2].clamp(-1, 1) + 1) / 2 * (self.size - 8)).long()
        for c, camera in enumerate(self.cameras):
            image = torch.full((self.batch_size[0], 3, self.size, self.size), 40 * c, dtype=torch.uint8)
            for b, (x, y) in enumerate(pixels.tolist()):
                image[b, :, y : y + 8, x : x + 8] = 255
            images[camera] = image
        return TensorDict(
            {"observation": {"image": images, "state": self._state.clone()}, "language_instruction": NonTensorData(INSTRUCTION, batch_size=self.batch_size)},
            batch_size=self.batch_size,
        )

    def _reset(self, tensordict=None):
        generator = torch.Generator().manual_seed(self.seed_value)
        self._state = torch.rand(self.batch_size[0], STATE_DIM, generator=generator) * 2 - 1
        return self._observation()

    def _step(self, tensordict):
        action = tensordict.get("action").clamp(-1, 1)
        self._state[:, :2] = (self._state[:, :2] + 0.1 * action[:, :2]).clamp(-1, 1)
        self._state[:, 2:] = 0.9 * self._state[:, 2:] + 0.1 * action[:, 2:STATE_DIM].mean(-1, keepdim=True)
        out = self._observation()
        out.set("reward", -self._state[:, :2].norm(dim=-1, keepdim=True))
        out.set("done", torch.zeros(*self.batch_size, 1, dtype=torch.bool))
        return out

    def _set_seed(self, seed):
        self.seed_value = seed if seed is not None else self.seed_value


def make_env(batch=2, cameras=("top",), size=96, seed=0):
    return TransformedEnv(PointReachPixels(batch, cameras, size, seed), InitTracker())


def vla_rollout(policy, env, steps, *, chunk, replan):
    """``steps`` steps of ``env`` driven by a VLA ``policy``: chunks played, re-planned every ``replan``."""
    actor = MultiStepActorWrapper(policy, n_steps=chunk, replan_interval=replan, action_keys=["action"], chunk_keys=[("vla_action", "chunk")])
    return env.rollout(steps, actor, break_when_any_done=False)


def rollout_arrays(rollout):
    """What the tests compare, as numpy arrays (saved with ``np.savez``, read back without pickle)."""
    return {
        "action": rollout["action"].numpy(),
        "state": rollout["next", "observation", "state"].numpy(),
        "reward": rollout["next", "reward"].numpy(),
    }
