"""EnvServer and RemoteEnv as real processes on loopback: specs from the handshake, rollouts
equal to local ones, images without copies, ParallelEnv and collectors, several clients,
vanished clients, restarts, bad messages (hypothesis), CURVE, the CLI."""
import doctest
import functools
import re
import subprocess
import sys
import threading
import time

import msgpack
import numpy as np
import pytest
import torch
import zmq
import zmq.auth
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from torchrl.collectors import Collector
from torchrl.envs import EnvCreator, ParallelEnv, check_env_specs

import agenthive.envs.maniskill
import agenthive.remote_env.client
import agenthive.remote_env.codec
import agenthive.remote_env.server
from agenthive.envs import RemoteEnv, RoboHiveEnv
from agenthive.remote_env.client import EnvServerError, EnvSpecMismatchError, EnvTimeoutError
from agenthive.remote_env import codec
from agenthive.serving import PolicyClient, wire
from agenthive.remote_env.server import EnvServer
from helpers.servers import EnvServerProcess
from helpers.servers import PolicyServerProcess
from helpers.serving_test_envs import BareStepEnv, counting_batched
from helpers.step_checks import assert_step_output_is_complete

PIXELS = '{"from_pixels": true, "cameras": ["top_cam"], "image_size": [64, 64], "shadows": false}'


@pytest.fixture(scope="module")
def state_server():
    with EnvServerProcess("FrankaReachRandom-v0") as server:
        yield server


@pytest.fixture(scope="module")
def fragile_server():
    with EnvServerProcess("helpers.serving_test_envs:FragileEnv", "--backend", "factory") as server:
        yield server


def request(port, message, timeout_ms=10_000):
    """One raw request on a fresh DEALER socket; returns the decoded reply."""
    with zmq.Context.instance().socket(zmq.DEALER) as sock:
        sock.linger = 0
        sock.connect(f"tcp://127.0.0.1:{port}")
        sock.send_multipart(wire.encode({"v": wire.VERSION, "id": 1, **message}))
        assert sock.poll(timeout_ms), f"no reply to {message['type']!r} within {timeout_ms} ms"
        return wire.decode(sock.recv_multipart())


def wait_for_instances(port, count, timeout=20.0):
    deadline = time.monotonic() + timeout
    while (instances := request(port, {"type": "health"})["instances"]) != count and time.monotonic() < deadline:
        time.sleep(0.2)
    return instances


class Replay:
    """Plays pre-drawn actions, the same for every env it drives."""

    def __init__(self, actions):
        self.actions, self.t = actions, 0

    def __call__(self, td):
        td["action"] = self.actions[self.t % len(self.actions)].expand(td.batch_size + self.actions.shape[1:])
        self.t += 1
        return td


def actions(n, dim, seed=0):
    return torch.rand(n, dim, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def rollout(env, seed, steps=30):
    env.set_seed(seed)
    return env.rollout(steps, Replay(actions(steps, env.action_spec.shape[-1], seed)), break_when_any_done=False)


def assert_same_rollout(remote, local):
    """The same keys, and every entry equal to the local env's."""
    assert set(remote.keys(True, True)) == set(local.keys(True, True))
    for key in local.keys(True, True):
        torch.testing.assert_close(remote[key], local[key], msg=lambda m: f"{key}: {m}")


def test_specs_come_from_the_server_and_check_env_specs_passes(state_server):
    local = RoboHiveEnv("FrankaReachRandom-v0")
    env = RemoteEnv("127.0.0.1", state_server.port)
    try:
        assert env.batch_size == local.batch_size
        assert env.full_observation_spec == local.full_observation_spec
        assert env.full_action_spec == local.full_action_spec
        assert (env.full_reward_spec, env.full_done_spec) == (local.full_reward_spec, local.full_done_spec)
        assert "FrankaReachRandom-v0" in env.server_env and f":{state_server.port}" in repr(env)
        check_env_specs(env)
        assert_step_output_is_complete(env)
    finally:
        env.close()


def test_the_server_completes_step_outputs_as_torchrl_would():
    # BareStepEnv's _step leaves out "terminated" and returns a reward of shape []: the server
    # runs torchrl's completion next to the env, since RemoteEnv (a CompleteStep) skips it
    with EnvServerProcess("helpers.serving_test_envs:BareStepEnv", "--backend", "factory") as server:
        env = RemoteEnv("127.0.0.1", server.port)
        try:
            assert_step_output_is_complete(env)
            remote = rollout(env, seed=0, steps=10)
        finally:
            env.close()
    local = rollout(BareStepEnv(), seed=0, steps=10)
    assert_same_rollout(remote, local)
    assert remote["next", "reward"].shape == (10, 1) and remote["next", "terminated"].any()


@pytest.mark.skipif(not agenthive.envs.maniskill._has_maniskill, reason="mani_skill is not installed (pip install 'agenthive[maniskill]')")
def test_a_served_maniskill_env_rolls_out_as_the_local_one():
    with EnvServerProcess("PickCube-v1", "--backend", "maniskill", kwargs='{"max_episode_steps": 10}') as server:
        env = RemoteEnv("127.0.0.1", server.port)
        try:
            check_env_specs(env)
            assert_step_output_is_complete(env)
            remote = rollout(env, seed=5, steps=15)  # crosses the 10-step limit: a reset on the server
        finally:
            env.close()
    local = rollout(agenthive.envs.maniskill.ManiSkillEnv("PickCube-v1", max_episode_steps=10), seed=5, steps=15)
    assert_same_rollout(remote, local)
    assert remote["next", "truncated"][9].all() and remote["next", "observation"].std() > 0


def test_a_remote_rollout_equals_the_local_one_with_the_same_seed(state_server):
    env = RemoteEnv("127.0.0.1", state_server.port)
    try:
        remote = rollout(env, seed=3)
    finally:
        env.close()
    local = rollout(RoboHiveEnv("FrankaReachRandom-v0"), seed=3)
    assert_same_rollout(remote, local)
    assert remote["next", "observation"].std() > 0


def test_camera_images_match_a_local_env_and_arrive_as_uint8():
    with EnvServerProcess("FrankaReachRandom-v0", kwargs=PIXELS) as server:
        env = RemoteEnv("127.0.0.1", server.port)
        try:
            check_env_specs(env)
            remote = rollout(env, seed=1, steps=5)
        finally:
            env.close()
    local = rollout(RoboHiveEnv("FrankaReachRandom-v0", from_pixels=True, cameras=["top_cam"], image_size=(64, 64), shadows=False), seed=1, steps=5)
    assert remote["next", "pixels"].shape == (5, 1, 64, 64, 3) and remote["next", "pixels"].dtype == torch.uint8
    torch.testing.assert_close(remote["next", "pixels"], local["next", "pixels"])


def test_images_become_tensors_over_the_received_frame_without_a_copy():
    context = zmq.Context.instance()
    with context.socket(zmq.PULL) as pull, context.socket(zmq.PUSH) as push:
        port = pull.bind_to_random_port("tcp://127.0.0.1")
        push.connect(f"tcp://127.0.0.1:{port}")
        pixels = np.random.default_rng(0).integers(0, 256, (2, 224, 224, 3), dtype=np.uint8)
        push.send_multipart(wire.encode({"v": wire.VERSION, "type": "step", "td": {"pixels": pixels, "reward": np.ones(1, np.float32)}}), copy=False)
        frames = pull.recv_multipart(copy=False)
        td = codec.tensordict_from_wire(wire.decode(frames)["td"], [])
        assert len(frames) == 2  # the image travelled as a frame of its own, the reward inside the header
        assert td["pixels"].data_ptr() == np.frombuffer(frames[1].buffer, np.uint8).ctypes.data
        assert torch.equal(td["pixels"], torch.from_numpy(pixels)) and td["reward"].item() == 1.0


def test_parallel_env_and_collector_get_one_instance_per_worker(state_server):
    env = ParallelEnv(2, EnvCreator(functools.partial(RemoteEnv, "127.0.0.1", state_server.port)))
    try:
        td = env.rollout(10, break_when_any_done=False)
        assert td["next", "observation"].shape == (2, 10, 21)
        assert not torch.equal(td["next", "observation"][0], td["next", "observation"][1])
        assert wait_for_instances(state_server.port, 2) == 2  # EnvCreator's own probe env was closed
        collector = Collector(env, None, frames_per_batch=40, total_frames=80)
        batches = [batch for batch in collector]
        collector.shutdown()
        assert [batch["next", "reward"].shape for batch in batches] == [(2, 20, 1)] * 2
    finally:
        if not env.is_closed:
            env.close()
    assert wait_for_instances(state_server.port, 0) == 0


def test_one_server_hosts_independent_instances_for_several_clients(state_server):
    a, b = RemoteEnv("127.0.0.1", state_server.port), RemoteEnv("127.0.0.1", state_server.port)
    try:
        a.set_seed(5), b.set_seed(6)
        td_a, td_b = a.reset(), b.reset()
        steps_a, steps_b = [], []
        acts = actions(20, 9)
        for t in range(20):  # interleaved: each step of one client between two of the other
            td_a = a.step(td_a.set("action", acts[t]))
            steps_a.append(td_a["next", "observation"])
            td_a = td_a["next"]
            td_b = b.step(td_b.set("action", -acts[t]))
            steps_b.append(td_b["next", "observation"])
            td_b = td_b["next"]
        assert request(state_server.port, {"type": "health"})["instances"] == 2
    finally:
        a.close(), b.close()
    for seed, sign, steps in ((5, 1, steps_a), (6, -1, steps_b)):
        local = RoboHiveEnv("FrankaReachRandom-v0")
        local.set_seed(seed)
        expected = local.rollout(20, Replay(sign * acts), break_when_any_done=False)["next", "observation"]
        torch.testing.assert_close(torch.stack(steps), expected)


def count_up(td):
    return td.set("action", torch.ones(3, 1, dtype=torch.int8))


def test_a_batched_env_with_partial_resets_behaves_as_locally():
    with EnvServerProcess("helpers.serving_test_envs:counting_batched", "--backend", "factory") as server:
        env = RemoteEnv("127.0.0.1", server.port)
        try:
            assert env.batch_size == (3,)
            check_env_specs(env)
            remote = env.rollout(12, count_up, break_when_any_done=False)  # the counters end at steps 3, 4, 5: partial resets
            env.set_seed(0)
            td = env.reset()
            td["action"] = torch.ones(3, 1, dtype=torch.int8)
            for _ in range(3):
                td = env.step(td)["next"].set("action", torch.ones(3, 1, dtype=torch.int8))
            td["_reset"] = torch.tensor([[True], [False], [False]])
            counts = env.reset(td)["observation"].squeeze(-1).tolist()
        finally:
            env.close()
    local = counting_batched().rollout(12, count_up, break_when_any_done=False)
    torch.testing.assert_close(remote["next", "observation"], local["next", "observation"])
    torch.testing.assert_close(remote["next", "done"], local["next", "done"])
    assert remote["next", "done"].any() and not remote["next", "done"].all()
    assert counts == [0, 3, 3]  # only the first counter was reset


def test_an_env_that_raises_fails_only_that_step(fragile_server):
    env = RemoteEnv("127.0.0.1", fragile_server.port)
    try:
        td = env.reset()
        td = env.step(td.set("action", torch.tensor([0.5])))["next"]
        with pytest.raises(EnvServerError, match=r"answered env_error: FragileEnv.step raised ValueError: action 0.95 exceeds the joint limit 0.9") as info:
            env.step(td.set("action", torch.tensor([0.95])))
        assert info.value.code == wire.ERROR_ENV
        assert env.step(td.set("action", torch.tensor([0.1])))["next", "observation"].item() == 2.0
    finally:
        env.close()


def test_bad_requests_are_refused_with_what_was_expected(fragile_server):
    port = fragile_server.port
    instance = request(port, {"type": "make"})["instance"]
    try:
        cases = [
            ({"type": "step", "instance": instance, "td": {"action": np.zeros(2, np.float32)}}, wire.ERROR_BAD_INPUT, r"entry 'action' has shape \(2,\) and dtype float32: expected \(1,\) float32"),
            ({"type": "step", "instance": instance, "td": {"action": np.zeros(1, np.float64)}}, wire.ERROR_BAD_INPUT, "dtype float64: expected"),
            ({"type": "step", "instance": instance, "td": {}}, wire.ERROR_BAD_INPUT, r"missing entries \['action'\]"),
            ({"type": "step", "instance": instance, "td": {"action": np.zeros(1, np.float32), "joint": np.zeros(1)}}, wire.ERROR_BAD_INPUT, r"unexpected entry 'joint': this env takes \['action'\]"),
            ({"type": "step", "instance": instance, "td": [1, 2]}, wire.ERROR_BAD_INPUT, "'td' is a list: expected a map"),
            ({"type": "step", "instance": "nope", "td": {}}, wire.ERROR_UNKNOWN_INSTANCE, "env instance 'nope' is not on this server: the server restarted, or freed it after 300 s"),
            ({"type": "seed", "instance": instance, "seed": "abc"}, wire.ERROR_BAD_INPUT, "'seed' is a str: expected an int or nil"),
            ({"type": "dance"}, wire.ERROR_BAD_MESSAGE, "unknown request type 'dance': expected one of 'hello', 'health', 'make'"),
        ]
        for message, code, match in cases:
            reply = request(port, message)
            assert (reply["type"], reply["code"]) == ("error", code), (message, reply)
            assert reply["id"] == 1 and re.search(match, reply["message"]), (match, reply["message"])
        reply = request(port, {"type": "hello"})
        assert (reply["serves"], reply["batch_size"], reply["specs"]["full_action_spec"]["entries"]["action"]["class"]) == ("env", [], "Bounded")
    finally:
        assert request(port, {"type": "close", "instance": instance})["closed"] is True


def test_a_vanished_client_frees_its_instance_after_the_idle_timeout():
    with EnvServerProcess("helpers.serving_test_envs:FragileEnv", "--backend", "factory", "--idle-timeout", "1") as server:
        code = (
            "import time\nfrom agenthive.envs import RemoteEnv\n"
            f"env = RemoteEnv('127.0.0.1', {server.port}); env.reset(); print('ready', flush=True); time.sleep(600)"
        )
        client = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
        try:
            assert client.stdout.readline().strip() == "ready"
            assert request(server.port, {"type": "health"})["instances"] == 1
            client.kill()  # no close(): the server only notices the silence
            client.wait(30)
            assert wait_for_instances(server.port, 0, timeout=30) == 0
        finally:
            client.kill()
            client.stdout.close()
        assert "freeing env instance" in server.logs()


def test_a_server_restart_is_a_clear_error_and_reset_reconnects():
    server = EnvServerProcess("helpers.serving_test_envs:FragileEnv", "--backend", "factory").start()
    try:
        env = RemoteEnv("127.0.0.1", server.port, timeout=2.0)
        td = env.step(env.reset().set("action", torch.tensor([0.2])))["next"]
        server.stop()
        with pytest.raises(EnvTimeoutError, match=rf"env server 127.0.0.1:{server.port} did not answer 'step' within 2.0 s \(waited 2.\d\d s\)"):
            env.step(td.set("action", torch.tensor([0.2])))
        server.start()  # same port, new process: our instance is gone
        td = env.reset()  # reconnects, checks the specs, makes a new instance
        td = env.step(td.set("action", torch.tensor([0.2])))["next"]
        assert td["observation"].item() == 1.0
        server.stop()
        server.start()
        with pytest.raises(EnvServerError, match=rf"env server tcp://127.0.0.1:{server.port} answered unknown_instance: env instance '[0-9a-f]+' is not on this server: the server restarted") as info:
            env.step(td.set("action", torch.tensor([0.2])))
        assert info.value.code == wire.ERROR_UNKNOWN_INSTANCE
        assert env.step(env.reset().set("action", torch.tensor([0.2])))["next", "observation"].item() == 1.0
        server.stop()
        server.command[server.command.index("helpers.serving_test_envs:FragileEnv")] = "helpers.serving_test_envs:counting_batched"
        server.start()  # same port, another env
        with pytest.raises(EnvServerError, match="unknown_instance"):
            env.step(td)
        with pytest.raises(EnvSpecMismatchError, match=r"restarted with another env \(CountingBatchedEnv.*batch size \[3\]\): its specs differ"):
            env.reset()
    finally:
        server.stop()
        env.close()


SCALARS = st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.floats() | st.text(max_size=8) | st.binary(max_size=16)
EXTENSIONS = st.builds(msgpack.ExtType, st.integers(0, 5), st.binary(max_size=24) | st.builds(msgpack.packb, st.lists(SCALARS, max_size=4)))
VALUES = st.recursive(SCALARS | EXTENSIONS, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3), max_leaves=8)
ARRAYS = st.builds(np.zeros, st.lists(st.integers(0, 9), max_size=3).map(tuple), st.sampled_from([np.float32, np.float64, np.uint8, np.bool_]))
OWN = "<the fuzzer's own instance>"  # replaced by a real instance id: requests that reach an env
REQUESTS = st.fixed_dictionaries(
    {"v": st.just(wire.VERSION), "type": st.sampled_from(["hello", "health", "make", "reset", "step", "seed", "close"])},
    optional={
        "id": VALUES,
        "instance": st.just(OWN) | VALUES,
        "td": VALUES | st.dictionaries(st.sampled_from(["action", "observation", "_reset", ""]), ARRAYS | VALUES, max_size=3),
        "seed": VALUES,
    },
)
GARBAGE = (
    st.lists(st.binary(max_size=64), min_size=1, max_size=4)
    | st.builds(lambda value: [msgpack.packb(value)], VALUES)
    | st.builds(lambda header, extra: ("structured", header, extra), REQUESTS, st.lists(st.binary(max_size=128), max_size=2))
)


class FuzzPeer:
    """A raw DEALER socket with an env instance of its own; counts what it sent."""

    def __init__(self, port):
        self.instance = request(port, {"type": "make"})["instance"]
        self.socket = zmq.Context.instance().socket(zmq.DEALER)
        self.socket.linger = 0
        self.socket.connect(f"tcp://127.0.0.1:{port}")
        self.sent = 0

    def send(self, frames):
        if isinstance(frames, tuple):
            _, header, extra = frames
            if header["type"] != "close":  # closing its own instance would leave nothing for the rest to reach
                header = {key: (self.instance if value == OWN else value) for key, value in header.items()}
            frames = [*wire.encode(header), *extra]
        self.socket.send_multipart(frames)
        self.sent += 1


@pytest.fixture(scope="module")
def fuzz_server():
    with EnvServerProcess("FrankaReachRandom-v0", "--max-instances", "4") as server:
        yield server


@pytest.fixture(scope="module")
def fuzz_peer(fuzz_server):
    peer = FuzzPeer(fuzz_server.port)
    yield peer
    peer.socket.close()


@pytest.fixture(scope="module")
def well_behaved_env(fuzz_server):
    env = RemoteEnv("127.0.0.1", fuzz_server.port)
    env.reset()
    yield env
    env.close()


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(GARBAGE)
# the random draws reach the env checks in most runs, not all: these two always do
@example(("structured", {"v": wire.VERSION, "type": "step", "instance": OWN, "td": {"action": np.zeros(3, np.float32)}}, []))  # bad_input
@example(("structured", {"v": wire.VERSION, "type": "step", "instance": "not-an-instance"}, []))  # unknown_instance
def test_fuzzed_messages_never_disturb_a_well_behaved_client(fuzz_peer, well_behaved_env, frames):
    fuzz_peer.send(frames)
    td = well_behaved_env.rand_step(well_behaved_env.reset())
    assert td["next", "observation"].shape == (21,)


def test_the_server_survives_fuzzing_and_answers_every_fuzzed_message(fuzz_server, fuzz_peer):
    replies = []
    while fuzz_peer.socket.poll(2000):
        replies.append(wire.decode(fuzz_peer.socket.recv_multipart()))
    assert fuzz_peer.sent > 100 and len(replies) == fuzz_peer.sent
    codes = {reply["code"] for reply in replies if reply["type"] == "error"}
    assert codes <= {wire.ERROR_BAD_MESSAGE, wire.ERROR_VERSION, wire.ERROR_BAD_INPUT, wire.ERROR_UNKNOWN_INSTANCE, wire.ERROR_ENV, wire.ERROR_FULL}, codes
    assert {wire.ERROR_BAD_INPUT, wire.ERROR_UNKNOWN_INSTANCE} <= codes  # the fuzzer reached the env checks (at least its @examples)
    assert "server failed on this request" not in str(replies)  # no request hit a server bug
    assert fuzz_server.process.poll() is None


def test_curve_encrypts_and_admits_only_known_keys(tmp_path):
    server_public, server_secret = zmq.auth.create_certificates(tmp_path, "server")
    allowed = tmp_path / "allowed"
    allowed.mkdir()
    _, client_secret = zmq.auth.create_certificates(allowed, "client")
    _, stranger_secret = zmq.auth.create_certificates(tmp_path, "stranger")
    args = ("--backend", "factory", "--curve-secret-key", server_secret, "--curve-authorized-keys", str(allowed))
    with EnvServerProcess("helpers.serving_test_envs:FragileEnv", *args) as server:
        env = RemoteEnv("127.0.0.1", server.port, curve_server_key=server_public, curve_client_key=client_secret)
        try:
            # FragileEnv raises on actions above 0.9: a random rollout would fail one run in seven
            assert env.rollout(3, lambda td: td.set("action", torch.tensor([0.2])))["next", "observation"][-1].item() == 3.0
        finally:
            env.close()
        with pytest.raises(EnvTimeoutError, match="CURVE handshake failed .* does not admit this client's key"):
            RemoteEnv("127.0.0.1", server.port, connect_timeout=1.0, curve_server_key=server_public, curve_client_key=stranger_secret)
        with pytest.raises(EnvTimeoutError, match="did not answer 'hello'"):
            RemoteEnv("127.0.0.1", server.port, connect_timeout=1.0)  # plaintext client, CURVE server


def test_env_and_policy_clients_refuse_the_other_kind_of_server(fragile_server):
    with PolicyServerProcess("mlp", kwargs='{"obs_dim": 1, "action_dim": 1}') as policy_server:
        with pytest.raises(RuntimeError, match=rf":{policy_server.port} serves 'policy' where this client expects 'env': connect to it with agenthive.modules.RemotePolicyModule"):
            RemoteEnv("127.0.0.1", policy_server.port)
    with pytest.raises(RuntimeError, match="serves 'env' where this client expects 'policy': connect to it with agenthive.envs.RemoteEnv"):
        PolicyClient("127.0.0.1", fragile_server.port)


def test_an_env_object_is_served_to_one_client_at_a_time():
    server = EnvServer(RoboHiveEnv("FrankaReachRandom-v0"), port=0)
    server.bind()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    first, second = RemoteEnv("127.0.0.1", server.port), RemoteEnv("127.0.0.1", server.port)
    try:
        first.reset()
        with pytest.raises(EnvServerError, match="answered server_full: this server serves one env object and another client is using it") as info:
            second.reset()
        assert info.value.code == wire.ERROR_FULL
        first.close()
        assert second.rollout(3)["next", "observation"].shape == (3, 21)
    finally:
        first.close(), second.close()
        server.stop()
        thread.join()


def test_cli_help_and_argument_errors():
    out = subprocess.run([sys.executable, "-m", "agenthive", "serve-env", "--help"], capture_output=True, text=True)
    assert out.returncode == 0 and "--idle-timeout" in out.stdout and "factory" in out.stdout
    out = subprocess.run([sys.executable, "-m", "agenthive", "serve-env", "FrankaReachRandom-v0", "--kwargs", "{frame_skip: 2}"], capture_output=True, text=True)
    assert out.returncode != 0 and "--kwargs is not valid JSON" in out.stderr
    out = subprocess.run([sys.executable, "-m", "agenthive", "serve-env", "nomodule", "--backend", "factory"], capture_output=True, text=True)
    assert out.returncode != 0 and "--backend factory takes module:function, got 'nomodule'" in out.stderr
    out = subprocess.run([sys.executable, "-m", "agenthive"], capture_output=True, text=True)
    assert "serve-env" in out.stdout


def test_docstring_examples_run():
    RoboHiveEnv("FrankaReachRandom-v0")  # RoboHive prints its banner with the first env of a process: not inside the examples
    for module in (agenthive.remote_env.client, agenthive.remote_env.server, agenthive.remote_env.codec):
        result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
        assert result.attempted > 0 and result.failed == 0, module.__name__
