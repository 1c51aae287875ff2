"""The same-host fast path against hostile local peers and short-lived clients.

Segment names that point at FIFOs, symlinks, hard links, files of another user or of another
size are refused at once, without blocking the server; the segments of clients that left are
unmapped, so the server's memory (read from /proc) returns to where it was.
"""
import gc
import os
import secrets
import time

import msgpack
import numpy as np
import pytest
import zmq
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agenthive.serving import PolicyClient, shared_memory, wire
from agenthive.serving.policies.mlp import MLPPolicy
from helpers.servers import PolicyServerProcess

MLP = '{"obs_dim": 21, "action_dim": 9, "chunk_length": 4, "seed": 3}'
OBS_BYTES = 21 * 4


@pytest.fixture(scope="module")
def mlp_server():
    with PolicyServerProcess("mlp", kwargs=MLP) as server:
        yield server


def new_segment_path():
    name = f"agenthive_{secrets.token_hex(16)}"
    return name, os.path.join("/dev/shm", name)


def shm_act(name, size, layout):
    """An act request whose observation lies in segment ``name``; ``layout`` "current" is
    ``[segment, size, offset, dtype, shape]``, "old" the ``[segment, offset, dtype, shape]`` of
    protocol releases before the size was part of it (still sent by hostile peers)."""
    ref = [name, size, 0, "<f4", [1, 21]] if layout == "current" else [name, 0, "<f4", [1, 21]]
    obs = {"observation": msgpack.ExtType(2, msgpack.packb(ref))}
    return msgpack.packb({"v": wire.VERSION, "type": "act", "id": 42, "sessions": ["s"], "obs": obs})


def shm_hello(name, size, layout):
    token = secrets.token_bytes(16)
    probe = [name, size, token] if layout == "current" else [name, token]
    return msgpack.packb({"v": wire.VERSION, "type": "hello", "id": 43, "shm_probe": probe})


def raw_request(port, frames, timeout_ms=2000):
    with zmq.Context.instance().socket(zmq.DEALER) as sock:
        sock.linger = 0
        sock.connect(f"tcp://127.0.0.1:{port}")
        sock.send_multipart(frames)
        assert sock.poll(timeout_ms), f"no reply within {timeout_ms} ms: the server is blocked or dropped the request"
        return wire.decode(sock.recv_multipart())


def assert_refused(port, name, size, match):
    """Every form of request naming ``name`` is answered at once and none is served from it."""
    for layout in ("old", "current"):
        reply = raw_request(port, [shm_act(name, size, layout)])
        assert (reply["type"], reply["id"]) == ("error", 42), reply
        if layout == "current":
            assert reply["code"] == wire.ERROR_BAD_MESSAGE and match in reply["message"], reply["message"]
        reply = raw_request(port, [shm_hello(name, size, layout)])
        assert (reply["type"], reply["id"], reply["shm"]) == ("hello", 43, False)
    with PolicyClient("127.0.0.1", port, timeout=2.0) as client:
        assert client.act({"observation": np.ones((1, 21), np.float32)})["actions"].shape == (1, 4, 9)


def test_a_fifo_named_as_a_segment_does_not_freeze_the_server(mlp_server):
    name, path = new_segment_path()
    os.mkfifo(path, 0o600)
    try:
        assert_refused(mlp_server.port, name, 4096, "is not a regular file")
    finally:
        os.unlink(path)


def test_a_symlink_named_as_a_segment_is_not_followed(mlp_server, tmp_path):
    target = tmp_path / "secret"
    secret = np.linspace(-1, 1, 1024, dtype=np.float32)
    target.write_bytes(secret.tobytes())
    name, path = new_segment_path()
    os.symlink(target, path)
    try:
        assert_refused(mlp_server.port, name, target.stat().st_size, "is a symbolic link")
    finally:
        os.unlink(path)


def test_hard_links_and_segments_of_another_size_are_refused(mlp_server):
    name, path = new_segment_path()
    with open(path, "wb") as f:
        f.write(b"\0" * 4096)
    try:
        assert_refused(mlp_server.port, name, 8192, "has 4096 bytes; the request says 8192")
        _, other = new_segment_path()
        os.link(path, other)
        try:
            assert_refused(mlp_server.port, name, 4096, "has 2 links")
        finally:
            os.unlink(other)
    finally:
        os.unlink(path)


@pytest.mark.skipif(os.geteuid() != 0, reason="making a file of another user needs root")
def test_segments_of_another_user_are_refused(mlp_server):
    name, path = new_segment_path()
    with open(path, "wb") as f:
        f.write(b"\0" * 4096)
    os.chown(path, 65534, 65534)
    try:
        assert_refused(mlp_server.port, name, 4096, f"belongs to uid 65534; this server reads only segments of uid {os.geteuid()}")
    finally:
        os.unlink(path)


def test_a_real_segment_still_takes_the_fast_path(mlp_server):
    writer = shared_memory.SharedMemoryWriter(size=4096)
    try:
        obs = np.linspace(-1, 1, 21, dtype=np.float32)[None]
        name, size, offset = writer.put(obs, message_start=True)
        ref = msgpack.ExtType(2, msgpack.packb([name, size, offset, "<f4", [1, 21]]))
        header = msgpack.packb({"v": wire.VERSION, "type": "act", "id": 44, "sessions": ["s"], "obs": {"observation": ref}})
        reply = raw_request(mlp_server.port, [header])
        np.testing.assert_allclose(reply["actions"], MLPPolicy(21, 9, chunk_length=4, seed=3).forward(obs), rtol=1e-5, atol=1e-6)
    finally:
        writer.close()


def test_the_reader_keeps_at_most_max_bytes_mapped():
    writers = [shared_memory.SharedMemoryWriter(size=1 << 20) for _ in range(5)]
    reader = shared_memory.SharedMemoryReader(max_bytes=3 << 20)
    try:
        for writer in writers:
            assert bytes(reader.view(writer.name, writer.size, 0, 16)) == writer.token
            assert reader.mapped_bytes <= 3 << 20
        assert reader.mapped_bytes == 3 << 20
        writers[-1].close()  # a client that leaves unlinks its segment ...
        reader.sweep(time.monotonic())
        assert reader.mapped_bytes == 2 << 20  # ... and the next sweep unmaps it
        reader.sweep(time.monotonic() + reader.idle_s + 1)
        assert reader.mapped_bytes == 0  # segments nobody read for idle_s are unmapped too
        with pytest.raises(ValueError, match=r"segment of 4194304 bytes: this server maps at most 3145728"):
            big = shared_memory.SharedMemoryWriter(size=4 << 20)
            try:
                reader.view(big.name, big.size, 0, 16)
            finally:
                big.close()
    finally:
        for writer in writers:
            writer.close()
        reader.close()


def status_kib(pid, field):
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise KeyError(field)


def settled_rss_kib(pid, below_kib, timeout=5.0):
    """The server's VmRSS once it dropped below ``below_kib`` or ``timeout`` passed."""
    deadline = time.monotonic() + timeout
    while True:
        rss = status_kib(pid, "VmRSS")
        if rss < below_kib or time.monotonic() > deadline:
            return rss
        time.sleep(0.2)


def test_short_lived_clients_leave_nothing_mapped_in_the_server():
    image = {"image": np.random.default_rng(0).integers(0, 256, (1, 480, 640, 3), dtype=np.uint8)}
    expected = image["image"].sum(dtype=np.int64)

    def short_lived_client(close):
        client = PolicyClient("127.0.0.1", server.port, timeout=5.0)
        assert client._shm
        for _ in range(3):
            assert client.act(image)["actions"][0, 0, 0] == np.float32(expected)
        if close:
            client.close()
        # else the client is dropped without close(): collecting it unlinks its segment

    with PolicyServerProcess("helpers.serving_test_policies:CameraPolicy") as server:
        pid = server.process.pid
        short_lived_client(close=True)  # warm up the server's own buffers
        time.sleep(2.5)
        before = status_kib(pid, "VmRSS")
        for i in range(40):
            short_lived_client(close=i % 2 == 0)
            gc.collect()
        after = settled_rss_kib(pid, below_kib=before + 8 * 1024)
        shmem = status_kib(pid, "RssShmem")
    # 40 clients read one 900 kB image each: 36 MB if their segments stayed mapped
    assert after - before < 8 * 1024, f"server VmRSS grew from {before} to {after} kB ({shmem} kB of shared memory still mapped)"


@pytest.fixture(scope="module")
def camera_server():
    with PolicyServerProcess("helpers.serving_test_policies:CameraPolicy") as server:
        with PolicyClient("127.0.0.1", server.port, shared_memory=False) as observer:
            yield server, observer


def mapped_bytes_once_swept(observer, timeout=4.0):
    deadline = time.monotonic() + timeout
    while (mapped := observer.health()["shm_mapped_bytes"]) and time.monotonic() < deadline:
        time.sleep(0.2)
    return mapped


# each client: how many requests, how many images in each, and how it leaves
CLIENTS = st.lists(st.tuples(st.integers(1, 3), st.integers(1, 3), st.sampled_from(["close", "drop"])), min_size=1, max_size=4)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(CLIENTS)
def test_fuzzed_short_lived_clients_leave_no_segment_mapped(camera_server, clients):
    server, observer = camera_server
    alive = []
    for requests, images, leaving in clients:
        client = PolicyClient("127.0.0.1", server.port, timeout=5.0)
        obs = {"image": np.full((images, 480, 640, 3), 1, np.uint8)}
        for _ in range(requests):  # more than one image outgrows the first segment: the client moves to a larger one
            assert client.act(obs)["actions"][:, 0, 0].tolist() == [480 * 640 * 3] * images
        alive.append(client)
        assert observer.health()["shm_mapped_bytes"] <= 256 << 20
    for client, (_, _, leaving) in zip(alive, clients):
        if leaving == "close":
            client.close()
    del alive, client  # the dropped clients unlink their segments when collected
    gc.collect()
    assert mapped_bytes_once_swept(observer) == 0
