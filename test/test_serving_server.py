"""PolicyServer as a real process on loopback: handshake, batching, per-client episodes,
errors, robustness against garbage and vanishing clients, restarts, CURVE, the CLI."""
import os
import secrets
import signal
import subprocess
import sys
import threading
import time

import msgpack
import numpy as np
import pytest
import zmq
import zmq.auth
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agenthive.serving import MetadataMismatchError, PolicyClient, PolicyServer, PolicyServerError, PolicyTimeoutError, wire
from agenthive.serving.policies.mlp import MLPPolicy
from helpers.servers import PolicyServerProcess

MLP = '{"obs_dim": 21, "action_dim": 9, "chunk_length": 4, "seed": 3}'


@pytest.fixture(scope="module")
def mlp_server():
    with PolicyServerProcess("mlp", kwargs=MLP) as server:
        yield server


@pytest.fixture(scope="module")
def counting_server():
    with PolicyServerProcess("helpers.serving_test_policies:CountingPolicy", "--max-wait-ms", "20", kwargs='{"chunk_length": 2}') as server:
        yield server


def state(batch, value=1.0):
    return {"state": np.full((batch, 3), value, np.float32)}


def test_handshake_announces_metadata_and_actions_match_the_policy(mlp_server):
    with PolicyClient("127.0.0.1", mlp_server.port) as client:
        meta = client.metadata
        assert (meta.name, meta.observations, meta.action_shape, meta.chunk_length) == ("MLPPolicy", {"observation": ((21,), "float32")}, (9,), 4)
        obs = np.random.default_rng(0).normal(size=(5, 21)).astype(np.float32)
        actions = client.act({"observation": obs})["actions"]
        np.testing.assert_allclose(actions, MLPPolicy(21, 9, chunk_length=4, seed=3).forward(obs), rtol=1e-5, atol=1e-6)
        health = client.health()
        assert health["ready"] and health["error"] is None and health["sessions"] >= 5


@pytest.mark.parametrize(
    "obs, match",
    [
        ({"observation": np.zeros((1, 20), np.float32)}, r"observation 'observation' has shape \(1, 20\) and dtype float32: expected \(1, \*\(21,\)\) float32"),
        ({"observation": np.zeros((1, 21), np.float64)}, "dtype float64: expected"),
        ({"obs": np.zeros((1, 21), np.float32)}, r"missing \['observation'\], unexpected \['obs'\]"),
    ],
)
def test_bad_observations_are_refused_with_what_was_expected(mlp_server, obs, match):
    with PolicyClient("127.0.0.1", mlp_server.port) as client:
        with pytest.raises(PolicyServerError, match=match) as info:
            client.act(obs)
        assert info.value.code == wire.ERROR_BAD_OBSERVATION
        assert client.act({"observation": np.zeros((1, 21), np.float32)})["actions"].shape == (1, 4, 9)


def raw_request(port, frames, timeout_ms=5000):
    context = zmq.Context.instance()
    with context.socket(zmq.DEALER) as sock:
        sock.linger = 0
        sock.connect(f"tcp://127.0.0.1:{port}")
        sock.send_multipart(frames)
        assert sock.poll(timeout_ms), "no reply"
        return wire.decode(sock.recv_multipart())


def test_protocol_errors_are_answered_with_their_code(mlp_server):
    reply = raw_request(mlp_server.port, [msgpack.packb({"v": 2, "type": "hello", "id": 1})])
    assert (reply["type"], reply["code"]) == ("error", wire.ERROR_VERSION) and "expected 1" in reply["message"]
    reply = raw_request(mlp_server.port, wire.encode({"v": wire.VERSION, "type": "dance", "id": 7}))
    assert (reply["code"], reply["id"]) == (wire.ERROR_BAD_MESSAGE, 7) and "expected 'hello', 'health' or 'act'" in reply["message"]
    reply = raw_request(mlp_server.port, wire.encode({"v": wire.VERSION, "type": "act", "id": 8, "sessions": "abc", "obs": {}}))
    assert reply["code"] == wire.ERROR_BAD_MESSAGE and "'sessions' must be a list" in reply["message"]


def test_oversized_requests_are_refused():
    with PolicyServerProcess("mlp", "--max-message-mb", "0.001", kwargs=MLP) as server:
        hello = wire.encode({"v": wire.VERSION, "type": "hello", "id": 3})[0]
        reply = raw_request(server.port, [hello, b"\0" * 700, b"\0" * 700])
        assert reply["code"] == wire.ERROR_TOO_LARGE and f"request of {len(hello) + 1400} bytes: this server accepts at most 1048" in reply["message"]
        assert reply["id"] == 3
        reply = raw_request(server.port, [hello, b"\0" * 2000])  # one frame over the limit, under twice the limit
        assert (reply["code"], reply["id"]) == (wire.ERROR_TOO_LARGE, 3)
        with pytest.raises(AssertionError, match="no reply"):  # a frame over twice the limit: ZeroMQ drops the peer
            raw_request(server.port, [hello, b"\0" * 3000], timeout_ms=500)
        assert raw_request(server.port, [hello])["type"] == "hello"


def test_requests_over_the_limit_are_refused_by_the_client_before_sending_and_by_the_server():
    images = {"image": np.zeros((2, 480, 640, 3), np.uint8)}  # 1.8 MB
    with PolicyServerProcess("helpers.serving_test_policies:CameraPolicy", "--max-message-mb", "1") as server:
        with PolicyClient("127.0.0.1", server.port, timeout=2.0, shared_memory=False) as client:
            start = time.monotonic()
            with pytest.raises(ValueError, match=rf"'act' request of 1843\d{{3}} bytes is larger than the 1048576 bytes policy server 127.0.0.1:{server.port} accepts"):
                client.act(images)
            assert time.monotonic() - start < 1.0  # refused at once, not a timeout
            assert client.max_message_bytes == 1 << 20  # the server states its limit at the handshake
            assert client.act({"image": images["image"][:1]})["actions"].shape == (1, 1, 1)
        with PolicyClient("127.0.0.1", server.port, timeout=2.0) as client:  # through shared memory nothing large crosses the socket
            assert client._shm and client.act(images)["actions"].shape == (2, 1, 1)
        oversize = msgpack.packb({"v": wire.VERSION, "type": "hello", "id": 9, "pad": b"\0" * 1_200_000})  # one 1.2 MB frame
        reply = raw_request(server.port, [oversize], timeout_ms=2000)
        assert (reply["type"], reply["code"], reply["id"]) == ("error", wire.ERROR_TOO_LARGE, 9)
        assert f"request of {len(oversize)} bytes: this server accepts at most 1048576" in reply["message"]


def test_error_replies_repeat_the_request_id(mlp_server):
    bad_array = msgpack.ExtType(1, msgpack.packb([5, "<f4", [1]]))
    requests = {
        wire.ERROR_VERSION: msgpack.packb({"v": 2, "type": "hello", "id": 11}),
        wire.ERROR_BAD_MESSAGE: msgpack.packb({"v": wire.VERSION, "type": "act", "id": 12, "sessions": ["s"], "obs": {"observation": bad_array}}),
    }
    for code, header in requests.items():
        reply = raw_request(mlp_server.port, [header])
        assert (reply["code"], reply["id"]) == (code, msgpack.unpackb(header, ext_hook=lambda *_: None)["id"]), reply
    reply = raw_request(mlp_server.port, [msgpack.packb({"v": wire.VERSION, "type": 5, "id": "abc"})])
    assert (reply["code"], reply["id"]) == (wire.ERROR_BAD_MESSAGE, "abc")


def test_observation_maps_with_non_string_keys_are_refused_naming_the_keys(mlp_server):
    obs = {"observation": np.zeros((1, 21), np.float32), b"observation": np.zeros((1, 21), np.float32), "extra": np.zeros(1)}
    reply = raw_request(mlp_server.port, wire.encode({"v": wire.VERSION, "type": "act", "id": 5, "sessions": ["s"], "obs": obs}))
    assert (reply["type"], reply["code"], reply["id"]) == ("error", wire.ERROR_BAD_MESSAGE, 5)
    assert "observation names must be strings: got b'observation'" in reply["message"]


def test_a_server_bug_is_reported_to_the_client_that_hit_it():
    class BuggyServer(PolicyServer):
        def _health(self, request_id):
            raise KeyError("a bug in the server")

    server = BuggyServer(MLPPolicy(obs_dim=21, action_dim=9), port=0)
    server.bind()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        with PolicyClient("127.0.0.1", server.port, timeout=2.0) as client:
            with pytest.raises(PolicyServerError, match="the server failed on this request"):
                client.health()  # answered with its id, so not a timeout
    finally:
        server.stop()
        thread.join()


def sent_id(frames):
    """The id a reply to ``frames`` must repeat: an int or str id of a msgpack map header, else None."""
    try:
        header = msgpack.unpackb(frames[0], ext_hook=lambda *_: None)
    except Exception:
        return None
    request_id = header.get("id") if isinstance(header, dict) else None
    return request_id if type(request_id) in (int, str) else None


# named in fuzzed shared-memory arrays and probes: what a hostile local peer would put in /dev/shm
HOSTILE_SEGMENTS = {kind: f"agenthive_{secrets.token_hex(16)}" for kind in ("fifo", "symlink", "short", "missing")}


@pytest.fixture(scope="module")
def hostile_segments(tmp_path_factory):
    paths = {kind: os.path.join("/dev/shm", name) for kind, name in HOSTILE_SEGMENTS.items()}
    os.mkfifo(paths["fifo"], 0o600)
    target = tmp_path_factory.mktemp("hostile") / "floats"
    target.write_bytes(np.arange(4096, dtype=np.float32).tobytes())
    os.symlink(target, paths["symlink"])
    with open(paths["short"], "wb") as f:
        f.write(b"\0" * 100)
    yield paths
    for kind in ("fifo", "symlink", "short"):
        os.unlink(paths[kind])


SCALARS = st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.floats() | st.text(max_size=8) | st.binary(max_size=16)
EXTENSIONS = st.builds(msgpack.ExtType, st.integers(0, 5), st.binary(max_size=24) | st.builds(msgpack.packb, st.lists(SCALARS, max_size=4)))
VALUES = st.recursive(SCALARS | EXTENSIONS, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3), max_leaves=8)
# shared-memory arrays and probes naming hostile segments, in the current and the old layout
SEGMENTS = st.sampled_from(sorted(HOSTILE_SEGMENTS.values()))
SHM_REFS = st.builds(
    lambda name, size, offset, shape, old: msgpack.ExtType(2, msgpack.packb([name, offset, "<f4", shape] if old else [name, size, offset, "<f4", shape])),
    SEGMENTS, st.integers(0, 1 << 24), st.integers(0, 1 << 12), st.lists(st.integers(0, 64), max_size=3), st.booleans(),
)
SHM_PROBES = st.builds(lambda name, size, token, old: [name, token] if old else [name, size, token], SEGMENTS, st.integers(0, 1 << 24), st.binary(min_size=16, max_size=16), st.booleans())
MIXED_KEYS = st.dictionaries(st.text(max_size=8) | st.binary(max_size=8), SCALARS | SHM_REFS | EXTENSIONS, max_size=3)
# headers that pass the first checks, with every field of a request given random contents
REQUESTS = st.fixed_dictionaries(
    {"v": st.just(wire.VERSION), "type": st.sampled_from(["act", "hello", "health"])},
    optional={"id": VALUES | st.integers(0, 2**32), "sessions": VALUES | st.lists(st.text(max_size=4), max_size=3), "reset": VALUES, "instruction": VALUES,
              "obs": VALUES | st.dictionaries(st.just("observation"), EXTENSIONS | SHM_REFS) | MIXED_KEYS, "shm_probe": VALUES | SHM_PROBES},
)
GARBAGE = (
    st.lists(st.binary(max_size=64), min_size=1, max_size=4)
    | st.builds(lambda value: [msgpack.packb(value)], VALUES)
    | st.builds(lambda header, extra: [msgpack.packb(header), *extra], REQUESTS, st.lists(st.binary(max_size=128), max_size=2))
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(GARBAGE)
def test_fuzzed_frames_never_disturb_a_well_behaved_client(mlp_server, hostile_segments, fuzz_peer, well_behaved_client, frames):
    fuzz_peer.socket.send_multipart(frames)
    fuzz_peer.sent += 1
    obs = {"observation": np.ones((1, 21), np.float32)}
    assert well_behaved_client.act(obs)["actions"].shape == (1, 4, 9)
    assert fuzz_peer.socket.poll(2000), f"no reply to {frames!r}"
    reply = wire.decode(fuzz_peer.socket.recv_multipart())
    assert reply.get("id") == sent_id(frames), (frames, reply)  # errors too repeat a readable id
    fuzz_peer.replies.append(reply)


class FuzzPeer:
    """A raw DEALER socket that counts what it sent."""

    def __init__(self, port):
        self.socket = zmq.Context.instance().socket(zmq.DEALER)
        self.socket.linger = 0
        self.socket.connect(f"tcp://127.0.0.1:{port}")
        self.sent = 0
        self.replies = []


@pytest.fixture(scope="module")
def fuzz_peer(mlp_server):
    peer = FuzzPeer(mlp_server.port)
    yield peer
    peer.socket.close()


@pytest.fixture(scope="module")
def well_behaved_client(mlp_server):
    with PolicyClient("127.0.0.1", mlp_server.port) as client:
        yield client


def test_server_survives_fuzzing_and_answers_every_fuzzed_message(mlp_server, fuzz_peer):
    assert not fuzz_peer.socket.poll(500), "more replies than fuzzed messages"
    replies = fuzz_peer.replies
    assert fuzz_peer.sent > 100 and len(replies) == fuzz_peer.sent
    errors = [reply for reply in replies if reply["type"] == "error"]
    assert {reply["code"] for reply in errors} <= {wire.ERROR_BAD_MESSAGE, wire.ERROR_VERSION, wire.ERROR_BAD_OBSERVATION}
    assert all(reply["type"] in ("hello", "health") for reply in replies if reply["type"] != "error")
    assert mlp_server.process.poll() is None


SMALL_LIMIT = int(0.01 * (1 << 20))


@pytest.fixture(scope="module")
def small_limit_server():
    with PolicyServerProcess("mlp", "--max-message-mb", "0.01", kwargs=MLP) as server:
        with PolicyClient("127.0.0.1", server.port, timeout=2.0) as client:
            yield server, client


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.integers(0, 3 * SMALL_LIMIT), max_size=3), st.integers(0, 2**32))
def test_oversize_messages_get_too_large_with_their_id_unless_a_frame_exceeds_twice_the_limit(small_limit_server, sizes, request_id):
    server, well_behaved = small_limit_server
    frames = [wire.encode({"v": wire.VERSION, "type": "health", "id": request_id})[0], *(b"\0" * n for n in sizes)]
    total = sum(len(frame) for frame in frames)
    with zmq.Context.instance().socket(zmq.DEALER) as sock:
        sock.linger = 0
        sock.connect(f"tcp://127.0.0.1:{server.port}")
        sock.send_multipart(frames)
        if max(len(frame) for frame in frames) > 2 * SMALL_LIMIT:  # ZeroMQ drops the peer before the server sees it
            assert not sock.poll(300)
        else:
            assert sock.poll(2000), f"no reply to frames of {[len(frame) for frame in frames]} bytes"
            reply = wire.decode(sock.recv_multipart())
            assert reply["id"] == request_id
            assert reply["type"] == ("error" if total > SMALL_LIMIT else "health")
            assert total <= SMALL_LIMIT or reply["code"] == wire.ERROR_TOO_LARGE
    assert well_behaved.act({"observation": np.ones((1, 21), np.float32)})["actions"].shape == (1, 4, 9)


def test_clients_that_vanish_mid_request_do_not_disturb_others(counting_server):
    for _ in range(20):  # send a request and disconnect before the reply
        sock = zmq.Context.instance().socket(zmq.DEALER)
        sock.linger = 1000
        sock.connect(f"tcp://127.0.0.1:{counting_server.port}")
        sock.send_multipart(wire.encode({"v": wire.VERSION, "type": "act", "id": 1, "sessions": ["gone"], "obs": state(1)}))
        sock.close()
    with PolicyClient("127.0.0.1", counting_server.port) as client:
        assert client.act(state(2))["actions"].shape == (2, 2, 4)


def test_each_client_episode_has_its_own_state(counting_server):
    with PolicyClient("127.0.0.1", counting_server.port) as a, PolicyClient("127.0.0.1", counting_server.port) as b:
        for _ in range(3):
            a.act(state(1), sessions=["a"], instruction="pick")
        b.act(state(1), sessions=["b"], instruction="place the cube")
        step, _, length, _ = a.act(state(1), sessions=["a"], instruction="pick")["actions"][0, 0]
        assert (step, length) == (3, 4)
        step, _, length, _ = b.act(state(1), sessions=["b"], instruction="place the cube")["actions"][0, 0]
        assert (step, length) == (1, 14)
        assert a.act(state(1), sessions=["a"], reset=[True], instruction="pick")["actions"][0, 0, 0] == 0
        assert a.act(state(1), sessions=["a"], instruction="other")["actions"][0, 0, 0] == 0  # a new instruction starts a new episode


def test_the_server_plays_chunks_for_clients_that_ask_one_action_at_a_time(counting_server):
    # CountingPolicy, chunk of 2: action = [episode step, batch seen, len(instruction), state sum + k]
    with PolicyClient("127.0.0.1", counting_server.port) as client:
        replies = [client.act(state(1, value=v), sessions=["thin"], replan_every=2) for v in (1, 2, 3, 4, 5)]
        assert [r["actions"].shape for r in replies] == [(1, 1, 4)] * 5
        assert [r["replanned"] for r in replies] == [[True], [False], [True], [False], [True]]
        rows = [r["actions"][0, 0].tolist() for r in replies]
        assert [row[0] for row in rows] == [0, 0, 1, 1, 2]  # the policy ran on calls 1, 3 and 5
        assert [row[3] for row in rows] == [3, 4, 9, 10, 15]  # a queued step plays the planned chunk, not the new state
        # a reset drops what is left of the chunk
        reply = client.act(state(1), sessions=["thin"], reset=[True], replan_every=2)
        assert reply["replanned"] == [True] and reply["actions"][0, 0, 0] == 0
        # in one batch, a session with queued actions and one without: the policy sees only the latter
        client.act(state(1), sessions=["p"], replan_every=2)
        reply = client.act(state(2, value=2.0), sessions=["p", "q"], replan_every=2)
        assert reply["replanned"] == [False, True]
        assert reply["actions"][:, 0].tolist() == [[0, 1, 0, 4], [0, 1, 0, 6]]
        for bad in (0, 3, True, "2"):
            with pytest.raises(PolicyServerError, match=r"'replan_every' is .*: expected nil \(whole chunks\) or an int from 1 to the policy's chunk length 2"):
                client.act(state(1), sessions=["thin"], replan_every=bad)
        assert client.act(state(1), sessions=["thin"])["actions"].shape == (1, 2, 4)  # whole chunks without it


def concurrent_batch_sizes(port, clients=8, steps=15):
    seen, errors = [], []

    def run(i):
        try:
            with PolicyClient("127.0.0.1", port) as client:
                for _ in range(steps):
                    seen.append(int(client.act(state(1), sessions=[f"c{i}"])["actions"][0, 0, 1]))
        except Exception as err:
            errors.append(err)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(clients)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert not errors, errors
    return seen


def test_concurrent_clients_are_batched_together():
    with PolicyServerProcess("helpers.serving_test_policies:CountingPolicy", "--max-wait-ms", "20", kwargs='{"act_seconds": 0.01}') as server:
        seen = concurrent_batch_sizes(server.port)
    assert max(seen) > 1 and np.mean(seen) > 2, seen


def test_max_batch_1_turns_batching_off():
    with PolicyServerProcess("helpers.serving_test_policies:CountingPolicy", "--max-batch", "1", kwargs='{"act_seconds": 0.002}') as server:
        assert set(concurrent_batch_sizes(server.port, steps=5)) == {1}


def test_a_raising_policy_fails_only_the_request_that_caused_it():
    with PolicyServerProcess("helpers.serving_test_policies:RaisingPolicy", "--max-wait-ms", "50", kwargs='{"act_seconds": 0.0}') as server:
        with PolicyClient("127.0.0.1", server.port) as client:
            with pytest.raises(PolicyServerError, match="RaisingPolicy raised ValueError: negative state") as info:
                client.act(state(1, -1.0))
            assert info.value.code == wire.ERROR_POLICY
            assert client.act(state(1))["actions"].shape == (1, 1, 4)


def test_clients_wait_for_initialize_and_see_why_it_failed():
    with PolicyServerProcess("helpers.serving_test_policies:SlowInitPolicy", kwargs='{"seconds": 1.5}') as server:
        sock = zmq.Context.instance().socket(zmq.DEALER)
        sock.connect(f"tcp://127.0.0.1:{server.port}")
        sock.send_multipart(wire.encode({"v": wire.VERSION, "type": "act", "id": 1, "sessions": ["s"], "obs": state(1)}))
        assert sock.poll(2000)
        reply = wire.decode(sock.recv_multipart())
        sock.close(linger=0)
        assert reply["code"] == wire.ERROR_NOT_READY and "still initializing" in reply["message"]
        start = time.monotonic()
        with PolicyClient("127.0.0.1", server.port) as client:  # waits until ready
            assert client.metadata.name == "counting" and time.monotonic() - start > 0.5
    with PolicyServerProcess("helpers.serving_test_policies:FailingInitPolicy") as server:
        with pytest.raises(RuntimeError, match="failed to initialize: FileNotFoundError: checkpoint /nonexistent/ckpt not found"):
            PolicyClient("127.0.0.1", server.port)


def test_timeouts_name_host_port_and_elapsed_then_a_restarted_server_is_picked_up():
    server = PolicyServerProcess("mlp", kwargs=MLP).start()
    try:
        client = PolicyClient("127.0.0.1", server.port, timeout=0.5)
        obs = {"observation": np.zeros((1, 21), np.float32)}
        first = client.act(obs)["actions"]
        os.kill(server.process.pid, signal.SIGSTOP)
        with pytest.raises(PolicyTimeoutError, match=rf"policy server 127.0.0.1:{server.port} did not answer 'act' within 0.5 s \(waited 0.5\d s\)"):
            client.act(obs)
        os.kill(server.process.pid, signal.SIGCONT)
        server.stop()
        server.start()  # same port, new process
        old_server = client.server
        client.timeout = 10.0
        np.testing.assert_array_equal(client.act(obs)["actions"], first)
        assert client.server != old_server
        server.stop()
        server.command[server.command.index("--kwargs") + 1] = '{"obs_dim": 21, "action_dim": 7}'
        server.start()  # same port, another policy
        with pytest.raises(MetadataMismatchError, match="restarted with another policy"):
            client.act(obs)
        client.close()
    finally:
        server.stop()


def test_curve_encrypts_and_admits_only_known_keys(tmp_path):
    server_public, server_secret = zmq.auth.create_certificates(tmp_path, "server")
    allowed = tmp_path / "allowed"
    allowed.mkdir()
    _, client_secret = zmq.auth.create_certificates(allowed, "client")
    _, stranger_secret = zmq.auth.create_certificates(tmp_path, "stranger")
    _, impostor_secret = zmq.auth.create_certificates(tmp_path, "impostor")
    args = ("--curve-secret-key", server_secret, "--curve-authorized-keys", str(allowed))
    with PolicyServerProcess("mlp", *args, kwargs=MLP) as server:
        with PolicyClient("127.0.0.1", server.port, curve_server_key=server_public, curve_client_key=client_secret) as client:
            assert client.act({"observation": np.zeros((1, 21), np.float32)})["actions"].shape == (1, 4, 9)
        with pytest.raises(PolicyTimeoutError, match="CURVE handshake failed .* does not admit this client's key"):
            PolicyClient("127.0.0.1", server.port, timeout=1.0, curve_server_key=server_public, curve_client_key=stranger_secret)
        impostor_public = str(impostor_secret).replace(".key_secret", ".key")
        with pytest.raises(PolicyTimeoutError, match="CURVE handshake"):
            PolicyClient("127.0.0.1", server.port, timeout=1.0, curve_server_key=impostor_public)
        with pytest.raises(PolicyTimeoutError, match="did not answer 'hello'"):
            PolicyClient("127.0.0.1", server.port, timeout=1.0)  # plaintext client, CURVE server


def test_large_images_take_the_shared_memory_path_on_this_host():
    rng = np.random.default_rng(0)
    obs = {"state": rng.normal(size=(2, 64)).astype(np.float32), "left": rng.integers(0, 256, (2, 224, 224, 3), dtype=np.uint8), "right": rng.integers(0, 256, (2, 224, 224, 3), dtype=np.uint8)}
    expected = np.stack([obs["left"].reshape(2, -1).sum(1), obs["right"].reshape(2, -1).sum(1), obs["state"].sum(1)], 1)
    with PolicyServerProcess("helpers.serving_test_policies:ImageSumPolicy") as server:
        for use_shm in (True, False):
            with PolicyClient("127.0.0.1", server.port, shared_memory=use_shm) as client:
                assert client._shm is use_shm
                np.testing.assert_allclose(client.act(obs)["actions"][:, 0], expected, rtol=1e-6)


def test_cli_help_and_argument_errors():
    out = subprocess.run([sys.executable, "-m", "agenthive", "start-server", "--help"], capture_output=True, text=True)
    assert out.returncode == 0 and "--max-wait-ms" in out.stdout and "jax-mlp" in out.stdout
    out = subprocess.run([sys.executable, "-m", "agenthive", "start-server", "mlp", "--kwargs", "{obs_dim: 3}"], capture_output=True, text=True)
    assert out.returncode != 0 and "--kwargs is not valid JSON" in out.stderr
    out = subprocess.run([sys.executable, "-m", "agenthive", "start-server", "nope"], capture_output=True, text=True)
    assert out.returncode != 0 and "unknown policy 'nope'" in out.stderr


def test_agenthive_and_the_server_side_never_import_torch():
    code = (
        "import sys, agenthive, agenthive.serving, agenthive.serving.cli, agenthive.serving.openpi\n"
        "from agenthive.serving.policies import POLICIES, load_policy_class\n"
        "[load_policy_class(name) for name in POLICIES]\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'torchrl', 'tensordict', 'jax'))\n"
        "assert not bad, bad"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
