"""The wire protocol: exact round trips, zero-copy decoding, and refusal of anything else."""
import msgpack
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from agenthive.serving import shared_memory, wire

DTYPES = st.sampled_from(["bool", "int8", "uint8", "int32", "int64", "float16", "float32", "float64", "complex64"])


@settings(max_examples=200, deadline=None)
@given(hnp.arrays(DTYPES, hnp.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=5)), st.text(max_size=20))
def test_round_trip_is_exact(array, text):
    message = {"v": wire.VERSION, "type": "act", "nested": [{"a": array}, text, 3, None, b"raw"]}
    decoded = wire.decode([bytes(frame) for frame in wire.encode(message)])
    out = decoded["nested"][0]["a"]
    assert out.dtype == array.dtype and out.shape == array.shape
    np.testing.assert_array_equal(out, array)
    assert decoded["nested"][1:] == [text, 3, None, b"raw"]


def test_arrays_are_separate_frames_and_decode_without_copy():
    image = np.arange(224 * 224 * 3, dtype=np.uint8).reshape(224, 224, 3)
    frames = wire.encode({"v": wire.VERSION, "type": "act", "obs": {"image": image}})
    assert len(frames) == 2 and len(frames[0]) < 100  # the header stays small
    received = bytes(frames[1])
    decoded = wire.decode([frames[0], received])["obs"]["image"]
    assert np.shares_memory(decoded, np.frombuffer(received, np.uint8))
    assert not decoded.flags.writeable


def test_non_contiguous_arrays_are_sent_as_their_values():
    array = np.arange(12).reshape(3, 4).T
    np.testing.assert_array_equal(wire.decode(wire.encode({"v": wire.VERSION, "type": "x", "a": array}))["a"], array)


@pytest.mark.parametrize("value", [np.array([object()]), np.zeros(2, dtype="V8"), np.array(["text"]), object()])
def test_encode_refuses_objects(value):
    with pytest.raises(TypeError, match="cannot put"):
        wire.encode({"v": wire.VERSION, "type": "act", "x": value})


def _header(ext_payload, code=1):
    return msgpack.packb({"v": wire.VERSION, "type": "act", "x": msgpack.ExtType(code, msgpack.packb(ext_payload))})


@pytest.mark.parametrize(
    "frames, match",
    [
        ([], "empty message"),
        ([b"\xc1"], "not valid msgpack"),
        ([msgpack.packb([1, 2])], "expected a map"),
        ([msgpack.packb({"v": wire.VERSION})], "message type"),
        ([_header([1, "|O", [1]]), b"\0" * 8], "dtype '\\|O' is not allowed"),
        ([_header([1, "|V8", [1]]), b"\0" * 8], "dtype '\\|V8' is not allowed"),
        ([_header([1, "<f4", [3]]), b"\0" * 8], "has 8 bytes; an array of float32 with shape \\[3\\] needs 12"),
        ([_header([2, "<f4", [1]]), b"\0" * 4], "refers to frame 2"),
        ([_header([1, "<f4", [-1]]), b"\0" * 4], "non-negative"),
        ([_header([1, "<f4", [1]], code=7), b"\0" * 4], "unknown msgpack extension type 7"),
        ([_header(["agenthive_00", 0, "<f4", [1]], code=2)], "not on the server's host"),
        ([_header(["<f4", [2], b"\0" * 4], code=3)], "inline array holds 4 bytes; an array of float32 with shape \\[2\\] needs 8"),
    ],
)
def test_decode_names_what_is_wrong(frames, match):
    with pytest.raises(wire.WireError, match=match):
        wire.decode(frames)


def test_other_protocol_versions_are_refused_as_such():
    with pytest.raises(wire.VersionError, match="protocol version 99: expected 1"):
        wire.decode([msgpack.packb({"v": 99, "type": "hello"})])


def test_shared_memory_arrays_round_trip_in_place_until_renewed():
    writer, reader = shared_memory.SharedMemoryWriter(size=4096), shared_memory.SharedMemoryReader()
    try:
        images = [np.full((224, 224, 3), i, np.uint8) for i in range(3)]  # outgrows the first segment
        frames = wire.encode({"v": wire.VERSION, "type": "act", "obs": images}, shared_memory=writer)
        assert len(frames) == 1  # nothing big went through the socket
        decoded = wire.decode(frames, shared_memory=reader)["obs"]
        for image, out in zip(images, decoded):
            np.testing.assert_array_equal(out, image)
        assert all(not out.flags.writeable for out in decoded)
        writer.renew()  # after a timeout the client moves on to a fresh segment ...
        writer.put(np.zeros(224 * 224 * 3, np.uint8), message_start=True)
        np.testing.assert_array_equal(decoded[0], images[0])  # ... and what the server holds stays intact
    finally:
        writer.close()
        reader.close()


@pytest.mark.parametrize("name", ["../etc/passwd", "agenthive_zz", "psm_123"])
def test_shared_memory_reader_opens_only_agenthive_segments(name):
    with pytest.raises(ValueError, match="not an agenthive segment name"):
        shared_memory.SharedMemoryReader().view(name, 4096, 0, 1)


def test_no_pickle_in_the_serving_package():
    from pathlib import Path

    import agenthive.serving

    for path in Path(agenthive.serving.__file__).parent.rglob("*.py"):
        source = path.read_text()
        assert "import pickle" not in source and "cloudpickle" not in source and "dill" not in source, path
