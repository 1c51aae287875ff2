"""The in-process reference: torchrl's ``LeRobotPolicyWrapper`` around a LeRobot checkpoint.

Runs in the LeRobot policy environment. torchrl's ``LeRobotPolicyWrapper.from_pretrained``
imports ``lerobot.common``, a module path LeRobot 0.4 no longer has, so the policy is loaded
with LeRobot's own functions and wrapped here. The wrapper applies none of LeRobot's
processors, so its ``predict_fn`` runs them around ``predict_action_chunk`` (Diffusion
Policy's observation queue filled by ``populate_queues``, as its ``select_action`` does), and
it takes one image entry: with several cameras that entry is a TensorDict of cameras, which
``predict_fn`` spreads into ``observation.images.<camera>``.

    python test/helpers/lerobot_reference.py chunks POLICY_PATH OBS.npz OUT.npz
    python test/helpers/lerobot_reference.py rollout POLICY_PATH OUT.npz --steps 12 --replan 2 --cameras top,wrist --size 96

``chunks``: OBS.npz holds ``<name>`` arrays of shape (T, B, ...) as agenthive's wire carries
them (images (H, W, 3) uint8); each step goes through the wrapper as a TensorDict with the
canonical keys; OUT.npz gets ``chunks`` (T, B, chunk, action_dim). ``rollout``: OUT.npz gets
``vla_rollout.rollout_arrays`` of a rollout of ``PointReachPixels``.
"""
import argparse
import sys
from pathlib import Path

import agenthive  # noqa: F401  (before torch, as in every entry point: picks MUJOCO_GL)
import numpy as np
import torch
from tensordict import NonTensorData, TensorDict

sys.path.insert(0, str(Path(__file__).resolve().parent))
from vla_rollout import INSTRUCTION, make_env, rollout_arrays, vla_rollout  # noqa: E402

SEED = 0  # the served LeRobotPolicy's default seed: the same Diffusion noise


def load(policy_path):
    from lerobot.configs.policies import PreTrainedConfig
    from lerobot.policies.factory import get_policy_class, make_pre_post_processors

    config = PreTrainedConfig.from_pretrained(policy_path)
    policy = get_policy_class(config.type).from_pretrained(policy_path, config=config).eval()
    preprocessor, postprocessor = make_pre_post_processors(config, pretrained_path=policy_path)
    return policy, preprocessor, postprocessor


def wrap(policy_path):
    """A ``LeRobotPolicyWrapper`` whose ``predict_fn`` runs LeRobot's processors."""
    from lerobot.policies.utils import populate_queues
    from torchrl.modules.vla import LeRobotPolicyWrapper

    policy, preprocessor, postprocessor = load(policy_path)
    generator = torch.Generator().manual_seed(SEED)
    config = policy.config

    def predict(policy, batch):
        batch = dict(batch)
        images = batch.pop("observation.images.image")
        for camera, image in images.items():  # uint8 (B, 3, H, W) -> float in [0, 1]
            batch[f"observation.images.{camera}"] = image.to(torch.float32) / 255
        with torch.inference_mode():
            batch = preprocessor(batch)
            if config.type == "diffusion":  # DiffusionPolicy.select_action's steps, minus its action queue
                batch.pop("action", None)
                batch["observation.images"] = torch.stack([batch[key] for key in config.image_features], dim=-4)
                policy._queues = populate_queues(policy._queues, batch)
                noise = torch.randn((len(batch["observation.state"]), config.horizon, config.action_feature.shape[0]), generator=generator)
                chunk = policy.predict_action_chunk(batch, noise=noise)
            else:
                chunk = policy.predict_action_chunk(batch)
            return postprocessor(chunk)

    chunk_size = config.n_action_steps if config.type == "diffusion" else config.chunk_size
    wrapper = LeRobotPolicyWrapper(policy, action_dim=config.action_feature.shape[0], chunk_size=chunk_size, predict_fn=predict)
    return wrapper, policy


def chunks(policy_path, observations):
    """Chunks the wrapper gives for each step of ``observations`` (name -> (T, B, ...))."""
    wrapper, policy = wrap(policy_path)
    policy.reset()
    steps, batch = next(iter(observations.values())).shape[:2]
    out = []
    for t in range(steps):
        images = {
            name.removeprefix("observation.images."): torch.from_numpy(value[t]).permute(0, 3, 1, 2)
            for name, value in observations.items() if name.startswith("observation.images.")
        }
        td = TensorDict(
            {"observation": {"image": images, "state": torch.from_numpy(observations["observation.state"][t])},
             "language_instruction": NonTensorData(INSTRUCTION, batch_size=[batch])},
            batch_size=[batch],
        )
        out.append(wrapper(td)["vla_action", "chunk"].numpy())
    return np.stack(out)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", choices=["chunks", "rollout"])
    parser.add_argument("policy_path")
    parser.add_argument("paths", nargs="+", help="chunks: OBS.npz OUT.npz; rollout: OUT.npz")
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--replan", type=int, default=2)
    parser.add_argument("--cameras", default="top,wrist")
    parser.add_argument("--size", type=int, default=96)
    args = parser.parse_args(argv)
    if args.mode == "chunks":
        with np.load(args.paths[0], allow_pickle=False) as data:
            observations = dict(data)
        np.savez(args.paths[1], chunks=chunks(args.policy_path, observations))
        return
    wrapper, policy = wrap(args.policy_path)
    policy.reset()
    rollout = vla_rollout(wrapper, make_env(cameras=args.cameras.split(","), size=args.size), args.steps, chunk=wrapper.chunk_size, replan=args.replan)
    np.savez(args.paths[0], **rollout_arrays(rollout))


if __name__ == "__main__":
    main()
