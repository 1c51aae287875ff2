"""RoboHiveEnv(name, num_envs=N): N RoboHive simulators stepped by threads, one env of batch size [N].

The single-env spec tests of test_robohive.py also run batched (their "batched" cases);
this file holds what only a batch has: thread safety, seeding, partial resets, errors.
"""
from __future__ import annotations

import threading

import pytest
import torch
from tensordict import TensorDict
from torchrl.collectors import Collector
from torchrl.envs import SerialEnv
from torchrl.envs.utils import check_env_specs

from agenthive.envs import RoboHiveEnv
from agenthive.envs.robohive_batched import SubEnvError
from test_robohive import ARM_AND_KITCHEN_IDS, REACH, replay

VISUAL_IDS = [i for i in ARM_AND_KITCHEN_IDS if "_v2d" in i]


def serial_rollout(env_id, n, seed, actions, **kwargs):
    """The reference: n single envs in torchrl's SerialEnv, seeded the torchrl way."""
    env = SerialEnv(n, lambda: RoboHiveEnv(env_id, **kwargs))
    env.set_seed(seed)
    td = env.rollout(len(actions), replay(actions), break_when_any_done=False)
    env.close()
    return td


def batched_rollout(env_id, n, seed, actions, num_threads, **kwargs):
    env = RoboHiveEnv(env_id, num_envs=n, num_threads=num_threads, **kwargs)
    next_seed = env.set_seed(seed)
    td = env.rollout(len(actions), replay(actions), break_when_any_done=False)
    env.close()
    return td, next_seed


@pytest.mark.parametrize("env_id", ["FrankaPushRandom-v0", "FK1_MicroOpenRandom-v4"])
def test_threads_match_sequential_and_serial_env_step_for_step(env_id):
    """Thread safety: whatever the threads, each sub-env follows the trajectory it has alone.

    RoboHive keeps its random state per env (env.np_random, shared with env.robot), its
    simulators apart, and only a print cache and a hardware timer at module level; this
    checks the result, with the episode boundary (a reset of every sub-env) inside.
    """
    n, steps = 4, 12
    actions = torch.rand(steps, n, 9) * 2 - 1
    reference = serial_rollout(env_id, n, 5, actions, max_episode_steps=8)
    for num_threads in (0, 2, 3):  # in turn; two threads of two sub-envs; uneven shares (2, 1, 1)
        td, _ = batched_rollout(env_id, n, 5, actions, num_threads, max_episode_steps=8)
        assert td.batch_size == reference.batch_size == (n, steps)
        assert (td == reference).all(), f"num_threads={num_threads} differs from SerialEnv"
    # the sub-envs really differ (their seeds do), so equality is not trivial
    assert not torch.equal(reference["observation"][0], reference["observation"][1])
    assert reference["next", "truncated"][:, 7].all() and not reference["next", "done"][:, 8:].any()


def test_seeding_is_per_sub_env_and_chains_like_serial_env():
    actions = torch.rand(5, 3, 9) * 2 - 1
    a, next_a = batched_rollout(REACH, 3, 11, actions, num_threads=2)
    b, next_b = batched_rollout(REACH, 3, 11, actions, num_threads=0)
    c, _ = batched_rollout(REACH, 3, 12, actions, num_threads=2)
    assert (a == b).all() and next_a == next_b
    assert not torch.allclose(a["observation"], c["observation"])
    assert next_a == SerialEnv(3, lambda: RoboHiveEnv(REACH)).set_seed(11)


def test_partial_reset_restarts_only_the_masked_sub_envs():
    env = RoboHiveEnv(REACH, num_envs=3, num_threads=2, max_episode_steps=5)
    env.set_seed(0)
    td = env.reset()
    for _ in range(3):
        td = env.step(env.rand_action(td))["next"]
    before = td.clone()
    mask = torch.tensor([[True], [False], [True]])
    alone = env._reset(TensorDict({"_reset": mask}, batch_size=[3]))
    assert not alone["observation"][1].any()  # a row for a sub-env that goes on: torchrl fills it in
    out = env.reset(before.clone().set("_reset", mask))
    # sub-env 1 goes on where it was; 0 and 2 start a new episode (new targets: new reach_err)
    assert torch.equal(out["observation"][1], before["observation"][1])
    for i in (0, 2):
        assert not torch.allclose(out["reach_err"][i], before["reach_err"][i])
    assert not out["done"].any()
    # time limits are per sub-env: sub-env 1 is at its 5th step after two more, the others at their 2nd
    td = out
    for _ in range(2):
        td = env.step(env.rand_action(td))["next"]
    assert td["truncated"].squeeze(-1).tolist() == [False, True, False]
    env.close()


def test_rollout_resets_finished_sub_envs_alone():
    # different limits per sub-env are not possible, so one sub-env is reset by hand first:
    # from then on the sub-envs finish on different steps and the rollout resets each alone
    env = RoboHiveEnv(REACH, num_envs=2, num_threads=2, max_episode_steps=4)
    env.set_seed(0)
    td = env.reset()
    td = env.step(env.rand_action(td))["next"]
    td = env.reset(td.set("_reset", torch.tensor([[True], [False]]))).exclude("_reset")
    rollout = env.rollout(8, auto_reset=False, tensordict=td, break_when_any_done=False)
    done = rollout["next", "done"].squeeze(-1)
    assert done[0].nonzero().squeeze(-1).tolist() == [3, 7]
    assert done[1].nonzero().squeeze(-1).tolist() == [2, 6]
    env.close()


def test_pixels_and_depth_per_sub_env_match_single_envs():
    kwargs = dict(from_pixels=True, cameras=["top_cam", "Franka_wrist_cam"], image_size=(32, 48), depth=True)
    env = RoboHiveEnv(REACH, num_envs=2, num_threads=2, **kwargs)
    check_env_specs(env, seed=0)
    env.set_seed(3)
    td = env.reset()
    assert td["pixels"].shape == (2, 2, 32, 48, 3) and td["depth"].shape == (2, 2, 32, 48, 1)
    singles = SerialEnv(2, lambda: RoboHiveEnv(REACH, **kwargs))
    singles.set_seed(3)
    ref = singles.reset()
    assert torch.equal(td["pixels"], ref["pixels"]) and torch.equal(td["depth"], ref["depth"])
    assert not torch.equal(td["pixels"][0], td["pixels"][1])  # two targets, two pictures
    singles.close()
    env.close()


@pytest.mark.parametrize("env_id", VISUAL_IDS)
def test_visual_ids_batched(env_id):
    # the ids' own cameras, small images to keep the run short (test_robohive.py renders full size)
    env = RoboHiveEnv(env_id, num_envs=2, num_threads=2, image_size=(32, 32))
    check_env_specs(env, seed=0)  # a reset and a 3-step rollout
    pixels = env.reset()["pixels"]
    assert pixels.shape == (2, len(env.cameras), 32, 32, 3) and pixels.float().std() > 5
    env.close()


def test_collector_over_the_batched_env():
    env = RoboHiveEnv(REACH, num_envs=4, num_threads=2)
    collector = Collector(env, None, frames_per_batch=120, total_frames=240)
    batches = list(collector)
    collector.shutdown()
    assert len(batches) == 2 and batches[0].batch_size == (4, 30)
    # the 50-step limit ends every sub-env's episode inside the second batch, which goes on after it
    assert batches[1]["next", "truncated"][:, 19].all() and not batches[1]["next", "done"][:, 20:].any()


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(num_envs=0), r"num_envs must be an integer >= 1.*got 0"),
        (dict(num_envs=2.0), r"num_envs must be an integer >= 1.*got 2.0"),
        (dict(num_envs=2, num_threads=-1), r"num_threads must be an integer >= 0.*got -1"),
        (dict(num_threads=2), r"num_threads=2 needs num_envs=N"),
        (dict(num_envs=2, batch_size=[3]), r"batch_size=\[2\], got batch_size=\[3\]"),
    ],
)
def test_bad_batch_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        RoboHiveEnv(REACH, **kwargs)


def test_wrong_action_and_reset_shapes_name_both_shapes():
    env = RoboHiveEnv(REACH, num_envs=3, num_threads=2)
    td = env.reset()
    with pytest.raises(ValueError, match=r"action batch of shape \(2, 9\), expected \(3, 9\)"):
        env._step(TensorDict(action=torch.zeros(2, 9)))
    with pytest.raises(ValueError, match=r"'_reset' has shape \(3,\), expected \(3, 1\)"):
        env._reset(TensorDict(_reset=torch.ones(3, dtype=torch.bool), batch_size=[3]))
    env.step(td.set("action", torch.zeros(3, 9)))  # still usable
    env.close()


def test_a_failing_sub_env_is_named_and_close_cleans_up():
    env = RoboHiveEnv(REACH, num_envs=4, num_threads=2)
    td = env.reset()
    stepped = []
    original = env._envs[3].step

    def broken(action):
        raise FloatingPointError("simulation diverged")

    for i in range(3):  # record that the others still step
        env._envs[i].step = (lambda f, i: lambda a: (stepped.append(i), f(a))[1])(env._envs[i].step, i)
    env._envs[3].step = broken
    with pytest.raises(SubEnvError, match=r"sub-env 3 of RoboHiveEnv\('FrankaReachRandom-v0', num_envs=4\) raised "
                                          r"during step: FloatingPointError: simulation diverged") as err:
        env.step(td.set("action", torch.zeros(4, 9)))
    assert isinstance(err.value.__cause__, FloatingPointError)
    assert sorted(stepped) == [0, 1, 2]
    env._envs[3].step = original
    env.reset()  # every sub-env usable again
    workers = [t for t in env._threads._threads]
    assert workers and all(t.is_alive() for t in workers)
    env.close()
    assert env.is_closed and not any(t.is_alive() for t in workers)


def test_threads_survive_only_as_long_as_the_env():
    before = threading.active_count()
    env = RoboHiveEnv(REACH, num_envs=4, num_threads=4)
    env.rollout(2)
    assert threading.active_count() == before + 3  # the calling thread takes the first share
    env.close()
    assert threading.active_count() == before
