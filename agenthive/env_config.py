"""A JSON-able description of an environment and its observation pipeline, and the env it builds.

``scripts/train.py`` saves an :class:`EnvConfig` with every checkpoint; ``python -m
agenthive eval`` rebuilds the very same environment from it (overriding, say, the task id),
so a policy always meets the observations it was trained on.

Observation pipelines (``observation=``):

* ``"state"``: the simulator's state vector, under ``"observation"``;
* ``"r3m"`` / ``"vip"``: camera images embedded by R3M or VIP (:mod:`agenthive.vision`,
  after the batching: one ResNet call per step for all envs and cameras), flattened and
  concatenated with the proprioceptive ``"observation"`` under ``"embedding"``.

``goal_reward`` makes the env goal-conditioned (:mod:`agenthive.goals`): a
:class:`~agenthive.goals.GoalView` on each simulator env adds ``"achieved_goal"`` and
``"desired_goal"`` and leaves ``"observation"`` goal-free; a policy reads all three.

``make_env(..., teacher_camera=CAMERA)`` also keeps one camera's images under
``"teacher_image"`` beside a state pipeline: a served teacher that reads images (a VLA)
guides a student that reads state (``scripts/train.py --teacher-camera``).

Every env also counts steps (``"step_count"``), sums rewards (``"episode_reward"``) and marks
first steps (``"is_init"``, which :class:`~agenthive.modules.RemotePolicyModule` reads).
"""
from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass, field

import torch
from torchrl.envs import (
    CatTensors,
    Compose,
    EnvBase,
    EnvCreator,
    FlattenObservation,
    InitTracker,
    ParallelEnv,
    RenameTransform,
    RewardSum,
    SqueezeTransform,
    StepCounter,
    TransformedEnv,
)

BACKENDS = ("robohive", "maniskill")
"""The simulators an env id may name (``EnvConfig.backend``, ``serve-env --backend``)."""
OBSERVATIONS = ("state", "r3m", "vip")
VIDEO_KEY = "video_frames"  # uint8 [n_cams, H, W, 3] camera images kept for videos
TEACHER_IMAGE_KEY = "teacher_image"  # uint8 [H, W, 3] one camera's images kept for a teacher that reads images


@dataclass
class EnvConfig:
    """What :func:`make_env` builds; every field is JSON-able."""

    env: str = "FrankaReachRandom-v0"  # task id
    backend: str = "robohive"  # "robohive" or "maniskill"
    observation: str = "state"  # "state", "r3m" or "vip"
    encoder_model: str = "resnet50"  # ResNet of R3M ("resnet18/34/50") or VIP ("resnet50")
    encoder_weights: str | None = None  # R3M/VIP checkpoint file or directory (see agenthive.vision)
    encoder_pretrained: bool = True  # False: a randomly initialised encoder
    cameras: list[str] = field(default_factory=list)  # cameras for r3m/vip (RoboHive: default, the id's own)
    image_size: int = 224  # rendered image height and width for r3m/vip
    frame_skip: int = 1  # repeat each action this many simulator steps
    env_kwargs: dict = field(default_factory=dict)  # more keyword arguments for RoboHiveEnv / ManiSkillEnv
    goal_reward: str | None = None  # goal-conditioned: "env" (the task's reward) or "success" (0 on success, else -1)

    def __post_init__(self):
        if self.backend not in BACKENDS:
            raise ValueError(f"backend={self.backend!r}: expected one of {BACKENDS}.")
        if self.observation not in OBSERVATIONS:
            raise ValueError(f"observation={self.observation!r}: expected one of {OBSERVATIONS}.")
        if self.goal_reward not in (None, "env", "success"):
            raise ValueError(f"goal_reward={self.goal_reward!r}: expected None, 'env' or 'success'.")
        if self.backend == "maniskill" and self.observation != "state":
            raise ValueError("ManiSkill envs are built with observation='state' here; images need obs_mode='rgb' "
                             "and a GPU to train at a useful speed.")

    @property
    def policy_key(self) -> str:
        """The entry a policy reads: ``"observation"`` (state) or ``"embedding"`` (R3M/VIP)."""
        return "observation" if self.observation == "state" else "embedding"

    @property
    def policy_keys(self) -> list[str]:
        """The entries a policy reads: :attr:`policy_key`, and the achieved and desired goal with ``goal_reward``."""
        return [self.policy_key, "achieved_goal", "desired_goal"] if self.goal_reward else [self.policy_key]

    @property
    def success_steps(self) -> int:
        """An episode succeeded when ``"success"`` held on more than this many of its steps.

        RoboHive's ``evaluate_success`` counts an episode solved on more than 5 steps;
        ManiSkill reports success once reached (its tasks end there).
        """
        return 5 if self.backend == "robohive" else 0

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> EnvConfig:
        unknown = sorted(set(values) - {f.name for f in dataclasses.fields(cls)})
        if unknown:
            raise ValueError(f"Unknown env config field(s) {unknown}; expected {[f.name for f in dataclasses.fields(cls)]}.")
        return cls(**values)


def make_simulator(backend: str, env: str, **kwargs) -> EnvBase:
    """The simulator's own TorchRL env for a task id: ``RoboHiveEnv`` or ``ManiSkillEnv``, given ``kwargs``.

    The one place that maps a backend name to a simulator class (:func:`make_env`,
    ``scripts/collect.py`` and ``serve-env`` build through it).

    Example:
        >>> make_simulator("robohive", "FrankaReachRandom-v0", frame_skip=2).frame_skip
        2
    """
    if backend == "robohive":
        from agenthive.envs import RoboHiveEnv

        return RoboHiveEnv(env, **kwargs)
    if backend == "maniskill":
        from agenthive.envs import ManiSkillEnv

        return ManiSkillEnv(env, **kwargs)
    raise ValueError(f"backend={backend!r}: expected one of {BACKENDS}.")


def threads_per_process(processes: int) -> int:
    """This machine's cores (those this process may run on) shared among ``processes``; at least 1."""
    from agenthive.envs.robohive_batched import available_cores

    return max(1, available_cores() // processes)


def _robohive(config: EnvConfig, device, camera, size, num_envs=None, num_threads=None):
    """RoboHive's env; ``camera`` (state pipelines): also render it at ``size`` (for a video or a teacher)."""
    kwargs = dict(config.env_kwargs, frame_skip=config.frame_skip, device=device)
    if num_envs is not None:
        kwargs.update(num_envs=num_envs, num_threads=num_threads)
    if config.observation != "state":
        size = (config.image_size, config.image_size)
        kwargs.update(from_pixels=True, cameras=config.cameras or None, image_size=size, shadows=False)
    elif camera:
        kwargs.update(from_pixels=True, cameras=[camera], image_size=(size, size))
    return _with_goal_view(config, make_simulator("robohive", config.env, **kwargs))


def _maniskill(config: EnvConfig, device, num_envs, image_key=None, size=None):
    """ManiSkill's env; ``image_key``: also keep its human-view camera's images there (``size``: their height and width)."""
    kwargs = dict(config.env_kwargs, device=device, render_mode="rgb_array" if image_key else None)
    if size:
        kwargs["human_render_camera_configs"] = {"width": size, "height": size}
    if config.frame_skip != 1:
        raise ValueError("frame_skip is a RoboHive option; ManiSkill's control frequency is set with sim_config.")
    env = _with_goal_view(config, make_simulator("maniskill", config.env, num_envs=num_envs, **kwargs))
    if not image_key:
        return env
    from torchrl.record import PixelRenderTransform  # here, so that each ParallelEnv worker renders its own env

    return TransformedEnv(env, PixelRenderTransform(out_keys=[image_key]))


def _with_goal_view(config: EnvConfig, env: EnvBase) -> EnvBase:
    """A GoalView reads the simulator, so it sits on the simulator env (each ParallelEnv worker's, or the batched one)."""
    if not config.goal_reward:
        return env
    from agenthive.goals import GoalView

    return TransformedEnv(env, GoalView(reward=config.goal_reward))


def make_env(
    config: EnvConfig,
    *,
    num_envs: int = 1,
    device: str | torch.device = "cpu",
    num_threads: int | None = None,
    video_camera: str | None = None,
    video_size: int = 128,
    teacher_camera: str | None = None,
    teacher_image_size: int = 224,
) -> EnvBase:
    """Builds ``config``'s environment: ``num_envs`` copies batched, with the observation pipeline.

    Args:
        config: the environment and observation pipeline.

    Keyword Args:
        num_envs: ``1`` gives one env (batch size ``[]``); more give batch size ``[num_envs]``:
            RoboHive simulators in this process, stepped by threads
            (``RoboHiveEnv(num_envs=N)``); ManiSkill on a CUDA device in one GPU simulator; ManiSkill
            on the CPU in a ``ParallelEnv`` (one process each: ``physx_cpu`` holds one env).
        device: where the env's data lives (and RoboHive renders).
        num_threads: threads stepping a batched RoboHive env (``None``: the cores available;
            ``0`` or ``1``: one after the other). Give fewer when several processes step envs.
        video_camera: also keep camera images under ``"video_frames"`` (uint8
            ``[n_cams, H, W, 3]``). For state pipelines this RoboHive camera is rendered at
            ``video_size``; R3M/VIP pipelines keep their own cameras' images; ManiSkill
            renders its human-view camera (pass any non-empty name).
        video_size: image height and width for ``video_camera`` (state pipelines).
        teacher_camera: state pipelines: also keep this camera's images under
            ``"teacher_image"`` (uint8 ``[H, W, 3]``), for a served teacher that reads images
            while the student reads state. RoboHive renders the named camera; ManiSkill its
            human-view camera (pass any non-empty name). Not with ``video_camera``.
        teacher_image_size: image height and width for ``teacher_camera``.

    Raises:
        ValueError: ``teacher_camera`` with ``video_camera``, or with an R3M/VIP pipeline.

    Examples:
        >>> env = make_env(EnvConfig("FrankaReachRandom-v0"), num_envs=1)
        >>> td = env.rollout(3)
        >>> td["next", "observation"].shape, td["next", "episode_reward"].shape, td["next", "step_count"][-1].item()
        (torch.Size([3, 21]), torch.Size([3, 1]), 3)
        >>> make_env(EnvConfig("FrankaReachRandom-v0"), teacher_camera="top_cam", teacher_image_size=32).rollout(2)["teacher_image"].shape
        torch.Size([2, 32, 32, 3])
    """
    camera, size, image_key = _camera(config, video_camera, video_size, teacher_camera, teacher_image_size)
    device = torch.device(device)
    if config.backend == "robohive":
        base = _robohive(config, device, camera, size, None if num_envs == 1 else num_envs, num_threads)
    else:  # ManiSkill renders its human-view camera; at its own size for videos
        create = functools.partial(_maniskill, config, device, image_key=image_key, size=size if teacher_camera else None)
        if device.type == "cuda":  # all sub-envs in one GPU simulator
            base = create(None if num_envs == 1 else num_envs)
        else:  # the CPU simulates one env per process
            base = create(None) if num_envs == 1 else ParallelEnv(num_envs, EnvCreator(functools.partial(create, None)), device=device)

    transforms = []
    if camera and config.backend == "robohive":
        transforms.append(RenameTransform(["pixels"], [image_key], create_copy=config.observation != "state"))
        if teacher_camera:  # [1, H, W, 3]: the one camera's image
            transforms.append(SqueezeTransform(-4, in_keys=[image_key]))
    if config.observation != "state":
        transforms += _encoder(config)
    transforms += [StepCounter(), RewardSum(), InitTracker()]
    return TransformedEnv(base, Compose(*transforms), auto_unwrap=True)  # one env's GoalView joins these


def _camera(config: EnvConfig, video_camera, video_size, teacher_camera, teacher_image_size):
    """``(camera, size, key)`` of the images :func:`make_env` keeps beside the observations (``camera`` None: none)."""
    if teacher_camera and video_camera:
        raise ValueError(f"teacher_camera={teacher_camera!r} with video_camera={video_camera!r}: expected one camera per env "
                         "(film with another env, as agenthive.evaluation.video does).")
    if teacher_camera and config.observation != "state":
        raise ValueError(f"teacher_camera={teacher_camera!r} keeps a camera's images beside a state pipeline; "
                         f"observation={config.observation!r} renders its own cameras for its encoder. Expected observation='state'.")
    if teacher_camera:
        return teacher_camera, teacher_image_size, TEACHER_IMAGE_KEY
    return video_camera, video_size, VIDEO_KEY if video_camera else None


def _encoder(config: EnvConfig) -> list:
    """R3M/VIP pipelines: the embedding of ``"pixels"``, flattened over cameras, joined to the proprioception as ``"embedding"``."""
    from agenthive.vision import EMBEDDINGS

    embedding = EMBEDDINGS[config.observation](
        config.encoder_model, in_keys=["pixels"], out_keys=["image_embedding"], size=config.image_size,
        weights=config.encoder_weights, pretrained=config.encoder_pretrained,
    )
    return [  # [n_cams, D] per env -> one vector, then with the proprioception
        embedding,
        FlattenObservation(-2, -1, in_keys=["image_embedding"]),
        CatTensors(["image_embedding", "observation"], out_key="embedding", del_keys=False),
    ]
