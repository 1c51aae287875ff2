"""What serving adds to foundation policies, each run from its own environment with a tiny model.

    .venv/bin/python benchmarks/bench_vla_serving.py [--families octo openvla] [--calls N]

For each family the policy environment and a tiny random-weight checkpoint are built (or
taken from the cache) by the tests' helpers (``test/helpers/octo_env.py``, ``openvla_env.py``),
and this script re-runs itself inside that environment (``--worker``), where it measures,
on one observation of two 224x224 cameras + a 9-d state (Octo: ``image_primary``,
``image_wrist``, ``proprio``; OpenVLA takes one camera and no state, so it gets one 224x224
image):

* latency, p50 and p99: the adapter called in-process (``policy.act_batch``: the same
  preprocessing and model call the server runs) against the served round trip
  (``PolicyClient.act`` -> ``start-server`` process on loopback -> the same adapter),
  alternated call by call so that a noisy machine slows both alike; "added" is the median
  of the pairs' differences;
* throughput: 8 client processes in closed loop (one episode each) against one server with
  batching on (``--max-batch 8``) and off (``--max-batch 1``), requests/s after a warm-up
  (Octo compiles its batch sizes 1, 2, 4, 8 while loading).

XLA, TensorFlow and torch run one compute thread in every process (``ONE_THREAD``).
"""
import argparse
import json
import multiprocessing
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
INSTRUCTION = "put the fork in the pot"
CLIENTS = 8
# one compute thread for XLA, TensorFlow and torch, in the worker and the servers it starts: on
# a small shared machine, multi-threaded kernels stall at their barriers whenever another
# process holds a core, and that noise would swamp what is measured
ONE_THREAD = {"XLA_FLAGS": "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1", "TF_NUM_INTRAOP_THREADS": "1", "TF_NUM_INTEROP_THREADS": "1", "OMP_NUM_THREADS": "1"}


def family_setup(family, checkpoint):
    """(server kwargs, one unbatched observation) of a family's tiny checkpoint."""
    rng = np.random.default_rng(0)
    camera = lambda: rng.integers(0, 256, (224, 224, 3), dtype=np.uint8)  # noqa: E731
    if family == "octo":
        kwargs = {"checkpoint_path": str(checkpoint), "image_size": [224, 224]}
        return kwargs, {"image_primary": camera(), "image_wrist": camera(), "proprio": rng.normal(size=9).astype(np.float32)}
    kwargs = {"checkpoint_path": str(checkpoint), "unnorm_key": "bridge_orig", "device": "cpu", "dtype": "float32", "image_size": [224, 224], "num_threads": 1}
    return kwargs, {"image": camera()}


def start_server(family, kwargs, *args):
    command = [sys.executable, "-m", "agenthive", "start-server", family, "--port", "0", "--kwargs", json.dumps(kwargs), "--log-level", "WARNING", *args]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True)
    while not (line := process.stdout.readline()).startswith("agenthive: serving "):
        if not line:
            raise RuntimeError(f"{' '.join(command)} exited before serving")
    return process, int(line.rsplit(":", 1)[1])


def stop(process):
    process.terminate()
    process.wait(30)


def percentiles(samples):
    return {"p50_ms": float(np.percentile(samples, 50)) * 1e3, "p99_ms": float(np.percentile(samples, 99)) * 1e3}


def latency(family, kwargs, obs, calls):
    """In-process adapter call vs served round trip on the same observation, call by call alternated."""
    from agenthive.serving import PolicyClient
    from agenthive.serving.policies import make_policy

    policy = make_policy(family, kwargs)
    policy.initialize()
    episode = policy.reset(INSTRUCTION)
    process, port = start_server(family, kwargs)
    local, served = [], []
    try:
        with PolicyClient("127.0.0.1", port, ready_timeout=600, timeout=120) as client:
            batch = {key: value[None] for key, value in obs.items()}
            for i in range(3 + calls):  # the first 3 pairs warm both up
                start = time.perf_counter()
                policy.act_batch(batch, [episode])
                middle = time.perf_counter()
                client.act(batch, sessions=["bench"], instruction=INSTRUCTION)
                if i >= 3:
                    local.append(middle - start)
                    served.append(time.perf_counter() - middle)
    finally:
        stop(process)
    added = (np.array(served) - np.array(local)) * 1e6
    return {"in_process": percentiles(local), "served": percentiles(served), "added_us_p50": float(np.median(added)), "samples": len(local)}


def _client_loop(port, obs, index, warmup_s, seconds, out):
    from agenthive.serving import PolicyClient

    batch = {key: value[None] for key, value in obs.items()}
    with PolicyClient("127.0.0.1", port, ready_timeout=600, timeout=120) as client:
        start = time.monotonic()
        counted = 0
        while (now := time.monotonic()) < start + warmup_s + seconds:
            client.act(batch, sessions=[f"client-{index}"], instruction=INSTRUCTION)
            counted += time.monotonic() >= start + warmup_s
        out.put(counted)


def throughput(family, kwargs, obs, max_batch, warmup_s, seconds):
    """Requests/s of CLIENTS closed-loop client processes against one server."""
    if family == "octo":  # compiled while loading, not while counting
        kwargs = {**kwargs, "compile_batch_sizes": [1, 2, 4, 8][: max_batch.bit_length()]}
    process, port = start_server(family, kwargs, "--max-batch", str(max_batch))
    context = multiprocessing.get_context("spawn")  # the client processes hold no model
    out = context.Queue()
    try:
        clients = [context.Process(target=_client_loop, args=(port, obs, i, warmup_s, seconds, out)) for i in range(CLIENTS)]
        for client in clients:
            client.start()
        total = sum(out.get(timeout=warmup_s + seconds + 900) for _ in clients)
        for client in clients:
            client.join()
    finally:
        stop(process)
    return total / seconds


def worker(args):
    kwargs, obs = family_setup(args.worker, args.checkpoint)
    result = {"family": args.worker, "latency": latency(args.worker, kwargs, obs, args.calls)}
    result["throughput_rps"] = {
        f"batching {label}": throughput(args.worker, kwargs, obs, max_batch, args.warmup, args.seconds)
        for label, max_batch in (("on", CLIENTS), ("off", 1))
    }
    print("RESULT " + json.dumps(result), flush=True)


def run_family(family, args):
    """Builds (or reuses) the family's environment and checkpoint, and runs the worker there."""
    sys.path.insert(0, str(ROOT / "test"))
    if family == "octo":
        from helpers.octo_env import QUIET, octo_venv, tiny_checkpoints

        venv, extra = octo_venv(), QUIET
        checkpoint = tiny_checkpoints(venv)["two_cams"]
    else:
        from helpers.openvla_env import OFFLINE, openvla_venv, tiny_checkpoint

        venv, extra = openvla_venv(), OFFLINE
        checkpoint = tiny_checkpoint(venv)
    command = [str(venv.python), __file__, "--worker", family, "--checkpoint", str(checkpoint)]
    command += ["--calls", str(args.calls[family]), "--seconds", str(args.seconds[family]), "--warmup", str(args.warmup)]
    out = subprocess.run(command, env=venv.env(**extra, **ONE_THREAD), capture_output=True, text=True)
    lines = [line for line in out.stdout.splitlines() if line.startswith("RESULT ")]
    if out.returncode != 0 or not lines:
        raise RuntimeError(f"the {family} worker failed (exit {out.returncode}):\n{out.stderr[-3000:]}")
    return json.loads(lines[-1].removeprefix("RESULT "))


def report(result):
    lat, rps = result["latency"], result["throughput_rps"]
    print(f"\n{result['family']}: {lat['samples']} call pairs, alternated")
    print(f"  in-process  p50 {lat['in_process']['p50_ms']:8.2f} ms   p99 {lat['in_process']['p99_ms']:8.2f} ms")
    print(f"  served      p50 {lat['served']['p50_ms']:8.2f} ms   p99 {lat['served']['p99_ms']:8.2f} ms")
    print(f"  serving adds {lat['added_us_p50']:.0f} us (median of the pairs' differences)")
    on, off = rps["batching on"], rps["batching off"]
    print(f"  {CLIENTS} clients: batching on {on:.1f} req/s, off {off:.1f} req/s: {on / off:.2f}x")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--families", nargs="+", default=["octo", "openvla"], choices=["octo", "openvla"])
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--checkpoint", help=argparse.SUPPRESS)
    parser.add_argument("--calls", type=int, help="in-process/served call pairs of the latency comparison (default: 200 Octo, 15 OpenVLA)")
    parser.add_argument("--seconds", type=float, help=argparse.SUPPRESS)
    parser.add_argument("--warmup", type=float, default=5.0, help="seconds of load before throughput is counted")
    args = parser.parse_args()
    if args.worker:
        return worker(args)
    args.calls = {family: args.calls or {"octo": 200, "openvla": 15}[family] for family in ("octo", "openvla")}  # OpenVLA's call is ~100x Octo's
    args.seconds = {"octo": 10.0, "openvla": 15.0}
    print(f"bench_vla_serving: {os.cpu_count()} CPUs; {' '.join(sys.argv)}")
    for family in args.families:
        report(run_family(family, args))


if __name__ == "__main__":
    main()
