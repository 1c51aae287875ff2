"""Action chunk playback: one queue of actions per episode, numpy only.

A chunking policy predicts ``chunk_length`` actions from one observation. Whoever plays them
(``RemotePolicyModule`` for each sub-env, ``PolicyServer`` for each session of a thin client)
keeps a ``ChunkQueue`` per episode: ``push`` a chunk with the step of the observation it
was predicted from, ``pop`` one action per step, ask again when ``remaining`` is low.

Each queue counts the steps it played, so a chunk that arrives late (asynchronous
inference: the env kept acting while the policy ran) lines up with time: the actions for
the steps already played are skipped, and where the new chunk overlaps actions still queued
from the previous one, the two are merged by the queue's ``aggregate`` rule (LeRobot's async
inference names, see ``AGGREGATES``). ``pop`` also says how stale each action is: how many
steps old the observation behind it is. ``ChunkPlayer`` plays a policy for a batch of
episodes with these queues, synchronously or asking for the next chunk in the background.

Example:
    >>> episode = ChunkQueue(aggregate="weighted_average")
    >>> episode.push(np.arange(4.0)[:, None], obs_step=0)
    >>> [episode.pop()[0].item() for _ in range(3)]
    [0.0, 1.0, 2.0]
    >>> episode.push(np.full((4, 1), 10.0), obs_step=1)  # predicted at step 1: skip 2 played steps
    >>> episode.pop()  # step 3: 0.3 * 3 + 0.7 * 10, from the observation of step 1
    (array([7.9]), 2)
    >>> episode.remaining
    1
"""
import logging
import queue
import threading
import uuid

import numpy as np

logger = logging.getLogger(__name__)


def _weighted_average(old, new):
    return 0.3 * old + 0.7 * new


def _latest_only(old, new):
    return new


def _average(old, new):
    return 0.5 * (old + new)


def _conservative(old, new):
    return old


AGGREGATES = {
    "weighted_average": _weighted_average,  # 0.3 * old + 0.7 * new
    "latest_only": _latest_only,
    "average": _average,
    "conservative": _conservative,  # keep what was planned; the new chunk only extends it
}


def aggregate_function(aggregate):
    """The merge rule named ``aggregate`` (a key of ``AGGREGATES``), or ``aggregate`` itself
    if callable: ``f(old, new) -> merged``, arrays of shape (overlap, *action_shape)."""
    if callable(aggregate):
        return aggregate
    if aggregate not in AGGREGATES:
        raise ValueError(f"aggregate={aggregate!r}: expected one of {sorted(AGGREGATES)} or a callable f(old, new) -> merged")
    return AGGREGATES[aggregate]


class ChunkQueue:
    """The actions still to play in one episode.

    Args:
        aggregate: how overlapping actions of the queued and of a new chunk are merged
            (see ``aggregate_function``); ``"latest_only"`` replaces them.
    """

    __slots__ = ("step", "_merge", "_actions", "_origins", "_start")

    def __init__(self, aggregate="latest_only"):
        self._merge = aggregate_function(aggregate)
        self.reset()

    def reset(self):
        """Forget the queued actions and start counting steps from 0 (a new episode)."""
        self.step = 0  # the episode step of the next action to play
        self._actions = None  # actions for the steps [_start, _start + len(_actions))
        self._origins = None  # the step of the observation behind each of them
        self._start = 0

    @property
    def remaining(self):
        """How many queued actions are left to play."""
        return 0 if self._actions is None else len(self._actions) - (self.step - self._start)

    def push(self, chunk, obs_step, keep=None):
        """Queue ``chunk``, predicted from the observation of step ``obs_step``.

        Its first ``step - obs_step`` actions are skipped (those steps were played while the
        policy ran), and at most the first ``keep`` actions of the chunk are used.
        """
        if not 0 <= obs_step <= self.step:
            raise ValueError(f"obs_step={obs_step}: expected a step already reached, 0 to {self.step}")
        chunk = np.asarray(chunk)[:keep]
        new = chunk[self.step - obs_step :]
        origins = np.full(len(new), obs_step, dtype=np.int64)
        overlap = min(self.remaining, len(new))
        if overlap:
            offset = self.step - self._start
            old, old_origins = self._actions[offset : offset + overlap], self._origins[offset : offset + overlap]
            merged = np.asarray(self._merge(old, new[:overlap]), dtype=new.dtype)
            if merged.shape != old.shape:
                raise ValueError(f"aggregate returned shape {merged.shape} for overlaps of shape {old.shape}: expected the same shape")
            new = np.concatenate([merged, new[overlap:]])
            if self._merge is _conservative:  # the kept actions still come from the older observation
                origins[:overlap] = old_origins
        self._actions, self._origins, self._start = new, origins, self.step

    def pop(self):
        """The action for the current step and its staleness (steps since its observation)."""
        if self.remaining <= 0:
            raise IndexError(f"no action queued for step {self.step}: push a chunk first")
        offset = self.step - self._start
        self.step += 1
        return self._actions[offset], self.step - 1 - int(self._origins[offset])


class ActionChunker:
    """One ``ChunkQueue`` per batch element (sub-env), played in lockstep.

    Args:
        batch_size: number of queues.
        aggregate: merge rule of the queues (see ``ChunkQueue``).

    Example:
        >>> chunker = ActionChunker(2)
        >>> chunker.push([0, 1], np.arange(6.0).reshape(2, 3, 1), obs_steps=[0, 0], keep=2)
        >>> actions, staleness = chunker.pop()
        >>> actions[:, 0].tolist(), staleness.tolist()
        ([0.0, 3.0], [0, 0])
        >>> chunker.pop()[1].tolist(), chunker.remaining.tolist()
        ([1, 1], [0, 0])
    """

    def __init__(self, batch_size, aggregate="latest_only"):
        self.queues = [ChunkQueue(aggregate) for _ in range(batch_size)]

    def __len__(self):
        return len(self.queues)

    @property
    def remaining(self):
        return np.array([queue.remaining for queue in self.queues], dtype=np.int64)

    @property
    def steps(self):
        return np.array([queue.step for queue in self.queues], dtype=np.int64)

    def reset(self, indices):
        for i in indices:
            self.queues[i].reset()

    def push(self, indices, chunks, obs_steps, keep=None):
        """Queue ``chunks[j]`` in queue ``indices[j]``, predicted at step ``obs_steps[j]``."""
        for i, chunk, obs_step in zip(indices, chunks, obs_steps):
            self.queues[i].push(chunk, int(obs_step), keep)

    def pop(self):
        """The next action of every queue, stacked, and their staleness."""
        popped = [queue.pop() for queue in self.queues]
        return np.stack([action for action, _ in popped]), np.array([staleness for _, staleness in popped], dtype=np.int64)


def check_player_options(asynchronous, prefetch_threshold, aggregate, replan_every):
    """Raise ``ValueError`` for ``ChunkPlayer`` options out of range (before connecting)."""
    if not 0 < prefetch_threshold <= 1:
        raise ValueError(f"prefetch_threshold={prefetch_threshold!r}: expected a fraction of the chunk in (0, 1]")
    aggregate_function(aggregate)
    if asynchronous and replan_every is not None:
        raise ValueError(f"replan_every={replan_every} is for synchronous playback: with asynchronous=True, prefetch_threshold decides when to ask")


class ChunkPlayer:
    """Plays a chunking policy for a batch of episodes: one observation in, one action out,
    per batch element and step; numpy only (``RemotePolicyModule`` is its TensorDict face).

    Each element is an episode with its own id (``sessions``) and ``ChunkQueue``. An element
    whose queue is empty asks ``act`` for a chunk, and ``step`` waits for it. With
    ``asynchronous``, an element whose queue holds ``prefetch_threshold`` of a chunk or less
    asks in the background: one request for all such elements, sent by a thread, while
    ``step`` goes on playing the queues; the reply's chunks are pushed with the step of the
    observation they came from, so the steps played meanwhile are skipped and the overlap is
    merged by ``aggregate``.

    Args:
        act: ``act(observations, sessions, resets) -> {"actions": (k, chunk, *action_shape)}``,
            one request for ``k`` elements (called from the background thread when
            asynchronous: nothing else may use its connection meanwhile).
        chunk_length: actions per chunk, or None to learn it from the first reply.
        replan_every: (synchronous) play at most this many actions of each chunk.
        asynchronous: ask for the next chunk in the background.
        prefetch_threshold: (asynchronous) ask when the queue holds this fraction of a chunk
            or less; in (0, 1].
        aggregate: (asynchronous) the merge rule (see ``aggregate_function``).
        timeout: seconds ``step`` waits for a background reply before raising ``TimeoutError``.
        where: the policy and its address, for errors.
        end_sessions: optional ``end_sessions(sessions)``, called with the sessions this
            player stops using (``reset``, a new batch size); in the background thread
            when asynchronous, after the requests sent before.

    Attributes:
        dry_waits: (asynchronous) element steps whose queue was empty before the reply
            arrived, so that ``step`` waited; the first chunk of an episode is not counted.
        late_replies: (asynchronous) element replies dropped because the element was reset
            while they were computed.

    Example:
        >>> def act(observations, sessions, resets):  # a chunk of 4: the observation + 0, 1, 2, 3
        ...     return {"actions": observations["x"][:, None] + np.arange(4.0)[None, :, None]}
        >>> player = ChunkPlayer(act, chunk_length=4, replan_every=2)
        >>> [player.step({"x": np.array([[10.0], [20.0]])})[0][:, 0].tolist() for _ in range(3)]
        [[10.0, 20.0], [11.0, 21.0], [10.0, 20.0]]
    """

    def __init__(
        self, act, *, chunk_length=None, replan_every=None, asynchronous=False, prefetch_threshold=0.5, aggregate="weighted_average", timeout=10.0,
        where="the policy", end_sessions=None,
    ):
        check_player_options(asynchronous, prefetch_threshold, aggregate, replan_every)
        self._act, self._end_sessions, self.where, self.timeout = act, end_sessions, where, timeout
        self.replan_every, self.asynchronous = replan_every, asynchronous
        self.prefetch_threshold, self.aggregate = prefetch_threshold, aggregate
        self.chunk_length = None
        if chunk_length is not None:
            self._learn_chunk_length(chunk_length)
        self.dry_waits = self.late_replies = 0
        self._prefetcher = None
        self.sessions = None
        self.reset()

    def _learn_chunk_length(self, chunk_length):
        if self.asynchronous and chunk_length < 2:
            raise ValueError(f"asynchronous=True needs chunks of 2 or more actions: {self.where} returns chunks of {chunk_length}")
        self.chunk_length = chunk_length

    def reset(self):
        """Start new episodes for every element at the next step."""
        if self.sessions is not None and self._end_sessions is not None:
            if self._prefetcher is not None:
                self._prefetcher.submit(None, (self.sessions,), act=self._end_sessions)
            else:
                self._end_sessions(self.sessions)
        self.sessions = None  # one episode id per element
        self._chunker = None  # one ChunkQueue per element
        self._generations = None  # per element: changes at each reset, so that late replies are recognised
        self._pending = None  # per element: a background request is out for it

    def step(self, obs, is_init=None):
        """The action of every element for this step, and its staleness.

        Args:
            obs: observation name -> (batch, ...) array.
            is_init: (batch,) bools: these elements start a new episode now.
        """
        batch = len(next(iter(obs.values())))
        starting = self._start_episodes(batch, is_init)
        if self.asynchronous:
            self._fill_asynchronously(obs, starting)
        else:
            empty = np.flatnonzero(self._chunker.remaining == 0)
            if len(empty):
                reply = self._act(*self._request(obs, empty, starting[empty]))
                self._receive(self._asked(empty), reply)
        return self._chunker.pop()

    def _start_episodes(self, batch, is_init):
        """Which elements start an episode now; their queues are emptied."""
        if self.sessions is None or len(self.sessions) != batch:
            self.reset()
            self.sessions = [uuid.uuid4().hex for _ in range(batch)]
            self._chunker = ActionChunker(batch, self.aggregate if self.asynchronous else "latest_only")
            self._generations = np.array([uuid.uuid4().int >> 65 for _ in range(batch)], dtype=np.int64)
            self._pending = np.zeros(batch, dtype=bool)
            return np.ones(batch, dtype=bool)
        starting = np.zeros(batch, dtype=bool) if is_init is None else np.asarray(is_init, dtype=bool).reshape(batch)
        index = np.flatnonzero(starting)
        self._chunker.reset(index)
        self._generations[index] += 1  # a reply still out for the old episode will be dropped
        self._pending[index] = False
        return starting

    def _request(self, obs, index, resets):
        """The arguments of one request for the elements ``index``."""
        observations = {name: value[index] for name, value in obs.items()}  # copies: the request may leave later
        return observations, [self.sessions[i] for i in index], resets.tolist()

    def _asked(self, index):
        """What a reply to a request for ``index`` is checked against when it arrives."""
        return index, self._generations[index].copy(), self._chunker.steps[index]

    def _receive(self, asked, reply):
        """Queue the chunks of ``reply`` for the elements still in the episode they were asked for."""
        index, generations, obs_steps = asked
        actions = reply["actions"]
        if self.chunk_length is None:
            self._learn_chunk_length(actions.shape[1])
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
        for asked, reply in self._prefetcher.replies(block, self.timeout):
            if isinstance(reply, Exception):
                index, generations, _ = asked
                self._pending[index[self._current(index, generations)]] = False  # the next step asks again
                failure = failure or reply
            else:
                self._receive(asked, reply)
        if failure is not None:
            raise failure

    def close(self):
        """Stop the background thread (after its request in flight); replies still out are dropped."""
        if self._prefetcher is not None:
            self._prefetcher.stop()
            self._prefetcher = None
        if self._pending is not None:
            self._pending[:] = False

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_prefetcher"] = None  # threads do not cross processes
        return state


class _Prefetcher:
    """A thread that sends requests one after the other and hands back their replies.

    ``act(*request)`` runs in the thread; an exception it raises is handed back in place of
    the reply.
    """

    def __init__(self, act):
        self._act = act
        self._requests = queue.Queue()
        self._replies = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="chunk-prefetch", daemon=True)
        self._thread.start()

    def _run(self):
        while (job := self._requests.get()) is not None:
            asked, request, act = job
            try:
                reply = act(*request)
            except Exception as err:  # raised by step, in the caller's thread
                reply = err
            if asked is not None:
                self._replies.put((asked, reply))
            elif isinstance(reply, Exception):
                logger.warning("ending sessions in the background failed: %s", reply)

    def submit(self, asked, request, act=None):
        """Run ``act(*request)`` (default: the request function) after the jobs before; its
        reply is handed back with ``asked``, or dropped if ``asked`` is None."""
        self._requests.put((asked, request, act or self._act))

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
                raise TimeoutError(f"no reply from the background request thread within {timeout:.1f} s") from None
        return arrived

    def stop(self):
        self._requests.put(None)
        self._thread.join()
