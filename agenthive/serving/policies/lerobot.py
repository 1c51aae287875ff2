"""LeRobot policies (ACT, Diffusion Policy, ...) served from a LeRobot environment.

Loads what ``lerobot-train`` saves in ``pretrained_model/`` (``policy_path``): the policy's
``config.json`` and ``model.safetensors``, and the pre/post processor pipelines that hold the
normalization statistics (LeRobot 0.4 keeps normalization outside the policy). Each request
runs LeRobot's own inference path: camera images from uint8 ``(H, W, 3)`` to float
``(3, H, W)`` in [0, 1] (as ``lerobot.envs.utils.preprocess_observation`` does), the
preprocessor, ``predict_action_chunk``, the postprocessor.

Policies that read an observation history (Diffusion Policy's ``n_obs_steps``) keep one per
client episode, filled with LeRobot's own ``populate_queues``; a batch of episodes is run as
LeRobot runs a batch of environments in lockstep. Diffusion samples its noise from a
``torch.Generator`` seeded with ``seed``.

Unlike LeRobot's own async-inference server, which unpickles the observations and settings
clients send (so any client can run code on the policy host), nothing here unpickles: the
wire carries msgpack maps of raw arrays, and the checkpoint is JSON and safetensors.

Example:
    >>> policy = LeRobotPolicy(policy_path="outputs/train/act_aloha/checkpoints/last/pretrained_model")
    >>> policy.initialize()  # doctest: +SKIP
"""
import collections
from pathlib import Path

import numpy as np

from agenthive.serving.policy import Policy, PolicyMetadata

_IMAGES = "observation.images"  # the stacked-cameras entry Diffusion Policy's queues hold


class LeRobotPolicy(Policy):
    """Serves a LeRobot ``PreTrainedPolicy`` saved with its processors.

    Observations are named as in the policy's config: ``observation.state``, and one
    ``observation.images.<camera>`` per camera as uint8 ``(H, W, 3)``.

    Args:
        policy_path: a ``pretrained_model`` directory (``save_pretrained`` of the policy and
            of its pre/post processors), or a hub repo id when the hub is reachable.
        device: torch device to run on (overrides the one saved in the config).
        seed: seed of the noise of sampling policies (Diffusion Policy).
    """

    keyword_aliases = {"checkpoint_path": "policy_path"}  # the agents project's name

    def __init__(self, policy_path, device="cpu", seed=0):
        self.policy_path, self.device, self.seed = str(policy_path), device, seed
        self.policy = self.preprocessor = self.postprocessor = None

    def _load(self):
        from lerobot.configs.policies import PreTrainedConfig
        from lerobot.policies.factory import get_policy_class, make_pre_post_processors

        try:
            config = PreTrainedConfig.from_pretrained(self.policy_path)
        except Exception as err:
            if Path(self.policy_path).is_dir():
                raise
            cause = err
            while cause.__cause__ or cause.__context__:
                cause = cause.__cause__ or cause.__context__
            raise OSError(
                f"policy_path {self.policy_path!r} is no local directory, and fetching it from the Hugging Face Hub failed: "
                f"{type(err).__name__}: {err} (first cause: {type(cause).__name__}: {cause})"
            ) from err
        config.device = self.device
        policy = get_policy_class(config.type).from_pretrained(self.policy_path, config=config)
        policy.eval()
        preprocessor, postprocessor = make_pre_post_processors(
            config, pretrained_path=self.policy_path, preprocessor_overrides={"device_processor": {"device": self.device}}
        )
        return policy, preprocessor, postprocessor

    def initialize(self):
        import torch

        self.policy, self.preprocessor, self.postprocessor = self._load()
        config = self.policy.config
        self._queued = getattr(self.policy, "_queues", None) is not None
        if self._queued and config.type != "diffusion":
            raise NotImplementedError(
                f"LeRobot policy type {config.type!r} keeps an observation history this adapter does not replicate: "
                "expected 'diffusion' or a policy without one (ACT, SmolVLA, pi0, ...)"
            )
        self._cameras = list(config.image_features)
        observations = {name: ((*feature.shape[1:], feature.shape[0]), "uint8") for name, feature in config.image_features.items()}
        for feature in (config.robot_state_feature, config.env_state_feature):
            if feature is not None:
                name = next(key for key, value in config.input_features.items() if value is feature)
                observations[name] = (feature.shape, "float32")
        self._generator = torch.Generator(self.device).manual_seed(self.seed)
        state = self._generator.get_state()
        zeros = {name: np.zeros(shape, dtype) for name, (shape, dtype) in observations.items()}
        chunk = self.act_batch([zeros], [self.reset()])[0]["actions"]  # warm-up; tells the chunk length
        self._generator.set_state(state)
        self.metadata = PolicyMetadata(
            name=f"lerobot-{config.type}:{self.policy_path}",
            observations=observations,
            action_shape=chunk.shape[1:],
            chunk_length=chunk.shape[0],
            info={"framework": f"torch {torch.__version__}", "type": config.type, "n_action_steps": config.n_action_steps},
        )

    def reset(self, instruction=None):
        return {"instruction": instruction, "queues": None}

    def to_lerobot_batch(self, observations):
        """Observations (one dict per episode, as on the wire) -> a batched LeRobot batch dict."""
        import torch

        batch = {}
        for name in observations[0]:
            value = torch.from_numpy(np.stack([obs[name] for obs in observations]))
            if name in self._cameras:  # (B, H, W, 3) uint8 -> (B, 3, H, W) float in [0, 1]
                value = value.permute(0, 3, 1, 2).contiguous().to(torch.float32) / 255
            batch[name] = value
        return batch

    def act(self, obs, episode):
        return self.act_batch([obs], [episode])[0]

    def act_batch(self, observations, episodes):
        import torch

        batch = self.to_lerobot_batch(observations)
        batch["task"] = [episode["instruction"] or "" for episode in episodes]
        with torch.inference_mode():
            batch = self.preprocessor(batch)
            if self._queued:
                chunk = self._predict_with_history(batch, episodes)
            else:
                chunk = self.policy.predict_action_chunk(batch)
            chunk = self.postprocessor(chunk)
        return [{"actions": actions} for actions in chunk.to("cpu", torch.float32).numpy()]

    def _predict_with_history(self, batch, episodes):
        """Diffusion Policy: per-episode observation queues, stacked into one batch."""
        import torch
        from lerobot.policies.utils import populate_queues

        config = self.policy.config
        if self._cameras:
            batch = {**batch, _IMAGES: torch.stack([batch[key] for key in self._cameras], dim=-4)}
        for i, episode in enumerate(episodes):
            if episode["queues"] is None:
                episode["queues"] = {key: collections.deque(maxlen=config.n_obs_steps) for key in self.policy._queues if key != "action"}
            populate_queues(episode["queues"], {key: value[i : i + 1] for key, value in batch.items() if torch.is_tensor(value)})
        # what predict_action_chunk reads: per step, the batch of every episode's observation
        self.policy._queues = {
            key: collections.deque(torch.cat(step) for step in zip(*(episode["queues"][key] for episode in episodes)))
            for key in episodes[0]["queues"]
        }
        noise = torch.randn(
            (len(episodes), config.horizon, config.action_feature.shape[0]), generator=self._generator, device=self.device
        )
        return self.policy.predict_action_chunk(batch, noise=noise)
