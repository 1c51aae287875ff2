"""openpi interoperability, both directions, with openpi-client's own code on the other end."""
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from tensordict import TensorDict

from agenthive.modules import RemotePolicyModule
from agenthive.serving.policies.mlp import MLPPolicy
from policy_server_process import PolicyServerProcess

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


@pytest.fixture
def openpi_replica():
    script = Path(__file__).with_name("openpi_server_replica.py")
    process = subprocess.Popen([sys.executable, str(script), "0"], stdout=subprocess.PIPE, text=True)
    try:
        yield int(process.stdout.readline().rsplit(" ", 1)[1])
    finally:
        process.terminate()
        process.wait()


def test_remote_policy_module_queries_an_openpi_server(openpi_replica):
    policy = RemotePolicyModule("127.0.0.1", openpi_replica, protocol="openpi", in_keys={"state": "observation/state"}, instruction="fold the towel", replan_every=2)
    td = TensorDict({"state": torch.tensor([[1.0, 2.0], [3.0, 4.0]])}, batch_size=[2])
    played = [policy(td.clone())["action"] for _ in range(3)]
    assert played[0].tolist() == [[14, 3, 0], [14, 7, 0]]  # [len(prompt), sum(state), index in the chunk]
    assert played[1][:, 2].tolist() == [1, 1] and played[2][:, 2].tolist() == [0, 0]
    with pytest.raises(ValueError, match="pass in_keys"):
        RemotePolicyModule("127.0.0.1", openpi_replica, protocol="openpi")


def test_remote_policy_module_prefetches_openpi_chunks_in_the_background(openpi_replica):
    # the replica's chunks are 5 long: [len(prompt), sum(state), index in the chunk]; the
    # chunk length is learnt from the first reply (openpi announces no metadata)
    policy = RemotePolicyModule(
        "127.0.0.1", openpi_replica, protocol="openpi", in_keys={"state": "observation/state"}, instruction="fold the towel",
        asynchronous=True, prefetch_threshold=0.6, aggregate="latest_only", staleness_key="staleness",
    )
    td = TensorDict({"state": torch.tensor([[1.0, 2.0], [3.0, 4.0]])}, batch_size=[2])
    played = [policy(td.clone()) for _ in range(12)]
    policy.close()
    assert policy.chunk_length == 5
    for out in played:  # each action is the chunk entry for its own step, whenever the chunk arrived
        assert out["action"][:, 2].tolist() == out["staleness"].tolist()
    assert max(int(out["staleness"].max()) for out in played) < 5
    assert policy.late_replies == 0
