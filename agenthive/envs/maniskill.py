"""ManiSkill3 tasks as TorchRL environments.

ManiSkill3 steps many sub-environments in one process and always answers with batched
torch tensors on the simulator's device (a GPU with ``sim_backend="physx_cuda"``).
torchrl's ``GymWrapper`` expects numpy-style single or vectorised gym envs and refuses
that, so :class:`ManiSkillEnv` subclasses :class:`~torchrl.envs.EnvBase` directly: each
step puts ManiSkill's tensors into a TensorDict as they are (no copy to the host, no
per-env Python loop), and torchrl's ``"_reset"`` mask becomes ManiSkill's partial reset
``reset(options={"env_idx": ...})``.

SAPIEN, ManiSkill's simulator, needs Vulkan even for state observations. On a machine
without a CUDA GPU, ManiSkillEnv points the Vulkan loader at Mesa's lavapipe CPU driver
(``VK_ICD_FILENAMES``) unless the user has set ``VK_ICD_FILENAMES`` or ``VK_DRIVER_FILES``
already; ``scripts/install.sh`` installs lavapipe from Mesa >= 25 (SAPIEN refuses
older ones).
"""
from __future__ import annotations

import contextlib
import importlib.util
import os

import torch
from tensordict import NonTensorData, TensorDict, TensorDictBase
from torchrl._utils import seed_generator
from torchrl.data import Bounded, Categorical, Composite, NonTensor, Unbounded
from torchrl.envs import EnvBase
from torchrl.envs.utils import _classproperty

from agenthive.envs.complete_step import CompleteStep

_has_maniskill = importlib.util.find_spec("mani_skill") is not None

# Mesa's lavapipe (Vulkan on the CPU); Debian's mesa-vulkan-drivers >= 25 installs it here.
LAVAPIPE_ICD = "/usr/share/vulkan/icd.d/lvp_icd.json"

SIM_BACKENDS = ("auto", "physx_cpu", "physx_cuda")

# ManiSkill 3.0.1 gives no instruction for its tabletop tasks (only the Bridge digital
# twins have ``get_language_instruction``); these follow each task's own description.
INSTRUCTIONS = {
    "PickCube-v1": "pick up the red cube and move it to the goal position",
    "PickCubeSO100-v1": "pick up the red cube and move it to the goal position",
    "PickCubeWidowXAI-v1": "pick up the red cube and move it to the goal position",
    "PushCube-v1": "push the cube to the goal region",
    "PullCube-v1": "pull the cube onto the goal region",
    "StackCube-v1": "stack the red cube on top of the green cube",
    "StackPyramid-v1": "place the red cube next to the green cube and stack the blue cube on top of both",
    "PegInsertionSide-v1": "insert the orange end of the peg into the hole in the box",
    "LiftPegUpright-v1": "lift the peg into an upright position",
    "PokeCube-v1": "use the peg to push the red cube to the goal position",
    "PlaceSphere-v1": "place the sphere into the shallow bin",
    "RollBall-v1": "roll the ball to the goal region",
    "PushT-v1": "push the T-shaped block onto the target",
    "PlugCharger-v1": "plug the charger into the receptacle",
    "TwoRobotPickCube-v1": "pick up the red cube and lift it to the goal position",
    "TwoRobotStackCube-v1": "stack the blue cube on top of the green cube on the target region",
    "SO100GraspCube-v1": "grasp the cube and lift it",
    "UnitreeG1PlaceAppleInBowl-v1": "pick up the apple and place it in the bowl",
}


def _point_vulkan_at_lavapipe() -> None:
    """Selects lavapipe for Vulkan when no GPU is visible and the user chose no driver.

    Must run before SAPIEN creates its Vulkan instance (at ``import sapien``).
    """
    user_choice = os.environ.get("VK_ICD_FILENAMES") or os.environ.get("VK_DRIVER_FILES")
    if user_choice or torch.cuda.is_available() or not os.path.exists(LAVAPIPE_ICD):
        return
    os.environ["VK_ICD_FILENAMES"] = LAVAPIPE_ICD


def _missing_assets(env_name: str, detail: str) -> FileNotFoundError:
    from mani_skill import ASSET_DIR

    return FileNotFoundError(
        f"ManiSkill task {env_name!r} needs assets that are not on this machine ({detail}). "
        f"Download them first with `python -m mani_skill.utils.download_asset <uid>`, where "
        f"<uid> is the task id for task assets, the robot uid for robot assets, or a scene "
        f"dataset (`-l scene` lists them); they go to {ASSET_DIR} (set by $MS_ASSET_DIR). "
        f"MS_SKIP_ASSET_DOWNLOAD_PROMPT=1 makes ManiSkill download them without asking. "
        f"Tasks such as 'PickCube-v1' need no download."
    )


@contextlib.contextmanager
def _missing_assets_raise(env_name: str):
    """Turns ManiSkill's ways of meeting missing assets into one clear error.

    ManiSkill asks ``(y|n)`` on stdin when a task or robot needs assets that are not on
    disk (and calls ``exit()`` on "n"); CI has no stdin. Scene datasets just fail to open
    a file under ManiSkill's asset directory. ``MS_SKIP_ASSET_DOWNLOAD_PROMPT=1``
    (ManiSkill's own switch: download without asking) is left to ManiSkill.
    """
    from mani_skill import ASSET_DIR
    from mani_skill.utils import download_asset

    prompt = download_asset.prompt_yes_no

    def refuse(message):
        if os.getenv("MS_SKIP_ASSET_DOWNLOAD_PROMPT") == "1":
            return prompt(message)
        raise _missing_assets(env_name, f"ManiSkill asks: {message.strip()!r}")

    download_asset.prompt_yes_no = refuse
    try:
        yield
    except FileNotFoundError as error:
        if error.filename is None or not str(error.filename).startswith(str(ASSET_DIR)):
            raise
        raise _missing_assets(env_name, f"{error.filename} does not exist") from error
    finally:
        download_asset.prompt_yes_no = prompt


def _spec_like(value: torch.Tensor, device: torch.device):
    """The spec of one observation leaf, read off a real observation."""
    if value.dtype == torch.uint8:  # camera images
        return Bounded(0, 255, shape=value.shape, dtype=torch.uint8, device=device)
    if value.dtype == torch.bool:
        return Categorical(2, shape=value.shape, dtype=torch.bool, device=device)
    return Unbounded(shape=value.shape, dtype=value.dtype, device=device)


def _composite_like(td: TensorDictBase) -> Composite:
    specs = {}
    for key, value in td.items():
        if isinstance(value, NonTensorData):
            specs[key] = NonTensor(shape=value.batch_size, example_data=value.data, device=td.device)
        elif isinstance(value, TensorDictBase):
            specs[key] = _composite_like(value)
        else:
            specs[key] = _spec_like(value, td.device)
    return Composite(specs, shape=td.batch_size, device=td.device)


def _action_spec_like(space, shape: tuple, device: torch.device):
    """Bounded specs from ManiSkill's unbatched gymnasium Box (or Dict of Box) action space."""
    import gymnasium as gym

    if isinstance(space, gym.spaces.Dict):  # one Box per robot in multi-robot tasks
        return Composite(
            {uid: _action_spec_like(sub, shape, device) for uid, sub in space.items()},
            shape=shape,
            device=device,
        )
    return Bounded(
        low=torch.as_tensor(space.low, device=device).expand(*shape, *space.shape),
        high=torch.as_tensor(space.high, device=device).expand(*shape, *space.shape),
        shape=(*shape, *space.shape),
        dtype=torch.float32,
        device=device,
    )


def _stack_cameras(images: list[torch.Tensor]) -> torch.Tensor:
    """[N, ...] per camera -> [N, n_cams, ...]; one camera is a view, not a copy."""
    return images[0].unsqueeze(1) if len(images) == 1 else torch.stack(images, dim=1)


def _first(out: dict) -> dict:
    """Sub-env 0 of a nested dict of batched tensors (views, no copy)."""
    return {key: _first(value) if isinstance(value, dict) else value[0] for key, value in out.items()}


class ManiSkillEnv(CompleteStep, EnvBase):
    """A ManiSkill3 task as a TorchRL environment, batched on ManiSkill's own API.

    With ``num_envs=N`` the env has batch size ``[N]`` and steps all ``N`` sub-envs in one
    ManiSkill call; with the ``physx_cuda`` backend every tensor stays on the GPU. The CPU
    backend (``physx_cpu``) simulates one env per process: leave ``num_envs`` unset to get
    a single, unbatched env (batch size ``[]``) and batch it with torchrl's
    :class:`~torchrl.envs.ParallelEnv` (or ``SerialEnv``). ``ParallelEnv(N, ...)`` of single
    envs has the same keys, dtypes and shapes as ``ManiSkillEnv(..., num_envs=N)``, so
    policies, collectors and losses do not change between a laptop and a GPU node.

    Output keys, per sub-env (prefix ``[N]`` in a batched env):

    * ``"observation"``: the flat state vector, with ``obs_mode="state"`` or ``"...+state"``.
    * ``"agent"``, ``"extra"``: ManiSkill's state dictionaries as nested entries, with
      ``obs_mode="state_dict"`` and the camera modes (``"rgb"``, ``"rgbd"``, ...).
    * ``"pixels"``: uint8 ``[n_cams, H, W, 3]``, cameras stacked in the order of
      :attr:`camera_names` (the layout of ``RoboHiveEnv``'s ``"pixels"``).
    * ``"depth"``: int16 ``[n_cams, H, W, 1]`` in millimetres (ManiSkill's unit). Other
      textures of ``obs_mode`` (``"segmentation"``, ``"position"``, ``"normal"``,
      ``"albedo"``) come out stacked the same way under their own names.
    * ``"camera_params"``: ``"intrinsic_cv"`` ``[n_cams, 3, 3]``, ``"extrinsic_cv"``
      ``[n_cams, 3, 4]``, ``"cam2world_gl"`` ``[n_cams, 4, 4]``.
    * ``"pointcloud"``: ``"xyzw"``, ``"rgb"``, ``"segmentation"``, with
      ``obs_mode="pointcloud"``.
    * ``"success"``, ``"fail"``: bool ``[1]`` (``False`` for tasks that define none);
      ``"terminated"`` (success or fail), ``"truncated"`` (time limit), ``"done"``: bool ``[1]``;
      ``"reward"``: float32 ``[1]``, also for ``reward_mode="sparse"`` (bool in ManiSkill).
    * ``"instruction"``: with ``instruction=True`` (or a sentence), the task as a sentence
      (non-tensor), for language-conditioned policies. Off by default: a non-tensor entry
      costs torchrl about 80 us per step, more than 5% of a CPU state step.
    * ``"action"``: float32 ``[action_dim]``, bounded by the controller's limits; in
      multi-robot tasks one entry per robot under ``"action"``.

    Episodes end after ManiSkill's ``max_episode_steps`` (override with
    ``max_episode_steps=``). ManiSkill has no auto-reset: torchrl resets finished sub-envs
    through the ``"_reset"`` mask (``rollout(break_when_any_done=False)``, collectors), and
    only those sub-envs restart.

    Args:
        env_name (str): a registered ManiSkill task id, e.g. ``"PickCube-v1"``
            (see :attr:`available_envs`).

    Keyword Args:
        num_envs (int, optional): number of sub-envs simulated together; the env's batch
            size is ``[num_envs]``. ``None`` (default): one env, batch size ``[]``.
        obs_mode (str, optional): ``"state"`` (default), ``"state_dict"``, ``"rgb"``,
            ``"rgbd"``, ``"depth"``, ``"pointcloud"``, ``"sensor_data"``, or textures joined by
            ``+`` (``"rgb+depth+state"``).
        control_mode (str, optional): ManiSkill controller, e.g. ``"pd_joint_delta_pos"``
            or ``"pd_ee_delta_pose"``; ``None`` takes the task's default.
        reward_mode (str, optional): ``"dense"``, ``"normalized_dense"``, ``"sparse"`` or
            ``"none"``; ``None`` takes the task's default (usually ``"normalized_dense"``).
        sim_backend (str, optional): ``"physx_cpu"`` (one env), ``"physx_cuda"`` (needs a
            CUDA GPU) or ``"auto"`` (default): ``physx_cuda`` when ``num_envs > 1``, else
            ``physx_cpu``.
        render_mode (str, optional): ``"rgb_array"`` makes :meth:`render` return the task's
            human-view camera as uint8 ``[H, W, 3]`` per sub-env, for
            :class:`~torchrl.record.PixelRenderTransform` and
            :class:`~torchrl.record.VideoRecorder`.
        device (torch.device, optional): where the outputs live. Defaults to the
            simulator's device (``cpu`` or ``cuda:0``); another device costs a copy per step.
        instruction (bool or str, optional): ``True`` adds the ``"instruction"`` key with
            :attr:`instruction` (ManiSkill's ``get_language_instruction()`` where the task has
            one, else :data:`INSTRUCTIONS`); a string adds that sentence instead. Defaults
            to ``False`` (no key).
        **kwargs: passed to ManiSkill's ``gym.make``, e.g.
            ``sensor_configs=dict(width=128, height=128)`` (camera resolution),
            ``max_episode_steps``, ``robot_uids``, ``sim_config``. ``render_backend``
            defaults to ``"cpu"`` when no CUDA GPU is visible.

    Raises:
        FileNotFoundError: the task or its robot needs assets that are not downloaded
            (ManiSkill would otherwise ask on stdin).
        ValueError: unknown task, unknown ``sim_backend``, or ``num_envs > 1`` on
            ``physx_cpu``.
        RuntimeError: ``physx_cuda`` without a CUDA GPU, which includes ``num_envs > 1``
            with ``sim_backend="auto"`` on a CPU machine. Unlike ``RoboHiveEnv(num_envs=N)``,
            which steps N MuJoCo simulators in threads, ManiSkill's CPU backend holds one
            env per process: batch it with ``ParallelEnv`` or collector workers.

    Examples:
        >>> from functools import partial
        >>> from torchrl.envs import ParallelEnv
        >>> from agenthive.envs import ManiSkillEnv
        >>> env = ManiSkillEnv("PickCube-v1", instruction=True)
        >>> next_seed = env.set_seed(0)
        >>> rollout = env.rollout(3)
        >>> rollout["observation"].shape, rollout["next", "reward"].dtype
        (torch.Size([3, 42]), torch.float32)
        >>> rollout[0]["instruction"]
        'pick up the red cube and move it to the goal position'
        >>> env = ManiSkillEnv("PickCube-v1", obs_mode="rgb", sensor_configs=dict(width=64, height=64))
        >>> env.camera_names, env.reset()["pixels"].shape
        (['base_camera'], torch.Size([1, 64, 64, 3]))
        >>> cpu_batch = ParallelEnv(2, partial(ManiSkillEnv, "PickCube-v1"))  # same specs as num_envs=2 on a GPU
        >>> cpu_batch.rollout(3)["next", "done"].shape
        torch.Size([2, 3, 1])
        >>> cpu_batch.close()
    """

    def __init__(
        self,
        env_name: str,
        *,
        num_envs: int | None = None,
        obs_mode: str = "state",
        control_mode: str | None = None,
        reward_mode: str | None = None,
        sim_backend: str = "auto",
        render_mode: str | None = None,
        device: torch.device | str | None = None,
        instruction: bool | str = False,
        **kwargs,
    ):
        if not _has_maniskill:
            raise ImportError(
                "ManiSkillEnv needs ManiSkill: pip install 'agenthive[maniskill]' "
                "(mani_skill==3.0.1, sapien==3.0.3) and a Vulkan driver (scripts/install.sh)."
            )
        if num_envs is not None and num_envs < 1:
            raise ValueError(f"num_envs must be None (one unbatched env) or >= 1, got {num_envs}.")
        self._batched = num_envs is not None
        self._num_sim_envs = num_envs if self._batched else 1
        sim_backend = self._check_sim_backend(sim_backend, self._num_sim_envs)
        _point_vulkan_at_lavapipe()
        import gymnasium as gym
        import mani_skill.envs  # noqa: F401  (registers the tasks with gymnasium)
        from mani_skill.utils.registration import REGISTERED_ENVS

        if env_name not in REGISTERED_ENVS:
            raise ValueError(
                f"Unknown ManiSkill task {env_name!r}; expected one of ManiSkillEnv.available_envs, "
                f"e.g. 'PickCube-v1'."
            )
        kwargs.setdefault("render_backend", "gpu" if torch.cuda.is_available() else "cpu")
        with _missing_assets_raise(env_name):
            self._env = gym.make(
                env_name,
                num_envs=self._num_sim_envs,
                obs_mode=obs_mode,
                control_mode=control_mode,
                reward_mode=reward_mode,
                sim_backend=sim_backend,
                render_mode=render_mode,
                **kwargs,
            )
        base = self._env.unwrapped
        self._sim_device = base.device
        super().__init__(
            device=self._sim_device if device is None else device,
            batch_size=[] if num_envs is None else [num_envs],
        )
        self.env_name = env_name
        self.obs_mode = obs_mode
        self.sim_backend = sim_backend
        self.instruction = instruction if isinstance(instruction, str) else self._task_instruction(base)
        if instruction is True and self.instruction is None:
            self._env.close()
            raise ValueError(
                f"No language instruction is known for {env_name!r}; pass the sentence "
                f"itself, e.g. instruction='pick up the cube'."
            )
        # built once and shared by every step's output
        self._instruction = (
            NonTensorData(self.instruction, batch_size=self.batch_size, device=self._sim_device)
            if instruction is not False
            else None
        )
        self._seeds = None  # per-sub-env seeds for the next reset, from set_seed
        self._reset_rng = None  # seeds every later reset once set_seed was called
        self._make_specs(base)

    def _task_instruction(self, base) -> str | None:
        if hasattr(base, "get_language_instruction"):
            # the Bridge digital twins return one (identical) sentence per sub-env
            return base.get_language_instruction()[0]
        return INSTRUCTIONS.get(self.env_name)

    @staticmethod
    def _check_sim_backend(sim_backend: str, num_envs: int) -> str:
        if sim_backend not in SIM_BACKENDS:
            raise ValueError(f"sim_backend must be one of {SIM_BACKENDS}, got {sim_backend!r}.")
        asked = sim_backend
        if sim_backend == "auto":
            sim_backend = "physx_cuda" if num_envs > 1 else "physx_cpu"
        cpu_hint = (
            "On a CPU machine batch single envs instead (num_envs unset): "
            "ParallelEnv(N, partial(ManiSkillEnv, name, ...)), or collector workers of single envs."
        )
        if sim_backend == "physx_cpu" and num_envs > 1:
            raise ValueError(f"sim_backend='physx_cpu' simulates one env per process, got num_envs={num_envs}. {cpu_hint}")
        if sim_backend == "physx_cuda" and not torch.cuda.is_available():
            why = (
                f"num_envs={num_envs} with sim_backend='auto' picks physx_cuda (physx_cpu simulates one env per process), and "
                if asked == "auto"
                else ""
            )
            raise RuntimeError(f"{why}sim_backend='physx_cuda' needs a CUDA GPU and torch sees none. {cpu_hint}")
        return sim_backend

    @_classproperty
    def available_envs(cls) -> list[str]:
        """The registered ManiSkill task ids (some need an asset download)."""
        if not _has_maniskill:
            return []
        import mani_skill.envs  # noqa: F401
        from mani_skill.utils.registration import REGISTERED_ENVS

        return sorted(REGISTERED_ENVS)

    @property
    def maniskill_env(self):
        """The ManiSkill gymnasium env this env steps (``.unwrapped`` is ManiSkill's ``BaseEnv``)."""
        return self._env

    def state_entries(self) -> dict[str, int]:
        """Name -> size of each entry of the flat ``"observation"`` state vector, in its order (agent entries, then extras).

        Read from ManiSkill's own state dictionary (``BaseEnv._get_obs_state_dict``, which has no
        public counterpart in ManiSkill 3.0), so that no other module reaches into it.
        """
        base = self._env.unwrapped
        state = base._get_obs_state_dict(base.evaluate())
        return {name: value[0].numel() for group in state.values() for name, value in group.items()}

    def move_actor(self, actor, pose) -> None:
        """Places a ManiSkill actor (a goal marker, say) at ``pose`` now, on the CPU and the GPU simulator alike."""
        actor.set_pose(pose)
        base = self._env.unwrapped
        if base.gpu_sim_enabled:
            base.scene._gpu_apply_all()  # or the next step's fetch overwrites the new pose (GPU: not tested here)

    @property
    def episode_rng(self):
        """ManiSkill's per-sub-env random generators, seeded by each reset (``BaseEnv._batched_episode_rng``)."""
        return self._env.unwrapped._batched_episode_rng

    @property
    def camera_names(self) -> list[str]:
        """The cameras stacked in ``"pixels"`` (and the other textures), in order."""
        return list(self._env.unwrapped._sensors)

    def _make_specs(self, base) -> None:
        example = self._to_tensordict(base.get_obs(), {})
        self.observation_spec = _composite_like(example)
        self.full_action_spec = Composite(
            action=_action_spec_like(base.single_action_space, tuple(self.batch_size), self.device),
            shape=self.batch_size,
            device=self.device,
        )
        self.reward_spec = Unbounded(shape=(*self.batch_size, 1), dtype=torch.float32, device=self.device)
        self.done_spec = Composite(
            {key: Categorical(2, (*self.batch_size, 1), dtype=torch.bool, device=self.device)
             for key in ("done", "terminated", "truncated")},
            shape=self.batch_size,
            device=self.device,
        )

    def _observation(self, obs) -> dict:
        """ManiSkill's observation (batched tensor or nested dict) -> this env's keys."""
        if isinstance(obs, torch.Tensor):  # obs_mode="state"
            return {"observation": obs}
        out = {}
        for key, value in obs.items():
            if isinstance(value, dict) and not value:  # e.g. no extras, or sensor_data in pointcloud mode
                continue
            if key == "state":  # "...+state" modes
                out["observation"] = value
            elif key == "sensor_data":
                cameras = list(value.values())
                for texture in cameras[0]:
                    name = "pixels" if texture == "rgb" else texture
                    out[name] = _stack_cameras([camera[texture] for camera in cameras])
            elif key == "sensor_param":
                cameras = list(value.values())
                out["camera_params"] = {
                    param: _stack_cameras([camera[param] for camera in cameras]) for param in cameras[0]
                }
            else:
                out[key] = value
        return out

    def _to_tensordict(self, obs, info: dict, **flags: torch.Tensor) -> TensorDictBase:
        """One TensorDict from ManiSkill's outputs; ``flags`` are bool or float ``[N]`` tensors."""
        out = self._observation(obs)
        if not self._batched:
            out = _first(out)
        for key in ("success", "fail"):
            flags[key] = info[key] if key in info else self._falses()
        for key, flag in flags.items():
            out[key] = flag.unsqueeze(-1) if self._batched else flag  # [N, 1], or [1] for one env
        if self._instruction is not None:
            out["instruction"] = self._instruction
        # every leaf is already on the simulator's device with the batch dims: skip the checks
        td = TensorDict._new_unsafe(out, batch_size=self.batch_size, device=self._sim_device)
        return td if self.device == self._sim_device else td.to(self.device, non_blocking=True)

    def _falses(self) -> torch.Tensor:
        return torch.zeros(self._num_sim_envs, dtype=torch.bool, device=self._sim_device)

    def _step(self, tensordict: TensorDictBase) -> TensorDictBase:
        action = tensordict.get("action")
        if not self._batched:
            action = action.unsqueeze(0)
        if isinstance(action, TensorDictBase):  # multi-robot tasks: one action per robot
            action = action.to_dict()
        obs, reward, terminated, truncated, info = self._env.step(action)
        return self._to_tensordict(
            obs,
            info,
            reward=reward.to(torch.float32),
            terminated=terminated,
            truncated=truncated,
            done=terminated | truncated,
        )

    def _reset(self, tensordict: TensorDictBase | None = None, **kwargs) -> TensorDictBase:
        options = {}
        reset = None if tensordict is None else tensordict.get("_reset", None)
        if reset is not None:
            reset = reset.reshape(-1)
            if not reset.any():
                return tensordict.exclude("_reset")
            if not reset.all():
                options["env_idx"] = reset.nonzero().squeeze(-1).to(self._sim_device)
        obs, info = self._reset_simulator(options)
        return self._to_tensordict(obs, info, done=self._falses(), terminated=self._falses(), truncated=self._falses())

    def _reset_simulator(self, options: dict):
        if self._seeds is not None:
            seeds, self._seeds = self._seeds, None
            return self._env.reset(seed=seeds, options=options)
        if self._reset_rng is None:
            return self._env.reset(options=options)
        # Later episodes: ManiSkill draws initial states from torch's global RNG; seed a
        # fork of it from set_seed's stream so episodes repeat without touching user RNG.
        # (A seeded ManiSkill reset would rebuild one numpy RNG per sub-env each time.)
        devices = [self._sim_device.index or 0] if self._sim_device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(int(torch.randint(2**62, (), generator=self._reset_rng)))
            return self._env.reset(options=options)

    def _set_seed(self, seed: int | None) -> None:
        if seed is None:
            self._seeds = self._reset_rng = None
            return
        self._seeds = [seed]
        for _ in range(self._num_sim_envs - 1):
            self._seeds.append(seed_generator(self._seeds[-1]))
        self._reset_rng = torch.Generator().manual_seed(seed)

    def set_seed(self, seed: int | None = None, static_seed: bool = False) -> int | None:
        """Seeds the next reset: sub-env ``i`` gets the ``i``-th seed of torchrl's chain.

        The chain (``seed``, ``seed_generator(seed)``, ...) is the one
        :class:`~torchrl.envs.ParallelEnv` hands its workers, so ``set_seed(s)`` gives
        ``ManiSkillEnv(..., num_envs=N)`` and ``ParallelEnv(N, single envs)`` the same
        per-sub-env seeds. Episodes after that first reset are seeded from ``seed`` too,
        so a rollout repeats exactly on the CPU backend.

        Returns:
            the seed for the next env to seed (after the ``N`` used here), or ``seed``
            itself with ``static_seed=True``.
        """
        self._set_seed(seed)
        if seed is None or static_seed:
            return seed
        return seed_generator(self._seeds[-1])

    def render(self) -> torch.Tensor:
        """The task's human-view camera: uint8 ``[H, W, 3]``, ``[N, H, W, 3]`` when batched (``render_mode="rgb_array"``)."""
        frames = self._env.unwrapped.render()  # ManiSkill's constructor has reset: no need to wait for reset()
        return frames if self.batch_size else frames.squeeze(0)

    def __repr__(self) -> str:
        num_envs = f"num_envs={self._num_sim_envs}, " if self._batched else ""
        return (
            f"{type(self).__name__}(env={self.env_name}, {num_envs}obs_mode={self.obs_mode}, "
            f"sim_backend={self.sim_backend}, device={self.device})"
        )

    def close(self, *, raise_if_closed: bool = True) -> None:
        if not self.is_closed:
            self._env.close()
        super().close(raise_if_closed=raise_if_closed)
