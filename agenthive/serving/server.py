"""``PolicyServer``: serves one policy to many clients over ZeroMQ, batching their requests.

One thread owns the ROUTER socket and the policy; ZeroMQ's own I/O thread queues requests
while the policy runs. Each turn of the loop takes every request already waiting, then, if
clients that were active in the last second have not all asked yet, waits up to
``max_wait_ms`` for them, and runs the observations together through ``act_batch`` (at most
``max_batch`` at a time). A lone client therefore never waits for a batch, and 16 clients
stepping in lockstep share one forward pass.

A policy that returns action chunks can also play them out itself, for clients too thin to
(a robot controller asking for one action per tick): an ``act`` request with
``replan_every=k`` gets one action per session, taken from that session's queue, and the
policy runs only for sessions whose queue is empty (every ``k`` steps), that reset, or whose
instruction changed; the reply's ``replanned`` says which. ``RemotePolicyModule`` plays chunks
on its own side instead, which saves the round trips of the queued steps.

Every request is checked against the protocol and the policy's metadata before it reaches
the policy; a bad request gets an error reply naming what was wrong and nothing else
happens. A batch in which the policy raises is retried item by item so that only the
request that caused it gets the error.

Example:
    >>> import threading
    >>> from agenthive.serving import PolicyClient
    >>> from agenthive.serving.policies.mlp import MLPPolicy
    >>> server = PolicyServer(MLPPolicy(obs_dim=4, action_dim=2), port=0)
    >>> endpoint = server.bind()  # port 0 picked a free port: server.port
    >>> thread = threading.Thread(target=server.serve_forever, daemon=True); thread.start()
    >>> client = PolicyClient("127.0.0.1", server.port)
    >>> client.metadata.action_shape
    (2,)
    >>> client.act({"observation": np.zeros((3, 4), np.float32)})["actions"].shape
    (3, 1, 2)
    >>> client.close(); server.stop(); thread.join()
"""
import collections
import logging
import math
import threading
import time
import traceback

import numpy as np
import zmq

from agenthive.serving import shared_memory, wire
from agenthive.serving.router import RouterServer

logger = logging.getLogger(__name__)

_ACTIVE_WINDOW_S = 1.0  # a session that acted this recently is expected to act again soon
_MAX_SESSIONS_PER_REQUEST = 4096


class _Session:
    __slots__ = ("episode", "instruction", "last_seen", "queue")

    def __init__(self, episode, instruction, now):
        self.episode = episode
        self.instruction = instruction
        self.last_seen = now
        self.queue = collections.deque()  # actions still to play of the last chunk (replan_every requests)


class _Request:
    """A validated ``act`` request: who asked, and its observations split per session."""

    __slots__ = ("identity", "id", "sessions", "observations", "replan_every", "outputs", "replanned", "error")

    def __init__(self, identity, request_id, sessions, observations, replan_every):
        self.identity = identity
        self.id = request_id
        self.sessions = sessions
        self.observations = observations
        self.replan_every = replan_every  # None: whole chunks; k: one action per step from each session's queue
        self.outputs = [None] * len(sessions)
        self.replanned = [replan_every is None or not session.queue for session in sessions]
        self.error = None


class PolicyServer(RouterServer):
    """Serves a ``Policy`` on ``tcp://host:port`` (the socket and its options: ``RouterServer``).

    Args:
        policy: the ``agenthive.serving.Policy`` to serve; its ``initialize()`` runs in a
            thread once the socket is bound, and clients are told ``ready: False`` until it
            returns.
        host: address to bind; loopback unless you mean to expose the policy.
        port: TCP port; 0 picks a free one (read it from ``port`` after ``bind()``).
        max_batch: most observations per ``act_batch`` call; 1 turns batching off.
        max_wait_ms: longest a request waits for requests of other recently active clients.
        max_message_bytes: larger requests are refused (and ZeroMQ drops peers that send
            larger frames).
        curve_secret_key: path of the server's CURVE key pair file
            (``zmq.auth.create_certificates``); with it, all traffic is encrypted.
        curve_authorized_keys: folder of public key files of the clients allowed in; None
            admits any client that knows the server's public key.
        session_ttl_s: an episode nobody acted in for this long is forgotten.
        max_sessions: most episodes kept; beyond it the least recently used is forgotten.
    """

    serves = "policy"

    def __init__(
        self,
        policy,
        *,
        host="127.0.0.1",
        port=8080,
        max_batch=16,
        max_wait_ms=2.0,
        max_message_bytes=64 << 20,
        curve_secret_key=None,
        curve_authorized_keys=None,
        session_ttl_s=600.0,
        max_sessions=100_000,
    ):
        if max_batch < 1:
            raise ValueError(f"max_batch={max_batch}: expected at least 1")
        super().__init__(
            host=host,
            port=port,
            max_message_bytes=max_message_bytes,
            curve_secret_key=curve_secret_key,
            curve_authorized_keys=curve_authorized_keys,
        )
        self.policy = policy
        self.max_batch = max_batch
        self.max_wait_ms = max_wait_ms
        self.session_ttl_s = session_ttl_s
        self.max_sessions = max_sessions
        self._sessions = collections.OrderedDict()  # session id -> _Session, least recently used first
        self._shared_memory = shared_memory.SharedMemoryReader() if shared_memory.available() else None
        self._ready = threading.Event()
        self._init_error = None
        self._metadata_wire = None
        self._metadata = None
        self._expected = None  # observation name -> (shape, numpy dtype), once ready

    def serve_forever(self):
        """Initialize the policy in the background and answer requests until ``stop()``."""
        if self._socket is None:
            self.bind()
        threading.Thread(target=self._initialize, name="policy-initialize", daemon=True).start()
        super().serve_forever()

    def _serve(self, frames):
        requests = self._gather(frames)
        if requests:
            self._run(requests)

    def _sweep(self, now):
        self._forget_idle_sessions(now)
        if self._shared_memory is not None:
            self._shared_memory.sweep(now)  # unmap the segments of clients that left

    def _closed(self):
        if self._shared_memory is not None:
            self._shared_memory.close()

    # -- initialization ---------------------------------------------------------------------

    def _initialize(self):
        try:
            self.policy.initialize()
            self._metadata = self.policy.metadata
            self._metadata_wire = self._metadata.to_wire()
            self._expected = {key: (shape, np.dtype(dtype)) for key, (shape, dtype) in self._metadata.observations.items()}
        except Exception as err:  # reported to every client that asks, instead of dying silently
            self._init_error = f"{type(err).__name__}: {err}"
            logger.error("policy %s failed to initialize:\n%s", type(self.policy).__name__, traceback.format_exc())
            return
        self._ready.set()
        logger.info("policy %r ready on %s", self._metadata.name, self.endpoint)

    # -- receiving ----------------------------------------------------------------------------

    def _gather(self, frames):
        """Handle ``frames`` and the requests waiting behind them (answering control messages
        at once); returns the act requests."""
        requests = []
        items = self._take(frames, requests, 0)
        items = self._drain(requests, items)
        if not requests or self.max_batch == 1:
            return requests
        now = time.monotonic()
        expected = min(self.max_batch, self._recently_active(now))
        deadline = now + self.max_wait_ms / 1000
        while items < expected:
            remaining_ms = (deadline - time.monotonic()) * 1000
            if remaining_ms <= 0 or not self._socket.poll(max(1, math.ceil(remaining_ms))):
                break
            items = self._drain(requests, items)
        return requests

    def _recently_active(self, now):
        since, count = now - _ACTIVE_WINDOW_S, 0
        for session in reversed(self._sessions.values()):  # most recent first: stops at the first idle one
            if session.last_seen < since:
                break
            count += 1
        return count

    def _drain(self, requests, items):
        """Take the requests already waiting, up to a full batch; returns the item count."""
        while items < self.max_batch and self._socket.get(zmq.EVENTS) & zmq.POLLIN:  # cheaper than catching zmq.Again
            items = self._take(self._socket.recv_multipart(copy=False), requests, items)
        return items

    def _take(self, frames, requests, items):
        try:
            request = self._handle(frames)
        except Exception:  # a bug here must not take the server down for every other client
            logger.exception("handling a request failed")
            self._refuse(frames, wire.ERROR_BAD_MESSAGE, "the server failed on this request (a server bug; see its log)")
            return items
        if request is not None:
            requests.append(request)
            items += len(request.sessions)
        return items

    def _handle(self, frames):
        received = self._receive(frames)
        if received is None:
            return None
        identity, message, local = received
        request_id = message.get("id")
        kind = message["type"]
        if kind == "act":
            return self._parse_act(identity, request_id, message)
        if kind == "hello":
            self._reply(identity, self._hello(message, request_id, local))
        elif kind == "health":
            self._reply(identity, self._health(request_id))
        else:
            self._reply(identity, wire.error(wire.ERROR_BAD_MESSAGE, f"unknown request type {kind!r}: expected 'hello', 'health' or 'act'", request_id))
        return None

    def _hello(self, message, request_id, local):
        probe = message.get("shm_probe")
        shm = False
        if local and isinstance(probe, list) and len(probe) == 3 and isinstance(probe[2], bytes):  # [segment, size, token]
            try:
                shm = bytes(self._shared_memory.view(probe[0], probe[1], 0, len(probe[2]))) == probe[2]
            except ValueError as err:
                logger.debug("no shared memory for a client: %s", err)
        return {
            "v": wire.VERSION,
            "type": "hello",
            "id": request_id,
            "serves": self.serves,
            "server": self.instance,
            "ready": self._ready.is_set(),
            "error": self._init_error,
            "metadata": self._metadata_wire,
            "shm": shm,
            "max_message_bytes": self.max_message_bytes,
        }

    def _health(self, request_id):
        return {
            "v": wire.VERSION,
            "type": "health",
            "id": request_id,
            "server": self.instance,
            "ready": self._ready.is_set(),
            "error": self._init_error,
            "sessions": len(self._sessions),
            "shm_mapped_bytes": self._shared_memory.mapped_bytes if self._shared_memory is not None else 0,
            "uptime_s": time.monotonic() - self._started,
        }

    def _parse_act(self, identity, request_id, message):
        def refuse(code, text):
            self._reply(identity, wire.error(code, text, request_id))

        if not self._ready.is_set():
            state = f"failed to initialize ({self._init_error})" if self._init_error else "is still initializing"
            return refuse(wire.ERROR_NOT_READY, f"policy {type(self.policy).__name__} {state}")
        sessions, obs = message.get("sessions"), message.get("obs")
        if not (isinstance(sessions, list) and 0 < len(sessions) <= _MAX_SESSIONS_PER_REQUEST and all(isinstance(s, str) for s in sessions)):
            return refuse(wire.ERROR_BAD_MESSAGE, f"'sessions' must be a list of 1 to {_MAX_SESSIONS_PER_REQUEST} strings, one per batch element")
        batch = len(sessions)
        resets = message.get("reset") or [False] * batch
        instruction = message.get("instruction")
        if not (isinstance(resets, list) and len(resets) == batch):
            return refuse(wire.ERROR_BAD_MESSAGE, f"'reset' must be a list of {batch} bools, one per session")
        if not (instruction is None or isinstance(instruction, str)):
            return refuse(wire.ERROR_BAD_MESSAGE, f"'instruction' is a {type(instruction).__name__}: expected a string or nil")
        if not isinstance(obs, dict):
            return refuse(wire.ERROR_BAD_MESSAGE, f"'obs' is a {type(obs).__name__}: expected a map of observation name -> array")
        replan_every, chunk_length = message.get("replan_every"), self._metadata.chunk_length
        if replan_every is not None and not (type(replan_every) is int and 1 <= replan_every <= chunk_length):
            return refuse(
                wire.ERROR_BAD_MESSAGE,
                f"'replan_every' is {replan_every!r}: expected nil (whole chunks) or an int from 1 to the policy's chunk length {chunk_length}",
            )
        names = [key for key in obs if not isinstance(key, str)]
        if names:
            return refuse(wire.ERROR_BAD_MESSAGE, f"observation names must be strings: got {', '.join(map(repr, names))}")
        problem = _check_observations(obs, self._expected, batch)
        if problem:
            return refuse(wire.ERROR_BAD_OBSERVATION, f"policy {self._metadata.name!r}: {problem}")
        now = time.monotonic()
        episodes = []
        for session_id, reset in zip(sessions, resets):
            session = self._sessions.get(session_id)
            if session is None or reset or session.instruction != instruction:
                try:
                    session = _Session(self.policy.reset(instruction), instruction, now)
                except Exception as err:
                    return refuse(wire.ERROR_POLICY, f"{type(self.policy).__name__}.reset raised {type(err).__name__}: {err}")
                self._sessions[session_id] = session
                if len(self._sessions) > self.max_sessions:
                    self._sessions.popitem(last=False)
            self._sessions.move_to_end(session_id)
            session.last_seen = now
            episodes.append(session)
        observations = [{key: value[i] for key, value in obs.items()} for i in range(batch)]
        return _Request(identity, request_id, episodes, observations, replan_every)

    # -- acting -------------------------------------------------------------------------------

    def _run(self, requests):
        # the policy runs for every item except those whose session still has queued actions
        items = [(request, i) for request in requests for i in range(len(request.sessions)) if request.replanned[i]]
        for start in range(0, len(items), self.max_batch):
            chunk = items[start : start + self.max_batch]
            try:
                outputs = self._act([r.observations[i] for r, i in chunk], [r.sessions[i].episode for r, i in chunk])
            except Exception:  # find the culprit: run each item alone
                for request, i in chunk:
                    try:
                        request.outputs[i] = self._act([request.observations[i]], [request.sessions[i].episode])[0]
                    except Exception as err:
                        request.error = f"{type(self.policy).__name__} raised {type(err).__name__}: {err}"
                continue
            for (request, i), output in zip(chunk, outputs):
                request.outputs[i] = output
        for request in requests:
            if request.error is None and request.replan_every is not None:
                self._play_queues(request)
            if request.error is None:
                try:
                    reply = {"v": wire.VERSION, "type": "act", "id": request.id, "server": self.instance}
                    reply.update({key: np.stack([out[key] for out in request.outputs]) for key in request.outputs[0]})
                    if request.replan_every is not None:
                        reply["replanned"] = request.replanned
                except Exception as err:
                    request.error = f"outputs of {type(self.policy).__name__} cannot be stacked across the batch: {err}"
            if request.error is not None:
                reply = wire.error(wire.ERROR_POLICY, request.error, request.id)
            self._reply(request.identity, reply)

    @staticmethod
    def _play_queues(request):
        """Each session's next action: a new chunk's first ``replan_every`` actions are queued."""
        for i, session in enumerate(request.sessions):
            if request.replanned[i]:
                session.queue.clear()
                session.queue.extend(request.outputs[i]["actions"][: request.replan_every])
            request.outputs[i] = {"actions": session.queue.popleft()[None]}

    def _act(self, observations, episodes):
        if len(observations) == 1:
            outputs = [self.policy.act(observations[0], episodes[0])]
        else:
            outputs = self.policy.act_batch(observations, episodes)
        if len(outputs) != len(observations):
            raise ValueError(f"act_batch returned {len(outputs)} outputs for {len(observations)} observations")
        expected = (self._metadata.chunk_length, *self._metadata.action_shape)
        checked = []
        for output in outputs:
            output = {key: np.asarray(value) for key, value in output.items()}
            actions = output.get("actions")
            if actions is None or actions.shape != expected:
                shape = None if actions is None else actions.shape
                raise ValueError(f"returned actions of shape {shape}; its metadata promises (chunk_length, *action_shape) = {expected}")
            output["actions"] = actions.astype(self._metadata.action_dtype, copy=False)
            checked.append(output)
        return checked

    def _forget_idle_sessions(self, now):
        while self._sessions and now - next(iter(self._sessions.values())).last_seen > self.session_ttl_s:
            self._sessions.popitem(last=False)


def _check_observations(obs, expected, batch):
    """Why ``obs`` does not match the metadata, or None when it does."""
    if obs.keys() != expected.keys():
        missing, extra = sorted(expected.keys() - obs.keys()), sorted(obs.keys() - expected.keys())
        return f"observation names differ: missing {missing}, unexpected {extra}; expected exactly {sorted(expected)}"
    for key, (shape, dtype) in expected.items():
        value = obs[key]
        if not isinstance(value, np.ndarray):
            return f"observation {key!r} is a {type(value).__name__}: expected an array"
        if value.shape != (batch, *shape) or value.dtype != dtype:
            return f"observation {key!r} has shape {value.shape} and dtype {value.dtype}: expected ({batch}, *{shape}) {dtype} for a batch of {batch}"
    return None

