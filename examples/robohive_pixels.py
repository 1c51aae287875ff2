"""A pixel pipeline on parallel RoboHive simulators, vision transforms applied after batching.

    python examples/robohive_pixels.py --workers 2 --steps 20

Each worker renders one 128x128 camera; the transforms (uint8 HWC -> float CHW, resize,
grayscale, a stack of the last 4 frames) run once on the whole batch, after the
``ParallelEnv``, which is where vision models (R3M, VIP, ...) belong too.
"""
import argparse

import agenthive  # noqa: F401  (before torchrl: importing agenthive picks MUJOCO_GL)
from torchrl.envs import CatFrames, Compose, EnvCreator, GrayScale, ParallelEnv, Resize, ToTensorImage, TransformedEnv

from agenthive.envs import RoboHiveEnv


def make_env(workers: int, env_id: str) -> TransformedEnv:
    base = ParallelEnv(
        workers,
        EnvCreator(lambda: RoboHiveEnv(env_id, from_pixels=True, cameras=["top_cam"], image_size=(128, 128))),
    )
    return TransformedEnv(
        base,
        Compose(
            # [workers, n_cams=1, H, W, 3] uint8 -> [workers, 1, 3, H, W] float in [0, 1]
            ToTensorImage(in_keys=["pixels"], out_keys=["pixels_float"], shape_tolerant=True),
            Resize(64, 64, in_keys=["pixels_float"]),
            GrayScale(in_keys=["pixels_float"]),
            CatFrames(N=4, dim=-3, in_keys=["pixels_float"]),
        ),
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=2, help="simulator processes")
    parser.add_argument("--steps", type=int, default=20, help="rollout length")
    parser.add_argument("--env", default="FrankaReachRandom-v0", help="RoboHive id")
    args = parser.parse_args()
    env = make_env(args.workers, args.env)
    env.set_seed(0)
    td = env.rollout(args.steps, break_when_any_done=False)
    env.close()
    print(td)
    print("pixels", tuple(td["pixels"].shape), td["pixels"].dtype, "->", "pixels_float", tuple(td["pixels_float"].shape))


if __name__ == "__main__":
    main()
