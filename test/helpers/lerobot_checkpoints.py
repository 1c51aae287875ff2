"""Tiny random-weight LeRobot checkpoints, saved with LeRobot's own save functions.

Runs in the LeRobot policy environment (``scripts/policy_envs/lerobot.sh``); nothing can be
downloaded here, so the tests build these instead of fetching a hub checkpoint. Each one is
what ``lerobot-train`` leaves in ``pretrained_model/``: ``config.json`` and
``model.safetensors`` from ``policy.save_pretrained`` and the pre/post processor pipelines
(holding the normalization statistics) from ``PolicyProcessorPipeline.save_pretrained``.
The vision backbones are built with ``pretrained_backbone_weights=None`` (ACT's default
downloads ImageNet weights).

    python test/helpers/lerobot_checkpoints.py OUT_DIR [--cameras top,wrist] [--size 96] [--policies act,diffusion]

writes ``OUT_DIR/<policy>/`` for each policy and prints their paths.
"""
import argparse
from pathlib import Path

STATE_DIM = 8
ACTION_DIM = 7


def _features(cameras, size):
    from lerobot.configs.types import FeatureType, PolicyFeature

    inputs = {f"observation.images.{camera}": PolicyFeature(FeatureType.VISUAL, (3, size, size)) for camera in cameras}
    inputs["observation.state"] = PolicyFeature(FeatureType.STATE, (STATE_DIM,))
    return inputs, {"action": PolicyFeature(FeatureType.ACTION, (ACTION_DIM,))}


def _config(kind, cameras, size):
    inputs, outputs = _features(cameras, size)
    if kind == "act":
        from lerobot.policies.act.configuration_act import ACTConfig

        return ACTConfig(
            input_features=inputs, output_features=outputs, chunk_size=10, n_action_steps=10, dim_model=64, n_heads=2,
            dim_feedforward=128, n_encoder_layers=1, n_decoder_layers=1, n_vae_encoder_layers=1, latent_dim=8,
            pretrained_backbone_weights=None, device="cpu",
        )
    if kind == "diffusion":
        from lerobot.policies.diffusion.configuration_diffusion import DiffusionConfig

        return DiffusionConfig(
            input_features=inputs, output_features=outputs, n_obs_steps=2, horizon=8, n_action_steps=4, drop_n_last_frames=3,
            down_dims=(32, 64), diffusion_step_embed_dim=32, spatial_softmax_num_keypoints=8, crop_shape=None,
            noise_scheduler_type="DDIM", num_inference_steps=10, pretrained_backbone_weights=None, device="cpu",
        )
    raise ValueError(f"unknown policy {kind!r}: expected 'act' or 'diffusion'")


def _stats(config, seed):
    """Dataset statistics for the processors: mean/std and min/max of every feature."""
    import torch

    generator = torch.Generator().manual_seed(seed)
    stats = {}
    for key, feature in {**config.input_features, **config.output_features}.items():
        shape = (3, 1, 1) if key.startswith("observation.images") else feature.shape
        mean = torch.rand(shape, generator=generator) * 0.5
        std = torch.rand(shape, generator=generator) + 0.5
        stats[key] = {"mean": mean, "std": std, "min": mean - 2 * std, "max": mean + 2 * std}
    return stats


def build(kind, out_dir, *, cameras=("top",), size=96, seed=0):
    """Build, save and return the directory of one tiny policy (``act`` or ``diffusion``)."""
    import torch
    from lerobot.policies.factory import get_policy_class, make_pre_post_processors

    torch.manual_seed(seed)
    config = _config(kind, cameras, size)
    policy = get_policy_class(kind)(config)
    preprocessor, postprocessor = make_pre_post_processors(config, dataset_stats=_stats(config, seed))
    path = Path(out_dir) / kind
    policy.save_pretrained(path)
    preprocessor.save_pretrained(path)
    postprocessor.save_pretrained(path)
    return path


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out_dir")
    parser.add_argument("--cameras", default="top", help="comma-separated camera names")
    parser.add_argument("--size", type=int, default=96, help="square image side in pixels")
    parser.add_argument("--policies", default="act,diffusion")
    args = parser.parse_args(argv)
    for kind in args.policies.split(","):
        print(build(kind, args.out_dir, cameras=tuple(args.cameras.split(",")), size=args.size))


if __name__ == "__main__":
    main()
