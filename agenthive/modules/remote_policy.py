"""``RemotePolicyModule``: a TensorDict policy whose forward pass runs in a policy server.

The server may live in another Python environment (JAX, transformers) or on another
machine; this module maps TensorDict entries to the server's observation names and back,
and leaves the rest to the torch-free ``agenthive.serving.chunker.ChunkPlayer``: one request
for the whole batch, and one ``ChunkQueue`` per batch element to play the returned action
chunks (the same queues the server uses for thin clients). Each batch element is its own
episode on the server; an ``"is_init"`` entry (torchrl's ``InitTracker`` transform) restarts
the episodes that it marks. With ``protocol="openpi"`` each batch element has its own
websocket connection, since an openpi server keeps one episode per connection, and a
restarted episode gets a new one.

Synchronously (the default), a sub-env whose queue is empty asks for a new chunk and
``forward`` waits for it. With ``asynchronous=True``, a sub-env whose queue falls to
``prefetch_threshold`` of a chunk asks in the background (one batched request for all such
sub-envs, sent by a thread) and keeps playing its queue; when the reply arrives, the actions
for the steps played meanwhile are skipped and the overlap is merged by ``aggregate``.

The module holds no parameters and pickles without its connection, so multi-process
collectors can ship it to their workers, where it reconnects on first use.
"""
import threading

import numpy as np
import torch
from tensordict.nn import TensorDictModuleBase

from agenthive.modules.vla_keys import VLAKeys
from agenthive.serving.chunker import ChunkPlayer, check_player_options
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
        replan_every: (synchronous) query the server every this many steps and play the
            chunk in between; default: the whole chunk.
        protocol: ``"agenthive"`` (ZeroMQ, see ``agenthive.serving.wire``) or ``"openpi"``
            (openpi's websocket policy servers).
        curve_server_key: the server's public key file (turns on CURVE encryption).
        curve_client_key: this client's key pair file.
        shared_memory: allow the same-host shared-memory fast path.
        observation_spec: the environment's observation spec (``env.observation_spec``), to
            check the shapes and dtypes of ``in_keys`` against the server's now rather than
            at the first step.
        action_spec: the environment's action spec, to check the action shape likewise.
        asynchronous: ask for the next chunk in the background while the queue still plays.
        prefetch_threshold: (asynchronous) ask when a sub-env's queue holds this fraction of
            a chunk or less; in (0, 1].
        aggregate: (asynchronous) how a new chunk is merged with the queued actions it
            overlaps: ``"weighted_average"`` (0.3 old + 0.7 new), ``"latest_only"``,
            ``"average"``, ``"conservative"`` (keep the old) or ``f(old, new) -> merged``.
        staleness_key: if given, each action's staleness (how many steps old the
            observation behind it is) is written there, as an int64 per batch element.
        vla_keys: read torchrl's canonical VLA keys instead of ``in_keys`` (images under
            ``("observation", "image")``, ``("observation", "state")``, the instruction
            from ``"language_instruction"``, per batch or per element) and also write the
            last chunk the server returned for each element to ``("vla_action", "chunk")``:
            a ``VLAKeys`` (see ``agenthive.modules.vla_keys``), or True for its defaults.

    Attributes:
        dry_waits: (asynchronous) how many times a sub-env's queue ran dry before the
            reply arrived, so that ``forward`` waited (a missed control step on a robot);
            the first chunk of an episode is not counted.
        late_replies: (asynchronous) replies dropped because their sub-env was reset
            while they were computed.

    Raises:
        ValueError: ``in_keys`` do not cover the server's observations, an instruction is
            missing, ``replan_every`` exceeds the chunk, the specs disagree with the
            server's metadata, or the asynchronous options are out of range (a threshold
            outside (0, 1], an unknown ``aggregate``, a policy with chunks of one action).
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
        >>> prefetching = RemotePolicyModule("127.0.0.1", server.port, in_keys={"obs": "observation"}, asynchronous=True, staleness_key="staleness")
        >>> [prefetching(TensorDict({"obs": torch.zeros(2, 3)}, batch_size=[2]))["staleness"].tolist() for _ in range(3)]
        [[0, 0], [1, 1], [2, 2]]
        >>> policy.close(); prefetching.close(); server.stop(); thread.join()
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
        asynchronous=False,
        prefetch_threshold=0.5,
        aggregate="weighted_average",
        staleness_key=None,
        vla_keys=None,
    ):
        super().__init__()
        if protocol not in ("agenthive", "openpi"):
            raise ValueError(f"protocol={protocol!r}: expected 'agenthive' or 'openpi'")
        if len(out_keys) != 1:
            raise ValueError(f"out_keys={out_keys!r}: expected exactly one key, for the action")
        check_player_options(asynchronous, prefetch_threshold, aggregate, replan_every)
        self.host, self.port, self.protocol, self.timeout = host, int(port), protocol, timeout
        self.asynchronous, self.prefetch_threshold, self.aggregate = asynchronous, prefetch_threshold, aggregate
        self.staleness_key = staleness_key
        # the player calls the connection, which knows nothing of this module: no reference
        # cycle, so that an unclosed module frees its ZeroMQ socket before its context
        self._connection = _Connection(
            host, int(port), protocol, timeout=timeout, ready_timeout=ready_timeout, instruction=instruction,
            curve_server_key=curve_server_key, curve_client_key=curve_client_key, shared_memory=shared_memory,
        )
        metadata = self._connection.open()
        self.metadata = metadata  # None for openpi servers, which announce free-form metadata
        self.vla_keys = VLAKeys() if vla_keys is True else vla_keys or None
        if self.vla_keys is not None:
            if metadata is None:
                raise ValueError("vla_keys needs the observation names agenthive servers announce; openpi servers do not")
            in_keys = self.vla_keys.names(metadata)
        if in_keys is None:
            if metadata is None:
                raise ValueError("openpi servers do not announce their observation names: pass in_keys={tensordict key: observation name}")
            in_keys = list(metadata.observations)
        self._obs_names = dict(in_keys) if isinstance(in_keys, dict) else {key: key for key in in_keys}
        if metadata is not None:
            _check_metadata(metadata, self._obs_names, instruction, replan_every, f"{host}:{port}", self.vla_keys is not None)
            _check_specs(metadata, self._obs_names, observation_spec, action_spec, f"{host}:{port}")
        self.replan_every = replan_every
        self.in_keys = list(self._obs_names)
        self.out_keys = list(out_keys) + ([staleness_key] if staleness_key is not None else [])
        if self.vla_keys is not None:
            self.in_keys.append(self.vla_keys.instruction_key)
            self.out_keys.append(self.vla_keys.chunk_key)
        self._player = self._new_player()

    def _new_player(self):
        where = f"policy {self.metadata.name!r} at {self.host}:{self.port}" if self.metadata is not None else f"the openpi server at {self.host}:{self.port}"
        return ChunkPlayer(
            self._connection.act, chunk_length=self.metadata.chunk_length if self.metadata is not None else None, replan_every=self.replan_every,
            asynchronous=self.asynchronous, prefetch_threshold=self.prefetch_threshold, aggregate=self.aggregate, timeout=2 * self.timeout, where=where,
            end_sessions=self._connection.end_sessions,
        )

    @property
    def instruction(self):
        """The language instruction sent with each request (may be changed between episodes)."""
        return self._connection.instruction

    @instruction.setter
    def instruction(self, instruction):
        self._connection.instruction = instruction

    @property
    def chunk_length(self):
        """Actions per chunk (from an openpi server: known after the first reply, else None)."""
        return self._player.chunk_length

    @property
    def dry_waits(self):
        """(asynchronous) Sub-env steps that waited because the queue ran dry (see ``ChunkPlayer``)."""
        return self._player.dry_waits

    @property
    def late_replies(self):
        """(asynchronous) Replies dropped because their sub-env was reset meanwhile."""
        return self._player.late_replies

    def reset(self):
        """Forget the action chunks and start new episodes on the next call."""
        self._player.reset()

    def forward(self, tensordict):
        batch_shape = tensordict.batch_size
        n = batch_shape.numel()
        obs = self._observations(tensordict, n)
        is_init = tensordict.get("is_init", None)
        actions, staleness = self._player.step(obs, None if is_init is None else is_init.reshape(n).cpu().numpy())
        device = tensordict.device if tensordict.device is not None else torch.device("cpu")
        tensordict.set(self.out_keys[0], torch.as_tensor(actions, device=device).reshape(*batch_shape, *actions.shape[1:]))
        if self.staleness_key is not None:
            tensordict.set(self.staleness_key, torch.as_tensor(staleness, device=device).reshape(batch_shape))
        if self.vla_keys is not None:
            with self._connection.chunks_lock:
                chunks = {session: self._connection.last_chunks[session] for session in self._player.sessions}
                self._connection.last_chunks = chunks  # forget the chunks of sessions this module no longer plays
            self.vla_keys.write(tensordict, np.stack(list(chunks.values())))
        return tensordict

    def _observations(self, tensordict, n):
        """Observation name -> (n, ...) array; with ``vla_keys``, also each element's instruction."""
        if self.vla_keys is not None:
            obs = self.vla_keys.read(tensordict, self._obs_names, self.metadata)
            instructions = [text or self.instruction for text in self.vla_keys.instructions(tensordict, n)]
            obs[_INSTRUCTIONS] = np.array(instructions, dtype=object)  # sliced with the observations, read by _Connection.act
            return obs
        obs = {}
        for key, name in self._obs_names.items():
            value = tensordict.get(key)
            obs[name] = value.detach().reshape(n, *value.shape[len(tensordict.batch_size):]).cpu().numpy()
        return obs

    def close(self):
        """Stop the background requests and close the connection (reopened on the next call)."""
        self._player.close()
        self._connection.close()

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_player"] = None  # threads do not cross processes: a new player (new episodes) on arrival
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._player = self._new_player()

    def __repr__(self):
        name = self.metadata.name if self.metadata is not None else "openpi policy"
        mode = ", asynchronous" if self.asynchronous else ""
        return f"{type(self).__name__}({name} at {self.protocol}://{self.host}:{self.port}, in_keys={self.in_keys}, out_keys={self.out_keys}{mode})"


class _Connection:
    """The connection to the policy server, (re)opened on first use; pickles without it."""

    def __init__(self, host, port, protocol, *, timeout, ready_timeout, instruction, curve_server_key, curve_client_key, shared_memory):
        self.host, self.port, self.protocol, self.timeout, self.ready_timeout = host, port, protocol, timeout, ready_timeout
        self.instruction = instruction
        self.curve_server_key, self.curve_client_key, self.shared_memory = curve_server_key, curve_client_key, shared_memory
        self.client = None
        self.metadata = None  # what the server announced at the first connection
        self.last_chunks = {}  # (vla_keys) session -> the last chunk the server returned for it
        self.chunks_lock = threading.Lock()  # act() may run in the player's background thread

    def open(self):
        """Connect; returns the server's metadata (None for openpi servers)."""
        if self.protocol == "openpi":
            from agenthive.serving.openpi import OpenPIClient

            self.client = OpenPIClient(self.host, self.port, timeout=self.timeout)
            return None
        self.client = PolicyClient(
            self.host, self.port, timeout=self.timeout, ready_timeout=self.ready_timeout,
            curve_server_key=self.curve_server_key, curve_client_key=self.curve_client_key, shared_memory=self.shared_memory,
        )
        if self.metadata is not None and self.client.metadata != self.metadata:
            raise MetadataMismatchError(f"the server at {self.host}:{self.port} now serves {self.client.metadata}, this module was made for {self.metadata}")
        self.metadata = self.client.metadata
        return self.metadata

    def act(self, observations, sessions, resets):
        """One request (from the player's background thread when asynchronous)."""
        if self.client is None:
            self.open()
        instructions = observations.pop(_INSTRUCTIONS, None)
        if instructions is None:
            return self.client.act(observations, sessions=sessions, reset=resets, instruction=self.instruction)
        actions = None
        for index, instruction in _by_instruction(instructions):  # one request per instruction
            reply = self.client.act(
                {name: value[index] for name, value in observations.items()},
                sessions=[sessions[i] for i in index], reset=[resets[i] for i in index], instruction=instruction,
            )
            if actions is None:
                actions = np.empty((len(sessions), *reply["actions"].shape[1:]), dtype=reply["actions"].dtype)
            actions[index] = reply["actions"]
        with self.chunks_lock:
            self.last_chunks.update(zip(sessions, actions))
        return {"actions": actions}

    def end_sessions(self, sessions):
        """openpi servers keep an episode per connection: close those of ``sessions``."""
        if self.protocol == "openpi" and self.client is not None:
            self.client.end_sessions(sessions)

    def close(self):
        if self.client is not None:
            self.client.close()
            self.client = None

    def __getstate__(self):
        return {**self.__dict__, "client": None, "chunks_lock": None}  # sockets do not cross processes: reconnect on first use

    def __setstate__(self, state):
        self.__dict__.update(state, chunks_lock=threading.Lock())


def _check_metadata(metadata, obs_names, instruction, replan_every, where, instruction_from_data=False):
    """Raise if the module's arguments do not fit the policy the server announced."""
    missing = sorted(set(metadata.observations) - set(obs_names.values()))
    extra = sorted(set(obs_names.values()) - set(metadata.observations))
    if missing or extra:
        raise ValueError(
            f"in_keys do not match policy {metadata.name!r} at {where}: no key for {missing}, unknown names {extra}; "
            f"it expects {dict(metadata.observations)}"
        )
    if metadata.takes_instruction and instruction is None and not instruction_from_data:
        raise ValueError(f"policy {metadata.name!r} at {where} takes a language instruction: pass instruction='...'")
    if replan_every is not None and not 1 <= replan_every <= metadata.chunk_length:
        raise ValueError(f"replan_every={replan_every}: expected 1 to chunk_length={metadata.chunk_length}")


_INSTRUCTIONS = "\0instructions"  # the per-element instructions' entry among the observations handed to the player


def _by_instruction(instructions):
    """Indices of ``instructions`` grouped by value: (indices, instruction) pairs."""
    groups = {}
    for i, instruction in enumerate(instructions):
        groups.setdefault(instruction, []).append(i)
    return [(np.asarray(members), instruction) for instruction, members in groups.items()]


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
