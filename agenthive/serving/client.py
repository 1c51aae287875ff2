"""``PolicyClient``: the numpy-only client of a ``PolicyServer``.

It does the handshake (protocol version, the policy's metadata, whether the shared-memory
fast path works), sends ``act`` requests and waits for their replies with a deadline. A
request that times out closes the socket; the next call opens a new one and repeats the
handshake, so a restarted server is picked up transparently, and a server that now serves
something else (other metadata) is refused instead of being fed observations it does not
expect. ``RemotePolicyModule`` wraps it for TensorDicts.

Example:
    >>> import threading
    >>> import numpy as np
    >>> from agenthive.serving import PolicyServer
    >>> from agenthive.serving.policies.mlp import MLPPolicy
    >>> server = PolicyServer(MLPPolicy(obs_dim=4, action_dim=2, chunk_length=5), port=0)
    >>> endpoint = server.bind()  # port 0 picked a free port: server.port
    >>> thread = threading.Thread(target=server.serve_forever, daemon=True); thread.start()
    >>> client = PolicyClient("127.0.0.1", server.port, timeout=5.0)
    >>> client.metadata.chunk_length
    5
    >>> client.act({"observation": np.ones((1, 4), np.float32)}, sessions=["episode-0"])["actions"].shape
    (1, 5, 2)
    >>> client.close(); server.stop(); thread.join()
"""
import time
import uuid

import zmq
import zmq.auth
from zmq.utils.monitor import recv_monitor_message

from agenthive.serving import shared_memory, wire
from agenthive.serving.policy import PolicyMetadata


class PolicyServerError(RuntimeError):
    """The server refused a request; ``code`` is one of the ``wire.ERROR_*`` constants."""

    def __init__(self, code, message, endpoint):
        super().__init__(f"policy server {endpoint} answered {code}: {message}")
        self.code = code


class PolicyTimeoutError(TimeoutError):
    """The server did not answer in time."""


class MetadataMismatchError(RuntimeError):
    """The server's policy is not the one this client was set up for."""


_HANDSHAKE_FAILURES = {
    getattr(zmq, name): name
    for name in ("EVENT_HANDSHAKE_FAILED_AUTH", "EVENT_HANDSHAKE_FAILED_PROTOCOL", "EVENT_HANDSHAKE_FAILED_NO_DETAIL")
}


class PolicyClient:
    """Connects to a ``PolicyServer`` and waits until its policy is ready.

    Args:
        host: server address.
        port: server port.
        timeout: seconds to wait for each reply.
        ready_timeout: seconds to wait at construction for the policy to finish
            ``initialize()`` (loading a large model takes minutes).
        curve_server_key: path of the server's public key file; turns on CURVE encryption.
        curve_client_key: path of this client's key pair file (generated per connection
            when omitted; give one when the server admits only known clients).
        shared_memory: use the same-host fast path when the handshake shows it works.

    Raises:
        PolicyTimeoutError: no handshake within ``timeout`` (or not ready within
            ``ready_timeout``).
        RuntimeError: the policy failed to initialize on the server.
    """

    def __init__(self, host, port, *, timeout=10.0, ready_timeout=600.0, curve_server_key=None, curve_client_key=None, shared_memory=True):
        self.host = host
        self.port = int(port)
        self.timeout = timeout
        self.curve_server_key = curve_server_key
        self.curve_client_key = curve_client_key
        self.use_shared_memory = shared_memory
        host = f"[{host}]" if ":" in host else host
        self.endpoint = f"tcp://{host}:{self.port}"
        self.metadata = None
        self.server = None
        self._context = zmq.Context()
        self._socket = None
        self._monitor = None
        self._request_id = 0
        self._writer = None
        self._shm = False
        try:
            self._connect_until_ready(ready_timeout)
        except BaseException:
            self.close()
            raise

    # -- connection ---------------------------------------------------------------------------

    def _open(self):
        sock = self._context.socket(zmq.DEALER)
        sock.linger = 0
        if self.curve_server_key is not None:
            server_public, _ = zmq.auth.load_certificate(self.curve_server_key)
            if self.curve_client_key is not None:
                public, secret = zmq.auth.load_certificate(self.curve_client_key)
                if secret is None:
                    raise ValueError(f"{self.curve_client_key} holds no secret key: expected this client's key pair file (*.key_secret)")
            else:
                public, secret = zmq.curve_keypair()
            sock.curve_serverkey, sock.curve_publickey, sock.curve_secretkey = server_public, public, secret
            self._monitor = sock.get_monitor_socket(sum(_HANDSHAKE_FAILURES))
        sock.connect(self.endpoint)
        self._socket = sock

    def _close_socket(self):
        if self._monitor is not None:
            self._socket.disable_monitor()
            self._monitor.close(linger=0)
            self._monitor = None
        if self._socket is not None:
            self._socket.close(linger=0)
            self._socket = None

    def _hello(self):
        if self._socket is None:
            self._open()
        if self.use_shared_memory and self._writer is None and shared_memory.available():
            self._writer = shared_memory.SharedMemoryWriter()
        probe = [self._writer.name, self._writer.token] if self._writer is not None else None
        reply = self._request({"type": "hello", "shm_probe": probe}, "hello")
        if reply.get("error"):
            raise RuntimeError(f"the policy on {self.endpoint} failed to initialize: {reply['error']}")
        if reply["ready"]:
            metadata = PolicyMetadata.from_wire(reply["metadata"])
            if self.metadata is not None and metadata != self.metadata:
                raise MetadataMismatchError(
                    f"the server at {self.endpoint} restarted with another policy: it now announces {metadata}, "
                    f"this client was set up for {self.metadata}"
                )
            self.metadata = metadata
            self.server = reply["server"]
            self._shm = bool(reply["shm"])
        return reply["ready"]

    def _connect_until_ready(self, ready_timeout):
        start = time.monotonic()
        while not self._hello():
            if time.monotonic() - start > ready_timeout:
                raise PolicyTimeoutError(f"the policy on {self.endpoint} was not ready after {time.monotonic() - start:.1f} s (ready_timeout={ready_timeout})")
            time.sleep(0.2)

    # -- requests -----------------------------------------------------------------------------

    def _request(self, message, kind, shared=False):
        if self._socket is None:  # the previous request timed out: reconnect and re-check the server
            self._open()
            if kind != "hello":
                self._connect_until_ready(self.timeout)
        self._request_id += 1
        message["v"], message["id"] = wire.VERSION, self._request_id
        start = time.monotonic()
        self._socket.send_multipart(wire.encode(message, self._writer if shared and self._shm else None), copy=False)
        while True:
            remaining_ms = int((self.timeout - (time.monotonic() - start)) * 1000)
            try:
                if remaining_ms <= 0:
                    raise zmq.Again()
                self._socket.setsockopt(zmq.RCVTIMEO, remaining_ms)
                frames = self._socket.recv_multipart(copy=False)
            except zmq.Again:
                elapsed = time.monotonic() - start
                reason = self._handshake_failure()
                self._close_socket()
                if self._writer is not None:  # the server may still read the arrays of this request
                    self._writer.renew()
                raise PolicyTimeoutError(
                    f"policy server {self.host}:{self.port} did not answer {kind!r} within {self.timeout} s "
                    f"(waited {elapsed:.2f} s){reason}"
                ) from None
            reply = wire.decode(frames)
            if reply.get("id") != self._request_id:
                continue  # the late answer to a request that timed out
            if reply["type"] == "error":
                raise PolicyServerError(reply.get("code"), reply.get("message"), self.endpoint)
            return reply

    def _handshake_failure(self):
        if self._monitor is None:
            return ""
        failures = []
        while self._monitor.poll(0):
            event = recv_monitor_message(self._monitor)
            failures.append(_HANDSHAKE_FAILURES.get(event["event"], str(event["event"])))
        if not failures:
            return "; no CURVE handshake failure was reported, so the server is down or busy"
        return (
            f"; the CURVE handshake failed ({failures[-1]}): the server's public key "
            f"({self.curve_server_key}) is not the server's, or the server does not admit this client's key"
        )

    def health(self):
        """The server's health: ``ready``, ``error``, ``sessions``, ``uptime_s``."""
        return self._request({"type": "health"}, "health")

    def act(self, obs, sessions=None, reset=None, instruction=None):
        """Actions for a batch of observations.

        Args:
            obs: observation name -> array with a leading batch dimension.
            sessions: one episode id per batch element (default: one fresh id each call).
            reset: one bool per batch element: start a new episode for it.
            instruction: the language instruction, if the policy takes one.

        Returns:
            dict: ``"actions"`` of shape (batch, chunk_length, *action_shape) and the
            policy's other outputs.
        """
        batch = len(next(iter(obs.values())))
        if sessions is None:
            sessions = [uuid.uuid4().hex for _ in range(batch)]
        message = {"type": "act", "sessions": list(sessions), "reset": list(reset) if reset is not None else None, "instruction": instruction, "obs": obs}
        reply = self._request(message, "act", shared=True)
        if reply["server"] != self.server:  # a new server process answered: check that it serves the same policy
            self._hello()
        del reply["v"], reply["type"], reply["id"], reply["server"]
        return reply

    def close(self):
        """Close the connection and unlink the shared-memory segment; safe to call twice."""
        self._close_socket()
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        if not self._context.closed:
            self._context.term()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
