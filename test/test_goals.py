"""Goal views, goal setters and hindsight relabelling on real RoboHive and ManiSkill simulators."""
from __future__ import annotations

import doctest
import functools
import json
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from tensordict import TensorDict
from torchrl.data import HERReplayBuffer, LazyTensorStorage
from torchrl.envs import Compose, EnvCreator, ParallelEnv, StepCounter, TransformedEnv
from torchrl.envs.utils import check_env_specs

from agenthive import goals
from agenthive.checkpoint import list_checkpoints
from agenthive.env_config import EnvConfig
from agenthive.envs import RoboHiveEnv
from agenthive.envs.maniskill import ManiSkillEnv, _has_maniskill
from agenthive.evaluation.policy import evaluate
from agenthive.goals import DistanceCurriculum, GoalSetter, GoalView

ROBOHIVE_TASKS = ["FrankaReachRandom-v0", "FetchReachRandom-v0", "FrankaPushRandom-v0", "FrankaPickPlaceRandom-v0"]
MANISKILL_TASKS = ["PickCube-v1", "PushCube-v1"]
needs_maniskill = pytest.mark.skipif(not _has_maniskill, reason="mani_skill is not installed (pip install 'agenthive[maniskill]')")
REACH = "FrankaReachRandom-v0"


def goal_env(make_base, *, reward="env", curriculum=None):
    return TransformedEnv(make_base(), Compose(GoalView(reward=reward), GoalSetter(curriculum=curriculum)))


def play(env, td, actions):
    """Steps ``env`` from ``td`` through ``actions`` ([T, A]); returns the [T] transitions."""
    steps = []
    for action in actions:
        td["action"] = action
        td = env.step(td)
        steps.append(td.clone())
        td = env.step_mdp(td)
    return torch.stack(steps)


def probe_rollouts(env, steps, seed=0):
    """Real transitions that miss and hit the goal: two episodes of random actions for the
    task's goals; one of zero actions; and that one again, its goal set at reset to where it
    was halfway (the simulators are deterministic), random actions for its last quarter."""
    env.set_seed(seed)
    episodes = [env.rollout(steps, break_when_any_done=False) for _ in range(2)]
    zeros = torch.zeros((steps, *env.action_spec.shape))
    env.set_seed(seed + 1)
    episodes.append(play(env, env.reset(), zeros))
    env.set_seed(seed + 1)
    td = env.reset(TensorDict(desired_goal=episodes[-1]["next", "achieved_goal"][steps // 2]))
    actions = torch.cat([zeros[: 3 * steps // 4], env.action_spec.rand((steps - 3 * steps // 4,))])
    episodes.append(play(env, td, actions))
    return torch.cat(episodes)


def assert_same_rewards(env, data, reward_mode):
    reward, success = env.transform[0].task.evaluate(data["next"])
    torch.testing.assert_close(reward, data["next", "reward"], atol=1e-5, rtol=1e-6,
                               msg=lambda m: f"recomputed {reward_mode} rewards differ from the env's: {m}")
    assert torch.equal(success, data["next", "success"]), "recomputed success differs from the env's"
    hits = int(data["next", "success"].sum())
    assert 0 < hits < data.numel(), f"the probe rollouts should both reach and miss the goal, got {hits}/{data.numel()} successes"


@pytest.mark.parametrize("reward_mode", ["dense", "sparse"])
@pytest.mark.parametrize("env_id", ROBOHIVE_TASKS)
def test_robohive_reward_recomputation_equals_env_reward(env_id, reward_mode):
    env = goal_env(functools.partial(RoboHiveEnv, env_id, reward_mode=reward_mode))
    check_env_specs(env, seed=0)
    assert_same_rewards(env, probe_rollouts(env, steps=20), reward_mode)
    env.close()


@needs_maniskill
@pytest.mark.parametrize("reward_mode", ["dense", "normalized_dense", "sparse"])
@pytest.mark.parametrize("env_id", MANISKILL_TASKS)
def test_maniskill_reward_recomputation_equals_env_reward(env_id, reward_mode):
    env = goal_env(functools.partial(ManiSkillEnv, env_id, reward_mode=reward_mode))
    check_env_specs(env, seed=0)
    assert_same_rewards(env, probe_rollouts(env, steps=10), reward_mode)
    env.close()


@pytest.mark.parametrize("env_id", [REACH, "FrankaPushRandom-v0", *(pytest.param(t, marks=needs_maniskill) for t in MANISKILL_TASKS)])
def test_observation_is_goal_free(env_id):
    make = functools.partial(ManiSkillEnv, env_id) if env_id in MANISKILL_TASKS else functools.partial(RoboHiveEnv, env_id)
    env = goal_env(make)
    task = env.transform[0].task
    observations, desired = [], []
    for goal in (task.goal_low, task.goal_high):
        env.set_seed(3)
        td = env.reset(TensorDict(desired_goal=goal))
        td["action"] = torch.zeros(env.action_spec.shape)
        observations.append(env.step(td)["next", "observation"])
        desired.append(td["desired_goal"])
    assert not torch.equal(*desired), "the two resets should have different goals"
    torch.testing.assert_close(*observations, msg=lambda m: f"the goal leaks into 'observation': {m}")
    assert observations[0].shape[-1] == task.observation_dim
    assert not set(task.dropped_keys) & set(env.observation_spec.keys())
    env.close()


@pytest.mark.parametrize("reward", ["success", "env"])
@pytest.mark.parametrize("strategy", ["future", "final", "episode"])
def test_relabelled_rewards_are_the_simulators_for_the_new_goals(strategy, reward):
    """HER relabels with achieved goals; replaying each relabelled transition in the simulator
    with its new goal set at reset gives the relabelled reward and success."""
    env = goal_env(functools.partial(RoboHiveEnv, REACH, max_episode_steps=15), reward=reward)
    task = env.transform[0].task
    buffer = HERReplayBuffer(reward_fn=task, strategy=strategy, her_ratio=1.0, achieved_goal_key=("next", "achieved_goal"),
                             storage=LazyTensorStorage(100), batch_size=6)
    env.set_seed(11)
    for _ in range(3):
        episode = env.rollout(100, break_when_any_done=True)
        assert episode["next", "truncated"][-1] and episode.shape == (15,)
        buffer.extend(episode)
    batch, info = buffer.sample(return_info=True)
    index = info["index"]
    stored = buffer[index]
    episode_of, step_of = index // 15, index % 15
    assert not torch.equal(batch["desired_goal"], stored["desired_goal"]), "HER should have relabelled the goals"
    torch.testing.assert_close(batch["next", "desired_goal"], batch["desired_goal"])
    for i in range(len(index)):
        achieved = buffer[episode_of[i] * 15 + torch.arange(15)]["next", "achieved_goal"]
        sources = {"future": range(step_of[i], 15), "final": [14], "episode": range(15)}[strategy]
        assert any(torch.equal(batch[i]["desired_goal"], achieved[j]) for j in sources), (
            f"relabelled goal {batch[i]['desired_goal']} is not an achieved goal of its episode's {strategy} steps"
        )
        # RoboHive's reach restarts from the same pose: the actions alone replay the episode
        td = env.reset(TensorDict(desired_goal=batch[i]["desired_goal"]))
        replayed = play(env, td, buffer[episode_of[i] * 15 + torch.arange(step_of[i] + 1)]["action"])[-1]
        torch.testing.assert_close(replayed["next", "achieved_goal"], batch[i]["next", "achieved_goal"])
        torch.testing.assert_close(replayed["next", "reward"], batch[i]["next", "reward"], atol=1e-5, rtol=1e-6,
                                   msg=lambda m: f"relabelled reward differs from the simulator's for the new goal: {m}")
    env.close()


def test_goal_set_mid_episode_moves_the_simulators_target():
    env = TransformedEnv(RoboHiveEnv(REACH, from_pixels=True, cameras=["top_cam"], image_size=(64, 64)),
                         Compose(GoalView(), GoalSetter()))
    robohive = env.base_env._env
    env.set_seed(0)
    td = env.reset()
    td["action"] = torch.zeros(env.action_spec.shape)
    before = env.step(td)
    goal = torch.tensor([0.25, 0.45, 0.85])
    td = env.step_mdp(before)
    td["desired_goal"] = goal
    after = env.step(td)
    np.testing.assert_allclose(robohive.sim.model.site_pos[robohive.target_sid], goal.numpy(), rtol=0, atol=1e-7)
    # RoboHive's own observation and reward of that step are for the new target
    np.testing.assert_allclose(robohive.obs_dict["reach_err"], (goal - after["next", "achieved_goal"]).numpy(), atol=1e-6)
    torch.testing.assert_close(after["next", "desired_goal"], goal)
    reward, _ = env.transform[0].task.evaluate(after["next"])
    torch.testing.assert_close(reward, after["next", "reward"], atol=1e-5, rtol=1e-6)
    # the camera sees the target move (the arm stands still under zero actions)
    moved = (before["next", "pixels"].int() - after["next", "pixels"].int()).abs().sum(-1) > 30
    assert moved.any(), "the rendered image does not change when the target moves"
    env.close()


@needs_maniskill
@pytest.mark.parametrize("env_id", MANISKILL_TASKS)
def test_maniskill_goal_set_mid_episode_moves_the_goal_actor(env_id):
    env = goal_env(functools.partial(ManiSkillEnv, env_id, reward_mode="sparse"))
    base = env.base_env.maniskill_env.unwrapped
    td = env.reset()
    td["action"] = torch.zeros(env.action_spec.shape)
    td = env.step_mdp(env.step(td))
    td["desired_goal"] = td["achieved_goal"].clone()  # the cube's own position: the task is solved there
    after = env.step(td)
    actor = base.goal_site if env_id == "PickCube-v1" else base.goal_region
    goal_dim = td["desired_goal"].shape[-1]
    torch.testing.assert_close(actor.pose.p[0, :goal_dim], td["desired_goal"])
    assert after["next", "success"].all() and after["next", "reward"].item() == 1.0, "ManiSkill did not score the new goal"
    if env_id == "PushCube-v1":
        torch.testing.assert_close(actor.pose.q[0], torch.tensor([0.7071068, 0.0, 0.7071068, 0.0]))  # still facing up
    env.close()


def _worker(max_steps):
    return TransformedEnv(RoboHiveEnv(REACH, max_episode_steps=max_steps),
                          Compose(GoalView(reward="success"), GoalSetter(), StepCounter()))


def test_parallel_env_resets_finished_workers_only_and_keeps_terminal_transitions():
    env = ParallelEnv(2, [EnvCreator(functools.partial(_worker, 3)), EnvCreator(functools.partial(_worker, 5))])
    env.set_seed(0)
    data = env.rollout(10, break_when_any_done=False)
    done = data["next", "done"].squeeze(-1)
    assert done[0].nonzero().squeeze(-1).tolist() == [2, 5, 8] and done[1].nonzero().squeeze(-1).tolist() == [4, 9]
    # worker 1 keeps its goal while worker 0 resets; a new goal comes with each new episode
    assert torch.equal(data["desired_goal"][1, 0], data["desired_goal"][1, 4])
    assert not torch.equal(data["desired_goal"][0, 2], data["desired_goal"][0, 3])
    assert data["step_count"][1, :5].squeeze(-1).tolist() == [0, 1, 2, 3, 4]
    # the terminal transition is kept: its next state is the last one of the episode, not the reset one
    torch.testing.assert_close(data["next", "desired_goal"][0, 2], data["desired_goal"][0, 2])
    assert not torch.equal(data["next", "achieved_goal"][0, 2], data["achieved_goal"][0, 3])
    # a goal written into one worker's step input reaches that worker's simulator only
    td = env.reset()
    td["desired_goal"][1] = torch.tensor([0.0, 0.3, 1.0])
    out = env.step(env.rand_action(td))
    torch.testing.assert_close(out["next", "desired_goal"][1], torch.tensor([0.0, 0.3, 1.0]))
    torch.testing.assert_close(out["next", "desired_goal"][0], td["desired_goal"][0])
    env.close()


def test_distance_curriculum_limits_goals_and_grows_with_success():
    curriculum = DistanceCurriculum(start=0.02, step=0.1, threshold=1.0, window=2)
    env = goal_env(functools.partial(RoboHiveEnv, REACH, max_episode_steps=3), reward="success", curriculum=curriculum)
    env.set_seed(0)
    zeros = lambda td: td.set("action", torch.zeros(env.action_spec.shape))  # the arm holds its pose
    data = env.rollout(6, zeros, break_when_any_done=False)
    distance = torch.linalg.norm(data["desired_goal"] - data["achieved_goal"], dim=-1)
    assert (distance[[0, 3]] <= 0.02 + 1e-6).all(), f"goals at reset should be within 0.02 m, got {distance[[0, 3]]}"
    assert data["next", "success"].all(), "goals within 2 cm of a still arm should be reached"
    assert curriculum.distance == pytest.approx(0.12), "two successful episodes should promote the curriculum once"
    td = env.reset()
    assert 0.02 < torch.linalg.norm(td["desired_goal"] - td["achieved_goal"]) <= 0.12 + 1e-6
    env.close()


def test_errors_name_what_is_wrong():
    # the transforms meet their env when its specs are first read (or at the first reset)
    with pytest.raises(TypeError, match="RoboHive reach, push or pick-place"):
        _ = TransformedEnv(RoboHiveEnv("FK1_MicroOpenRandom-v4"), GoalView()).observation_spec
    with pytest.raises(ValueError, match="GoalSetter needs a GoalView before it"):
        _ = TransformedEnv(RoboHiveEnv(REACH), GoalSetter()).observation_spec
    with pytest.raises(ValueError, match="frame_skip=2"):
        TransformedEnv(RoboHiveEnv(REACH, frame_skip=2), GoalView()).reset()
    skipping = goal_env(functools.partial(RoboHiveEnv, REACH, frame_skip=2), reward="success")  # success needs no sum
    data = skipping.rollout(3)
    assert torch.equal(data["next", "reward"], data["next", "success"].float() - 1)
    skipping.close()
    batched = ParallelEnv(1, functools.partial(RoboHiveEnv, REACH))
    with pytest.raises(TypeError, match="inside each worker"):
        _ = TransformedEnv(batched, GoalView()).observation_spec
    batched.close(raise_if_closed=False)
    with pytest.raises(ValueError, match="reward='bonus'"):
        GoalView(reward="bonus")


@needs_maniskill
def test_each_maniskill_task_has_its_own_goal_task():
    for env_id, task_class, goal_dim in (("PickCube-v1", goals.PickCubeGoalTask, 3), ("PushCube-v1", goals.PushCubeGoalTask, 2)):
        env = ManiSkillEnv(env_id)
        task = goals.goal_task(env)
        assert type(task) is task_class and task.goal_dim == goal_dim == task.goal_low.numel()
        other = goals.PushCubeGoalTask if task_class is goals.PickCubeGoalTask else goals.PickCubeGoalTask
        with pytest.raises(ValueError, match=f"{other.__name__} is ManiSkill {other.env_name} with the Panda robot .* got {env_id}"):
            other(env)
        env.close()
    env = ManiSkillEnv("StackCube-v1")
    with pytest.raises(ValueError, match=r"GoalView supports ManiSkill \['PickCube-v1', 'PushCube-v1'\], got StackCube-v1"):
        goals.goal_task(env)
    env.close()


def test_task_pickles_and_scores_batches_anywhere():
    env = goal_env(functools.partial(RoboHiveEnv, "FrankaPushRandom-v0"))
    env.set_seed(0)
    data = env.rollout(5)
    task = pickle.loads(pickle.dumps(env.transform[0].task))
    env.close()
    reward = task(data.reshape(5, 1))  # any batch shape
    torch.testing.assert_close(reward, data["next", "reward"].reshape(5, 1, 1), atol=1e-5, rtol=1e-6)


def test_docstring_examples_run():
    result = doctest.testmod(goals, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0, f"{result.failed} of {result.attempted} examples failed"


def test_get_started_goal_example_runs():
    text = (Path(__file__).resolve().parents[1] / "GET_STARTED.md").read_text()
    section = text.split("### Goal-conditioned tasks and HER", 1)[1]
    code = section.split("```python\n", 1)[1].split("```", 1)[0]
    scope = {}
    exec(compile(code, "GET_STARTED.md", "exec"), scope)
    assert scope["td"]["desired_goal"].tolist() == pytest.approx([0.1, 0.3, 1.0])
    assert scope["reward"].shape == (50, 1) and set(scope["reward"].unique().tolist()) <= {-1.0, 0.0}
    assert torch.equal(scope["reward"] == 0, scope["success"])
    scope["env"].close()


def test_sac_her_trains_on_whole_episodes_and_resumes(tmp_path):
    root = Path(__file__).resolve().parents[1]
    run_dir = tmp_path / "her"
    common = [sys.executable, str(root / "scripts" / "train.py"), "--run-dir", str(run_dir)]
    first = common + ["--goal-reward", "success", "--her", "episode", "--num-envs", "2", "--total-frames", "200",
                      "--init-random-frames", "100", "--batch-size", "32", "--hidden-sizes", "32,32", "--checkpoint-every", "100",
                      "--eval-every", "100", "--eval-episodes", "2", "--frames-per-batch", "100", "--no-video"]
    for command in (first, common + ["--resume", "--total-frames", "400"]):
        done = subprocess.run(command, check=False, capture_output=True, text=True, timeout=600, cwd=root)
        assert done.returncode == 0, f"{command} failed:\n{done.stdout[-2000:]}\n{done.stderr[-4000:]}"
    assert "resuming" in done.stdout and "(200 frames)" in done.stdout
    checkpoints = list_checkpoints(run_dir)
    assert sorted(checkpoints) == [100, 200, 300, 400], f"checkpoints {sorted(checkpoints)}"
    config = json.loads((checkpoints[400] / "config.json").read_text())
    assert config["env"]["goal_reward"] == "success" and config["args"]["her"] == "episode"
    # the buffer holds whole episodes one after the other: each transition's next state is the following one's state
    storage = TensorDict.load_memmap(run_dir / "replay_buffer" / "storage")[:400]
    done = storage["next", "done"].squeeze(-1)
    assert done.nonzero().squeeze(-1).tolist() == [49, 99, 149, 199, 249, 299, 349, 399]
    follows = ~done[:-1]
    torch.testing.assert_close(storage["next", "achieved_goal"][:-1][follows], storage["achieved_goal"][1:][follows])
    assert (storage["next", "reward"] == storage["next", "success"].float() - 1).all()
    # the saved policy reads the goals, and the evaluation of a goal task reports both success rates
    policy = torch.load(checkpoints[400] / "policy.pt", weights_only=False)
    assert policy.in_keys == ["observation", "achieved_goal", "desired_goal"]
    summary = evaluate(policy, [EnvConfig.from_dict(config["env"])], tmp_path / "eval", episodes=2, num_envs=1, videos=0)
    assert {"success_end", "success_any"} <= set(summary["envs"][0])
    with open(run_dir / "history.csv") as file:
        header = file.readline().strip().split(",")
    assert {"success_end", "success_any"} <= set(header)


def test_batched_env_goals_match_serial_single_envs_step_for_step():
    """``GoalView``/``GoalSetter`` on ``RoboHiveEnv(num_envs=3)`` read and write each sub-env's own simulator."""
    from torchrl.envs import SerialEnv

    batched = goal_env(functools.partial(RoboHiveEnv, REACH, num_envs=3, num_threads=2, max_episode_steps=4), reward="success")
    serial = SerialEnv(3, functools.partial(_worker, 4))
    check_env_specs(batched)
    batched.set_seed(0)
    serial.set_seed(0)
    actions = torch.rand(10, 3, 9, generator=torch.Generator().manual_seed(0)) * 2 - 1
    runs = []
    for env in (batched, serial):
        replay = iter(actions)
        runs.append(env.rollout(10, lambda td: td.set("action", next(replay)), break_when_any_done=False))
    for key in ("desired_goal", "achieved_goal", "observation", ("next", "reward"), ("next", "success"), ("next", "done")):
        torch.testing.assert_close(runs[0][key], runs[1][key], msg=f"{key} differs")
    assert not torch.equal(runs[0]["desired_goal"][0, 0], runs[0]["desired_goal"][1, 0])  # each sub-env draws its own goal
    # a goal written into one sub-env's step input moves that sub-env's target only
    td = batched.reset()
    td["desired_goal"][1] = torch.tensor([0.0, 0.3, 1.0])
    out = batched.step(batched.rand_action(td))
    torch.testing.assert_close(out["next", "desired_goal"][1], torch.tensor([0.0, 0.3, 1.0]))
    torch.testing.assert_close(out["next", "desired_goal"][[0, 2]], td["desired_goal"][[0, 2]])
    batched.close()
    serial.close()
