"""Goal-conditioned views of agenthive's goal-reaching tasks, goal setters and the reward of any goal.

Goal-conditioned RL (and hindsight relabelling, HER) needs three things an env does not
give as such: the goal as data (``"desired_goal"``) next to what the agent achieved
(``"achieved_goal"``); an observation that does not hide the goal inside it, so that a
relabelled goal is the only goal the policy sees; and the task's reward as a function of
any goal, to score a transition against a goal it was not collected for. This module adds
them to the envs as TorchRL transforms, without forking them:

* :class:`GoalView` writes ``"achieved_goal"`` and ``"desired_goal"``, replaces
  ``"observation"`` by its goal-free part, and (``reward="success"``) can make the reward
  sparse;
* :func:`goal_task` / :class:`GoalTask` is the task's reward for any goal, vectorised over
  TensorDicts; it is picklable and is the ``reward_fn`` of torchrl's ``HERReplayBuffer``;
* :class:`GoalSetter` samples the goal at reset (or takes one given to ``reset``, or one
  written into a step's input mid-episode) and writes it into the simulator, so the env's
  own reward, termination, success and rendering follow it;
* :class:`DistanceCurriculum` is a curriculum for the setter: goals near the achieved
  goal first, further as the success rate grows.

Both transforms read the simulator, so they go inside each worker of a batched env:
``ParallelEnv(N, EnvCreator(lambda: TransformedEnv(RoboHiveEnv(...), Compose(GoalView(), GoalSetter()))))``.

Supported tasks and their goals (3-D positions in the world frame, ``float32``):

* RoboHive reach (``FrankaReach*``, ``FetchReach*``): the end effector's site, the target site;
* RoboHive push and pick-place (``FrankaPush*``, ``FrankaPickPlace*``): the object's site, the target site;
* ManiSkill ``PickCube-v1`` (Panda, ``obs_mode="state"``): the cube's position, the goal site;
* ManiSkill ``PushCube-v1`` (Panda, ``obs_mode="state"``): the cube's and the goal region's
  ``xy`` (2-D: the task ignores heights of goals).

RoboHive's rewards are recomputed by RoboHive's own vectorised ``get_reward_dict`` on an
observation dictionary rebuilt from the goals, so they equal the env's by construction.
ManiSkill's ``compute_dense_reward`` reads the live simulator, so it is restated here
over the observation vector, operation for operation. Note that RoboHive's
``reward_mode="sparse"`` is the negative distance to the goal, not a 0/-1 signal: use
``GoalView(reward="success")`` for that.
"""
from __future__ import annotations

import collections
import math
import types

import numpy as np
import torch
from tensordict import TensorDictBase
from torchrl.data import Composite, Unbounded
from torchrl.envs import Transform

from agenthive.envs.maniskill import ManiSkillEnv
from agenthive.envs.robohive import RoboHiveWrapper

ACHIEVED_GOAL = "achieved_goal"
DESIRED_GOAL = "desired_goal"
REWARDS = ("env", "success")
# ManiSkill task -> (its state entries that hold the goal, goal size, maximum dense reward)
class GoalTask:
    """The goal structure and reward of one goal-reaching task; build it with :func:`goal_task`.

    A task object holds no simulator: it pickles, and scores TensorDicts in any process
    (the learner's replay buffer included). The methods taking ``env`` act on a live
    simulator and are used by :class:`GoalView` and :class:`GoalSetter`.

    Attributes:
        goal_dim (int): size of ``"achieved_goal"`` and ``"desired_goal"``.
        goal_low, goal_high (torch.Tensor): the box the task draws its goals from.
        reward (str): ``"env"``, the env's own reward for its reward mode; or ``"success"``,
            ``0`` on success and ``-1`` otherwise.
        observation_dim (int or None): size of the goal-free ``"observation"``; ``None``
            when the env has no state observation.
        dropped_keys (tuple of str): goal-dependent observation entries the view removes.
    """

    goal_dim: int
    goal_low: torch.Tensor
    goal_high: torch.Tensor
    observation_dim: int | None
    dropped_keys: tuple[str, ...] = ()

    def __init__(self, reward: str):
        if reward not in REWARDS:
            raise ValueError(f"reward={reward!r}: expected one of {REWARDS}.")
        self.reward = reward

    def __call__(self, transition: TensorDictBase) -> torch.Tensor:
        """The reward of each transition for its ``("next", "desired_goal")``: float32 ``[..., 1]``.

        This is the ``reward_fn`` of :class:`~torchrl.data.HERReplayBuffer`. HER relabels
        rewards, not terminations: a relabelled transition keeps the ``terminated`` it was
        collected with, although ManiSkill ends episodes at success and RoboHive's reach
        ends them when the hand is more than 1 m from the goal.
        """
        return self.evaluate(transition.get("next"))[0]

    def evaluate(self, td: TensorDictBase) -> tuple[torch.Tensor, torch.Tensor]:
        """Reward (float32 ``[..., 1]``) and success (bool ``[..., 1]``) of reaching ``td``'s state for its goal.

        ``td`` holds a state as the view writes it: the goal-free ``"observation"`` (and,
        for RoboHive, its per-key entries), ``"achieved_goal"`` and ``"desired_goal"``,
        with any leading batch dimensions.
        """
        raise NotImplementedError

    def _reward(self, env_reward: torch.Tensor, success: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        success = success.unsqueeze(-1)
        reward = success.float() - 1 if self.reward == "success" else env_reward.to(torch.float32).unsqueeze(-1)
        return reward, success

    # --- on a live simulator ------------------------------------------------------------------
    def goals(self, env, td: TensorDictBase) -> tuple[torch.Tensor, torch.Tensor]:
        """Achieved and desired goal of ``env``'s current state (``td`` is its latest output)."""
        raise NotImplementedError

    def goal_free_observation(self, td: TensorDictBase) -> torch.Tensor:
        """``td``'s ``"observation"`` without its goal-dependent parts."""
        raise NotImplementedError

    def set_desired_goal(self, env, goal: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Moves the goal of the sub-envs in ``mask`` to ``goal``; returns every sub-env's goal as the simulator holds it."""
        raise NotImplementedError

    def sample_goals(self, env, batch_size: torch.Size) -> torch.Tensor:
        """Goals drawn uniformly from the task's goal box with the simulator's own random generator."""
        raise NotImplementedError


class RoboHiveGoalTask(GoalTask):
    """RoboHive reach, push and pick-place: RoboHive's ``get_reward_dict`` on a rebuilt observation dictionary.

    Args:
        env: the :class:`~agenthive.envs.RoboHiveEnv` (or wrapper) of the task.

    Keyword Args:
        reward (str): ``"env"`` (RoboHive's reward for the env's ``reward_mode``) or
            ``"success"``. Defaults to ``"env"``.
    """

    def __init__(self, env: RoboHiveWrapper, *, reward: str = "env"):
        super().__init__(reward)
        from robohive.envs.arms.pick_place_v0 import PickPlaceV0
        from robohive.envs.arms.push_base_v0 import PushBaseV0
        from robohive.envs.arms.reach_base_v0 import ReachBaseV0

        task = env.robohive_env
        if isinstance(task, ReachBaseV0):
            # reach_err = target - end effector
            self._achieved_site, self.goal_error_key, reward_inputs = task.grasp_sid, "reach_err", ()
        elif isinstance(task, (PushBaseV0, PickPlaceV0)):
            # target_err = target - object; object_err = object - end effector
            self._achieved_site, self.goal_error_key, reward_inputs = task.object_sid, "target_err", ("object_err",)
        else:
            raise TypeError(
                f"{env!r} is not a goal task GoalView knows: expected a RoboHive reach, push or pick-place env "
                f"(FrankaReach*, FetchReach*, FrankaPush*, FrankaPickPlace*), got {type(task).__name__}."
            )
        if task.sim.model.site_bodyid[task.target_sid] != 0:
            raise ValueError(f"The target site of {env!r} is not on the world body; GoalSetter places world-frame goals.")
        if reward == "env" and env.frame_skip != 1:
            raise ValueError(
                f"reward='env' recomputes the reward of one RoboHive step, but {env!r} sums rewards over "
                f"frame_skip={env.frame_skip} steps: use frame_skip=1, or reward='success'."
            )
        missing = [key for key in reward_inputs if key not in env.state_obs_keys]
        if missing:
            raise ValueError(f"The reward of {env!r} needs the observation entries {missing}; its entries are {env.state_obs_keys}.")
        self._target_site = task.target_sid
        self._reward_inputs = reward_inputs
        # get_reward_dict reads only the reward weights of the env: this stands in for it
        self._reward_owner = types.SimpleNamespace(rwd_keys_wt=dict(task.rwd_keys_wt))
        self._get_reward_dict = type(task).get_reward_dict
        self._reward_mode = task.rwd_mode
        self.goal_dim = 3
        self.goal_low = torch.tensor(task.target_xyz_range["low"], dtype=torch.float32)
        self.goal_high = torch.tensor(task.target_xyz_range["high"], dtype=torch.float32)
        self.observation_keys = [key for key in env.state_obs_keys if key != self.goal_error_key]
        self.dropped_keys = tuple(key for key in env.state_obs_keys if key == self.goal_error_key)
        sizes = [env.observation_spec[key].shape[-1] for key in self.observation_keys]
        self.observation_dim = sum(sizes) if sizes else None

    def evaluate(self, td: TensorDictBase) -> tuple[torch.Tensor, torch.Tensor]:
        def numpy(key):
            return td.get(key).detach().cpu().double().numpy()

        obs_dict = {key: numpy(key) for key in self._reward_inputs}
        obs_dict[self.goal_error_key] = numpy(DESIRED_GOAL) - numpy(ACHIEVED_GOAL)
        rwd_dict = self._get_reward_dict(self._reward_owner, obs_dict)
        env_reward = torch.as_tensor(np.asarray(rwd_dict[self._reward_mode]))
        success = torch.as_tensor(np.asarray(rwd_dict["solved"]))
        reward, success = self._reward(env_reward, success)
        device = td.get(ACHIEVED_GOAL).device
        return reward.to(device), success.to(device)

    def goals(self, env, td):
        achieved, desired = [], []
        for task in env.robohive_envs:  # one simulator, or each sub-env of a batched env
            site_xpos = task.sim_obsd.data.site_xpos  # the simulator RoboHive observes through
            achieved.append(site_xpos[self._achieved_site])
            desired.append(site_xpos[self._target_site])
        return self._batched(env, achieved), self._batched(env, desired)

    def goal_free_observation(self, td):
        return torch.cat([td.get(key) for key in self.observation_keys], dim=-1)

    def set_desired_goal(self, env, goal, mask):
        position = goal.detach().cpu().double().numpy().reshape(-1, self.goal_dim)
        for i, task in enumerate(env.robohive_envs):
            if mask.reshape(-1)[i]:
                for sim in {task.sim, task.sim_obsd}:  # RoboHive's reset writes both, too
                    sim.model.site_pos[self._target_site] = position[i]
                    sim.forward()  # site_xpos follows site_pos
        return self._batched(env, [task.sim_obsd.data.site_xpos[self._target_site] for task in env.robohive_envs])

    def sample_goals(self, env, batch_size):
        low, high = self.goal_low.numpy(), self.goal_high.numpy()
        goals = [task.np_random.uniform(low, high, size=self.goal_dim) for task in env.robohive_envs]  # each sub-env's own generator
        return self._batched(env, goals).reshape(*batch_size, self.goal_dim)

    @staticmethod
    def _batched(env, rows) -> torch.Tensor:
        """Per-sub-env vectors as one tensor of the env's batch shape: ``[3]`` or ``[N, 3]``."""
        stacked = torch.tensor(np.stack(rows), dtype=torch.float32)
        return stacked.reshape(*env.batch_size, -1).to(env.device)


class ManiSkillGoalTask(GoalTask):
    """What ManiSkill's Panda goal tasks share (``obs_mode="state"``): the state layout, goal setting and sampling.

    A subclass per task (:class:`PickCubeGoalTask`, :class:`PushCubeGoalTask`) names its
    goal entries, its goal range and its dense reward restated over observations.

    Args:
        env: the :class:`~agenthive.envs.ManiSkillEnv` of the task, batched or not.

    Keyword Args:
        reward (str): ``"env"`` (ManiSkill's reward for the env's ``reward_mode``:
            ``"dense"``, ``"normalized_dense"`` or ``"sparse"``, success as 1.0) or
            ``"success"``. Defaults to ``"env"``.
    """

    env_name: str = ""  # the ManiSkill task id
    goal_entries: tuple[str, ...] = ()  # state entries that hold the goal (left out of the goal-free observation)
    goal_dim: int = 3
    max_reward: float = 1.0  # the dense reward's maximum (ManiSkill's normalisation)

    def __init__(self, env: ManiSkillEnv, *, reward: str = "env"):
        super().__init__(reward)
        base = env.maniskill_env.unwrapped
        if env.env_name != self.env_name or env.obs_mode != "state" or base.robot_uids != "panda":
            raise ValueError(
                f"{type(self).__name__} is ManiSkill {self.env_name} with the Panda robot and obs_mode='state', "
                f"got {env.env_name} with {base.robot_uids!r} and obs_mode={env.obs_mode!r}."
            )
        if reward == "env" and base.reward_mode not in ("dense", "normalized_dense", "sparse"):
            raise ValueError(f"reward='env' needs a ManiSkill reward_mode among dense, normalized_dense and sparse, got {base.reward_mode!r}.")
        self._reward_mode = base.reward_mode
        # where each state entry sits in ManiSkill's flat state vector
        full, goal_free, start, kept = {}, {}, 0, 0
        for name, size in env.state_entries().items():
            full[name] = slice(start, start + size)
            start += size
            if name not in self.goal_entries:
                goal_free[name] = slice(kept, kept + size)
                kept += size
        self._full, self._slices = full, goal_free
        self._kept = torch.cat([torch.arange(s.start, s.stop) for name, s in full.items() if name not in self.goal_entries])
        self.observation_dim = kept
        self.goal_low, self.goal_high = self._goal_range(base)

    def _goal_range(self, base) -> tuple[torch.Tensor, torch.Tensor]:
        """Where the task draws its goals (lowest and highest corner)."""
        raise NotImplementedError

    def _dense_reward(self, obs, goal, achieved) -> tuple[torch.Tensor, torch.Tensor]:
        """The task's ``compute_dense_reward`` and its success (``evaluate``), over observations."""
        raise NotImplementedError

    def _goal_actor(self, base):
        """The actor that marks the goal in the scene."""
        raise NotImplementedError

    def _entry(self, observation: torch.Tensor, name: str) -> torch.Tensor:
        return observation[..., self._slices[name]]

    def evaluate(self, td):
        reward, success = self._dense_reward(td.get("observation"), td.get(DESIRED_GOAL), td.get(ACHIEVED_GOAL))
        reward = torch.where(success, torch.full_like(reward, self.max_reward), reward)
        if self._reward_mode == "normalized_dense":
            reward = reward / self.max_reward
        elif self._reward_mode == "sparse":
            reward = success.to(torch.float32)
        return self._reward(reward, success)

    def goals(self, env, td):
        obs = td.get("observation")  # the full state vector, as the env wrote it
        achieved = obs[..., self._full["obj_pose"]][..., : self.goal_dim]
        desired = obs[..., self._full["goal_pos"]][..., : self.goal_dim]
        return achieved, desired

    def goal_free_observation(self, td):
        observation = td.get("observation")
        return observation.index_select(-1, self._kept.to(observation.device))

    def set_desired_goal(self, env, goal, mask):
        from mani_skill.utils.structs.pose import Pose

        actor = self._goal_actor(env.maniskill_env.unwrapped)
        position = actor.pose.p.clone()  # [num_envs, 3]
        rows = mask.reshape(-1).to(position.device)
        position[rows, : self.goal_dim] = goal.reshape(-1, self.goal_dim).to(position.device)[rows]
        env.move_actor(actor, Pose.create_from_pq(p=position, q=actor.pose.q))  # PushCube's target keeps its orientation
        return position[:, : self.goal_dim].reshape(*mask.shape, self.goal_dim).to(env.device)

    def sample_goals(self, env, batch_size):
        # ManiSkill's per-sub-env episode generators, seeded by its reset
        goals = env.episode_rng.uniform(low=self.goal_low.numpy(), high=self.goal_high.numpy(), size=(self.goal_dim,))
        return torch.tensor(goals, dtype=torch.float32, device=env.device).reshape(*batch_size, self.goal_dim)


class PickCubeGoalTask(ManiSkillGoalTask):
    """ManiSkill ``PickCube-v1``: lift the cube to a goal point in the air (``PickCubeEnv``'s reward and success)."""

    env_name = "PickCube-v1"
    goal_entries = ("goal_pos", "obj_to_goal_pos")
    goal_dim = 3
    max_reward = 5.0

    def _goal_range(self, base):
        self._goal_thresh = base.goal_thresh
        center = torch.tensor(base.cube_spawn_center, dtype=torch.float32)
        half = base.cube_spawn_half_size
        # PickCube draws goal heights above the cube's centre, which rests at cube_half_size
        low = torch.tensor([center[0] - half, center[1] - half, base.cube_half_size])
        high = torch.tensor([center[0] + half, center[1] + half, base.cube_half_size + base.max_goal_height])
        return low, high

    def _dense_reward(self, obs, goal, achieved):  # PickCubeEnv.evaluate and compute_dense_reward
        is_grasped = self._entry(obs, "is_grasped").squeeze(-1)
        qvel = self._entry(obs, "qvel")[..., :-2]  # without the gripper's fingers
        obj_to_goal_dist = torch.linalg.norm(goal - achieved, dim=-1)
        is_obj_placed = obj_to_goal_dist <= self._goal_thresh
        success = is_obj_placed & (torch.max(torch.abs(qvel), -1)[0] <= 0.2)
        reward = 1 - torch.tanh(5 * torch.linalg.norm(self._entry(obs, "tcp_to_obj_pos"), dim=-1))
        reward = reward + is_grasped
        reward = reward + (1 - torch.tanh(5 * obj_to_goal_dist)) * is_grasped
        reward = reward + (1 - torch.tanh(5 * torch.linalg.norm(qvel, dim=-1))) * is_obj_placed
        return reward, success

    def _goal_actor(self, base):
        return base.goal_site


class PushCubeGoalTask(ManiSkillGoalTask):
    """ManiSkill ``PushCube-v1``: push the cube into a goal region on the table (``PushCubeEnv``'s reward and success)."""

    env_name = "PushCube-v1"
    goal_entries = ("goal_pos",)
    goal_dim = 2
    max_reward = 4.0

    def _goal_range(self, base):
        self._goal_radius, self._cube_half_size = base.goal_radius, base.cube_half_size
        # PushCube puts the goal 0.1 + goal_radius in front of a cube spawned in [-0.1, 0.1]^2
        offset = 0.1 + base.goal_radius
        return torch.tensor([-0.1 + offset, -0.1]), torch.tensor([0.1 + offset, 0.1])

    def _dense_reward(self, obs, goal, achieved):  # PushCubeEnv.evaluate and compute_dense_reward
        obj = self._entry(obs, "obj_pose")[..., :3]
        tcp = self._entry(obs, "tcp_pose")[..., :3]
        push_pose = obj + torch.tensor([-self._cube_half_size - 0.005, 0, 0], device=obj.device)
        tcp_to_push_pose_dist = torch.linalg.norm(push_pose - tcp, dim=-1)
        reached = tcp_to_push_pose_dist < 0.01
        obj_to_goal_dist = torch.linalg.norm(achieved - goal, dim=-1)
        place_reward = 1 - torch.tanh(5 * obj_to_goal_dist)
        z_reward = 1 - torch.tanh(5 * torch.abs(obj[..., 2] - self._cube_half_size))
        reward = 1 - torch.tanh(5 * tcp_to_push_pose_dist)
        reward = reward + place_reward * reached
        reward = reward + place_reward * z_reward * reached
        success = (obj_to_goal_dist < self._goal_radius) & (obj[..., 2] < self._cube_half_size + 5e-3)
        return reward, success

    def _goal_actor(self, base):
        return base.goal_region


MANISKILL_GOAL_TASKS = {task.env_name: task for task in (PickCubeGoalTask, PushCubeGoalTask)}
"""ManiSkill task id -> its goal task class."""


def goal_task(env, *, reward: str = "env") -> GoalTask:
    """The goal structure and reward of ``env``'s task.

    Args:
        env: a :class:`~agenthive.envs.RoboHiveEnv` of a reach, push or pick-place task,
            or a :class:`~agenthive.envs.ManiSkillEnv` of ``PickCube-v1`` or ``PushCube-v1``
            (a single env, not a ``ParallelEnv``; the task outlives it).

    Keyword Args:
        reward (str): ``"env"``: the env's own reward for its reward mode; ``"success"``:
            ``0`` when the goal is reached, ``-1`` otherwise. Defaults to ``"env"``.

    Examples:
        >>> from agenthive.envs import RoboHiveEnv
        >>> from tensordict import TensorDict
        >>> env = RoboHiveEnv("FrankaReachRandom-v0")
        >>> task = goal_task(env, reward="success")
        >>> env.close()
        >>> state = TensorDict(achieved_goal=torch.zeros(2, 3), desired_goal=torch.tensor([[0.0, 0.0, 0.01], [0.0, 0.0, 0.5]]))
        >>> task(TensorDict(next=state, batch_size=[2]))  # the reward of reaching each goal (HER's reward_fn)
        tensor([[ 0.],
                [-1.]])
    """
    if isinstance(env, RoboHiveWrapper):
        return RoboHiveGoalTask(env, reward=reward)
    if isinstance(env, ManiSkillEnv):
        if env.env_name not in MANISKILL_GOAL_TASKS:
            raise ValueError(f"GoalView supports ManiSkill {sorted(MANISKILL_GOAL_TASKS)}, got {env.env_name}.")
        return MANISKILL_GOAL_TASKS[env.env_name](env, reward=reward)
    raise TypeError(
        f"goal_task needs a RoboHiveEnv or a ManiSkillEnv, got {type(env).__name__}. Goal transforms read the "
        "simulator: put them inside each worker, ParallelEnv(N, EnvCreator(lambda: TransformedEnv(RoboHiveEnv(...), GoalView())))."
    )


class GoalView(Transform):
    """Adds ``"achieved_goal"`` and ``"desired_goal"`` and makes ``"observation"`` goal-free.

    The goal-dependent entries of the observation (RoboHive's ``"reach_err"`` /
    ``"target_err"``, ManiSkill's ``goal_pos`` / ``obj_to_goal_pos``) leave
    ``"observation"`` (and the per-key entries), so after relabelling a transition's
    ``"desired_goal"`` no stale goal is left for a policy to read: a goal-conditioned
    policy reads ``"observation"``, ``"achieved_goal"`` and ``"desired_goal"``.
    ``"success"`` stays the env's own.

    Keyword Args:
        reward (str): ``"env"`` (default) keeps the env's reward; ``"success"`` replaces it
            by ``0`` on success and ``-1`` otherwise (the sparse reward of goal-conditioned
            RL; RoboHive's own "sparse" is the negative distance).

    Attributes:
        task (GoalTask): the task's reward for any goal (HER's ``reward_fn``), once the
            view is attached to an env.

    Examples:
        >>> from torchrl.envs import TransformedEnv
        >>> from agenthive.envs import RoboHiveEnv
        >>> env = TransformedEnv(RoboHiveEnv("FrankaReachRandom-v0"), GoalView(reward="success"))
        >>> td = env.rollout(3)
        >>> td["observation"].shape, td["achieved_goal"].shape, td["desired_goal"].shape  # qp, qv: no reach_err
        (torch.Size([3, 18]), torch.Size([3, 3]), torch.Size([3, 3]))
        >>> reward, success = env.transform.task.evaluate(td["next"])
        >>> bool((reward == td["next", "reward"]).all()), bool((success == td["next", "success"]).all())
        (True, True)
    """

    def __init__(self, *, reward: str = "env"):
        if reward not in REWARDS:
            raise ValueError(f"reward={reward!r}: expected one of {REWARDS}.")
        super().__init__(in_keys=[], out_keys=[ACHIEVED_GOAL, DESIRED_GOAL])
        self.reward = reward
        self._task = None

    @property
    def task(self) -> GoalTask:
        if self._task is None:
            if self.parent is None:
                raise RuntimeError("GoalView.task exists once the view is in an env: TransformedEnv(env, GoalView()).")
            self._task = goal_task(self.parent.base_env, reward=self.reward)
        return self._task

    def _call(self, next_tensordict: TensorDictBase) -> TensorDictBase:
        achieved, desired = self.task.goals(self.parent.base_env, next_tensordict)
        next_tensordict.set(ACHIEVED_GOAL, achieved)
        next_tensordict.set(DESIRED_GOAL, desired)
        if self.task.observation_dim is not None:
            next_tensordict.set("observation", self.task.goal_free_observation(next_tensordict))
        if self.reward == "success" and "reward" in next_tensordict:
            next_tensordict.set("reward", next_tensordict.get("success").to(torch.float32) - 1)
        return next_tensordict.exclude(*self.task.dropped_keys)

    def _reset(self, tensordict: TensorDictBase, tensordict_reset: TensorDictBase) -> TensorDictBase:
        return self._call(tensordict_reset)

    def transform_observation_spec(self, observation_spec: Composite) -> Composite:
        task, shape, device = self.task, observation_spec.shape, observation_spec.device
        for key in task.dropped_keys:
            del observation_spec[key]
        if task.observation_dim is not None:
            observation_spec["observation"] = Unbounded((*shape, task.observation_dim), dtype=torch.float32, device=device)
        for key in (ACHIEVED_GOAL, DESIRED_GOAL):
            observation_spec[key] = Unbounded((*shape, task.goal_dim), dtype=torch.float32, device=device)
        return observation_spec

    def __repr__(self) -> str:
        return f"{type(self).__name__}(reward={self.reward!r})"


class DistanceCurriculum:
    """Goals within a distance of the achieved goal that grows with the success rate.

    A hook for :class:`GoalSetter`: each goal drawn from the task's box is pulled
    towards the achieved goal at reset until it is at most :attr:`distance` away; when
    the success rate of the last ``window`` episodes reaches ``threshold``, the distance
    grows by ``step`` (up to ``maximum``) and a new window starts.

    Keyword Args:
        start (float): the first distance, in meters. Defaults to 0.05.
        step (float): growth per promotion. Defaults to 0.05.
        maximum (float): the largest distance. Defaults to ``inf`` (in the end, the task's own goals).
        threshold (float): success rate that promotes. Defaults to 0.8.
        window (int): episodes per success rate. Defaults to 20.

    Examples:
        >>> curriculum = DistanceCurriculum(start=0.1, step=0.1, window=2)
        >>> curriculum(torch.zeros(3), torch.tensor([0.0, 0.0, 1.0]))  # 1 m away -> 0.1 m away
        tensor([0.0000, 0.0000, 0.1000])
        >>> curriculum.update(torch.tensor([True, True]))
        >>> curriculum.distance
        0.2
    """

    def __init__(self, *, start: float = 0.05, step: float = 0.05, maximum: float = math.inf, threshold: float = 0.8,
                 window: int = 20):
        if start <= 0 or step < 0 or maximum < start or not 0 < threshold <= 1 or window < 1:
            raise ValueError(
                f"DistanceCurriculum needs 0 < start <= maximum, step >= 0, 0 < threshold <= 1 and window >= 1; got "
                f"start={start}, step={step}, maximum={maximum}, threshold={threshold}, window={window}."
            )
        self.distance, self.step, self.maximum, self.threshold = start, step, maximum, threshold
        self.outcomes = collections.deque(maxlen=window)

    def __call__(self, achieved_goal: torch.Tensor, goal: torch.Tensor) -> torch.Tensor:
        """``goal`` moved towards ``achieved_goal`` to be at most :attr:`distance` away from it."""
        offset = goal - achieved_goal
        norm = torch.linalg.norm(offset, dim=-1, keepdim=True)
        return achieved_goal + offset * (self.distance / norm).clamp(max=1.0)

    def update(self, successes: torch.Tensor) -> None:
        """Records the outcome (bool) of each episode that just ended."""
        for success in successes.reshape(-1).tolist():
            self.outcomes.append(success)
            if len(self.outcomes) == self.outcomes.maxlen and sum(self.outcomes) >= self.threshold * len(self.outcomes):
                self.distance = min(self.distance + self.step, self.maximum)
                self.outcomes.clear()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(distance={self.distance:.3f})"


class GoalSetter(Transform):
    """Chooses the goal of each episode and writes it into the simulator; place it after a :class:`GoalView`.

    At reset, the goal is the ``"desired_goal"`` given to ``env.reset(td)`` if any, else
    one drawn from the task's goal box with the simulator's own random generator (so
    ``set_seed`` repeats it), passed through ``curriculum`` if one is given. Mid-episode,
    a ``"desired_goal"`` written into a step's input that differs from the current goal
    moves the goal before that step: the step's reward, success and termination, and
    what the cameras see, are for the new goal. ``"desired_goal"`` is a state entry of the
    env, so this also goes through :class:`~torchrl.envs.ParallelEnv` to its workers.

    Keyword Args:
        curriculum (callable, optional): ``curriculum(achieved_goal, goal) -> goal`` at
            each reset, and ``curriculum.update(successes)`` with the any-time success of
            each episode that ends (e.g. :class:`DistanceCurriculum`). Each worker of a
            batched env has its own copy. Defaults to ``None``: the task's goal box.

    Examples:
        >>> from tensordict import TensorDict
        >>> from torchrl.envs import Compose, TransformedEnv
        >>> from agenthive.envs import RoboHiveEnv
        >>> env = TransformedEnv(RoboHiveEnv("FrankaReachRandom-v0"), Compose(GoalView(), GoalSetter()))
        >>> td = env.reset(TensorDict(desired_goal=torch.tensor([0.1, 0.3, 1.0])))
        >>> td["desired_goal"]
        tensor([0.1000, 0.3000, 1.0000])
        >>> td["desired_goal"] = torch.tensor([0.0, 0.4, 0.9])  # a new goal, mid-episode
        >>> env.step(env.rand_action(td))["next", "desired_goal"]
        tensor([0.0000, 0.4000, 0.9000])
    """

    def __init__(self, *, curriculum=None):
        super().__init__(in_keys=[], out_keys=[])
        self.curriculum = curriculum
        self._task = None
        self._goal = None  # the goal the simulator holds, as last read back
        self._succeeded = None  # any-time success of the running episodes (with a curriculum)

    @property
    def task(self) -> GoalTask:
        if self._task is None:  # the setter scores success only, whatever reward the view gives
            self._task = goal_task(self.parent.base_env, reward="success")
        return self._task

    def _reset(self, tensordict: TensorDictBase, tensordict_reset: TensorDictBase) -> TensorDictBase:
        env, batch_size = self.parent.base_env, tensordict_reset.batch_size
        reset = tensordict.get("_reset", None)
        mask = torch.ones(batch_size, dtype=torch.bool) if reset is None else reset.reshape(batch_size).cpu()
        goal = tensordict.get(DESIRED_GOAL, None)
        if goal is None:
            goal = self.task.sample_goals(env, batch_size)
            if self.curriculum is not None:
                goal = self.curriculum(tensordict_reset.get(ACHIEVED_GOAL), goal)
        desired = self.task.set_desired_goal(env, goal, mask)
        tensordict_reset.set(DESIRED_GOAL, desired)
        # success depends on the goal: recompute it for the sub-envs whose goal moved
        _, success = self.task.evaluate(tensordict_reset)
        rows = mask.to(success.device).unsqueeze(-1)
        tensordict_reset.set("success", torch.where(rows, success, tensordict_reset.get("success")))
        self._goal = desired.clone()
        if self.curriculum is not None:
            succeeded = tensordict_reset.get("success").squeeze(-1)
            self._succeeded = succeeded.clone() if self._succeeded is None else torch.where(rows.squeeze(-1), succeeded, self._succeeded)
        return tensordict_reset

    def _inv_call(self, tensordict: TensorDictBase) -> TensorDictBase:
        goal = tensordict.get(DESIRED_GOAL, None)
        if goal is not None and self._goal is not None:
            changed = (goal != self._goal).any(-1)
            if changed.any():
                self._goal = self.task.set_desired_goal(self.parent.base_env, goal, changed.cpu())
        return tensordict

    def _step(self, tensordict: TensorDictBase, next_tensordict: TensorDictBase) -> TensorDictBase:
        if self.curriculum is not None:
            self._succeeded = self._succeeded | next_tensordict.get("success").squeeze(-1)
            done = next_tensordict.get("done").squeeze(-1)
            if done.any():
                self.curriculum.update(self._succeeded[done])
        return next_tensordict

    def transform_observation_spec(self, observation_spec: Composite) -> Composite:
        if DESIRED_GOAL not in observation_spec:
            raise ValueError("GoalSetter needs a GoalView before it: TransformedEnv(env, Compose(GoalView(), GoalSetter())).")
        return observation_spec

    def transform_state_spec(self, state_spec: Composite) -> Composite:
        # a state entry: reset(td) and step(td) take it, and ParallelEnv passes it to its workers
        state_spec[DESIRED_GOAL] = Unbounded((*state_spec.shape, self.task.goal_dim), dtype=torch.float32, device=state_spec.device)
        return state_spec

    def __repr__(self) -> str:
        return f"{type(self).__name__}(curriculum={self.curriculum!r})"
