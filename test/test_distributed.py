"""agenthive.distributed on one machine: torchrl's distributed collectors (torch.distributed
and RPC, workers launched by torchrl with launcher="mp" or by hand with `python -m agenthive
collect-worker`) on localhost, with real RoboHive envs made in the workers, and policy weight
updates that must reach every worker.

Each run is its own process group (torch.distributed keeps process-wide state), killed with
its workers if it outlives its timeout.
"""
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from tensordict.nn import TensorDictModule
from torch import nn

import agenthive.distributed
from agenthive.distributed import _has_ray, distributed_collector, main
from helpers.ports import free_port_pair

RUN = Path(__file__).resolve().parent / "helpers" / "distributed_run.py"
UPDATES = {2: 2, 6: 3}  # as in distributed_run.py: after batch i the learner moves to version v
TIMEOUT = 300


def start(command):
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)


def finish(process, timeout=TIMEOUT):
    try:
        out, err = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)  # the run and every worker it spawned
        out, err = process.communicate()
        pytest.fail(f"{process.args} did not finish within {timeout} s; its stderr:\n{err[-4000:]}")
    return out, err


def collect(**options):
    """Batches of one distributed_run.py run (see its docstring)."""
    process = start([sys.executable, str(RUN), json.dumps(options)])
    out, err = finish(process)
    lines = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    assert process.returncode == 0 and lines and lines[-1] == {"done": True}, f"the run failed; its stderr:\n{err[-4000:]}"
    return lines[:-1]


def check_every_worker_got_every_update(batches, sync, num_workers=2):
    assert [b["batch"] for b in batches] == list(range(12))
    for b in batches:
        if sync:  # every batch holds each worker's share, all made after the update that preceded it
            assert all(row == [b["version"] / 10] for row in b["actions"]), b
        else:  # only the weights of this version or the one before (a worker finishing a batch)
            assert set(b["actions"][0]) <= {b["version"] / 10, (b["version"] - 1) / 10}, b
    if not sync:
        # each update shows within the next num_workers batches, and in the end only the last weights act
        # (torchrl's async loop now and then hands out one more batch of the previous weights after that)
        for after, version in UPDATES.items():
            assert any(version / 10 in b["actions"][0] for b in batches[after + 1 : after + 1 + num_workers]), (after, batches)
        assert all(b["actions"] == [[max(UPDATES.values()) / 10]] for b in batches[-2:]), batches[-2:]


def test_distributed_sync_every_worker_acts_with_the_new_weights_from_the_next_batch():
    batches = collect(backend="distributed", sync=True, tcp_port=free_port_pair())
    assert all(b["shape"] == [2, 50] for b in batches)  # one row per worker
    check_every_worker_got_every_update(batches, sync=True)


def test_distributed_async_workers_switch_to_the_new_weights():
    check_every_worker_got_every_update(collect(backend="distributed", sync=False, tcp_port=free_port_pair()), sync=False)


def test_rpc_sync_every_worker_acts_with_the_new_weights_from_the_next_batch():
    batches = collect(backend="rpc", sync=True, tcp_port=free_port_pair())
    assert all(b["shape"] == [100] for b in batches)  # both workers' 50 frames, concatenated
    check_every_worker_got_every_update(batches, sync=True)


def test_workers_started_by_hand_with_collect_worker_as_on_two_hosts():
    port = free_port_pair()
    learner = start([sys.executable, str(RUN), json.dumps({"backend": "distributed", "sync": True, "tcp_port": port, "launcher": "submitit_delayed"})])
    workers = [
        start([sys.executable, "-m", "agenthive", "collect-worker", "--master-addr", "127.0.0.1", "--master-port", str(port), "--rank", str(rank), "--world-size", "3"])
        for rank in (1, 2)
    ]
    try:
        out, err = finish(learner)
        worker_outputs = [finish(worker, timeout=60)[0] for worker in workers]
    finally:
        for process in (learner, *workers):
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
    lines = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    assert learner.returncode == 0 and lines[-1] == {"done": True}, err[-4000:]
    check_every_worker_got_every_update(lines[:-1], sync=True)
    for rank, output in zip((1, 2), worker_outputs):
        assert f"agenthive: distributed worker {rank}/2 joining 127.0.0.1:{port}" in output and f"agenthive: worker {rank} done" in output


@pytest.mark.parametrize("backend", [
    "distributed",
    pytest.param("ray", marks=pytest.mark.skipif(not _has_ray, reason="Ray is not installed (pip install 'agenthive[ray]'; scripts/install.sh installs it)")),
])
def test_collect_script_with_a_distributed_backend_and_a_random_policy(backend):
    script = Path(__file__).resolve().parents[1] / "scripts" / "collect.py"
    process = start([sys.executable, str(script), "--collector-backend", backend, "--collector-workers", "2", "--tcp-port", str(free_port_pair()),
                     "--num-envs", "1", "--total-frames", "800", "--video-env", ""])
    out, err = finish(process)
    assert process.returncode == 0, err[-4000:]
    assert f"800 frames from 2 {backend} worker(s) x 1 envs" in out, out


@pytest.mark.skipif(not _has_ray, reason="Ray is not installed (pip install 'agenthive[ray]'; scripts/install.sh installs it)")
def test_ray_every_worker_acts_with_the_new_weights_from_the_next_batch():
    check_every_worker_got_every_update(collect(backend="ray", sync=True, ray_init_config={"num_cpus": 2}), sync=True)


def test_ray_without_ray_names_the_extra(monkeypatch):
    monkeypatch.setattr(agenthive.distributed, "_has_ray", False)  # as on a machine without Ray
    policy = TensorDictModule(nn.Linear(21, 9), in_keys=["observation"], out_keys=["action"])
    with pytest.raises(ImportError, match=r"backend=.ray. needs Ray, which is not installed: `pip install ray`"):
        distributed_collector(None, policy, backend="ray", num_workers=2, frames_per_batch=10, total_frames=20)


def test_unknown_backends_launchers_and_ranks_are_refused():
    with pytest.raises(ValueError, match=r"backend='mpi': expected one of \('distributed', 'rpc', 'ray'\)"):
        distributed_collector(None, None, backend="mpi", num_workers=2, frames_per_batch=10, total_frames=20)
    with pytest.raises(ValueError, match=r"launcher='slurm': expected one of \('mp', 'submitit_delayed', 'submitit'\)"):
        distributed_collector(None, None, backend="rpc", num_workers=2, frames_per_batch=10, total_frames=20, launcher="slurm")
    with pytest.raises(SystemExit, match="--rank 0 with --world-size 3: expected 1 <= rank < world size"):
        main(["--master-addr", "127.0.0.1", "--rank", "0", "--world-size", "3"])


def test_docstring_examples_run():
    import doctest

    import agenthive.distributed

    result = doctest.testmod(agenthive.distributed, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0
