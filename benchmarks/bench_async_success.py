"""Success of a trained policy served with asynchronous action chunks vs synchronous ones.

    .venv/bin/python benchmarks/bench_async_success.py --checkpoint runs/reach/checkpoints/step_000040000

The checkpoint is a ``scripts/train.py`` SAC policy of ``FrankaReachRandom-v0`` (state).
The benchmark's server (``python -m agenthive start-server bench_async_success:ChunkedCheckpoint``)
loads its ``policy.pt`` as the ``torchrl_checkpoint`` policy does, answers with a chunk of
``--chunk`` copies of the deterministic action for the observation it was sent (the policy,
held for ``--chunk`` steps, as a policy trained with action repeat is played), and takes
``--latency-ms`` per call. 8 sub-envs (``RoboHiveEnv(num_envs=8)``) are paced to
``--period-ms`` per step, as on a robot; ``RemotePolicyModule`` drives them:

* ``sync``: play the chunk out, then ask and wait;
* ``sync, replan every chunk/2``: ask and wait every half chunk (the asynchronous runs'
  replanning rate, without their overlap);
* ``async``: ``asynchronous=True, prefetch_threshold=0.5`` (ask in the background when half
  the chunk is left; the actions played while the model thought are skipped), the
  overlapping actions merged by ``weighted_average`` or replaced (``latest_only``).

Rounds interleave the modes; each round plays ``--episodes-per-env`` whole episodes in
every sub-env. Success is train.py's rule (RoboHive's ``solved`` on more than 5 of the
episode's 50 steps). Prints each mode's success over all episodes, with a 95% Wilson interval,
its env steps/s and the asynchronous run's dry-queue waits and staleness.
"""
import argparse
import dataclasses
import json
import math
import os
import subprocess
import sys
import time

import numpy as np

from agenthive.serving.policies.torchrl_checkpoint import TorchRLCheckpointPolicy


class ChunkedCheckpoint(TorchRLCheckpointPolicy):
    """A train.py checkpoint's deterministic action, repeated ``chunk`` times, each call taking ``latency_s``."""

    def __init__(self, checkpoint, chunk, latency_s):
        super().__init__(os.path.join(checkpoint, "policy.pt"), {"observation": [[21], "float32"]}, num_threads=1)
        self.chunk, self.latency_s = chunk, latency_s

    def initialize(self):
        super().initialize()
        self.metadata = dataclasses.replace(self.metadata, chunk_length=self.chunk)

    def act_batch(self, observations, episodes):
        from torchrl.envs.utils import ExplorationType, set_exploration_type

        start = time.monotonic()
        with set_exploration_type(ExplorationType.DETERMINISTIC):
            actions = self._forward(observations)  # (B, 1, 9)
        time.sleep(max(0.0, self.latency_s - (time.monotonic() - start)))
        return {"actions": np.repeat(actions, self.chunk, axis=1)}


def start_server(args):
    kwargs = {"checkpoint": os.path.abspath(args.checkpoint), "chunk": args.chunk, "latency_s": args.latency_ms / 1000}
    command = [sys.executable, "-m", "agenthive", "start-server", "bench_async_success:ChunkedCheckpoint", "--port", "0",
               "--kwargs", json.dumps(kwargs), "--log-level", "WARNING"]
    environment = {**os.environ, "PYTHONPATH": os.pathsep.join([os.path.dirname(os.path.abspath(__file__)), os.environ.get("PYTHONPATH", "")])}
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True, env=environment)
    return process, int(process.stdout.readline().rsplit(":", 1)[1])


def paced_episodes(env, policy, episodes_per_env, period_s, success_steps):
    """Plays until every sub-env finished ``episodes_per_env`` episodes; returns (successes, steps/s, staleness)."""
    n = env.batch_size[0]
    td, outcomes, solved = env.reset(), [[] for _ in range(n)], np.zeros(n, dtype=np.int64)
    steps, staleness, start = 0, [], time.perf_counter()
    while min(len(o) for o in outcomes) < episodes_per_env:
        step_start = time.perf_counter()
        td = policy(td)
        if "staleness" in td.keys():
            staleness.append(td["staleness"].float().mean().item())
        out, td = env.step_and_maybe_reset(td)
        solved += out["next", "success"].reshape(n).numpy()
        for i in np.flatnonzero(out["next", "done"].reshape(n).numpy()):
            outcomes[i].append(bool(solved[i] > success_steps))
            solved[i] = 0
        steps += 1
        time.sleep(max(0.0, period_s - (time.perf_counter() - step_start)))
    successes = [s for o in outcomes for s in o[:episodes_per_env]]
    return successes, steps / (time.perf_counter() - start), staleness


def wilson(successes: int, total: int) -> tuple[float, float]:
    p, z = successes / total, 1.96
    centre, half = p + z * z / (2 * total), z * math.sqrt(p * (1 - p) / total + z * z / (4 * total * total))
    return (centre - half) / (1 + z * z / total), (centre + half) / (1 + z * z / total)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--checkpoint", required=True, help="a scripts/train.py checkpoint directory of FrankaReachRandom-v0 (state)")
    parser.add_argument("--chunk", type=int, default=8, help="actions per chunk (the policy's action, held)")
    parser.add_argument("--latency-ms", type=float, default=30.0, help="time the served policy takes per call")
    parser.add_argument("--period-ms", type=float, default=10.0, help="control period of the env")
    parser.add_argument("--episodes-per-env", type=int, default=2, help="episodes per sub-env per round")
    parser.add_argument("--rounds", type=int, default=4, help="interleaved rounds")
    args = parser.parse_args()

    from agenthive.env_config import EnvConfig, make_env
    from agenthive.modules import RemotePolicyModule

    config = EnvConfig("FrankaReachRandom-v0")
    env = make_env(config, num_envs=8)
    env.set_seed(0)
    process, port = start_server(args)
    modes = {
        "sync": {"staleness_key": "staleness"},
        f"sync, replan every {args.chunk // 2}": {"replan_every": args.chunk // 2, "staleness_key": "staleness"},
        "async, threshold 0.5, weighted_average": {"asynchronous": True, "prefetch_threshold": 0.5, "staleness_key": "staleness"},
        "async, threshold 0.5, latest_only": {"asynchronous": True, "prefetch_threshold": 0.5, "aggregate": "latest_only", "staleness_key": "staleness"},
    }
    results = {mode: {"successes": [], "rates": [], "staleness": [], "dry_waits": 0} for mode in modes}
    try:
        for _ in range(args.rounds):
            for mode, kwargs in modes.items():
                policy = RemotePolicyModule("127.0.0.1", port, observation_spec=env.observation_spec, action_spec=env.action_spec, **kwargs)
                successes, rate, staleness = paced_episodes(env, policy, args.episodes_per_env, args.period_ms / 1000, config.success_steps)
                result = results[mode]
                result["successes"] += successes
                result["rates"].append(rate)
                result["staleness"] += staleness
                result["dry_waits"] += policy.dry_waits if policy.asynchronous else 0
                policy.close()
    finally:
        process.terminate()
        process.wait()
        env.close()
    report(args, results)


def report(args, results):
    print(f"8 FrankaReachRandom-v0 sub-envs paced to {args.period_ms:g} ms per step; {args.checkpoint} served as chunks of "
          f"{args.chunk} (its action held), {args.latency_ms:g} ms per call; {args.rounds} interleaved rounds\n")
    print("| mode | episodes | success (95% interval) | env steps/s (median) | mean staleness (steps) | dry-queue waits |\n|---|---|---|---|---|---|")
    for mode, r in results.items():
        total, wins = len(r["successes"]), sum(r["successes"])
        low, high = wilson(wins, total)
        staleness = f"{np.mean(r['staleness']):.2f}" if r["staleness"] else "-"
        print(f"| {mode} | {total} | {wins / total:.2f} ({low:.2f}-{high:.2f}) | {np.median(r['rates']):.1f} | {staleness} | {r['dry_waits']} |")


if __name__ == "__main__":
    main()
