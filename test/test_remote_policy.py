"""RemotePolicyModule against real policy servers: TorchRL rollouts (RoboHive, batched envs),
action chunks, episode resets, construction-time checks, pickling into collector workers."""
import pickle

import numpy as np
import pytest
import torch
from tensordict import TensorDict
from torchrl.envs import GymEnv, InitTracker, SerialEnv, TransformedEnv

from agenthive.modules import RemotePolicyModule
from agenthive.serving import PolicyTimeoutError
from agenthive.serving.policies.mlp import MLPPolicy
from helpers.servers import PolicyServerProcess


@pytest.fixture(scope="module")
def counting_server():
    with PolicyServerProcess("helpers.serving_test_policies:CountingPolicy", kwargs='{"chunk_length": 4}') as server:
        yield server


@pytest.fixture(scope="module")
def pendulum_server():
    with PolicyServerProcess("mlp", kwargs='{"obs_dim": 3, "action_dim": 1, "seed": 5}') as server:
        yield server


def test_drives_a_robohive_rollout_playing_action_chunks():
    from agenthive.envs import RoboHiveEnv

    with PolicyServerProcess("mlp", kwargs='{"obs_dim": 21, "action_dim": 9, "chunk_length": 4, "seed": 1}') as server:
        env = RoboHiveEnv("FrankaReachRandom-v0")
        policy = RemotePolicyModule("127.0.0.1", server.port, in_keys=["observation"], replan_every=2, observation_spec=env.observation_spec, action_spec=env.action_spec)
        rollout = env.rollout(12, policy, break_when_any_done=False)
        obs, actions = rollout["observation"].numpy(), rollout["action"].numpy()
        chunks = MLPPolicy(21, 9, chunk_length=4, seed=1).forward(obs)
        for t in range(12):  # step t plays entry t % 2 of the chunk predicted at step t - t % 2
            np.testing.assert_allclose(actions[t], chunks[t - t % 2, t % 2], rtol=1e-5, atol=1e-6)
        assert rollout["next", "observation"].shape == (12, 21)
        policy.close()


def test_batched_envs_get_one_request_and_their_own_actions(pendulum_server):
    env = TransformedEnv(SerialEnv(3, lambda: GymEnv("Pendulum-v1")), InitTracker())
    env.set_seed(0)
    policy = RemotePolicyModule("127.0.0.1", pendulum_server.port)
    rollout = env.rollout(10, policy)
    assert rollout.batch_size == (3, 10)
    expected = MLPPolicy(3, 1, seed=5).forward(rollout["observation"].reshape(-1, 3).numpy())[:, 0]
    np.testing.assert_allclose(rollout["action"].reshape(-1, 1).numpy(), expected, rtol=1e-5, atol=1e-6)
    assert len(set(policy._sessions)) == 3


def query(policy, values, is_init=None):
    td = TensorDict({"obs": torch.tensor(values, dtype=torch.float32)[:, None].expand(-1, 3)}, batch_size=[len(values)])
    if is_init is not None:
        td["is_init"] = torch.tensor(is_init)[:, None]
    return policy(td)["action"].numpy()


def test_chunks_replan_every_k_steps(counting_server):
    policy = RemotePolicyModule("127.0.0.1", counting_server.port, in_keys={"obs": "state"}, replan_every=3)
    played = np.stack([query(policy, [1.0])[0] for _ in range(7)])
    assert played[:, 0].tolist() == [0, 0, 0, 1, 1, 1, 2]  # server queries: every 3 steps
    assert (played[:, 3] - 3).tolist() == [0, 1, 2, 0, 1, 2, 0]  # position in the chunk


def test_is_init_restarts_only_the_marked_episodes(counting_server):
    policy = RemotePolicyModule("127.0.0.1", counting_server.port, in_keys={"obs": "state"}, replan_every=1)
    for _ in range(3):
        query(policy, [1.0, 2.0])
    actions = query(policy, [1.0, 2.0], is_init=[[False], [True]])
    assert actions[:, 0].tolist() == [3, 0]  # env 1 started a new episode on the server
    assert actions[:, 3].tolist() == [3, 6]  # each env got the actions for its own observation
    policy.reset()
    assert query(policy, [1.0, 2.0])[:, 0].tolist() == [0, 0]


def test_mismatches_fail_at_construction(counting_server):
    with pytest.raises(ValueError, match=r"no key for \['state'\], unknown names \['obs'\]"):
        RemotePolicyModule("127.0.0.1", counting_server.port, in_keys=["obs"])
    with pytest.raises(ValueError, match="replan_every=5: expected 1 to chunk_length=4"):
        RemotePolicyModule("127.0.0.1", counting_server.port, replan_every=5)
    with PolicyServerProcess("helpers.serving_test_policies:CountingPolicy", kwargs='{"takes_instruction": true}') as server:
        with pytest.raises(ValueError, match="takes a language instruction"):
            RemotePolicyModule("127.0.0.1", server.port)
        policy = RemotePolicyModule("127.0.0.1", server.port, in_keys={"obs": "state"}, instruction="open the drawer")
        assert query(policy, [0.0])[0, 2] == len("open the drawer")


def test_env_specs_are_checked_at_construction(pendulum_server):
    env = GymEnv("Pendulum-v1")
    RemotePolicyModule("127.0.0.1", pendulum_server.port, observation_spec=env.observation_spec, action_spec=env.action_spec).close()
    with PolicyServerProcess("mlp", kwargs='{"obs_dim": 3, "action_dim": 2}') as server:
        with pytest.raises(ValueError, match=r"does not fit this environment: the env's actions are \(1,\), the server's \(2,\)"):
            RemotePolicyModule("127.0.0.1", server.port, observation_spec=env.observation_spec, action_spec=env.action_spec)
    with PolicyServerProcess("mlp", kwargs='{"obs_dim": 4, "action_dim": 1}') as server:
        with pytest.raises(ValueError, match=r"'observation' is \(3,\) float32 in the env, 'observation' is \(4,\) float32 on the server"):
            RemotePolicyModule("127.0.0.1", server.port, observation_spec=env.observation_spec)


def test_an_absent_server_times_out_naming_host_port_and_elapsed(unused_port):
    with pytest.raises(PolicyTimeoutError, match=rf"127.0.0.1:{unused_port} did not answer 'hello' within 0.3 s \(waited 0.3\d s\)"):
        RemotePolicyModule("127.0.0.1", unused_port, timeout=0.3)


@pytest.fixture
def unused_port():
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_pickles_without_its_connection_and_reconnects(counting_server):
    policy = RemotePolicyModule("127.0.0.1", counting_server.port, in_keys={"obs": "state"})
    query(policy, [1.0])
    clone = pickle.loads(pickle.dumps(policy))
    assert clone._client is None
    assert query(clone, [2.0])[0, 3] == 6.0


def test_multiprocess_collector_workers_reconnect(pendulum_server):
    from torchrl.collectors import MultiSyncCollector

    policy = RemotePolicyModule("127.0.0.1", pendulum_server.port)
    collector = MultiSyncCollector([lambda: GymEnv("Pendulum-v1")] * 2, policy, frames_per_batch=40, total_frames=80)
    try:
        batches = list(collector)
    finally:
        collector.shutdown()
    assert len(batches) == 2
    for batch in batches:
        expected = MLPPolicy(3, 1, seed=5).forward(batch["observation"].reshape(-1, 3).numpy())[:, 0]
        np.testing.assert_allclose(batch["action"].reshape(-1, 1).numpy(), expected, rtol=1e-5, atol=1e-6)
