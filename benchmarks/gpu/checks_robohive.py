"""RoboHive checks of the GPU suite (``suite.py robohive``): MuJoCo through EGL on the GPU, CUDA collectors.

``tiny`` (CPU dry run): the same paths with a few steps, rendering with this machine's
EGL (Mesa) and the networks on the CPU.
"""
from __future__ import annotations

import inspect
import re
import subprocess
import sys
import time

import agenthive.envs  # noqa: F401  (before torchrl: MUJOCO_GL=egl on headless machines)
import torch

from check_runner import REPO, main, median_rate, pytest_one

REACH = "FrankaReachRandom-v0"
# benchmarks/RESULTS.md (issue of 2026-11-23, 2-core CPU, Mesa llvmpipe): agenthive's
# RoboHiveEnv with one 224x224 top_cam = 2.35 x the raw loop's 2.9 steps/s with the
# defaults (shadows), 7.20 x with shadows=False.
CPU_STEPS_PER_S = {"defaults": 6.8, "shadows_false": 20.9}


def _pixel_rate(env, steps: int, repeats: int) -> float:
    env.set_seed(0)
    env.rollout(1, break_when_any_done=False)  # warm-up: EGL context, first render

    def run():
        env.rollout(steps, break_when_any_done=False)
        return steps

    return median_rate(run, repeats)


def rh_gpu_test(device: str, size: str) -> dict:
    return pytest_one("test_cuda_device_renders_there", "test/test_robohive.py", size)


def _torchrl_pixel_rate(steps: int, repeats: int) -> float | str:
    """torchrl 0.14.1's own RoboHiveEnv with the same camera (renders through RoboHive's get_visuals)."""
    try:
        from torchrl.envs.libs.robohive import RoboHiveEnv as TorchRLRoboHiveEnv

        env = TorchRLRoboHiveEnv(REACH, from_pixels=True, cameras=["top_cam"])
        rate = _pixel_rate(env, steps, repeats)
        env.close()
        return round(rate, 1)
    except Exception as error:  # reported beside the numbers: torchrl's wrapper is the baseline, not the subject
        return f"{type(error).__name__}: {str(error)[:200]}"


def rh_egl_pixels(device: str, size: str) -> dict:
    from agenthive.envs import RoboHiveEnv

    steps, repeats, side = (2, 1, 64) if size == "tiny" else (200, 3, 224)
    metrics = {}
    for name, options in [("defaults", {}), ("shadows_false", {"shadows": False})]:
        env = RoboHiveEnv(REACH, from_pixels=True, cameras=["top_cam"], image_size=(side, side), device=device, **options)
        pixels = env.reset()["pixels"]
        metrics[name] = round(_pixel_rate(env, steps, repeats), 1)
        metrics[f"{name}_vs_cpu_figure"] = round(metrics[name] / CPU_STEPS_PER_S[name], 2)
        metrics[f"{name}_pixels_device"] = str(pixels.device)
        metrics[f"{name}_pixels_std"] = round(pixels.float().std().item(), 1)
        env.close()
    metrics["torchrl_robohiveenv"] = _torchrl_pixel_rate(steps, repeats)
    torchrl = metrics["torchrl_robohiveenv"]
    on_device = all(metrics[f"{n}_pixels_device"].startswith(device) for n in CPU_STEPS_PER_S)
    images = all(metrics[f"{n}_pixels_std"] > 5 for n in CPU_STEPS_PER_S)
    summary = (f"{metrics['defaults']} steps/s with shadows ({metrics['defaults_vs_cpu_figure']}x the 2-core CPU), "
               f"{metrics['shadows_false']} without ({metrics['shadows_false_vs_cpu_figure']}x); torchrl's RoboHiveEnv "
               + (f"{torchrl} steps/s" if isinstance(torchrl, float) else f"failed: {torchrl}"))
    faster = metrics["defaults_vs_cpu_figure"] > 1 or size == "tiny"
    return {"status": "pass" if on_device and images and faster else "fail", "summary": summary, "metrics": metrics}


def _collect(args: list[str]) -> tuple[float | None, str]:
    command = [sys.executable, str(REPO / "scripts/collect.py"), "--video-env", "", "--out-dir", "/tmp/gpu_suite_collect", *args]
    print(" ".join(command), flush=True)
    proc = subprocess.run(command, cwd=REPO, capture_output=True, text=True)
    print(proc.stdout[-5000:], proc.stderr[-5000:], flush=True)
    found = re.search(r"([0-9]+) frames/s", proc.stdout)
    if proc.returncode != 0 or not found:
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        return None, f"exit {proc.returncode}: {tail[:200]}"
    return float(found.group(1)), "ok"


def rh_collector_cuda(device: str, size: str) -> dict:
    tiny = size == "tiny"
    runs = {
        "state_1_worker": ["--collector-devices", device, "--num-envs", "1" if tiny else "4",
                           "--total-frames", "40" if tiny else "8000", "--frames-per-batch", "20" if tiny else "400"],
        "pixels_2_workers": ["--collector-devices", f"{device},{device}", "--num-envs", "2", "--observation", "frames",
                             "--norm-init-frames", "200", "--total-frames", "2000", "--frames-per-batch", "200"],
    }
    if tiny:  # five more processes importing torch and RoboHive: too slow for the dry run in CI
        del runs["pixels_2_workers"]
    metrics, problems = {}, []
    for name, args in runs.items():
        fps, note = _collect(args)
        metrics[name] = fps
        if fps is None:
            problems.append(f"{name}: {note}")
    summary = ", ".join(f"{name} {fps:.0f} frames/s" for name, fps in metrics.items() if fps is not None)
    return {"status": "fail" if problems else "pass", "summary": "; ".join([summary, *problems]).strip("; "),
            "metrics": metrics}


def rh_batched_scaling(device: str, size: str) -> dict:
    from agenthive.envs import RoboHiveEnv

    parameters = inspect.signature(RoboHiveEnv.__init__).parameters
    if "num_envs" not in parameters and "num_envs" not in getattr(RoboHiveEnv, "_WRAPPER_OPTIONS", ()):
        return {"status": "skip", "summary": "RoboHiveEnv takes no num_envs argument here (batched RoboHiveEnv, issue 15, "
                "not in this checkout)", "metrics": {}}
    threads_arg = "num_threads" in parameters or "num_threads" in getattr(RoboHiveEnv, "_WRAPPER_OPTIONS", ())
    grid = [(2, 1)] if size == "tiny" else [(n, t) for n in (1, 4, 16, 64) for t in ((1, 4, 16) if threads_arg else (None,))]
    steps, repeats = (5, 1) if size == "tiny" else (200, 3)
    metrics = {}
    for num_envs, threads in grid:
        kwargs = {"num_envs": num_envs, **({"num_threads": threads} if threads_arg and threads else {})}
        env = RoboHiveEnv(REACH, **kwargs)
        env.set_seed(0)

        def run():
            env.rollout(steps, break_when_any_done=False)
            return steps * num_envs

        run()
        metrics[f"envs={num_envs},threads={threads}"] = round(median_rate(run, repeats))
        env.close()
    base = metrics[next(iter(metrics))]
    best = max(metrics, key=metrics.get)
    summary = f"1 env {base} steps/s; best {best}: {metrics[best]} steps/s ({metrics[best] / base:.1f}x)"
    return {"status": "pass", "summary": summary, "metrics": metrics}


if __name__ == "__main__":
    main({f.__name__: f for f in (rh_gpu_test, rh_egl_pixels, rh_collector_cuda, rh_batched_scaling)})
