"""openpi interoperability, both directions, with openpi-client's own code on the other end."""
import gc
import socket
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from tensordict import TensorDict

from agenthive.modules import RemotePolicyModule
from agenthive.serving.policies.mlp import MLPPolicy
from helpers.servers import PolicyServerProcess

openpi_client = pytest.importorskip("openpi_client", reason="openpi-client (the dev extra) is not installed")


def test_openpi_websocket_client_queries_an_agenthive_server():
    from openpi_client.websocket_client_policy import WebsocketClientPolicy

    kwargs = '{"obs_dim": 21, "action_dim": 9, "chunk_length": 4, "seed": 2}'
    with PolicyServerProcess("mlp", "--openpi-port", "0", kwargs=kwargs) as server:
        client = WebsocketClientPolicy("127.0.0.1", server.openpi_port)
        assert client.get_server_metadata()["observations"] == {"observation": {"shape": [21], "dtype": "float32"}}
        obs = np.linspace(-1, 1, 21, dtype=np.float32)
        out = client.infer({"observation": obs, "prompt": "reach"})
        np.testing.assert_allclose(out["actions"], MLPPolicy(21, 9, chunk_length=4, seed=2).forward(obs[None])[0], rtol=1e-5, atol=1e-6)
        assert out["server_timing"]["infer_ms"] > 0
        with pytest.raises(RuntimeError, match="bad_observation.*expected"):
            client.infer({"observation": obs[:3]})


class OpenPIReplica:
    """openpi_server_replica.py as a process; ``stop()`` then ``start()`` restarts it on the same port."""

    def __init__(self):
        self.port, self.process = 0, None

    def start(self):
        script = Path(__file__).parent / "helpers" / "openpi_server_replica.py"
        self.process = subprocess.Popen([sys.executable, str(script), str(self.port)], stdout=subprocess.PIPE, text=True)
        self.port = int(self.process.stdout.readline().rsplit(" ", 1)[1])
        return self

    def stop(self):
        self.process.terminate()
        self.process.wait()
        self.process.stdout.close()


@pytest.fixture
def openpi_replica():
    replica = OpenPIReplica().start()
    try:
        yield replica.port
    finally:
        replica.stop()


def test_remote_policy_module_queries_an_openpi_server(openpi_replica):
    policy = RemotePolicyModule("127.0.0.1", openpi_replica, protocol="openpi", in_keys={"state": "observation/state"}, instruction="fold the towel", replan_every=2)
    td = TensorDict({"state": torch.tensor([[1.0, 2.0], [3.0, 4.0]])}, batch_size=[2])
    played = [policy(td.clone())["action"] for _ in range(3)]
    assert played[0].tolist() == [[14, 3, 0], [14, 7, 0]]  # [len(prompt), sum(state), index in the chunk]
    assert played[1][:, 2].tolist() == [1, 1] and played[2][:, 2].tolist() == [0, 0]
    with pytest.raises(ValueError, match="pass in_keys"):
        RemotePolicyModule("127.0.0.1", openpi_replica, protocol="openpi")


def state_td(values, is_init=None):
    td = TensorDict({"state": torch.tensor(values, dtype=torch.float32)[:, None].expand(-1, 3)}, batch_size=[len(values)])
    if is_init is not None:
        td["is_init"] = torch.tensor(is_init)[:, None]
    return td


def test_openpi_protocol_reconnects_after_a_restart_and_names_host_and_port():
    replica = OpenPIReplica().start()
    try:
        policy = RemotePolicyModule("127.0.0.1", replica.port, protocol="openpi", in_keys={"state": "observation/state"}, replan_every=1, timeout=5.0)
        assert policy(state_td([1.0]))["action"][0, 1] == 3.0
        replica.stop()
        with pytest.raises(ConnectionError, match=rf"openpi server 127.0.0.1:{replica.port} .*check that it is running"):
            policy(state_td([1.0]))
        replica.start()  # same port, new process
        assert policy(state_td([2.0]))["action"][0, 1] == 6.0
    finally:
        replica.stop()


def test_an_absent_openpi_server_is_named_with_what_to_check():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(ConnectionError, match=rf"cannot connect to openpi server 127.0.0.1:{port} .*check that it is running"):
        RemotePolicyModule("127.0.0.1", port, protocol="openpi", in_keys={"state": "observation/state"}, timeout=2.0)


def test_openpi_protocol_runs_each_batch_element_as_its_own_episode():
    # CountingPolicy served over openpi's protocol: actions[0] is the step of the episode
    with PolicyServerProcess("helpers.serving_test_policies:CountingPolicy", "--openpi-port", "0") as server:
        policy = RemotePolicyModule("127.0.0.1", server.openpi_port, protocol="openpi", in_keys={"state": "state"})
        steps = [policy(state_td([1.0, 2.0, 3.0]))["action"][:, 0].tolist() for _ in range(3)]
        assert steps == [[0, 0, 0], [1, 1, 1], [2, 2, 2]]
        restarted = policy(state_td([1.0, 2.0, 3.0], is_init=[[False], [True], [False]]))["action"]
        assert restarted[:, 0].tolist() == [3, 0, 3]  # is_init started a new episode for env 1 only
        assert restarted[:, 3].tolist() == [3, 6, 9]  # each env got the actions for its own observation
        policy.reset()
        assert policy(state_td([1.0, 2.0, 3.0]))["action"][:, 0].tolist() == [0, 0, 0]
        policy.close()


def test_openpi_client_uses_the_supported_websockets_connect(openpi_replica):
    from agenthive.serving.openpi import OpenPIClient

    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)
        client = OpenPIClient("127.0.0.1", openpi_replica)
        assert client.act({"observation/state": np.ones((2, 2), np.float32)}, sessions=["a", "b"])["actions"].shape == (2, 5, 3)
        client.close()


def vm_rss_kib(pid):
    with open(f"/proc/{pid}/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmRSS:"))


def test_openpi_connections_do_not_grow_the_server():
    from openpi_client.websocket_client_policy import WebsocketClientPolicy

    image = np.random.default_rng(0).integers(0, 256, (480, 640, 3), dtype=np.uint8)

    def connection():
        client = WebsocketClientPolicy("127.0.0.1", server.openpi_port)
        for _ in range(2):
            assert client.infer({"image": image})["actions"][0, 0] == np.float32(image.sum(dtype=np.int64))
        client._ws.close()  # openpi-client has no close(): what its users leave behind

    with PolicyServerProcess("helpers.serving_test_policies:CameraPolicy", "--openpi-port", "0") as server:
        connection()
        time.sleep(2.5)
        before = vm_rss_kib(server.process.pid)
        for _ in range(30):
            connection()
            gc.collect()
        deadline = time.monotonic() + 5.0
        while vm_rss_kib(server.process.pid) - before >= 8 * 1024 and time.monotonic() < deadline:
            time.sleep(0.2)
        after = vm_rss_kib(server.process.pid)
    # 30 connections with one 900 kB image: ~27 MB (and 30 ZeroMQ contexts) if each kept its own client
    assert after - before < 8 * 1024, f"server VmRSS grew from {before} to {after} kB over 30 openpi connections"
