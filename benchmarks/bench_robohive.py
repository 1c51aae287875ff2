"""RoboHiveEnv throughput against the raw simulator loop and torchrl's own RoboHiveEnv.

Same env, same pre-drawn random actions, the three loops interleaved (A B C A B C ...)
so that a noisy, shared machine slows them alike; each reports the median over repeats
and its ratio to the raw gymnasium loop measured in the same run.

    sim_backend=MUJOCO .venv/bin/python benchmarks/bench_robohive.py
    .venv/bin/python benchmarks/bench_robohive.py --quick   # fewer steps, for a smoke run

State: FrankaReachRandom-v0 and FK1_MicroOpenRandom-v4. Pixels: FrankaReachRandom-v0
with one 224x224 camera (top_cam); the "raw" pixel loop is RoboHive's own
``get_visuals`` after each step, the way RoboHive's visual envs produce images. The
pixel section also prints how far agenthive's image is from RoboHive's own for the same
state (mean absolute difference, 0-255 scale).
"""
from __future__ import annotations

import argparse
import gc
import statistics
import time

import agenthive  # noqa: F401  (before torchrl: importing agenthive picks MUJOCO_GL)
import gymnasium as gym
import numpy as np
import torch
from torchrl.envs.libs.robohive import RoboHiveEnv as TorchRLRoboHiveEnv

from agenthive.envs import RoboHiveEnv
from agenthive.envs.robohive import _import_robohive

CAMERA = "top_cam"
VISUAL_KEY = f"rgb:{CAMERA}:224x224:2d"


class ReplayPolicy:
    """Plays back pre-drawn actions so that every loop sees the same ones."""

    def __init__(self, actions: np.ndarray):
        self.actions = torch.as_tensor(actions)
        self.i = 0

    def __call__(self, td):
        td["action"] = self.actions[self.i % len(self.actions)]
        self.i += 1
        return td


def raw_loop(env_id: str, actions: np.ndarray, pixels: bool) -> float:
    kwargs = {"visual_keys": [VISUAL_KEY]} if pixels else {}
    env = gym.make(env_id, **kwargs)
    env.reset(seed=0)
    unwrapped = env.unwrapped
    start = time.perf_counter()
    for action in actions:
        _, _, terminated, truncated, _ = env.step(action)
        if pixels:
            unwrapped.get_visuals()
        if terminated or truncated:
            env.reset()
    elapsed = time.perf_counter() - start
    env.close()
    return len(actions) / elapsed


def torchrl_loop(env_id: str, actions: np.ndarray, pixels: bool) -> float:
    kwargs = {"from_pixels": True, "cameras": [CAMERA]} if pixels else {}
    speed = _rollout_speed(TorchRLRoboHiveEnv(env_id, **kwargs), actions)
    # its close() leaves RoboHive's renderer to the garbage collector: collect it now, while
    # EGL is still up, rather than at exit (where it prints EGL_NOT_INITIALIZED tracebacks)
    gc.collect()
    return speed


def agenthive_loop(env_id: str, actions: np.ndarray, pixels: bool, **options) -> float:
    kwargs = {"from_pixels": True, "cameras": [CAMERA], "image_size": (224, 224), **options} if pixels else {}
    env = RoboHiveEnv(env_id, **kwargs)
    return _rollout_speed(env, actions)


def _rollout_speed(env, actions: np.ndarray) -> float:
    env.set_seed(0)
    policy = ReplayPolicy(actions)
    start = time.perf_counter()
    env.rollout(len(actions), policy, break_when_any_done=False)
    elapsed = time.perf_counter() - start
    env.close()
    return len(actions) / elapsed


def image_difference(env_id: str, **options) -> float:
    """Mean |agenthive - RoboHive| over one image of the same state (0-255 scale)."""
    env = RoboHiveEnv(env_id, from_pixels=True, cameras=[CAMERA], image_size=(224, 224), **options)
    env.set_seed(0)
    ours = env.reset()["pixels"][0].numpy().astype(np.float32)
    env.close()
    # RoboHive's own renderer and settings, same seed, hence the same state
    raw = gym.make(env_id, visual_keys=[VISUAL_KEY]).unwrapped
    raw.seed(0)
    raw.reset()
    theirs = raw.get_visuals()[VISUAL_KEY].astype(np.float32)
    raw.close()
    return float(np.abs(ours - theirs).mean())


def breakdown(env_id: str, steps: int, repeats: int) -> None:
    """Where agenthive's per-step time goes, each loop adding one layer to the previous one."""
    env = RoboHiveEnv(env_id)
    robohive_env = env._env  # RoboHive's MujocoEnv, no gym wrappers
    actions = torch.rand(steps, *env.action_spec.shape) * 2 - 1
    horizon = env.max_episode_steps

    def simulator():  # RoboHive's own step and reset
        robohive_env.reset()
        for i, action in enumerate(actions.numpy()):
            robohive_env.step(action)
            if i % horizon == horizon - 1:
                robohive_env.reset()

    def conversion():  # + agenthive's TensorDict of each step
        robohive_env.reset()
        for i, action in enumerate(actions.numpy()):
            _, reward, terminated, _, info = robohive_env.step(action)
            env._output(info["solved"], terminated, False, reward)
            if i % horizon == horizon - 1:
                robohive_env.reset()

    def torchrl_step():  # + torchrl's EnvBase.step, step_mdp and auto-reset
        td = env.reset()
        for action in actions:
            td["action"] = action
            _, td = env.step_and_maybe_reset(td)

    def rollout():  # + the policy call, storing and stacking the trajectory
        env.rollout(steps, ReplayPolicy(actions), break_when_any_done=False)

    loops = {"RoboHive step": simulator, "+ TensorDict conversion": conversion,
             "+ torchrl step/step_mdp/reset": torchrl_step, "+ rollout (policy, store, stack)": rollout}
    times = {name: [] for name in loops}
    for _ in range(repeats):
        for name, loop in loops.items():
            start = time.perf_counter()
            loop()
            times[name].append((time.perf_counter() - start) / steps * 1e6)
    print(f"\n## where the time goes: {env_id}, median us per step")
    for name, values in times.items():
        print(f"  {name:<36} {statistics.median(values):8.0f} us")
    env.close()


def run_section(title: str, env_id: str, steps: int, repeats: int, pixels: bool) -> list[tuple[str, float, float]]:
    dim = gym.make(env_id).action_space.shape
    actions = np.random.default_rng(0).uniform(-1, 1, size=(steps, *dim)).astype(np.float32)
    loops = {"raw gymnasium loop": lambda: raw_loop(env_id, actions, pixels)}
    loops["torchrl RoboHiveEnv"] = lambda: torchrl_loop(env_id, actions, pixels)
    if pixels:
        loops["agenthive RoboHiveEnv (defaults: shadows, no MSAA)"] = lambda: agenthive_loop(env_id, actions, True)
        loops["agenthive RoboHiveEnv (shadows=False)"] = lambda: agenthive_loop(env_id, actions, True, shadows=False)
    else:
        loops["agenthive RoboHiveEnv"] = lambda: agenthive_loop(env_id, actions, False)
    speeds = {name: [] for name in loops}
    for _ in range(repeats):
        for name, loop in loops.items():
            speeds[name].append(loop())
    raw = statistics.median(speeds["raw gymnasium loop"])
    print(f"\n## {title}: {env_id}, {steps} steps x {repeats} repeats (median steps/s, ratio to raw)")
    rows = []
    for name, values in speeds.items():
        median = statistics.median(values)
        rows.append((name, median, median / raw))
        print(f"  {name:<52} {median:8.1f} steps/s   {median / raw:5.2f}x raw")
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="few steps and repeats (smoke run)")
    args = parser.parse_args()
    _import_robohive()  # registers RoboHive's ids for gym.make and torchrl's wrapper
    state_steps, pixel_steps, repeats = (200, 10, 1) if args.quick else (2000, 40, 5)
    for env_id in ("FrankaReachRandom-v0", "FK1_MicroOpenRandom-v4"):
        run_section("state", env_id, state_steps, repeats, pixels=False)
    breakdown("FrankaReachRandom-v0", state_steps, repeats)
    rows = run_section("one 224x224 camera", "FrankaReachRandom-v0", pixel_steps, max(3, repeats // 2 + 1), pixels=True)
    torchrl_speed = dict((name, speed) for name, speed, _ in rows)["torchrl RoboHiveEnv"]
    for name, speed, _ in rows:
        if name.startswith("agenthive"):
            print(f"  {name:<52} {speed / torchrl_speed:5.2f}x torchrl's RoboHiveEnv")
    print("\nimage difference to RoboHive's own render of the same state (mean |diff|, 0-255):")
    variants = (
        ("RoboHive's settings (shadow_size=4096, anti_aliasing=True)", {"shadow_size": 4096, "anti_aliasing": True}),
        ("defaults", {}),
        ("shadows=False", {"shadows": False}),
    )
    for label, options in variants:
        print(f"  {label:<60} {image_difference('FrankaReachRandom-v0', **options):6.2f}")


if __name__ == "__main__":
    main()
