"""``RemoteEnv``: an environment served by an ``EnvServer`` on another host, as a TorchRL env.

The specs come from the server's handshake, so ``RemoteEnv`` is whatever env the server
makes (a RoboHive task, a ManiSkill batch, a real robot behind a driver) and everything
TorchRL does with envs works on it: ``check_env_specs``, transforms, ``ParallelEnv`` (each
worker gets its own instance on the server), collectors. Camera images arrive as ZeroMQ
frames and become tensors over the same memory: no copy after the socket.

Each ``RemoteEnv`` owns one env instance on the server, made at its first reset and freed
by ``close()`` (or by the server once the client has been silent for the server's idle
timeout). When the server restarts, the next step raises an ``EnvServerError`` that says
so (``code == "unknown_instance"``), or an ``EnvTimeoutError`` while the server is down;
``reset()`` then reconnects and starts on a new instance.
"""
from __future__ import annotations

import torch
from torchrl.envs import EnvBase

from agenthive.envs.complete_step import CompleteStep
from agenthive.remote_env import codec
from agenthive.remote_env.codec import SPEC_NAMES
from agenthive.serving import wire
from agenthive.serving.router import RouterClient, ServerError, ServerTimeoutError


class EnvServerError(ServerError):
    """The env server refused a request; ``code`` is one of the ``wire.ERROR_*`` constants."""

    role = "env server"


class EnvTimeoutError(ServerTimeoutError):
    """The env server did not answer in time."""


class EnvSpecMismatchError(RuntimeError):
    """The server restarted with an env whose specs differ from the ones this client has."""


class _EnvConnection(RouterClient):
    """The handshake and requests of one ``RemoteEnv``; specs decoded on ``device``."""

    role = "env server"
    error_type = EnvServerError
    timeout_error = EnvTimeoutError

    def __init__(self, host, port, *, timeout, connect_timeout, device, curve_server_key, curve_client_key):
        super().__init__(host, port, timeout=timeout, curve_server_key=curve_server_key, curve_client_key=curve_client_key)
        self.device = device
        self.specs = None
        try:
            self._open()
            self.handshake(connect_timeout)
        except BaseException:
            self.close()
            raise

    def handshake(self, timeout=None):
        """Asks the server what it serves; refuses a restarted server whose env differs from the one this client has."""
        reply = self._request({"type": "hello"}, "hello", timeout=timeout)
        self._check_serves(reply, "env", "connect to it with agenthive.modules.RemotePolicyModule")
        specs = {name: codec.spec_from_wire(reply["specs"][name], self.device) for name in SPEC_NAMES}
        batch_size = torch.Size(reply["batch_size"])
        if self.specs is not None and (specs != self.specs or batch_size != self.batch_size):
            raise EnvSpecMismatchError(
                f"the env server at {self.endpoint} restarted with another env ({reply['env']}, batch size {list(batch_size)}): "
                f"its specs differ from those this RemoteEnv was made with ({self.name}, batch size {list(self.batch_size)})"
            )
        self.specs, self.batch_size, self.name = specs, batch_size, reply["env"]

    def _reconnect(self):
        self.handshake()

    def request(self, kind, *, timeout=None, **fields):
        """The reply to a ``kind`` request carrying ``fields`` (``EnvServerError``/``EnvTimeoutError`` when there is none)."""
        return self._request({"type": kind, **fields}, kind, timeout=timeout)

    @property
    def closed(self) -> bool:
        """Whether ``close()`` was called."""
        return self._context.closed


class RemoteEnv(CompleteStep, EnvBase):
    """A TorchRL environment stepped by an ``EnvServer`` (``python -m agenthive serve-env``).

    Args:
        host: the server's address.
        port: the server's port.

    Keyword Args:
        timeout (float): seconds to wait for each reset/step reply before raising
            ``EnvTimeoutError``. Defaults to 60.
        connect_timeout (float): seconds to wait for the handshake. Defaults to 60.
        make_timeout (float): seconds to wait for the server to make this client's env
            instance (RoboHive and ManiSkill envs take seconds; the server is busy meanwhile).
            Defaults to 600.
        curve_server_key (str, optional): the server's public key file (turns on CURVE
            encryption).
        curve_client_key (str, optional): this client's key pair file.
        device (torch.device, optional): where this side's tensors live. Defaults to CPU.

    Raises:
        EnvTimeoutError: no handshake within ``connect_timeout``.
        RuntimeError: the server serves a policy, not an env.

    Examples:
        >>> import threading
        >>> from torchrl.envs import ParallelEnv, check_env_specs
        >>> from agenthive.envs import RoboHiveEnv
        >>> from agenthive.remote_env import EnvServer
        >>> server = EnvServer(lambda: RoboHiveEnv("FrankaReachRandom-v0", from_pixels=True, cameras=["top_cam"], image_size=(32, 32)), port=0)
        >>> endpoint = server.bind()
        >>> thread = threading.Thread(target=server.serve_forever, daemon=True); thread.start()
        >>> env = RemoteEnv("127.0.0.1", server.port)
        >>> check_env_specs(env)
        >>> td = env.rollout(4)
        >>> td["next", "pixels"].shape, td["next", "pixels"].dtype, td["next", "reward"].shape
        (torch.Size([4, 1, 32, 32, 3]), torch.uint8, torch.Size([4, 1]))
        >>> env.close(); server.stop(); thread.join()
    """

    def __init__(
        self,
        host: str,
        port: int,
        *,
        timeout: float = 60.0,
        connect_timeout: float = 60.0,
        make_timeout: float = 600.0,
        curve_server_key: str | None = None,
        curve_client_key: str | None = None,
        device=None,
    ):
        device = torch.device("cpu" if device is None else device)
        connection = _EnvConnection(
            host, port, timeout=timeout, connect_timeout=connect_timeout, device=device,
            curve_server_key=curve_server_key, curve_client_key=curve_client_key,
        )
        super().__init__(device=device, batch_size=connection.batch_size)
        self._connection = connection
        for name, spec in connection.specs.items():
            setattr(self, name, spec)
        self.make_timeout = make_timeout
        self._instance = None
        states = list(self.full_state_spec.keys(True, True))
        self._step_keys = [*self.full_action_spec.keys(True, True), *states]
        self._reset_keys_in = [*self.reset_keys, *states]

    @property
    def server_env(self) -> str:
        """What the server serves (its env's repr)."""
        return self._connection.name

    def _request(self, kind, **fields):
        return self._connection.request(kind, instance=self._instance, **fields)

    def _make(self):
        self._instance = self._connection.request("make", timeout=self.make_timeout)["instance"]

    def _reset(self, tensordict=None, **kwargs):
        entries = None
        if tensordict is not None:
            present = [key for key in self._reset_keys_in if key in tensordict.keys(True, True)]
            entries = codec.tensordict_to_wire(tensordict, present) if present else None
        if self._instance is None:
            self._make()
        try:
            reply = self._request("reset", td=entries)
        except EnvServerError as err:
            if err.code != wire.ERROR_UNKNOWN_INSTANCE:
                raise
            self._connection.handshake()  # the server restarted or freed ours: check what it serves now
            self._make()
            reply = self._request("reset", td=entries)
        return codec.tensordict_from_wire(reply["td"], self.batch_size, self.device)

    def _step(self, tensordict):
        if self._instance is None:
            raise RuntimeError(f"RemoteEnv({self._connection.endpoint}) has no env instance yet: call reset() before step()")
        entries = codec.tensordict_to_wire(tensordict.select(*self._step_keys, strict=False))
        reply = self._request("step", td=entries)
        return codec.tensordict_from_wire(reply["td"], self.batch_size, self.device)

    def _set_seed(self, seed: int | None) -> None:
        if self._instance is None:
            self._make()
        self._request("seed", seed=seed)

    def close(self, *, raise_if_closed: bool = True) -> None:
        """Free this client's instance on the server and close the connection."""
        connection = self.__dict__.get("_connection")
        if connection is not None and not connection.closed:
            if self._instance is not None:
                try:
                    connection.request("close", instance=self._instance, timeout=min(connection.timeout, 5.0))
                except (EnvServerError, EnvTimeoutError):
                    pass  # the server is gone or restarted: nothing of ours is left on it
                self._instance = None
            connection.close()
        super().close(raise_if_closed=raise_if_closed)

    def __repr__(self) -> str:
        return f"RemoteEnv({self._connection.endpoint}, serving={self.server_env}, batch_size={self.batch_size}, device={self.device})"
