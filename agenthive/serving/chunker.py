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
steps old the observation behind it is.

Example:
    >>> queue = ChunkQueue(aggregate="weighted_average")
    >>> queue.push(np.arange(4.0)[:, None], obs_step=0)
    >>> [queue.pop()[0].item() for _ in range(3)]
    [0.0, 1.0, 2.0]
    >>> queue.push(np.full((4, 1), 10.0), obs_step=1)  # predicted at step 1: skip 2 played steps
    >>> queue.pop()  # step 3: 0.3 * 3 + 0.7 * 10, from the observation of step 1
    (array([7.9]), 2)
    >>> queue.remaining
    1
"""
import numpy as np


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
