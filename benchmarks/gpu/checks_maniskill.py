"""ManiSkill checks of the GPU suite (``suite.py maniskill``): physx_cuda batched envs.

Every baseline steps the very same ManiSkill env that ManiSkillEnv wraps (one simulator
per process and size), in the same run: ``raw`` is ManiSkill's ``env.step`` with a fixed
action tensor, ``vector`` is ManiSkill's ``ManiSkillVectorEnv`` with its auto-reset.
``tiny`` (CPU dry run): one env on physx_cpu, a few steps.
"""
from __future__ import annotations

import collections
import csv
import subprocess
import sys
import time
import warnings
from pathlib import Path

import agenthive.envs  # noqa: F401  (before torchrl)
import torch

from check_runner import REPO, main, median_rate, pytest_one, sync

TASK = "PickCube-v1"
TARGET_RATIO = 0.95  # ManiSkillEnv frames/s over ManiSkill's own, per the issue


def _env(num_envs: int, device: str, **kwargs):
    from agenthive.envs import ManiSkillEnv

    backend = "physx_cuda" if device.startswith("cuda") else "physx_cpu"
    return ManiSkillEnv(kwargs.pop("task", TASK), num_envs=num_envs, sim_backend=backend, **kwargs)


def _fps_against_maniskill(env, steps: int, repeats: int) -> dict:
    """Frames/s of ManiSkillEnv and of ManiSkill's own loops on the same simulator."""
    from mani_skill.vector.wrappers.gymnasium import ManiSkillVectorEnv

    n, device = env.batch_size[0], env.device
    action = env.full_action_spec["action"].rand()
    raw, vector = env.maniskill_env, ManiSkillVectorEnv(env.maniskill_env, auto_reset=True, ignore_terminations=False)
    td = env.reset()

    def agenthive_no_reset():
        nonlocal td
        for _ in range(steps):
            td = env.step(td.set("action", action))["next"]
        sync(device)
        return n * steps

    def agenthive_with_resets():
        nonlocal td
        for _ in range(steps):
            _, td = env.step_and_maybe_reset(td.set("action", action))
        sync(device)
        return n * steps

    def raw_loop():
        for _ in range(steps):
            raw.step(action)
        sync(device)
        return n * steps

    def vector_loop():
        for _ in range(steps):
            vector.step(action)
        sync(device)
        return n * steps

    rates = {}
    for name, loop in [("raw", raw_loop), ("agenthive", agenthive_no_reset), ("vector", vector_loop),
                       ("agenthive_resets", agenthive_with_resets)]:
        loop()  # warm-up
        rates[name] = round(median_rate(loop, repeats))
    rates["ratio_vs_raw"] = round(rates["agenthive"] / rates["raw"], 3)
    rates["ratio_vs_vector"] = round(rates["agenthive_resets"] / rates["vector"], 3)
    return rates


def _gpu_used(device: str) -> int:
    if not device.startswith("cuda"):
        return 0
    free, total = torch.cuda.mem_get_info(device)
    return total - free


def _fps_table(sizes: list[int], device: str, steps: int, repeats: int, **env_kwargs) -> dict:
    metrics = {}
    for n in sizes:
        before = _gpu_used(device)
        env = _env(n, device, **env_kwargs)
        metrics[n] = _fps_against_maniskill(env, steps, repeats)
        metrics[n]["gpu_mib"] = round((_gpu_used(device) - before) / 2**20)
        if device.startswith("cuda"):
            metrics[n]["torch_peak_mib"] = round(torch.cuda.max_memory_allocated(device) / 2**20)
        env.close()
    return metrics


def _fps_result(metrics: dict, size: str) -> dict:
    """Pass: every size at TARGET_RATIO of ManiSkill's raw loop or better (the dry run: numbers measured)."""
    worst = 1.0 if size == "tiny" else min(m["ratio_vs_raw"] for m in metrics.values())
    summary = "; ".join(f"{n} envs: {m['agenthive']:,} vs raw {m['raw']:,} f/s ({m['ratio_vs_raw']}x), "
                        f"resets {m['ratio_vs_vector']}x vector, {m['gpu_mib']} MiB" for n, m in metrics.items())
    return {"status": "pass" if worst >= TARGET_RATIO else "fail", "summary": summary, "metrics": metrics}


def ms_gpu_test(device: str, size: str) -> dict:
    return pytest_one("test_gpu_batched_partial_reset_resets_only_masked_sub_envs", "test/test_maniskill.py", size)


def ms_state_fps(device: str, size: str) -> dict:
    if size == "tiny":
        return _fps_result(_fps_table([1], device, steps=3, repeats=1), size)
    return _fps_result(_fps_table([1024, 4096], device, steps=50, repeats=3), size)


def ms_rgb_fps(device: str, size: str) -> dict:
    if size == "tiny":
        return _fps_result(_fps_table([1], device, 2, 1, obs_mode="rgb", sensor_configs=dict(width=32, height=32)), size)
    return _fps_result(_fps_table([256, 1024], device, 20, 2, obs_mode="rgb", sensor_configs=dict(width=128, height=128)), size)


def _count_syncs(action, repeats: int, cuda: bool) -> tuple[int, collections.Counter]:
    """Runs ``action`` ``repeats`` times under torch's sync debug mode; syncs and where they came from."""
    where = collections.Counter()
    if not cuda:  # no CUDA, no sync debug mode: run the same calls, count nothing
        for _ in range(repeats):
            action()
        return 0, where
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            for _ in range(repeats):
                action()
        finally:
            torch.cuda.set_sync_debug_mode("default")
    for w in caught:
        if "synchroniz" in str(w.message):
            where[f"{Path(w.filename).name}:{w.lineno}"] += 1
    return sum(where.values()), where


def ms_reset_syncs(device: str, size: str) -> dict:
    n = 1 if size == "tiny" else 1024
    env = _env(n, device)
    td = env.reset()
    action = env.full_action_spec["action"].rand()
    mask = torch.zeros(n, 1, dtype=torch.bool, device=env.device)
    mask[::2] = True
    repeats = 3 if size == "tiny" else 10

    def partial_reset():
        env.reset(td.clone().set("_reset", mask))

    def step():
        env.step(td.clone().set("action", action))

    step()
    partial_reset()  # warm-up: first calls may allocate
    reset_syncs, reset_where = _count_syncs(partial_reset, repeats, device.startswith("cuda"))
    step_syncs, step_where = _count_syncs(step, repeats, device.startswith("cuda"))
    env.close()
    metrics = {"syncs_per_partial_reset": reset_syncs / repeats, "syncs_per_step": step_syncs / repeats,
               "reset_sync_sites": dict(reset_where), "step_sync_sites": dict(step_where)}
    summary = (f"{reset_syncs / repeats:g} host syncs per partial reset ({dict(reset_where) or 'none'}), "
               f"{step_syncs / repeats:g} per step ({dict(step_where) or 'none'})")
    if not device.startswith("cuda"):
        return {"status": "skip", "summary": "host syncs exist only on a CUDA device (loop ran on the CPU)", "metrics": metrics}
    return {"status": "pass" if reset_syncs == 0 and step_syncs == 0 else "fail", "summary": summary, "metrics": metrics}


PPO_FULL = ["--num-envs", "1024", "--frames-per-batch", "51200", "--total-frames", "6000000", "--ppo-epochs", "4",
            "--minibatch-size", "1600", "--gamma", "0.8", "--gae-lambda", "0.9", "--entropy-coef", "0",
            "--max-grad-norm", "0.5", "--eval-every", "512000", "--eval-episodes", "64"]
PPO_TINY = ["--total-frames", "200", "--frames-per-batch", "100", "--minibatch-size", "50", "--ppo-epochs", "1",
            "--eval-every", "100", "--eval-episodes", "1", "--hidden-sizes", "16", "--eval-backend", "thread"]
# The issue allows 4 minutes; 150 s keeps both calls inside one lease. ManiSkill publishes
# "PushCube in under a minute" (RTX 4090, its own PPO), so 150 s is still 2.5x that.
PPO_WALL_S = 150


def _eval_points(run_dir: Path) -> list[tuple[int, float]]:
    files = sorted(run_dir.rglob("scalars/eval/success_rate.csv"))
    if not files:
        return []
    with open(files[0]) as f:
        return [(int(float(step)), float(value)) for step, value in csv.reader(f)]


def _train_watching_evals(command: list[str], run_dir: Path) -> tuple[list, dict, str]:
    """Runs train.py for at most PPO_WALL_S; notes when each evaluation point appears in its CSV log."""
    seen_at, start = {}, time.monotonic()
    proc = subprocess.Popen(command, cwd=REPO)
    while proc.poll() is None and time.monotonic() - start < PPO_WALL_S:
        time.sleep(1.0)
        for frames, _ in _eval_points(run_dir):
            seen_at.setdefault(frames, round(time.monotonic() - start, 1))
    ended = f"exit {proc.returncode}" if proc.poll() is not None else f"stopped at {PPO_WALL_S} s"
    if proc.poll() is None:
        proc.kill()
        proc.wait()
    points = _eval_points(run_dir)
    for frames, _ in points:  # evaluations that landed in the last second
        seen_at.setdefault(frames, round(time.monotonic() - start, 1))
    return points, seen_at, ended


def ms_ppo_pushcube(device: str, size: str) -> dict:
    run_dir = Path("/tmp/gpu_suite_ppo")
    subprocess.run(["rm", "-rf", str(run_dir)], check=True)
    devices = ["--device", device, "--collector-devices", device if device.startswith("cuda") else "cpu"]
    command = [sys.executable, str(REPO / "scripts/train.py"), "--backend", "maniskill", "--env", "PushCube-v1",
               "--algo", "ppo", "--run-dir", str(run_dir), "--no-video", "--checkpoint-every", "100000000",
               *devices, *(PPO_TINY if size == "tiny" else PPO_FULL)]
    print(" ".join(command), flush=True)
    points, seen_at, ended = _train_watching_evals(command, run_dir)
    wall = max(seen_at.values(), default=0.0)
    if not points:
        return {"status": "error", "summary": f"train.py {ended} with no evaluation logged", "metrics": {"wall_s": wall}}
    first_solved = next(((f, s) for f, s in points if s >= 0.9), None)
    best = max(points, key=lambda p: p[1])
    metrics = {"eval_points": points, "eval_seen_at_s": seen_at,
               "first_success_0.9": first_solved and {"frames": first_solved[0], "wall_s": seen_at[first_solved[0]]}}
    summary = (f"train.py {ended}; best eval success {best[1]:.2f} at {best[0]:,} frames; "
               + (f"0.9 first at {first_solved[0]:,} frames, seen {seen_at[first_solved[0]]:.0f} s after start"
                  if first_solved else "never 0.9"))
    passed = first_solved is not None or size == "tiny"  # the dry run only has to train and evaluate
    return {"status": "pass" if passed else "fail", "summary": summary, "metrics": metrics}


if __name__ == "__main__":
    main({f.__name__: f for f in (ms_gpu_test, ms_state_fps, ms_rgb_fps, ms_reset_syncs, ms_ppo_pushcube)})
