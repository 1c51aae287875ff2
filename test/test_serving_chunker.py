"""ChunkQueue / ActionChunker: playback, late chunks lined up with time, merge rules, staleness."""
import numpy as np
import pytest

from agenthive.serving.chunker import AGGREGATES, ActionChunker, ChunkPlayer, ChunkQueue


def chunk(*values):
    return np.array(values, dtype=np.float32)[:, None]


def play(queue, steps):
    return [queue.pop() for _ in range(steps)]


def test_plays_a_chunk_in_order_with_staleness_and_keep():
    queue = ChunkQueue()
    queue.push(chunk(0, 1, 2, 3), obs_step=0, keep=3)
    assert queue.remaining == 3
    assert [(float(a[0]), s) for a, s in play(queue, 3)] == [(0, 0), (1, 1), (2, 2)]
    assert queue.remaining == 0 and queue.step == 3
    with pytest.raises(IndexError, match="no action queued for step 3"):
        queue.pop()


@pytest.mark.parametrize(
    "aggregate, merged, staleness",
    [("weighted_average", 0.3 * 3 + 0.7 * 12, 2), ("latest_only", 12, 2), ("average", 7.5, 2), ("conservative", 3, 3), (lambda old, new: old - new, -9, 2)],
)
def test_a_late_chunk_skips_played_steps_and_merges_the_overlap(aggregate, merged, staleness):
    queue = ChunkQueue(aggregate)
    queue.push(chunk(0, 1, 2, 3, 4), obs_step=0, keep=4)
    play(queue, 3)  # steps 0-2 played; step 3 still queued
    queue.push(chunk(10, 11, 12, 13, 14), obs_step=1)  # predicted at step 1: 10 and 11 were for steps 1 and 2
    assert queue.remaining == 3
    (first, first_staleness), (second, second_staleness), _ = play(queue, 3)
    np.testing.assert_allclose(first, [merged], rtol=1e-6)
    assert first_staleness == staleness  # the conservative rule keeps the action planned from step 0
    assert (float(second[0]), second_staleness) == (13, 3)  # beyond the overlap: the new chunk alone
    assert queue.remaining == 0


def test_a_chunk_entirely_in_the_past_queues_nothing_and_reset_restarts_the_count():
    queue = ChunkQueue("average")
    queue.push(chunk(0, 1), obs_step=0)
    play(queue, 2)
    queue.push(chunk(5, 6), obs_step=0)
    assert queue.remaining == 0
    with pytest.raises(ValueError, match="obs_step=3: expected a step already reached, 0 to 2"):
        queue.push(chunk(5, 6), obs_step=3)
    queue.reset()
    assert (queue.step, queue.remaining) == (0, 0)


def test_bad_aggregates_are_refused():
    with pytest.raises(ValueError, match=r"aggregate='median': expected one of \['average', 'conservative', 'latest_only', 'weighted_average'\] or a callable"):
        ChunkQueue("median")
    queue = ChunkQueue(lambda old, new: new[:1])
    queue.push(chunk(0, 1, 2), obs_step=0)
    with pytest.raises(ValueError, match=r"aggregate returned shape \(1, 1\) for overlaps of shape \(3, 1\)"):
        queue.push(chunk(0, 1, 2), obs_step=0)
    assert sorted(AGGREGATES) == ["average", "conservative", "latest_only", "weighted_average"]


def test_action_chunker_plays_each_element_from_its_own_queue():
    chunker = ActionChunker(3)
    chunker.push([0, 2], np.arange(12, dtype=np.float32).reshape(2, 3, 2), obs_steps=[0, 0])
    chunker.push([1], np.full((1, 1, 2), -1, np.float32), obs_steps=[0])
    actions, staleness = chunker.pop()
    assert actions.tolist() == [[0, 1], [-1, -1], [6, 7]] and staleness.tolist() == [0, 0, 0]
    assert chunker.remaining.tolist() == [2, 0, 2] and chunker.steps.tolist() == [1, 1, 1]
    chunker.reset([2])
    assert chunker.remaining.tolist() == [2, 0, 0] and chunker.steps.tolist() == [1, 1, 0]


def test_chunk_player_ends_the_sessions_it_replaces_after_the_requests_before():
    calls = []

    def act(observations, sessions, resets):
        calls.append(("act", list(sessions), list(resets)))
        return {"actions": np.zeros((len(sessions), 4, 1), np.float32)}

    for asynchronous in (False, True):
        calls.clear()
        player = ChunkPlayer(act, chunk_length=4, asynchronous=asynchronous, end_sessions=lambda sessions: calls.append(("end", list(sessions))))
        player.step({"x": np.zeros((2, 1))})
        first = list(player.sessions)
        player.step({"x": np.zeros((2, 1))}, is_init=[False, True])  # a reset of one element keeps its session id
        player.step({"x": np.zeros((3, 1))})  # a new batch size: new sessions, the old ones ended
        player.close()
        assert calls[0] == ("act", first, [True, True])
        assert ("act", first[1:], [True]) in calls
        assert ("end", first) in calls and calls.index(("end", first)) < len(calls) - 1  # before the new batch's request
        assert calls[-1][0] == "act" and len(calls[-1][1]) == 3 and calls[-1][2] == [True] * 3
