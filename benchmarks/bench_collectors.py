"""Collector throughput against the raw simulator loop, with 1, 2, 4, ... simulator workers.

    .venv/bin/python benchmarks/bench_collectors.py
    .venv/bin/python benchmarks/bench_collectors.py --workers 1,2,4,8 --rounds 5 --device cuda:0   # GPU machine

Contenders, each measured in every round, rounds interleaved (medians reported), so the
noise of a shared machine hits all alike:

* ``raw``: RoboHive's gymnasium env stepped in a Python loop with random actions, in
  this process (the ceiling of one simulator process);
* ``Collector+ParallelEnv(k)``: torchrl's ``Collector`` over ``ParallelEnv(k, RoboHiveEnv)``,
  random policy (the layout of ``scripts/collect.py`` with one device);
* ``MultiAsyncCollector(k)``: ``k`` collector worker processes, one ``RoboHiveEnv`` each
  (the layout of ``scripts/collect.py --collector-devices d1,...,dk --num-envs 1``).

Two scalings are printed: against ``k`` raw loops (frames/s / (k x raw frames/s): 1.0 would be
``k`` simulators at full speed with no collection overhead), and against the same collector
with one simulator process (frames/s / (k x its k=1 frames/s): 1.0 is linear scaling). Each measurement starts the collector, skips its first batch (warm-up), times
``--frames`` frames, and shuts it down.
"""
from __future__ import annotations

import argparse
import statistics
import time

import agenthive  # noqa: F401  (before torchrl: importing agenthive picks MUJOCO_GL)
import numpy as np
import torch
from torchrl.collectors import Collector, MultiAsyncCollector
from torchrl.envs import EnvCreator, ParallelEnv
from tqdm import tqdm

from agenthive.envs import RoboHiveEnv


def raw_loop(env_name: str, frames: int) -> float:
    import gymnasium

    assert env_name in RoboHiveEnv.available_envs  # imports robohive, which registers its ids with gymnasium
    env = gymnasium.make(env_name)
    env.reset(seed=0)
    actions = np.random.default_rng(0).uniform(-1, 1, (frames, *env.action_space.shape)).astype(np.float32)
    start = time.perf_counter()
    for action in actions:
        _, _, terminated, truncated, _ = env.step(action)
        if terminated or truncated:
            env.reset()
    fps = frames / (time.perf_counter() - start)
    env.close()
    return fps


def timed(collector, frames: int) -> float:
    iterator = iter(collector)
    next(iterator)  # warm-up batch: process start-up and first resets are not throughput
    collected, start = 0, time.perf_counter()
    while collected < frames:
        collected += next(iterator).numel()
    fps = collected / (time.perf_counter() - start)
    collector.shutdown()
    return fps


def parallel_env(env_name: str, k: int, device: str, frames: int, batch: int) -> float:
    env = ParallelEnv(k, EnvCreator(lambda: RoboHiveEnv(env_name, device=device)), device=device)
    return timed(Collector(env, None, frames_per_batch=batch, total_frames=-1, env_device=device, storing_device="cpu"), frames)


def multi_async(env_name: str, k: int, device: str, frames: int, batch: int) -> float:
    create = EnvCreator(lambda: RoboHiveEnv(env_name, device=device))
    collector = MultiAsyncCollector([create] * k, None, frames_per_batch=batch // k, total_frames=-1,
                                    env_device=device, storing_device="cpu")
    return timed(collector, frames)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--env", default="FrankaReachRandom-v0", help="RoboHive id")
    parser.add_argument("--workers", default="1,2,4", help="comma-separated numbers of simulator processes")
    parser.add_argument("--frames", type=int, default=3000, help="frames timed per measurement")
    parser.add_argument("--batch", type=int, default=200, help="frames per collector batch (all workers together)")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds; medians are reported")
    parser.add_argument("--device", default="cpu", help="env device of the collector workers")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    workers = [int(k) for k in args.workers.split(",")]
    contenders = [("raw", 1, lambda k: raw_loop(args.env, args.frames))]
    contenders += [(f"Collector+ParallelEnv({k})", k, lambda k: parallel_env(args.env, k, args.device, args.frames, args.batch)) for k in workers]
    contenders += [(f"MultiAsyncCollector({k})", k, lambda k: multi_async(args.env, k, args.device, args.frames, args.batch)) for k in workers]
    results = {name: [] for name, _, _ in contenders}
    with tqdm(total=args.rounds * len(contenders), desc="measuring", unit="run") as bar:
        for _ in range(args.rounds):
            for name, k, measure in contenders:
                results[name].append(measure(k))
                bar.update()
    raw = statistics.median(results["raw"])
    print(f"\n{args.env}, device {args.device}, {args.frames} frames per measurement, median of {args.rounds} interleaved rounds\n")
    print("| contender | simulator processes | frames/s (median) | min-max | vs raw | vs k raw loops | vs k x its k=1 |")
    print("|---|---|---|---|---|---|---|")
    for name, k, _ in contenders:
        fps = statistics.median(results[name])
        spread = f"{min(results[name]):.0f}-{max(results[name]):.0f}"
        one = statistics.median(results[name.replace(f"({k})", "(1)")]) if "(" in name else fps
        print(f"| {name} | {k} | {fps:.0f} | {spread} | {fps / raw:.2f}x | {fps / (k * raw):.2f} | {fps / (k * one):.2f} |")


if __name__ == "__main__":
    main()
