"""The agenthive wire protocol: one msgpack header frame, then one raw frame per array.

Why msgpack and not pickle: unpickling runs code chosen by the sender, so a policy server
that unpickles requests hands its machine to anyone who can reach its port. msgpack only
ever builds dicts, lists, strings and numbers. Why not JSON: it cannot carry bytes and is
several times slower. Why not one msgpack blob with the arrays inside (openpi's
msgpack-numpy): the arrays would be copied into the blob on send and copied out of it on
receive; as separate ZeroMQ frames they go out without a copy and come back as numpy views
of the received frame.

A message is a ZeroMQ multipart message ``[header, array_0, array_1, ...]``. The header is a
msgpack map. Wherever an array appears in the message it is replaced by the msgpack
extension type 1 holding ``[frame_index, dtype, shape]``; ``frame_index`` counts from 1 (frame
0 is the header), ``dtype`` is numpy's ``dtype.str`` (e.g. ``"<f4"``; bool, integer, unsigned,
float and complex only) and ``shape`` a list of ints. On the same-host fast path (see
``shared_memory``) large arrays are extension type 2 instead, ``[segment, size, offset, dtype,
shape]`` (``size``: the segment's bytes), and their bytes lie in the client's shared-memory
segment; only a client of the server's own user (uid) on the server's host can use it. Arrays of at most
``INLINE_BYTES`` (a state vector, an action chunk) ride inside the header as extension type 3,
``[dtype, shape, bytes]``: a frame costs more than copying a few hundred bytes. Every header has ``"v"`` (the protocol
version) and ``"type"``; requests carry an ``"id"`` (an int or a string) that the reply repeats,
error replies included, whenever the request's header is readable msgpack. Map keys are strings.

Requests (client -> server) and their replies:

* ``hello``: the handshake; a policy client sends ``shm_probe`` (``[segment, size, token]``: a
  client segment that begins with a random token, or nil) for the server to read back. Reply:
  ``serves``, ``ready``, ``error`` (why initialization failed, or None), ``server`` (an id
  that changes when the server restarts), ``shm`` (whether the server read the token: client
  and server share a host and user, and the fast path works), ``max_message_bytes`` (the
  largest request the server accepts; clients refuse larger ones before sending) and
  ``metadata`` (the policy's metadata once ready).
* ``health``: reply ``ready``, ``error`` (why initialization failed, or None), ``sessions``,
  ``shm_mapped_bytes`` (client shared memory the server has mapped), ``uptime_s``.
* ``act``: ``sessions`` (one id per batch element: an episode of one environment),
  ``reset`` (list of bools: start a new episode), ``instruction`` (str or None) and ``obs``
  (name -> array with a leading batch dimension). Reply: ``server`` and ``actions`` (batch,
  chunk, *action_shape) plus any other outputs of the policy, each with the batch dimension.
  With ``replan_every`` (an int from 1 to the chunk length; optional) the server plays the
  chunks itself: the reply's ``actions`` are (batch, 1, *action_shape), each session's next
  action from the first ``replan_every`` of its last chunk, and ``replanned`` (list of bools)
  says for which sessions the policy ran; the policy's other outputs are not sent then.
* any request may get ``{"type": "error", "id": ..., "code": ..., "message": ...}`` instead;
  the codes are the ``ERROR_*`` constants below. A request larger than ``max_message_bytes``
  gets ``too_large``; one with a single frame over twice that is dropped by ZeroMQ before the
  server sees it, so it gets no reply.

Every ``hello`` reply also says what the server serves: ``serves`` is ``"policy"`` or
``"env"`` (a reply without it comes from a policy server). An env server (``EnvServer``)
answers ``hello`` with ``env`` (its name), ``batch_size`` and ``specs`` (the five TorchRL
specs, ``full_observation_spec`` ... ``full_done_spec``, described by ``agenthive.remote_env.codec``),
``health`` with ``instances``, and these requests, where ``td`` is a TensorDict as nested
maps of arrays (``agenthive.remote_env.codec``):

* ``make``: a new env instance for this client. Reply: ``instance`` (its id).
* ``reset``: ``instance``, ``td`` (``"_reset"`` masks and state entries, or nil). Reply:
  ``td``, the env's reset output.
* ``step``: ``instance``, ``td`` (every action entry, and state entries). Reply: ``td``,
  the ``"next"`` part of the step (observations, reward, done flags).
* ``seed``: ``instance``, ``seed`` (int or nil). Reply: ``seed``, the seed the env returned.
* ``close``: ``instance``. Reply: ``closed`` (whether it was still there).

Example:
    >>> import numpy as np
    >>> frames = encode({"v": VERSION, "type": "act", "obs": {"state": np.arange(3, dtype=np.float32)}})
    >>> len(frames)  # small arrays ride inside the header
    1
    >>> decode(frames)["obs"]["state"]
    array([0., 1., 2.], dtype=float32)
"""
import math

import msgpack
import numpy as np

from agenthive.serving import shared_memory as _shm

VERSION = 1

ERROR_BAD_MESSAGE = "bad_message"  # not a valid agenthive message
ERROR_VERSION = "version_mismatch"  # client and server speak different protocol versions
ERROR_BAD_OBSERVATION = "bad_observation"  # names, shapes or dtypes differ from the metadata
ERROR_NOT_READY = "not_ready"  # the policy is still initializing, or failed to
ERROR_POLICY = "policy_error"  # the policy raised on this request
ERROR_TOO_LARGE = "too_large"  # the message exceeds the server's size limit
ERROR_UNKNOWN_INSTANCE = "unknown_instance"  # env servers: no such env instance (restarted, or freed when idle)
ERROR_BAD_INPUT = "bad_input"  # env servers: entries, shapes or dtypes differ from the env's specs
ERROR_ENV = "env_error"  # env servers: making, resetting, stepping or seeding the env raised
ERROR_FULL = "server_full"  # env servers: no more env instances can be made

# packs the small [frame, dtype, shape] payloads; msgpack.packb called inside a packing
# hook costs ~15 us, a reused Packer ~1 us (and its pack() holds the GIL, so threads may share it)
_EXT_PACKER = msgpack.Packer()
_ARRAY_EXT = 1
_SHARED_ARRAY_EXT = 2
_INLINE_ARRAY_EXT = 3
INLINE_BYTES = 4096
_ALLOWED_KINDS = "biufc"  # bool, int, uint, float, complex: plain bytes, nothing to execute
_MAX_NDIM = 32
# every dtype string that may appear on the wire, e.g. '<f4', '|u1', '|b1'
_DTYPES = {dt.str: dt for dt in map(np.dtype, np.typecodes["All"]) if dt.kind in _ALLOWED_KINDS}
_DTYPES.update({dt.newbyteorder(">").str: dt.newbyteorder(">") for dt in list(_DTYPES.values())})


class WireError(ValueError):
    """A message that does not follow the protocol."""


class VersionError(WireError):
    """A message of another protocol version."""


def encode(message, shared_memory=None):
    """Encode a message (nested dicts/lists of str, numbers, bytes, None and arrays) to frames.

    Args:
        message: the message; arrays anywhere in it become separate frames.
        shared_memory: a ``SharedMemoryWriter`` to put arrays of at least
            ``shared_memory.MIN_BYTES`` in, or None to send every array as a frame.

    Returns:
        list of frames: the msgpack header first, then the arrays (C-contiguous, not copied
        when they already are).
    """
    frames = [None]
    placed_in_shm = []

    def array_to_ext(obj):
        if isinstance(obj, np.generic):
            return obj.item()
        if not isinstance(obj, np.ndarray):
            raise TypeError(f"cannot put {type(obj).__name__} on the wire: expected numpy arrays, str, numbers, bytes, lists, dicts")
        if obj.dtype.kind not in _ALLOWED_KINDS:
            raise TypeError(f"cannot put an array of dtype {obj.dtype} on the wire: expected one of bool, int, uint, float, complex")
        if obj.nbytes <= INLINE_BYTES:
            return msgpack.ExtType(_INLINE_ARRAY_EXT, _EXT_PACKER.pack([obj.dtype.str, obj.shape, obj.tobytes()]))
        if shared_memory is not None and obj.nbytes >= _shm.MIN_BYTES:
            name, size, offset = shared_memory.put(obj, message_start=not placed_in_shm)
            placed_in_shm.append(name)
            return msgpack.ExtType(_SHARED_ARRAY_EXT, _EXT_PACKER.pack([name, size, offset, obj.dtype.str, obj.shape]))
        frames.append(np.ascontiguousarray(obj).reshape(-1).view(np.uint8))  # a flat byte buffer
        return msgpack.ExtType(_ARRAY_EXT, _EXT_PACKER.pack([len(frames) - 1, obj.dtype.str, obj.shape]))

    frames[0] = msgpack.packb(message, default=array_to_ext)
    return frames


def decode(frames, shared_memory=None):
    """Decode received frames into a message; arrays are read-only views of their frames
    (or of the client's shared memory), valid while the request is served.

    Args:
        frames: the multipart message, as bytes or ``zmq.Frame`` (``recv_multipart(copy=False)``).
        shared_memory: a ``SharedMemoryReader`` to resolve same-host arrays with, or None to
            refuse them.

    Returns:
        dict: the message.

    Raises:
        WireError: the frames are not a valid message; the text says what was wrong.
    """
    if not frames:
        raise WireError("empty message: expected a msgpack header frame")
    buffers = [memoryview(getattr(frame, "buffer", frame)) for frame in frames]

    def ext_to_array(code, data):
        if code == _ARRAY_EXT:
            index, dtype, shape = msgpack.unpackb(data)
            if not (isinstance(index, int) and 1 <= index < len(buffers)):
                raise WireError(f"array refers to frame {index!r} but the message has frames 1..{len(buffers) - 1}")
            dtype, nbytes = _check_array(dtype, shape)
            buffer = buffers[index]
            if buffer.nbytes != nbytes:
                raise WireError(f"frame {index} has {buffer.nbytes} bytes; an array of {dtype} with shape {shape} needs {nbytes}")
            return np.frombuffer(buffer, dtype=dtype).reshape(shape)  # read-only: the frame is immutable
        if code == _INLINE_ARRAY_EXT:
            dtype, shape, data = msgpack.unpackb(data)
            dtype, nbytes = _check_array(dtype, shape)
            if not isinstance(data, bytes) or len(data) != nbytes:
                raise WireError(f"inline array holds {len(data) if isinstance(data, bytes) else data!r} bytes; an array of {dtype} with shape {shape} needs {nbytes}")
            return np.frombuffer(data, dtype=dtype).reshape(shape)
        if code == _SHARED_ARRAY_EXT:
            if shared_memory is None:
                raise WireError("shared-memory array from a peer that is not on the server's host: expected arrays as frames")
            reference = msgpack.unpackb(data)
            if not (isinstance(reference, list) and len(reference) == 5):
                raise WireError(f"shared-memory array {reference!r}: expected [segment, size, offset, dtype, shape]")
            name, size, offset, dtype, shape = reference
            dtype, nbytes = _check_array(dtype, shape)
            try:
                view = shared_memory.view(name, size, offset, nbytes)
            except ValueError as err:
                raise WireError(str(err)) from None
            return np.frombuffer(view, dtype=dtype).reshape(shape)
        raise WireError(f"unknown msgpack extension type {code}: expected {_ARRAY_EXT} (array frame), {_SHARED_ARRAY_EXT} (shared-memory array) or {_INLINE_ARRAY_EXT} (inline array)")

    try:
        message = msgpack.unpackb(buffers[0], ext_hook=ext_to_array)
    except WireError:
        raise
    except Exception as err:  # msgpack raises several types for malformed input
        raise WireError(f"header frame is not valid msgpack ({type(err).__name__}: {err})") from None
    if not isinstance(message, dict):
        raise WireError(f"header is a {type(message).__name__}: expected a map")
    if message.get("v") != VERSION:
        raise VersionError(f"protocol version {message.get('v')!r}: expected {VERSION}")
    if not isinstance(message.get("type"), str):
        raise WireError(f"message type {message.get('type')!r}: expected a string such as 'act'")
    if not _is_id(message.get("id")):
        raise WireError(f"request id {message.get('id')!r}: expected an int, a string or nil")
    return message


def request_id(header):
    """The id of a request whose header frame is readable msgpack, for the error reply to a
    request that ``decode`` refused; None when there is none to repeat.

    Example:
        >>> request_id(msgpack.packb({"v": 99, "type": "act", "id": 7, "x": msgpack.ExtType(9, b"")}))
        7
    """
    try:
        message = msgpack.unpackb(getattr(header, "buffer", header), ext_hook=lambda code, data: None)
    except Exception:  # msgpack raises several types for malformed input
        return None
    value = message.get("id") if isinstance(message, dict) else None
    return value if _is_id(value) else None


def _is_id(value):
    return value is None or type(value) in (int, str)


def _check_array(dtype, shape):
    """Validate a wire dtype and shape; returns the numpy dtype and the byte count."""
    allowed = _DTYPES.get(dtype) if isinstance(dtype, str) else None
    if allowed is None:
        raise WireError(f"array dtype {dtype!r} is not allowed: expected a bool, int, uint, float or complex dtype string such as '<f4'")
    if not (isinstance(shape, list) and len(shape) <= _MAX_NDIM and all(isinstance(d, int) and d >= 0 for d in shape)):
        raise WireError(f"array shape {shape!r} is not a list of at most {_MAX_NDIM} non-negative ints")
    return allowed, allowed.itemsize * math.prod(shape)


def error(code, message, request_id=None):
    """Build an error reply.

    Example:
        >>> error(ERROR_NOT_READY, "policy 'mlp' is still initializing", request_id=3)["code"]
        'not_ready'
    """
    return {"v": VERSION, "type": "error", "id": request_id, "code": code, "message": message}
