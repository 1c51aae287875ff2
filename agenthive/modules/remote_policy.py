"""``RemotePolicyModule``: a TensorDict policy whose forward pass runs in a policy server.

The server may live in another Python environment (JAX, transformers) or on another
machine; this module maps TensorDict entries to the server's observation names, sends the
whole batch in one request, and plays back the returned action chunks with one
``agenthive.serving.chunker.ChunkQueue`` per batch element (the same queues the server uses
for thin clients). Each batch element is its own episode on the server; an ``"is_init"``
entry (torchrl's ``InitTracker`` transform) restarts the episodes that it marks.

Synchronously (the default), a sub-env whose queue is empty asks for a new chunk and
``forward`` waits for it. With ``asynchronous=True``, a sub-env whose queue falls to
``prefetch_threshold`` of a chunk asks in the background (one batched request for all such
sub-envs, sent by a thread) and keeps playing its queue; when the reply arrives, the actions
for the steps played meanwhile are skipped and the overlap is merged by ``aggregate``.

The module holds no parameters and pickles without its connection, so multi-process
collectors can ship it to their workers, where it reconnects on first use.
"""
import queue
import threading
import uuid

import numpy as np
import torch
from tensordict.nn import TensorDictModuleBase

from agenthive.serving.chunker import ActionChunker, aggregate_function
from agenthive.serving.client import MetadataMismatchError, PolicyClient, PolicyTimeoutError


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
    ):
        super().__init__()
        if protocol not in ("agenthive", "openpi"):
            raise ValueError(f"protocol={protocol!r}: expected 'agenthive' or 'openpi'")
        if len(out_keys) != 1:
            raise ValueError(f"out_keys={out_keys!r}: expected exactly one key, for the action")
        _check_asynchronous_options(asynchronous, prefetch_threshold, aggregate, replan_every)
        self.host, self.port, self.protocol = host, int(port), protocol
        self.timeout, self.ready_timeout = timeout, ready_timeout
        self.instruction = instruction
        self.curve_server_key, self.curve_client_key, self.shared_memory = curve_server_key, curve_client_key, shared_memory
        self.asynchronous, self.prefetch_threshold, self.aggregate = asynchronous, prefetch_threshold, aggregate
        self.staleness_key = staleness_key
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
            _check_metadata(metadata, self._obs_names, instruction, replan_every, asynchronous, f"{host}:{port}")
            _check_specs(metadata, self._obs_names, observation_spec, action_spec, f"{host}:{port}")
        self.replan_every = replan_every
        self.chunk_length = metadata.chunk_length if metadata is not None else None  # openpi: known at the first reply
        self.in_keys = list(self._obs_names)
        self.out_keys = list(out_keys) + ([staleness_key] if staleness_key is not None else [])
        self.dry_waits = self.late_replies = 0
        self._prefetcher = None
        self._forget_episodes()

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

    def _forget_episodes(self):
        self._sessions = None  # one episode id per batch element
        self._chunker = None  # one ChunkQueue per batch element
        self._generations = None  # per batch element: changes at each reset, so that late replies are recognised
        self._pending = None  # per batch element: a background request is out for it

    def reset(self):
        """Forget the action chunks and start new episodes on the next call."""
        self._forget_episodes()

    def forward(self, tensordict):
        batch_shape = tensordict.batch_size
        n = batch_shape.numel()
        obs = {}
        for key, name in self._obs_names.items():
            value = tensordict.get(key)
            obs[name] = value.detach().reshape(n, *value.shape[len(batch_shape):]).cpu().numpy()
        is_init = tensordict.get("is_init", None)
        starting = self._start_episodes(n, None if is_init is None else is_init.reshape(n).cpu().numpy())
        if self.asynchronous:
            self._fill_asynchronously(obs, starting)
        else:
            empty = np.flatnonzero(self._chunker.remaining == 0)
            if len(empty):
                reply = self._act(*self._request(obs, empty, starting[empty]))
                self._receive(self._asked(empty), reply)
        actions, staleness = self._chunker.pop()
        device = tensordict.device if tensordict.device is not None else torch.device("cpu")
        tensordict.set(self.out_keys[0], torch.as_tensor(actions, device=device).reshape(*batch_shape, *actions.shape[1:]))
        if self.staleness_key is not None:
            tensordict.set(self.staleness_key, torch.as_tensor(staleness, device=device).reshape(batch_shape))
        return tensordict

    def _start_episodes(self, n, is_init):
        """Which batch elements start an episode now; their queues are emptied."""
        if self._sessions is None or len(self._sessions) != n:
            self._sessions = [uuid.uuid4().hex for _ in range(n)]
            self._chunker = ActionChunker(n, self.aggregate if self.asynchronous else "latest_only")
            self._generations = np.array([uuid.uuid4().int >> 65 for _ in range(n)], dtype=np.int64)
            self._pending = np.zeros(n, dtype=bool)
            return np.ones(n, dtype=bool)
        starting = np.zeros(n, dtype=bool) if is_init is None else is_init.astype(bool)
        index = np.flatnonzero(starting)
        self._chunker.reset(index)
        self._generations[index] += 1  # a reply still out for the old episode will be dropped
        self._pending[index] = False
        return starting

    def _request(self, obs, index, resets):
        """The arguments of one request for the batch elements ``index``."""
        observations = {name: value[index] for name, value in obs.items()}  # copies: the request may leave later
        return observations, [self._sessions[i] for i in index], resets.tolist()

    def _asked(self, index):
        """What a reply to a request for ``index`` is checked against when it arrives."""
        return index, self._generations[index].copy(), self._chunker.steps[index]

    def _act(self, observations, sessions, resets):
        if self._client is None:
            self._connect()
        return self._client.act(observations, sessions=sessions, reset=resets, instruction=self.instruction)

    def _receive(self, asked, reply):
        """Queue the chunks of ``reply`` for the elements still in the episode they were asked for."""
        index, generations, obs_steps = asked
        actions = reply["actions"]
        if self.chunk_length is None:  # openpi: chunk length known now
            if self.asynchronous and actions.shape[1] < 2:
                raise ValueError(f"asynchronous=True needs chunks of 2 or more actions: the openpi server at {self.host}:{self.port} returns 1")
            self.chunk_length = actions.shape[1]
        keep = np.flatnonzero(self._current(index, generations))
        self.late_replies += len(index) - len(keep)
        self._pending[index[keep]] = False
        self._chunker.push(index[keep], actions[keep], obs_steps[keep], keep=self.replan_every)

    def _current(self, index, generations):
        """Which of the elements ``index`` are still in the episodes ``generations``."""
        if self._generations is None:
            return np.zeros(len(index), dtype=bool)
        inside = index < len(self._generations)
        return inside & (self._generations[np.where(inside, index, 0)] == generations)

    # -- asynchronous chunks --------------------------------------------------------------------

    def _fill_asynchronously(self, obs, starting):
        """Send one background request for the elements that need one; wait only for those
        whose queue is empty."""
        self._collect(block=False)
        remaining = self._chunker.remaining
        threshold = 0 if self.chunk_length is None else self.prefetch_threshold * self.chunk_length
        self._prefetch(obs, np.flatnonzero(~self._pending & (remaining <= threshold)), starting)
        empty = remaining == 0
        self.dry_waits += int(np.count_nonzero(empty & (self._chunker.steps > 0)))
        while empty.any():
            self._collect(block=True)
            empty = self._chunker.remaining == 0
            # a chunk can arrive entirely in the past, or for an episode that has since ended: ask again
            self._prefetch(obs, np.flatnonzero(empty & ~self._pending), starting)

    def _prefetch(self, obs, index, starting):
        if not len(index):
            return
        if self._prefetcher is None:
            self._prefetcher = _Prefetcher(self._act)
        self._pending[index] = True
        self._prefetcher.submit(self._asked(index), self._request(obs, index, starting[index]))

    def _collect(self, block):
        """Queue the replies that arrived (waiting for one if ``block``); raise the first
        failed request's error after queueing the others."""
        if self._prefetcher is None:
            return
        failure = None
        for asked, reply in self._prefetcher.replies(block, self.timeout * 2):
            if isinstance(reply, Exception):
                index, generations, _ = asked
                self._pending[index[self._current(index, generations)]] = False  # the next forward asks again
                failure = failure or reply
            else:
                self._receive(asked, reply)
        if failure is not None:
            raise failure

    def close(self):
        """Stop the background requests and close the connection (reopened on the next call)."""
        if self._prefetcher is not None:
            self._prefetcher.stop()
            self._prefetcher = None
            self._pending = None if self._pending is None else np.zeros_like(self._pending)
        if self._client is not None:
            self._client.close()
            self._client = None

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_client"] = state["_prefetcher"] = None  # sockets and threads do not cross processes: reconnect on first use
        state["_sessions"] = state["_chunker"] = state["_generations"] = state["_pending"] = None
        return state

    def __repr__(self):
        name = self.metadata.name if self.metadata is not None else "openpi policy"
        mode = ", asynchronous" if self.asynchronous else ""
        return f"{type(self).__name__}({name} at {self.protocol}://{self.host}:{self.port}, in_keys={self.in_keys}, out_keys={self.out_keys}{mode})"


class _Prefetcher:
    """A thread that sends requests one after the other and hands back their replies.

    ``act(*request)`` runs in the thread (the connection is used by it alone while it
    runs); an exception it raises is handed back in place of the reply.
    """

    def __init__(self, act):
        self._act = act
        self._requests = queue.Queue()
        self._replies = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="remote-policy-prefetch", daemon=True)
        self._thread.start()

    def _run(self):
        while (job := self._requests.get()) is not None:
            asked, request = job
            try:
                self._replies.put((asked, self._act(*request)))
            except Exception as err:  # raised in forward, in the caller's thread
                self._replies.put((asked, err))

    def submit(self, asked, request):
        self._requests.put((asked, request))

    def replies(self, block, timeout):
        """The (asked, reply or exception) pairs that arrived; with ``block``, waits up to
        ``timeout`` for at least one."""
        arrived = []
        try:
            if block:
                arrived.append(self._replies.get(timeout=timeout))
            while True:
                arrived.append(self._replies.get_nowait())
        except queue.Empty:
            if block and not arrived:
                raise PolicyTimeoutError(f"no reply from the background request thread within {timeout:.1f} s") from None
        return arrived

    def stop(self):
        self._requests.put(None)
        self._thread.join()


def _check_asynchronous_options(asynchronous, prefetch_threshold, aggregate, replan_every):
    if not 0 < prefetch_threshold <= 1:
        raise ValueError(f"prefetch_threshold={prefetch_threshold!r}: expected a fraction of the chunk in (0, 1]")
    aggregate_function(aggregate)
    if asynchronous and replan_every is not None:
        raise ValueError(f"replan_every={replan_every} is for synchronous playback: with asynchronous=True, prefetch_threshold decides when to ask")


def _check_metadata(metadata, obs_names, instruction, replan_every, asynchronous, where):
    """Raise if the module's arguments do not fit the policy the server announced."""
    missing = sorted(set(metadata.observations) - set(obs_names.values()))
    extra = sorted(set(obs_names.values()) - set(metadata.observations))
    if missing or extra:
        raise ValueError(
            f"in_keys do not match policy {metadata.name!r} at {where}: no key for {missing}, unknown names {extra}; "
            f"it expects {dict(metadata.observations)}"
        )
    if metadata.takes_instruction and instruction is None:
        raise ValueError(f"policy {metadata.name!r} at {where} takes a language instruction: pass instruction='...'")
    if replan_every is not None and not 1 <= replan_every <= metadata.chunk_length:
        raise ValueError(f"replan_every={replan_every}: expected 1 to chunk_length={metadata.chunk_length}")
    if asynchronous and metadata.chunk_length < 2:
        raise ValueError(f"asynchronous=True needs chunks of 2 or more actions: policy {metadata.name!r} at {where} has chunk_length={metadata.chunk_length}")


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
