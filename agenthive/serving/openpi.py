"""Interoperability with openpi's policy servers: msgpack-numpy over websockets.

openpi (pi0, pi0-FAST) serves policies with one msgpack blob per message, arrays encoded
inline as maps ``{b"__ndarray__": True, b"data": bytes, b"dtype": str, b"shape": list}``. The
server sends its metadata first, then answers each observation map with a map holding
``"actions"`` (chunk, action_dim); on error it sends the traceback as a text frame.

* ``OpenPIClient`` queries such a server, so pi0 served by openpi drives TorchRL rollouts
  (``RemotePolicyModule(..., protocol="openpi")``).
* ``OpenPIBridge`` serves an agenthive ``PolicyServer`` under that protocol, so openpi's
  ``WebsocketClientPolicy`` can query agenthive policies; each websocket connection is one
  agenthive client, and the ``"prompt"`` entry becomes the instruction.

Both need the ``websockets`` package, imported only when they are used. Object, void and
string arrays are refused in both directions: like pickle, they could smuggle objects.

Example:
    >>> import numpy as np
    >>> unpackb(packb({"actions": np.eye(2, dtype=np.float32)}))["actions"]
    array([[1., 0.],
           [0., 1.]], dtype=float32)
"""
import http
import threading
import time
import traceback

import msgpack
import numpy as np

from agenthive.serving.client import PolicyClient, PolicyTimeoutError

_ALLOWED_KINDS = "biufc"


def _pack_array(obj):
    if isinstance(obj, (np.ndarray, np.generic)) and obj.dtype.kind not in _ALLOWED_KINDS:
        raise TypeError(f"cannot send an array of dtype {obj.dtype}: expected bool, int, uint, float or complex")
    if isinstance(obj, np.ndarray):
        return {b"__ndarray__": True, b"data": np.ascontiguousarray(obj).tobytes(), b"dtype": obj.dtype.str, b"shape": obj.shape}
    if isinstance(obj, np.generic):
        return {b"__npgeneric__": True, b"data": obj.item(), b"dtype": obj.dtype.str}
    raise TypeError(f"cannot send {type(obj).__name__}: expected numpy arrays, str, numbers, bytes, lists, dicts")


def _unpack_array(obj):
    if b"__ndarray__" in obj or b"__npgeneric__" in obj:
        dtype = np.dtype(obj[b"dtype"])
        if dtype.kind not in _ALLOWED_KINDS:
            raise ValueError(f"received an array of dtype {dtype}: expected bool, int, uint, float or complex")
        if b"__npgeneric__" in obj:
            return dtype.type(obj[b"data"])
        return np.frombuffer(obj[b"data"], dtype=dtype).reshape(obj[b"shape"])
    return obj


def packb(obj):
    """openpi's msgpack-numpy encoding of ``obj``."""
    return msgpack.packb(obj, default=_pack_array)


def unpackb(data):
    """Decode openpi's msgpack-numpy encoding."""
    return msgpack.unpackb(data, object_hook=_unpack_array)


class OpenPIClient:
    """Queries an openpi websocket policy server with the ``PolicyClient.act`` interface.

    openpi servers take one unbatched observation per message, so a batch is sent element by
    element; ``metadata`` is None (openpi's metadata is free-form: see ``server_metadata``).

    Args:
        host: server address.
        port: server port.
        timeout: seconds to wait for the connection and for each reply.
    """

    def __init__(self, host, port, *, timeout=10.0):
        from websockets.sync.client import connect

        self.host, self.port, self.timeout = host, int(port), timeout
        self.metadata = None
        start = time.monotonic()
        try:
            self._ws = connect(f"ws://{host}:{self.port}", compression=None, max_size=None, open_timeout=timeout)
            self.server_metadata = unpackb(self._ws.recv(timeout=timeout))
        except TimeoutError:
            raise PolicyTimeoutError(f"openpi server {host}:{port} did not complete the handshake within {timeout} s (waited {time.monotonic() - start:.2f} s)") from None

    def act(self, obs, sessions=None, reset=None, instruction=None):
        """Actions for a batch: ``{"actions": (batch, chunk, action_dim)}``."""
        batch = len(next(iter(obs.values())))
        actions = []
        for i in range(batch):
            element = {name: value[i] for name, value in obs.items()}
            if instruction is not None:
                element["prompt"] = instruction
            start = time.monotonic()
            self._ws.send(packb(element))
            try:
                reply = self._ws.recv(timeout=self.timeout)
            except TimeoutError:
                raise PolicyTimeoutError(f"openpi server {self.host}:{self.port} did not answer within {self.timeout} s (waited {time.monotonic() - start:.2f} s)") from None
            if isinstance(reply, str):
                raise RuntimeError(f"openpi server {self.host}:{self.port} failed:\n{reply}")
            actions.append(unpackb(reply)["actions"])
        return {"actions": np.stack(actions)}

    def close(self):
        self._ws.close()


class OpenPIBridge:
    """Serves a ``PolicyServer``'s policy under openpi's websocket protocol.

    Args:
        server: a bound ``PolicyServer`` (``bind()`` called), served from another thread.
        host: address for the websocket server.
        port: websocket port; 0 picks a free one (see ``port`` after ``start()``).
        max_message_bytes: largest message accepted from a websocket client.
    """

    def __init__(self, server, *, host="127.0.0.1", port=8000, max_message_bytes=64 << 20):
        self.policy_server, self.host, self.port = server, host, port
        self.max_message_bytes = max_message_bytes
        self._ws_server = None
        self._thread = None

    def start(self):
        from websockets.sync.server import serve

        self._ws_server = serve(
            self._handle, self.host, self.port, compression=None, max_size=self.max_message_bytes, process_request=_health_check
        )
        self.port = self._ws_server.socket.getsockname()[1]
        self._thread = threading.Thread(target=self._ws_server.serve_forever, name="openpi-bridge", daemon=True)
        self._thread.start()

    def stop(self):
        self._ws_server.shutdown()
        self._thread.join()

    def _handle(self, websocket):
        client = PolicyClient("127.0.0.1" if self.policy_server.host in ("0.0.0.0", "::") else self.policy_server.host, self.policy_server.port)
        session = [websocket.id.hex]
        try:
            websocket.send(packb(client.metadata.to_wire()))
            first = True
            for message in websocket:
                try:
                    obs = unpackb(message)
                    if not isinstance(obs, dict):
                        raise ValueError(f"observation is a {type(obs).__name__}: expected a map")
                    instruction = obs.pop("prompt", None)
                    batched = {name: np.asarray(value)[None] for name, value in obs.items()}
                    start = time.monotonic()
                    reply = client.act(batched, sessions=session, reset=[first], instruction=instruction)
                    first = False
                    out = {name: value[0] for name, value in reply.items()}
                    out["server_timing"] = {"infer_ms": (time.monotonic() - start) * 1000}
                    websocket.send(packb(out))
                except Exception:  # openpi's convention: the traceback as a text frame, then close
                    websocket.send(traceback.format_exc())
                    websocket.close(1011, "Internal server error. Traceback included in previous frame.")
                    return
        finally:
            client.close()


def _health_check(connection, request):
    if request.path == "/healthz":
        return connection.respond(http.HTTPStatus.OK, "OK\n")
    return None
