"""One filmed episode of a policy: an MP4, and a PNG strip of its frames beside it."""
from __future__ import annotations

from pathlib import Path

import torch
from torchrl.envs.utils import ExplorationType, set_exploration_type

from agenthive.env_config import VIDEO_KEY, EnvConfig, make_env


def record_video(policy, config: EnvConfig, path, *, camera="top_cam", size=128, steps=None, seed=0, fps=12) -> Path:
    """Films one episode of ``policy`` in ``config``'s environment as an MP4 (and a PNG strip beside it)."""
    import imageio.v2 as imageio
    import numpy as np

    env = make_env(config, num_envs=1, video_camera=camera, video_size=size)
    env.set_seed(seed)
    with torch.no_grad(), set_exploration_type(ExplorationType.DETERMINISTIC):
        rollout = env.rollout(steps or 10_000, policy, break_when_any_done=steps is None)
    env.close()
    frames = rollout.get(("next", VIDEO_KEY))
    frames = (frames[:, 0] if frames.ndim == 5 else frames).cpu().numpy()  # the first camera: [T, H, W, 3]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    imageio.mimwrite(path, frames, fps=fps, macro_block_size=1)
    imageio.imwrite(path.with_suffix(".png"), np.concatenate(list(frames[:: max(1, len(frames) // 8)]), axis=1))
    return path
