"""Collect experience from RoboHive environments in parallel, then film one episode.

    sim_backend=MUJOCO .venv/bin/python scripts/collect.py
    .venv/bin/python scripts/collect.py --env FK1_MicroOpenRandom-v4 --num-workers 4 --total-frames 20000

Runs ``--num-workers`` RoboHive simulators in a torchrl ``ParallelEnv`` under a torchrl
``Collector`` with a random policy, shows progress and frames/s, then rolls out one
episode of the visual env ``--video-env`` and saves it as an MP4 and a PNG strip under
``--out-dir``.
"""
from __future__ import annotations

import argparse
import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path

import agenthive.envs  # noqa: F401  (picks MUJOCO_GL before torchrl imports mujoco)
import imageio.v2 as imageio
import numpy as np
import torch
from torchrl.collectors import Collector
from torchrl.envs import EnvCreator, ParallelEnv
from tqdm import tqdm

from agenthive.envs import RoboHiveEnv


@dataclass
class Args:
    env: str = "FrankaReachRandom-v0"  # RoboHive id to collect from
    num_workers: int = 2  # simulator processes in the ParallelEnv
    total_frames: int = 4000  # frames to collect
    frames_per_batch: int = 200  # frames per collector batch
    seed: int = 0  # seed of the first worker (the others get the next seeds)
    video_env: str = "FrankaReachRandom_v2d-v0"  # visual RoboHive id to film ("" to skip)
    video_camera: str = "top_cam"  # camera of --video-env to film
    video_steps: int = 50  # length of the filmed episode
    out_dir: str = "outputs/collect"  # where the video and image strip go


def parse_args() -> Args:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    for field in dataclasses.fields(Args):
        parser.add_argument(f"--{field.name.replace('_', '-')}", type=type(field.default), default=field.default)
    return Args(**vars(parser.parse_args()))


def collect(args: Args) -> float:
    env = ParallelEnv(args.num_workers, EnvCreator(lambda: RoboHiveEnv(args.env)))
    env.set_seed(args.seed)
    collector = Collector(env, None, frames_per_batch=args.frames_per_batch, total_frames=args.total_frames)
    frames, episodes, successes = 0, 0, 0
    start = time.perf_counter()
    with tqdm(total=args.total_frames, desc=f"collecting {args.env} x{args.num_workers}", unit="frame") as bar:
        for batch in collector:
            frames += batch.numel()
            done = batch["next", "done"]
            episodes += int(done.sum())
            successes += int((batch["next", "success"] & done).sum())
            bar.update(batch.numel())
            bar.set_postfix(fps=f"{frames / (time.perf_counter() - start):.0f}", episodes=episodes)
    fps = frames / (time.perf_counter() - start)
    collector.shutdown()
    print(f"{frames} frames from {args.num_workers} workers in {frames / fps:.1f}s: {fps:.0f} frames/s; "
          f"{episodes} episodes ended, {successes} solved at their last step")
    return fps


def film(args: Args) -> None:
    env = RoboHiveEnv(args.video_env, cameras=[args.video_camera])
    env.set_seed(args.seed)
    with torch.no_grad():
        td = env.rollout(args.video_steps, break_when_any_done=False)
    env.close()
    frames = td["next", "pixels"][:, 0].numpy()  # [T, H, W, 3], the one camera
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    video = out / f"{args.video_env}_{args.video_camera}.mp4"
    imageio.mimwrite(video, frames, fps=12, macro_block_size=1)
    strip = out / f"{args.video_env}_{args.video_camera}_strip.png"
    imageio.imwrite(strip, np.concatenate(list(frames[:: max(1, len(frames) // 8)]), axis=1))
    print(f"saved {video} and {strip}")


def main():
    args = parse_args()
    collect(args)
    if args.video_env:
        film(args)


if __name__ == "__main__":
    main()
