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

from agenthive.serving import shared_memory
from agenthive.serving.policy import PolicyMetadata
from agenthive.serving.router import RouterClient, ServerError, ServerTimeoutError


class PolicyServerError(ServerError):
    """The policy server refused a request; ``code`` is one of the ``wire.ERROR_*`` constants."""

    role = "policy server"


class PolicyTimeoutError(ServerTimeoutError):
    """The server did not answer in time."""


class MetadataMismatchError(RuntimeError):
    """The server's policy is not the one this client was set up for."""


class PolicyClient(RouterClient):
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
        RuntimeError: the policy failed to initialize on the server, or the server serves
            an environment.
    """

    role = "policy server"
    error_type = PolicyServerError
    timeout_error = PolicyTimeoutError

    def __init__(self, host, port, *, timeout=10.0, ready_timeout=600.0, curve_server_key=None, curve_client_key=None, shared_memory=True):
        super().__init__(host, port, timeout=timeout, curve_server_key=curve_server_key, curve_client_key=curve_client_key)
        self.use_shared_memory = shared_memory
        self.metadata = None
        self.server = None
        self._writer = None
        self._shm = False
        try:
            self._connect_until_ready(ready_timeout)
        except BaseException:
            self.close()
            raise

    # -- connection ---------------------------------------------------------------------------

    def _hello(self):
        if self._socket is None:
            self._open()
        if self.use_shared_memory and self._writer is None and shared_memory.available():
            self._writer = shared_memory.SharedMemoryWriter()
        probe = [self._writer.name, self._writer.size, self._writer.token] if self._writer is not None else None
        reply = self._request({"type": "hello", "shm_probe": probe}, "hello")
        self._check_serves(reply, "policy", "connect to it with agenthive.envs.RemoteEnv")
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

    def _reconnect(self):
        self._connect_until_ready(self.timeout)

    # -- requests -----------------------------------------------------------------------------

    def health(self):
        """The server's health: ``ready``, ``error``, ``sessions``, ``uptime_s``."""
        return self._request({"type": "health"}, "health")

    def act(self, obs, sessions=None, reset=None, instruction=None, replan_every=None):
        """Actions for a batch of observations.

        Args:
            obs: observation name -> array with a leading batch dimension.
            sessions: one episode id per batch element (default: one fresh id each call).
            reset: one bool per batch element: start a new episode for it.
            instruction: the language instruction, if the policy takes one.
            replan_every: let the server play the chunks: each call returns one action per
                session from its queue and the policy runs every ``replan_every`` calls (or
                at a reset). None returns whole chunks.

        Returns:
            dict: ``"actions"`` of shape (batch, chunk_length, *action_shape) and the
            policy's other outputs; with ``replan_every``, ``"actions"`` of shape
            (batch, 1, *action_shape) and ``"replanned"`` (one bool per session).
        """
        batch = len(next(iter(obs.values())))
        if sessions is None:
            sessions = [uuid.uuid4().hex for _ in range(batch)]
        message = {"type": "act", "sessions": list(sessions), "reset": list(reset) if reset is not None else None, "instruction": instruction, "obs": obs}
        if replan_every is not None:
            message["replan_every"] = replan_every
        reply = self._request(message, "act", shared_memory=self._writer if self._shm else None)
        if reply["server"] != self.server:  # a new server process answered: check that it serves the same policy
            self._hello()
        del reply["v"], reply["type"], reply["id"], reply["server"]
        return reply

    def close(self):
        """Close the connection and unlink the shared-memory segment; safe to call twice."""
        super().close()
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
