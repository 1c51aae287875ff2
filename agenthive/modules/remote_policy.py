"""``RemotePolicyModule``: a TensorDict policy whose forward pass runs in a policy server.

The server may live in another Python environment (JAX, transformers) or on another
machine; this module maps TensorDict entries to the server's observation names, sends the
whole batch in one request, and plays back the returned action chunks, asking again every
``replan_every`` steps. Each batch element is its own episode on the server; an
``"is_init"`` entry (torchrl's ``InitTracker`` transform) restarts the episodes that it marks.
With ``protocol="openpi"`` each batch element has its own websocket connection, since an
openpi server keeps one episode per connection, and a restarted episode gets a new one.

The module holds no parameters and pickles without its connection, so multi-process
collectors can ship it to their workers, where it reconnects on first use.
"""
import uuid

import numpy as np
import torch
from tensordict.nn import TensorDictModuleBase

from agenthive.serving.client import MetadataMismatchError, PolicyClient


class RemotePolicyModule(TensorDictModuleBase):
    """Queries a remote policy server as a TensorDict policy.

    Args:
        host: the server's address.
        port: the server's port.
        in_keys: TensorDict key -> the server's observation name (a dict), or a list of
            keys named like the server's observations; default: the server's names.
        out_keys: where to write the action (one key).
        timeout: seconds to wait for each reply before raising ``PolicyTimeoutError``.
        ready_timeout: seconds to wait at construction for the policy to finish loading.
        instruction: the language instruction, for policies that take one.
        replan_every: query the server every this many steps and play the chunk in
            between; default: the whole chunk (``chunk_length`` of the server's metadata).
        protocol: ``"agenthive"`` (ZeroMQ, see ``agenthive.serving.wire``) or ``"openpi"``
            (openpi's websocket policy servers).
        curve_server_key: the server's public key file (turns on CURVE encryption).
        curve_client_key: this client's key pair file.
        shared_memory: allow the same-host shared-memory fast path.
        observation_spec: the environment's observation spec (``env.observation_spec``), to
            check the shapes and dtypes of ``in_keys`` against the server's now rather than
            at the first step.
        action_spec: the environment's action spec, to check the action shape likewise.

    Raises:
        ValueError: ``in_keys`` do not cover the server's observations, an instruction is
            missing, ``replan_every`` exceeds the chunk, or the specs disagree with the
            server's metadata.
        PolicyTimeoutError: the server did not answer the handshake.

    Examples:
        >>> import threading
        >>> from agenthive.serving import PolicyServer
        >>> from agenthive.serving.policies.mlp import MLPPolicy
        >>> from tensordict import TensorDict
        >>> server = PolicyServer(MLPPolicy(obs_dim=3, action_dim=2, chunk_length=4), port=0)
        >>> endpoint = server.bind()  # port 0 picked a free port: server.port
        >>> thread = threading.Thread(target=server.serve_forever, daemon=True); thread.start()
        >>> policy = RemotePolicyModule("127.0.0.1", server.port, in_keys={"obs": "observation"}, replan_every=2)
        >>> td = policy(TensorDict({"obs": torch.zeros(5, 3)}, batch_size=[5]))
        >>> td["action"].shape
        torch.Size([5, 2])
        >>> policy.close(); server.stop(); thread.join()
    """

    def __init__(
        self,
        host,
        port,
        *,
        in_keys=None,
        out_keys=("action",),
        timeout=10.0,
        ready_timeout=600.0,
        instruction=None,
        replan_every=None,
        protocol="agenthive",
        curve_server_key=None,
        curve_client_key=None,
        shared_memory=True,
        observation_spec=None,
        action_spec=None,
    ):
        super().__init__()
        if protocol not in ("agenthive", "openpi"):
            raise ValueError(f"protocol={protocol!r}: expected 'agenthive' or 'openpi'")
        if len(out_keys) != 1:
            raise ValueError(f"out_keys={out_keys!r}: expected exactly one key, for the action")
        self.host, self.port, self.protocol = host, int(port), protocol
        self.timeout, self.ready_timeout = timeout, ready_timeout
        self.instruction = instruction
        self.curve_server_key, self.curve_client_key, self.shared_memory = curve_server_key, curve_client_key, shared_memory
        self._client = None
        self._connect()
        metadata = self._client.metadata
        self.metadata = metadata  # None for openpi servers, which announce free-form metadata
        if in_keys is None:
            if metadata is None:
                raise ValueError("openpi servers do not announce their observation names: pass in_keys={tensordict key: observation name}")
            in_keys = list(metadata.observations)
        self._obs_names = dict(in_keys) if isinstance(in_keys, dict) else {key: key for key in in_keys}
        if metadata is not None:
            missing = sorted(set(metadata.observations) - set(self._obs_names.values()))
            extra = sorted(set(self._obs_names.values()) - set(metadata.observations))
            if missing or extra:
                raise ValueError(
                    f"in_keys do not match policy {metadata.name!r} at {host}:{port}: no key for {missing}, unknown names {extra}; "
                    f"it expects {dict(metadata.observations)}"
                )
            if metadata.takes_instruction and instruction is None:
                raise ValueError(f"policy {metadata.name!r} at {host}:{port} takes a language instruction: pass instruction='...'")
            if replan_every is not None and not 1 <= replan_every <= metadata.chunk_length:
                raise ValueError(f"replan_every={replan_every}: expected 1 to chunk_length={metadata.chunk_length}")
            _check_specs(metadata, self._obs_names, observation_spec, action_spec, f"{host}:{port}")
        self.replan_every = replan_every
        self.in_keys = list(self._obs_names)
        self.out_keys = list(out_keys)
        self._sessions = None  # one episode id per batch element
        self._chunks = None  # (batch, chunk, *action_shape) actions being played
        self._steps = None  # index of the next action to play, per batch element

    def _connect(self):
        if self.protocol == "openpi":
            from agenthive.serving.openpi import OpenPIClient

            self._client = OpenPIClient(self.host, self.port, timeout=self.timeout)
            return
        self._client = PolicyClient(
            self.host, self.port, timeout=self.timeout, ready_timeout=self.ready_timeout,
            curve_server_key=self.curve_server_key, curve_client_key=self.curve_client_key, shared_memory=self.shared_memory,
        )
        expected = getattr(self, "metadata", None)
        if expected is not None and self._client.metadata != expected:
            raise MetadataMismatchError(f"the server at {self.host}:{self.port} now serves {self._client.metadata}, this module was made for {expected}")

    def reset(self):
        """Forget the action chunks and start new episodes on the next call."""
        self._end_episodes()
        self._sessions = self._chunks = self._steps = None

    def _end_episodes(self):
        """openpi servers keep an episode per connection: close those of the sessions being replaced."""
        if self.protocol == "openpi" and self._client is not None and self._sessions is not None:
            self._client.end_sessions(self._sessions)

    def forward(self, tensordict):
        if self._client is None:
            self._connect()
        batch_shape = tensordict.batch_size
        n = batch_shape.numel()
        obs = {}
        for key, name in self._obs_names.items():
            value = tensordict.get(key)
            obs[name] = value.detach().reshape(n, *value.shape[len(batch_shape):]).cpu().numpy()
        if self._sessions is None or len(self._sessions) != n:
            self._end_episodes()
            self._sessions = [uuid.uuid4().hex for _ in range(n)]
            self._chunks, self._steps = None, np.zeros(n, dtype=np.int64)
            starting = np.ones(n, dtype=bool)
        else:
            starting = np.zeros(n, dtype=bool)
        is_init = tensordict.get("is_init", None)
        if is_init is not None:
            starting |= is_init.reshape(n).cpu().numpy()
        replan_every = self.replan_every or (self.metadata.chunk_length if self.metadata is not None else None)
        replan = starting | (self._steps >= (replan_every or 1)) if self._chunks is not None else np.ones(n, dtype=bool)
        if replan.any():
            index = np.flatnonzero(replan)
            reply = self._client.act(
                {name: value[index] for name, value in obs.items()},
                sessions=[self._sessions[i] for i in index],
                reset=starting[index].tolist(),
                instruction=self.instruction,
            )
            actions = reply["actions"]
            if self._chunks is None:
                self._chunks = np.empty((n, *actions.shape[1:]), dtype=actions.dtype)
                if self.replan_every is None and self.metadata is None:  # openpi: play the whole chunk
                    self.replan_every = actions.shape[1]
            self._chunks[index] = actions
            self._steps[index] = 0
        action = self._chunks[np.arange(n), self._steps]
        self._steps += 1
        device = tensordict.device if tensordict.device is not None else torch.device("cpu")
        tensordict.set(self.out_keys[0], torch.as_tensor(action, device=device).reshape(*batch_shape, *action.shape[1:]))
        return tensordict

    def close(self):
        """Close the connection (reopened on the next call)."""
        if self._client is not None:
            self._client.close()
            self._client = None

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_client"] = None  # sockets do not cross processes: reconnect on first use
        state["_sessions"] = state["_chunks"] = state["_steps"] = None
        return state

    def __repr__(self):
        name = self.metadata.name if self.metadata is not None else "openpi policy"
        return f"{type(self).__name__}({name} at {self.protocol}://{self.host}:{self.port}, in_keys={self.in_keys}, out_keys={self.out_keys})"


def _check_specs(metadata, obs_names, observation_spec, action_spec, where):
    """Raise if the environment's specs disagree with what the server announced."""
    problems = []
    if observation_spec is not None:
        for key, name in obs_names.items():
            shape, dtype = metadata.observations[name]
            spec = observation_spec[key]
            env_dtype = str(spec.dtype).removeprefix("torch.")
            if tuple(spec.shape[len(spec.shape) - len(shape):]) != shape or len(spec.shape) < len(shape) or env_dtype != dtype:
                problems.append(f"{key!r} is {tuple(spec.shape)} {env_dtype} in the env, {name!r} is {shape} {dtype} on the server")
    if action_spec is not None:
        shape = metadata.action_shape
        if tuple(action_spec.shape[len(action_spec.shape) - len(shape):]) != shape or len(action_spec.shape) < len(shape):
            problems.append(f"the env's actions are {tuple(action_spec.shape)}, the server's {shape}")
    if problems:
        raise ValueError(f"policy {metadata.name!r} at {where} does not fit this environment: " + "; ".join(problems))
