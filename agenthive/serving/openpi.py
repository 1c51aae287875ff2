"""Interoperability with openpi's policy servers: msgpack-numpy over websockets.

openpi (pi0, pi0-FAST) serves policies with one msgpack blob per message, arrays encoded
inline as maps ``{b"__ndarray__": True, b"data": bytes, b"dtype": str, b"shape": list}``. The
server sends its metadata first, then answers each observation map with a map holding
``"actions"`` (chunk, action_dim); on error it sends the traceback as a text frame.

* ``OpenPIClient`` queries such a server, so pi0 served by openpi drives TorchRL rollouts
  (``RemotePolicyModule(..., protocol="openpi")``).
* ``OpenPIBridge`` serves an agenthive ``PolicyServer`` under that protocol, so openpi's
  ``WebsocketClientPolicy`` can query agenthive policies; each websocket connection is one
  episode, served through a ``PolicyClient`` that later connections reuse, and the
  ``"prompt"`` entry becomes the instruction.

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
import uuid

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


class OpenPIConnectionError(ConnectionError):
    """The openpi server cannot be reached, or closed the connection."""


class OpenPIClient:
    """Queries an openpi websocket policy server with the ``PolicyClient.act`` interface.

    openpi's protocol has no batching and one episode per connection: its servers keep a
    policy's per-episode state (an observation history, a chunk being played) per connection.
    So each session (the episode of one batch element) gets its own connection, opened at its
    first request and replaced when ``reset`` starts a new episode; ``end_sessions`` closes the
    connections of sessions that are over. A connection found closed (the server restarted) is
    reopened within the call, as the native client picks up a restarted server; the episode
    starts over there, as it would after a native server's restart. ``metadata`` is None
    (openpi's metadata is free-form: see ``server_metadata``).

    Args:
        host: server address.
        port: server port.
        timeout: seconds to wait for the connection and for each reply.

    Raises:
        OpenPIConnectionError: nothing accepts connections at ``host:port``.
        PolicyTimeoutError: the server did not complete the handshake within ``timeout``.
    """

    def __init__(self, host, port, *, timeout=10.0):
        self.host, self.port, self.timeout = host, int(port), timeout
        self.metadata = None
        self.server_metadata = None
        self._connections = {}  # session -> its open websocket
        self._spare = self._open()  # checks the server now; the first session takes it

    @property
    def _where(self):
        return f"openpi server {self.host}:{self.port}"

    def _open(self):
        from websockets.exceptions import ConnectionClosed, InvalidHandshake
        from websockets.sync.client import connect

        start = time.monotonic()
        try:
            # entered, as websockets documents: a bare connect() is deprecated since websockets 17.1
            websocket = connect(f"ws://{self.host}:{self.port}", compression=None, max_size=None, open_timeout=self.timeout, close_timeout=self.timeout).__enter__()
            self.server_metadata = unpackb(websocket.recv(timeout=self.timeout))
        except TimeoutError:
            raise PolicyTimeoutError(f"{self._where} did not complete the handshake within {self.timeout} s (waited {time.monotonic() - start:.2f} s)") from None
        except (OSError, InvalidHandshake, ConnectionClosed) as err:
            raise OpenPIConnectionError(
                f"cannot connect to {self._where} ({type(err).__name__}: {err}): check that it is running, listening on port "
                f"{self.port} of {self.host} (openpi's serve_policy.py --port, or start-server --openpi-port) and reachable from here"
            ) from None
        return websocket

    def act(self, obs, sessions=None, reset=None, instruction=None):
        """Actions for a batch: ``{"actions": (batch, chunk, action_dim)}``.

        Args:
            obs: observation name -> array with a leading batch dimension.
            sessions: one episode id per batch element (default: a new episode each, ended
                after this call).
            reset: one bool per batch element: start a new episode (a new connection) for it.
            instruction: sent as openpi's ``"prompt"`` entry.
        """
        batch = len(next(iter(obs.values())))
        one_off = sessions is None
        sessions = [uuid.uuid4().hex for _ in range(batch)] if one_off else list(sessions)
        reset = [False] * batch if reset is None else reset
        try:
            actions = [self._infer(session, {name: value[i] for name, value in obs.items()}, bool(reset[i]), instruction) for i, session in enumerate(sessions)]
        finally:
            if one_off:
                self.end_sessions(sessions)
        return {"actions": np.stack(actions)}

    def _infer(self, session, element, new_episode, instruction):
        if instruction is not None:
            element["prompt"] = instruction
        if new_episode:
            self.end_sessions([session])
        websocket = self._connections.get(session)
        if websocket is None:
            websocket, self._spare = (self._spare or self._open()), None
            self._connections[session] = websocket
        try:
            return self._exchange(session, websocket, element)
        except OpenPIConnectionError:  # closed since it was opened: the server restarted or went away
            websocket = self._connections[session] = self._open()
            return self._exchange(session, websocket, element)

    def _exchange(self, session, websocket, element):
        from websockets.exceptions import ConnectionClosed

        start = time.monotonic()
        try:
            websocket.send(packb(element))
            reply = websocket.recv(timeout=self.timeout)
        except TimeoutError:
            self.end_sessions([session])  # its late reply must not be taken for the next request's
            raise PolicyTimeoutError(f"{self._where} did not answer within {self.timeout} s (waited {time.monotonic() - start:.2f} s); the next call reconnects") from None
        except (ConnectionClosed, OSError) as err:
            self.end_sessions([session])
            raise OpenPIConnectionError(f"{self._where} closed the connection ({type(err).__name__}: {err}): check that it is running; the next call reconnects") from None
        if isinstance(reply, str):
            self.end_sessions([session])  # openpi closes the connection after the traceback
            raise RuntimeError(f"{self._where} failed:\n{reply}")
        return unpackb(reply)["actions"]

    def end_sessions(self, sessions):
        """End the episodes of ``sessions`` on the server by closing their connections."""
        for session in sessions:
            websocket = self._connections.pop(session, None)
            if websocket is not None:
                websocket.close()

    def close(self):
        """Close every connection; safe to call twice."""
        self.end_sessions(list(self._connections))
        if self._spare is not None:
            self._spare.close()
            self._spare = None


class OpenPIBridge:
    """Serves a ``PolicyServer``'s policy under openpi's websocket protocol.

    Each connection borrows a ``PolicyClient`` (its socket and shared-memory segment) and
    returns it when it closes, so connections that come and go reuse the same few clients
    instead of making new ones: the bridge holds as many as connections were open at once,
    at most ``max_idle_clients`` of them idle.

    Args:
        server: a bound ``PolicyServer`` (``bind()`` called), served from another thread.
        host: address for the websocket server.
        port: websocket port; 0 picks a free one (see ``port`` after ``start()``).
        max_message_bytes: largest message accepted from a websocket client.
        max_idle_clients: most ``PolicyClient`` kept for later connections.
    """

    def __init__(self, server, *, host="127.0.0.1", port=8000, max_message_bytes=64 << 20, max_idle_clients=16):
        self.policy_server, self.host, self.port = server, host, port
        self.max_message_bytes = max_message_bytes
        self.max_idle_clients = max_idle_clients
        self._ws_server = None
        self._thread = None
        self._idle_clients = []
        self._lock = threading.Lock()

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
        with self._lock:
            idle, self._idle_clients = self._idle_clients, []
        for client in idle:
            client.close()

    def _borrow(self):
        with self._lock:
            if self._idle_clients:
                return self._idle_clients.pop()
        host = self.policy_server.host
        return PolicyClient("127.0.0.1" if host in ("0.0.0.0", "::") else host, self.policy_server.port)

    def _give_back(self, client):
        with self._lock:
            if len(self._idle_clients) < self.max_idle_clients:
                self._idle_clients.append(client)
                return
        client.close()

    def _handle(self, websocket):
        client = self._borrow()
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
            self._give_back(client)


def _health_check(connection, request):
    if request.path == "/healthz":
        return connection.respond(http.HTTPStatus.OK, "OK\n")
    return None
