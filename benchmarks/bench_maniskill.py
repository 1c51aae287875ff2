"""ManiSkillEnv.rollout against the raw ManiSkill loop it wraps.

Both loops drive the *same* ManiSkill env (``ManiSkillEnv.maniskill_env``) with the same
pre-drawn actions, interleaved (raw, env, env, raw, ...) so that a noisy shared machine
slows them alike. The raw loop is what a ManiSkill user writes: ``step`` and, when
sub-envs finish, a partial ``reset(options={"env_idx": ...})``; ManiSkillEnv runs
``rollout(break_when_any_done=False)``, which resets finished sub-envs through torchrl's
``"_reset"`` mask and keeps every step's TensorDict. Each repeat gives a paired ratio
(env / raw frames per second); the table shows medians.

CPU (one env per process)::

    .venv/bin/python benchmarks/bench_maniskill.py

GPU (physx_cuda, tensors stay on the device)::

    python benchmarks/bench_maniskill.py --num-envs 1024 4096
"""
from __future__ import annotations

import argparse
import statistics
import time

import agenthive  # noqa: F401  (before torchrl: importing agenthive picks MUJOCO_GL)
import torch

from agenthive.envs import ManiSkillEnv


class ReplayPolicy:
    """Plays back pre-drawn actions so that both loops see the same ones."""

    def __init__(self, actions: torch.Tensor):
        self.actions = actions
        self.i = 0

    def __call__(self, td):
        td["action"] = self.actions[self.i]
        self.i += 1
        return td


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def raw_loop(env: ManiSkillEnv, actions: torch.Tensor) -> float:
    """Frames per second of ManiSkill's own gymnasium API."""
    maniskill_env = env.maniskill_env
    maniskill_env.reset(seed=0)
    sync(env.device)
    start = time.perf_counter()
    for action in actions:
        _, _, terminated, truncated, _ = maniskill_env.step(action)
        done = terminated | truncated
        if done.any():
            maniskill_env.reset(options={"env_idx": done.nonzero().squeeze(-1)})
    sync(env.device)
    return actions.shape[0] * env.maniskill_env.unwrapped.num_envs / (time.perf_counter() - start)


def env_loop(env: ManiSkillEnv, actions: torch.Tensor) -> float:
    """Frames per second of ManiSkillEnv.rollout with the same actions."""
    env.set_seed(0)
    td = env.reset()  # seeded, outside the clock like the raw loop's reset(seed=0)
    sync(env.device)
    start = time.perf_counter()
    env.rollout(actions.shape[0], ReplayPolicy(actions), break_when_any_done=False, auto_reset=False, tensordict=td)
    sync(env.device)
    return actions.shape[0] * env.maniskill_env.unwrapped.num_envs / (time.perf_counter() - start)


def draw_actions(env: ManiSkillEnv, steps: int) -> torch.Tensor:
    torch.manual_seed(0)
    spec = env.action_spec
    low, high = spec.space.low, spec.space.high
    shape = (steps, *env.batch_size, *spec.shape[len(env.batch_size):])
    return low + torch.rand(shape, device=env.device) * (high - low)


def bench(obs_mode: str, num_envs: int | None, steps: int, repeats: int, image_size: int) -> dict:
    kwargs = {"sensor_configs": {"width": image_size, "height": image_size}} if obs_mode != "state" else {}
    env = ManiSkillEnv("PickCube-v1", num_envs=num_envs, obs_mode=obs_mode, **kwargs)
    actions = draw_actions(env, steps)  # ManiSkill takes them unbatched too when num_envs=1
    gpu_memory = None
    if env.device.type == "cuda":
        free, total = torch.cuda.mem_get_info(env.device)
        gpu_memory = (total - free) / 2**30
    raw_loop(env, actions[: max(steps // 10, 2)])  # warm-up: shaders, allocator, caches
    env_loop(env, actions[: max(steps // 10, 2)])
    raw, wrapped, ratios = [], [], []
    for repeat in range(repeats):
        if repeat % 2 == 0:
            r, w = raw_loop(env, actions), env_loop(env, actions)
        else:
            w, r = env_loop(env, actions), raw_loop(env, actions)
        raw.append(r)
        wrapped.append(w)
        ratios.append(w / r)
    env.close()
    return {
        "obs_mode": obs_mode,
        "num_envs": num_envs or 1,
        "device": str(env.device),
        "steps": steps,
        "raw": statistics.median(raw),
        "env": statistics.median(wrapped),
        "ratio": statistics.median(ratios),
        "ratio_min": min(ratios),
        "ratio_max": max(ratios),
        "gpu_memory_gib": gpu_memory,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--obs-modes", nargs="+", default=["state", "rgb"], help="ManiSkill observation modes")
    parser.add_argument("--num-envs", nargs="+", type=int, default=None,
                        help="batched sub-envs (GPU); default: one unbatched env on the CPU backend")
    parser.add_argument("--state-steps", type=int, default=1000, help="steps per loop and repeat, state mode")
    parser.add_argument("--rgb-steps", type=int, default=60, help="steps per loop and repeat, camera modes")
    parser.add_argument("--repeats", type=int, default=5, help="interleaved repeats; the table shows medians")
    parser.add_argument("--image-size", type=int, default=128, help="camera width and height (camera modes)")
    parser.add_argument("--torch-threads", type=int, default=None, help="torch.set_num_threads; default: torch's own")
    args = parser.parse_args()
    if args.torch_threads is not None:
        torch.set_num_threads(args.torch_threads)
    print(f"torch threads: {torch.get_num_threads()}")

    print("| obs_mode | num_envs | device | steps x repeats | raw ManiSkill frames/s | ManiSkillEnv.rollout frames/s "
          "| ratio (median, min-max) | GPU memory used (GiB) |")
    print("|---|---|---|---|---|---|---|---|")
    for num_envs in args.num_envs or [None]:
        for obs_mode in args.obs_modes:
            steps = args.state_steps if obs_mode == "state" else args.rgb_steps
            result = bench(obs_mode, num_envs, steps, args.repeats, args.image_size)
            memory = "-" if result["gpu_memory_gib"] is None else f"{result['gpu_memory_gib']:.1f}"
            print(
                f"| {obs_mode}{'' if obs_mode == 'state' else f' {args.image_size}x{args.image_size}'} "
                f"| {result['num_envs']} | {result['device']} | {steps} x {args.repeats} "
                f"| {result['raw']:,.0f} | {result['env']:,.0f} "
                f"| {result['ratio']:.2f}x ({result['ratio_min']:.2f}-{result['ratio_max']:.2f}) | {memory} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
