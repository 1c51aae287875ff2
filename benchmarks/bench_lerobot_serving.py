"""What serving a LeRobot policy costs, and what batching concurrent clients buys.

    bash scripts/policy_envs/lerobot.sh .venv-lerobot      # once
    HF_HUB_OFFLINE=1 PYTHONPATH=. .venv-lerobot/bin/python benchmarks/bench_lerobot_serving.py

Runs in the LeRobot environment, on loopback, with a tiny random-weight ACT built like the
tests' (``test/helpers/lerobot_checkpoints.py``) but with two 224x224 cameras and an 8-d state:

* latency: the same observation through ``LeRobotPolicy.act`` in this process and through
  ``PolicyClient.act`` to ``start-server lerobot`` (shared memory on, as on one host),
  interleaved round by round; p50/p99 and the p50 difference. The model's own time varies by
  milliseconds on a shared CPU, more than serving adds, so the same pair is also measured
  for an ``MLPPolicy`` that takes the same two images and state and costs microseconds: that
  difference is what serving adds (transport, msgpack, checks, the server's loop).
* throughput: 8 client processes in closed loop (one episode each) against one server with
  batching on (``--max-batch 8``) and off (``--max-batch 1``); requests/s and their ratio,
  with the in-process cost of a batch of 1 and of 8 that explains it.
"""
import argparse
import json
import multiprocessing
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "test"))

from agenthive.serving import PolicyClient  # noqa: E402
from agenthive.serving.policies.lerobot import LeRobotPolicy  # noqa: E402
from agenthive.serving.policies.mlp import MLPPolicy  # noqa: E402

CAMERAS, SIZE = ("top", "wrist"), 224
MLP = {"obs_dim": 8, "action_dim": 7, "chunk_length": 10, "obs_key": "observation.state",
       "images": {f"observation.images.{camera}": [SIZE, SIZE, 3] for camera in CAMERAS}}


def observation(seed=0):
    rng = np.random.default_rng(seed)
    obs = {f"observation.images.{camera}": rng.integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8) for camera in CAMERAS}
    obs["observation.state"] = rng.normal(size=8).astype(np.float32)
    return obs


def start_server(policy, kwargs, *args):
    command = [sys.executable, "-m", "agenthive", "start-server", policy, "--port", "0", "--kwargs", json.dumps(kwargs), "--log-level", "WARNING", *args]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True)
    return process, int(process.stdout.readline().rsplit(":", 1)[1])


def stop(process):
    process.terminate()
    process.wait(30)


def percentiles(times):
    return {"p50_us": float(np.percentile(times, 50) * 1e6), "p99_us": float(np.percentile(times, 99) * 1e6)}


def latency(policy, served_kwargs, rounds):
    """In-process act vs served round trip on the same observation, interleaved."""
    obs = observation()
    batched = {name: value[None] for name, value in obs.items()}
    process, port = start_server(*served_kwargs)
    local, remote = [], []
    try:
        with PolicyClient("127.0.0.1", port, timeout=120, ready_timeout=600) as client:
            for _ in range(3):  # warm both paths
                policy.act(obs, policy.reset()), client.act(batched, sessions=["s"])
            for _ in range(rounds):
                start = time.perf_counter()
                policy.act(obs, policy.reset())
                local.append(time.perf_counter() - start)
                start = time.perf_counter()
                client.act(batched, sessions=["s"])
                remote.append(time.perf_counter() - start)
    finally:
        stop(process)
    result = {"in_process": percentiles(local), "served": percentiles(remote)}
    result["added_p50_us"] = result["served"]["p50_us"] - result["in_process"]["p50_us"]
    return result


def _client_loop(port, seconds, counts, index):
    obs = {name: value[None] for name, value in observation(index).items()}
    with PolicyClient("127.0.0.1", port, timeout=300, ready_timeout=600) as client:
        client.act(obs, sessions=[f"c{index}"])
        done, deadline = 0, time.monotonic() + seconds
        while time.monotonic() < deadline:
            client.act(obs, sessions=[f"c{index}"])
            done += 1
    counts[index] = done


def throughput(policy_path, clients, seconds):
    """Requests/s of ``clients`` closed-loop client processes, batching on and off."""
    result = {}
    for label, max_batch in (("batching_on", clients), ("batching_off", 1)):
        process, port = start_server("lerobot", {"policy_path": policy_path}, "--max-batch", str(max_batch), "--max-wait-ms", "5")
        try:
            PolicyClient("127.0.0.1", port, timeout=120, ready_timeout=600).close()  # wait until loaded
            counts = multiprocessing.Array("i", clients)
            workers = [multiprocessing.Process(target=_client_loop, args=(port, seconds, counts, i)) for i in range(clients)]
            for worker in workers:
                worker.start()
            for worker in workers:
                worker.join()
            result[label] = {"requests_per_s": sum(counts) / seconds}
        finally:
            stop(process)
    result["ratio"] = result["batching_on"]["requests_per_s"] / result["batching_off"]["requests_per_s"]
    return result


def batch_cost(policy, sizes=(1, 8), repeats=3):
    """Median in-process seconds of one act_batch call per batch size."""
    cost = {}
    for size in sizes:
        samples = [observation(i) for i in range(size)]
        observations = {name: np.stack([sample[name] for sample in samples]) for name in samples[0]}
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            policy.act_batch(observations, [policy.reset() for _ in range(size)])
            times.append(time.perf_counter() - start)
        cost[f"batch_{size}_ms"] = float(np.median(times) * 1e3)
    return cost


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=100)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=20.0)
    args = parser.parse_args()
    from helpers.lerobot_checkpoints import build

    path = str(build("act", tempfile.mkdtemp(prefix="bench-lerobot-"), cameras=CAMERAS, size=SIZE))
    act = LeRobotPolicy(path)
    act.initialize()
    mlp = MLPPolicy(**MLP)
    results = {
        "act_latency": latency(act, ("lerobot", {"policy_path": path}), args.rounds),
        "serving_overhead_mlp": latency(mlp, ("mlp", MLP), args.rounds * 5),
        "act_batch_cost": batch_cost(act),
        "act_throughput": throughput(path, args.clients, args.seconds),
    }
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
