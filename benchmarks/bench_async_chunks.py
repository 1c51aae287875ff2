"""Env steps per second with asynchronous action chunks vs synchronous ones.

    .venv/bin/python benchmarks/bench_async_chunks.py                       # the issue's setting
    .venv/bin/python benchmarks/bench_async_chunks.py --period-ms 100 --latency-ms 1000  # 10x slower clock

A policy served by ``python -m agenthive start-server`` returns a chunk of 16 actions and
takes ``--latency-ms`` per call (a fixed-latency MLP: the time is what a large model on a
GPU would take); 8 RoboHive ``FrankaReachRandom-v0`` sub-envs in lockstep (``RoboHiveEnv(num_envs=8)``)
are slowed to a fixed control period (``--period-ms``): each step lasts at least that long,
as on a robot. The same rollout runs with ``RemotePolicyModule``:

* ``sync, whole chunk``: ask when the chunk is played out, wait for the reply;
* ``sync, replan every 8``: the same, asking every 8 steps (the replanning rate of the
  asynchronous run at threshold 0.5);
* ``async``: ``asynchronous=True, prefetch_threshold=0.5``: ask in the background when 8
  actions are left, keep stepping.

Rounds interleave the three so that load on a shared machine hits them alike; the script
prints the medians, the ratios and the dry-queue waits of the asynchronous run.

A policy server answers one batch at a time, so a chunk asked for at step ``s`` arrives at
``s + latency / period`` and covers the steps up to ``s + 15``: at threshold 0.5 the queue
holds 8 steps when the request leaves, and it runs dry unless ``latency < 8 x period``.
"""
import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np

from agenthive.serving.policies.mlp import MLPPolicy

CHUNK = 16


class FixedLatencyMLP(MLPPolicy):
    """``MLPPolicy`` whose every call takes ``latency_s`` (served by the benchmark's server)."""

    def __init__(self, latency_s, **kwargs):
        super().__init__(**kwargs)
        self.latency_s = latency_s

    def act_batch(self, observations, episodes):
        start = time.monotonic()
        outputs = super().act_batch(observations, episodes)
        time.sleep(max(0.0, self.latency_s - (time.monotonic() - start)))
        return outputs


def start_server(latency_s):
    kwargs = {"latency_s": latency_s, "obs_dim": 21, "action_dim": 9, "chunk_length": CHUNK, "seed": 0}
    command = [sys.executable, "-m", "agenthive", "start-server", "bench_async_chunks:FixedLatencyMLP", "--port", "0", "--kwargs", json.dumps(kwargs), "--log-level", "WARNING"]
    environment = {**os.environ, "PYTHONPATH": os.pathsep.join([os.path.dirname(os.path.abspath(__file__)), os.environ.get("PYTHONPATH", "")])}
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True, env=environment)
    return process, int(process.stdout.readline().rsplit(":", 1)[1])


def make_env(envs):
    from torchrl.envs import InitTracker, TransformedEnv

    from agenthive.envs import RoboHiveEnv

    env = TransformedEnv(RoboHiveEnv("FrankaReachRandom-v0", num_envs=envs), InitTracker())
    env.set_seed(0)
    return env


def paced_rollout(env, policy, steps, period_s):
    """Steps per second of ``steps`` paced env steps driven by ``policy``, after a first
    step (whose wait for the first chunk every mode has alike)."""
    td = env.reset()
    for step in range(steps + 1):
        if step == 1:
            start = time.perf_counter()
        td = policy(td)
        step_start = time.perf_counter()
        _, td = env.step_and_maybe_reset(td)
        time.sleep(max(0.0, period_s - (time.perf_counter() - step_start)))  # the robot's control period
    return steps / (time.perf_counter() - start)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--period-ms", type=float, default=10.0, help="control period of the env (each step lasts at least this)")
    parser.add_argument("--latency-ms", type=float, default=100.0, help="time the served policy takes per call")
    parser.add_argument("--envs", type=int, default=8, help="sub-envs stepped in lockstep")
    parser.add_argument("--steps", type=int, default=96, help="env steps per rollout")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds; medians are printed")
    parser.add_argument("--threshold", type=float, default=0.5, help="prefetch_threshold of the asynchronous run")
    args = parser.parse_args()

    from agenthive.modules import RemotePolicyModule

    env = make_env(args.envs)
    process, port = start_server(args.latency_ms / 1000)
    modes = {
        "sync, whole chunk": {},
        f"sync, replan every {CHUNK // 2}": {"replan_every": CHUNK // 2},
        f"async, threshold {args.threshold}": {"asynchronous": True, "prefetch_threshold": args.threshold},
    }
    rates = {mode: [] for mode in modes}
    dry_waits, late = [], []
    try:
        for _ in range(args.rounds):
            for mode, kwargs in modes.items():
                policy = RemotePolicyModule("127.0.0.1", port, observation_spec=env.observation_spec, action_spec=env.action_spec, **kwargs)
                rates[mode].append(paced_rollout(env, policy, args.steps, args.period_ms / 1000))
                if policy.asynchronous:
                    dry_waits.append(policy.dry_waits)
                    late.append(policy.late_replies)
                policy.close()
    finally:
        process.terminate()
        process.wait()
        env.close()
    report(args, rates, dry_waits, late)


def report(args, rates, dry_waits, late):
    medians = {mode: float(np.median(r)) for mode, r in rates.items()}
    ideal = 1000 / args.period_ms
    print(
        f"{args.envs} RoboHive FrankaReachRandom-v0 sub-envs (RoboHiveEnv(num_envs={args.envs})) paced to {args.period_ms:g} ms per step; "
        f"served MLP, chunk of {CHUNK}, {args.latency_ms:g} ms per call; {args.steps} steps x {args.rounds} interleaved rounds (medians)\n"
    )
    print("| mode | env steps/s (batched) | sub-env steps/s | of the control rate |\n|---|---|---|---|")
    for mode, rate in medians.items():
        print(f"| {mode} | {rate:.1f} | {rate * args.envs:.0f} | {rate / ideal:.2f} |")
    names = list(medians)
    print(f"\nasync / sync (whole chunk): {medians[names[2]] / medians[names[0]]:.2f}x; async / sync (replan every {CHUNK // 2}): {medians[names[2]] / medians[names[1]]:.2f}x")
    print(f"dry-queue waits of the async run per round (sub-env steps that waited for a reply): {dry_waits}; late replies dropped: {late}")
    runway = args.threshold * CHUNK * args.period_ms
    verdict = "shorter" if args.latency_ms < runway else "not shorter"
    print(f"the policy's latency ({args.latency_ms:g} ms) is {verdict} than the queue left at the threshold ({runway:g} ms)")


if __name__ == "__main__":
    main()
