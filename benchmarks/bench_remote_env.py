"""RemoteEnv over loopback against the local env, and torchrl's distributed collector against MultiAsyncCollector.

    .venv/bin/python benchmarks/bench_remote_env.py                # both parts, ~6 min on 2 cores
    .venv/bin/python benchmarks/bench_remote_env.py --quick        # a smoke run
    .venv/bin/python benchmarks/bench_remote_env.py --envs-only    # part 1 only

1. RoboHive FrankaReachRandom-v0, state, state batched (``num_envs=8``: one request steps
   all 8) and one 224x224 camera (top_cam, no shadows):
   ``RoboHiveEnv(...).rollout`` in this process against ``RemoteEnv.rollout`` served by
   ``python -m agenthive serve-env`` in another process on 127.0.0.1, the same pre-drawn
   actions, interleaved round by round (local, remote, local, remote, ...). Prints the median
   steps/s of each and the median of the per-round ratios remote / local.
2. Two workers, each a ``Collector`` on its own RoboHive env with the same MLP policy:
   ``agenthive.distributed.distributed_collector(backend="distributed", launcher="mp")``
   against ``torchrl.collectors.MultiAsyncCollector``; frames/s from the first batch to the
   last (start-up excluded), each run in a fresh process, interleaved. Prints medians and
   the median per-round ratio.
"""
from __future__ import annotations

import argparse
import functools
import json
import random
import socket
import statistics
import subprocess
import sys
import time

import agenthive  # noqa: F401  (before torchrl: importing agenthive picks MUJOCO_GL)
import torch

ENV = "FrankaReachRandom-v0"
PIXELS = {"from_pixels": True, "cameras": ["top_cam"], "image_size": [224, 224], "shadows": False}


class Replay:
    def __init__(self, actions):
        self.actions, self.t = actions, 0

    def __call__(self, td):
        td["action"] = self.actions[self.t % len(self.actions)]
        self.t += 1
        return td


def serve(kwargs):
    process = subprocess.Popen(
        [sys.executable, "-m", "agenthive", "serve-env", ENV, "--port", "0", "--kwargs", json.dumps(kwargs), "--log-level", "WARNING"],
        stdout=subprocess.PIPE, text=True,
    )
    for line in process.stdout:
        if line.startswith("agenthive: serving env "):
            return process, int(line.rsplit(":", 1)[1])
    raise RuntimeError("serve-env did not start")


def env_round_robin(name, kwargs, steps, rounds):
    from agenthive.envs import RemoteEnv, RoboHiveEnv

    server, port = serve(kwargs)
    try:
        local_kwargs = {**kwargs, "image_size": tuple(kwargs["image_size"])} if "image_size" in kwargs else kwargs
        envs = {"local": RoboHiveEnv(ENV, **local_kwargs), "remote": RemoteEnv("127.0.0.1", port)}
        shape = envs["local"].action_spec.shape  # [9], or [N, 9] for a batched env
        actions = torch.rand(steps, *shape, generator=torch.Generator().manual_seed(0)) * 2 - 1
        for env in envs.values():
            env.set_seed(0)
            env.rollout(min(steps, 20), Replay(actions), break_when_any_done=False)  # warm-up (renderer, connection)
        rates = {key: [] for key in envs}
        for _ in range(rounds):
            for key, env in envs.items():
                start = time.perf_counter()
                env.rollout(steps, Replay(actions), break_when_any_done=False)
                rates[key].append(steps / (time.perf_counter() - start))
        envs["remote"].close()
    finally:
        server.terminate()
        server.wait()
    ratios = [r / l for r, l in zip(rates["remote"], rates["local"])]
    print(
        f"| {name} | {steps} x {rounds} | {statistics.median(rates['local']):.0f} | {statistics.median(rates['remote']):.0f} "
        f"| {statistics.median(ratios):.2f}x ({min(ratios):.2f}-{max(ratios):.2f}) |",
        flush=True,
    )


def free_port_pair():
    while True:
        port = random.randrange(20_000, 45_000, 10)
        try:
            for candidate in (port, port + 1):
                with socket.socket() as sock:
                    sock.bind(("127.0.0.1", candidate))
            return port
        except OSError:
            continue


def one_collector(kind, frames, frames_per_batch):
    """Runs one collector to ``frames`` and prints its frames/s after the first batch (a child process)."""
    from tensordict.nn import TensorDictModule
    from torch import nn
    from torchrl.collectors import MultiAsyncCollector
    from torchrl.envs import EnvCreator

    from agenthive.distributed import distributed_collector
    from agenthive.envs import RoboHiveEnv

    torch.manual_seed(0)
    policy = TensorDictModule(nn.Sequential(nn.Linear(21, 64), nn.Tanh(), nn.Linear(64, 9), nn.Tanh()), in_keys=["observation"], out_keys=["action"])
    create = functools.partial(RoboHiveEnv, ENV)
    if kind == "distributed":
        collector = distributed_collector(create, policy, backend="distributed", num_workers=2, frames_per_batch=frames_per_batch,
                                          total_frames=frames, tcp_port=free_port_pair())
    else:
        collector = MultiAsyncCollector([EnvCreator(create)] * 2, policy, frames_per_batch=frames_per_batch, total_frames=frames)
    seen, start = 0, None
    for batch in collector:
        if start is None:
            start = time.perf_counter()
        else:
            seen += batch.numel()
    rate = seen / (time.perf_counter() - start)
    collector.shutdown()
    print(json.dumps({"frames_per_s": rate}), flush=True)


def collectors_round_robin(frames, frames_per_batch, rounds):
    rates = {"distributed": [], "multi_async": []}
    for _ in range(rounds):
        for kind in rates:
            out = subprocess.run([sys.executable, __file__, "--one", kind, "--frames", str(frames), "--frames-per-batch", str(frames_per_batch)],
                                 capture_output=True, text=True, timeout=900)
            lines = [line for line in out.stdout.splitlines() if line.startswith("{")]
            if out.returncode != 0 or not lines:
                raise RuntimeError(f"{kind} run failed:\n{out.stderr[-3000:]}")
            rates[kind].append(json.loads(lines[-1])["frames_per_s"])
    ratios = [d / m for d, m in zip(rates["distributed"], rates["multi_async"])]
    print(
        f"| 2 workers, {frames} frames x {rounds} | {statistics.median(rates['multi_async']):.0f} | {statistics.median(rates['distributed']):.0f} "
        f"| {statistics.median(ratios):.2f}x ({min(ratios):.2f}-{max(ratios):.2f}) |",
        flush=True,
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer steps and rounds")
    parser.add_argument("--rounds", type=int, default=7, help="interleaved rounds per comparison")
    parser.add_argument("--one", choices=("distributed", "multi_async"), help=argparse.SUPPRESS)
    parser.add_argument("--frames", type=int, default=6000, help="frames per collector run")
    parser.add_argument("--frames-per-batch", type=int, default=200)
    parser.add_argument("--envs-only", action="store_true", help="part 1 only (RemoteEnv against the local env)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    if args.one:
        return one_collector(args.one, args.frames, args.frames_per_batch)
    rounds = 2 if args.quick else args.rounds
    print("| observation | steps x rounds | local steps/s | RemoteEnv steps/s | remote / local (median, min-max) |\n|---|---|---|---|---|")
    env_round_robin("state", {}, 200 if args.quick else 1000, rounds)
    env_round_robin("state, `num_envs=8` (steps of all 8)", {"num_envs": 8}, 50 if args.quick else 250, rounds)
    env_round_robin("pixels, 1 camera 224x224", PIXELS, 10 if args.quick else 40, rounds)
    if args.envs_only:
        return
    print("\n| collectors | MultiAsyncCollector frames/s | DistributedCollector frames/s | distributed / multi-async (median, min-max) |\n|---|---|---|---|")
    collectors_round_robin(1000 if args.quick else args.frames, args.frames_per_batch, 1 if args.quick else max(3, rounds // 2))


if __name__ == "__main__":
    main()
