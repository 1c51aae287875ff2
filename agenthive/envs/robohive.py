"""RoboHive tasks as TorchRL environments.

Why not torchrl's own ``RoboHiveEnv``: it goes through ``GymEnv`` (gym wrappers, an info
reader, a spec refinement by rollout) and runs FrankaReachRandom-v0 at about a third of
the raw simulator's speed; it renders depth whether or not it is used, with RoboHive's
most expensive settings; and RoboHive silently ignores the ``frameskip`` argument it
passes. This module talks to RoboHive's ``MujocoEnv`` directly:

* observations per key (``float32``), plus their concatenation under ``"observation"``;
* camera images rendered by MuJoCo straight into the ``uint8`` ``"pixels"`` tensor
  ``[n_cams, H, W, 3]``: no flatten/unflatten round trip, no depth pass unless asked;
* ``terminated`` (RoboHive's task ``done``) apart from ``truncated`` (the time limit),
  and RoboHive's ``solved`` as the boolean ``"success"``;
* ``frame_skip`` repeats the action, summing rewards, as everywhere in TorchRL.
"""
from __future__ import annotations

import atexit
import contextlib
import difflib
import importlib.util
import inspect
import io
import os
import weakref

import numpy as np
import torch
from tensordict import TensorDict, TensorDictBase
from torchrl.data import Bounded, Categorical, Composite, Unbounded
from torchrl.envs.common import _EnvWrapper
from torchrl.envs.utils import _classproperty

from agenthive.envs.complete_step import CompleteStep
from agenthive.envs.robohive_assets import ensure_simhive

_has_robohive = importlib.util.find_spec("robohive") is not None

SIM_BACKENDS = ("MUJOCO", "MUJOCO_PY")
# keys this wrapper writes itself; a RoboHive observation key may not take one of them
_RESERVED_KEYS = {"observation", "pixels", "depth", "success", "reward", "done", "terminated", "truncated", "action"}


def _check_sim_backend() -> str:
    """RoboHive reads ``sim_backend`` from the environment; default it to MUJOCO and check it."""
    backend = os.environ.setdefault("sim_backend", "MUJOCO")
    if backend not in SIM_BACKENDS:
        raise ValueError(f"sim_backend={backend!r} is not a RoboHive backend; expected one of {SIM_BACKENDS}.")
    if backend == "MUJOCO_PY" and importlib.util.find_spec("mujoco_py") is None:
        raise ModuleNotFoundError(
            "sim_backend=MUJOCO_PY needs mujoco_py, which is not installed: "
            "`pip install free-mujoco-py`, or use the default backend (unset sim_backend or set sim_backend=MUJOCO)."
        )
    return backend


def _import_robohive():
    if not _has_robohive:
        raise ModuleNotFoundError(
            "RoboHiveEnv needs robohive: `pip install --no-deps robohive==0.7.0` plus `pip install agenthive[robohive]` "
            "(scripts/install.sh does both)."
        )
    _check_sim_backend()
    ensure_simhive()
    with contextlib.redirect_stdout(io.StringIO()):  # one "Registering ..." line per suite
        import robohive
    _credit_once()
    return robohive


_CREDITED = "AGENTHIVE_ROBOHIVE_CREDITED"


def _credit_once() -> None:
    """RoboHive's three-line credits banner: printed by the first process of a run only.

    RoboHive prints it with the first env of every process, so a training run printed it
    once per collector and evaluation worker. The first process to import RoboHive through
    agenthive lets it print and marks the environment; the processes it starts (which
    inherit the mark) are told it was shown.
    """
    if os.environ.get(_CREDITED):
        from robohive.envs.env_base import MujocoEnv
        from robohive.utils import prompt_utils

        prompt_utils.PROMPT_CACHE.append(hash(MujocoEnv.DEFAULT_CREDIT))  # RoboHive's own "printed once" record
    else:
        os.environ[_CREDITED] = "1"


def _camera_names(model) -> list[str]:
    return [model.camera(i).name for i in range(model.ncam)]


def _parse_visual_keys(visual_keys) -> tuple[list[str], tuple[int, int] | None]:
    """Cameras and image size named by RoboHive visual keys like ``rgb:top_cam:224x224:2d``."""
    cameras, size = [], None
    for key in visual_keys or ():
        if not key.startswith("rgb:"):
            continue
        payload, _encoder = key[4:].rsplit(":", 1)
        camera, hxw = payload.rsplit(":", 1)
        height, width = (int(x) for x in hxw.split("x"))
        cameras.append(camera)
        size = (height, width)
    return cameras, size


# Renderers still open at exit are closed by a hook registered with the first one, so it
# runs before the EGL display is terminated by hooks registered earlier (atexit is LIFO);
# closing them later, during interpreter teardown, floods stderr with EGL errors.
_LIVE_RENDERERS = weakref.WeakSet()


def _close_renderers_at_exit():
    for renderer in list(_LIVE_RENDERERS):
        try:
            renderer.close()
        except Exception:  # noqa: BLE001  the display may already be gone; the process is ending
            pass


class _CameraRenderer:
    """Renders a fixed list of cameras of one MuJoCo model into caller-provided arrays.

    Created on first use in the process that renders (an OpenGL context does not
    survive a fork), with the render-cost knobs applied before the context exists.
    """

    def __init__(self, model, height, width, *, shadows, anti_aliasing, shadow_size, gpu_id):
        import mujoco

        if gpu_id is not None and os.environ.get("MUJOCO_GL") == "egl":
            os.environ["MUJOCO_EGL_DEVICE_ID"] = str(gpu_id)
        # the offscreen buffer must hold the image; MSAA samples and the shadow map size are
        # read when the GL context is made
        model.vis.global_.offwidth = max(model.vis.global_.offwidth, width)
        model.vis.global_.offheight = max(model.vis.global_.offheight, height)
        model.vis.quality.offsamples = 4 if anti_aliasing else 0
        model.vis.quality.shadowsize = shadow_size
        try:
            self.renderer = mujoco.Renderer(model, height=height, width=width)
        except Exception as err:  # mujoco raises several types depending on the GL backend
            from mujoco import gl_context

            gl = os.environ.get("MUJOCO_GL", "")
            used = gl_context._MUJOCO_GL  # what mujoco read when it was imported
            late = (
                f" mujoco was imported with MUJOCO_GL={used or '<unset>'} before MUJOCO_GL={gl} was set "
                "(torchrl imports mujoco): export it in the shell, or import agenthive.envs before torchrl."
                if used != gl.lower().strip()
                else ""
            )
            raise RuntimeError(
                f"MuJoCo could not create an OpenGL context with MUJOCO_GL={used or '<unset>'} "
                f"({type(err).__name__}: {err}).{late} "
                "On a headless Linux machine set MUJOCO_GL=egl (needs libegl1 and libgl1-mesa-dri, or an NVIDIA "
                "driver) or MUJOCO_GL=osmesa (needs libosmesa6) before anything imports mujoco; "
                "scripts/install.sh installs both."
            ) from err
        self.renderer.scene.flags[mujoco.mjtRndFlag.mjRND_SHADOW] = int(shadows)
        self.pid = os.getpid()
        if not _LIVE_RENDERERS:
            atexit.register(_close_renderers_at_exit)
        _LIVE_RENDERERS.add(self)

    def rgb(self, data, cameras, out: np.ndarray) -> None:
        for i, cam in enumerate(cameras):
            self.renderer.update_scene(data, camera=cam)
            self.renderer.render(out=out[i])

    def depth(self, data, cameras, out: np.ndarray) -> None:
        self.renderer.enable_depth_rendering()
        try:
            for i, cam in enumerate(cameras):
                self.renderer.update_scene(data, camera=cam)
                self.renderer.render(out=out[i, ..., 0])
        finally:
            self.renderer.disable_depth_rendering()

    def close(self):
        if self.pid == os.getpid():
            self.renderer.close()
        _LIVE_RENDERERS.discard(self)


class RoboHiveWrapper(CompleteStep, _EnvWrapper):
    """A TorchRL environment around an existing RoboHive environment instance.

    Use :class:`RoboHiveEnv` to build one from its id; this class wraps an env you made
    yourself (e.g. ``gymnasium.make("FrankaReachRandom-v0", reward_mode="sparse")``).

    Args:
        env: a RoboHive environment (``robohive.envs.env_base.MujocoEnv``, gym-wrapped or not).

    Keyword Args:
        from_pixels (bool, optional): render camera images under ``"pixels"``. Defaults to
            ``True`` for RoboHive's visual ids (those with ``visual_keys``, e.g. ``*_v2d-*``),
            ``False`` otherwise.
        pixels_only (bool): with pixels, drop the state entries. Defaults to ``False``.
        cameras (list of str, optional): cameras to render, in order. Defaults to the
            cameras of the id's ``visual_keys``, else every camera of the model.
        image_size (tuple of int, optional): ``(height, width)``. Defaults to the size in
            the id's ``visual_keys``, else ``(224, 224)``.
        depth (bool): also render depth (meters, ``float32`` ``[n_cams, H, W, 1]``) under
            ``"depth"``; with ``from_pixels=False``, depth alone. Defaults to ``False``; no
            depth pass is made otherwise.
        from_depths (bool, optional): torchrl's name for ``depth`` (its ``RoboHiveEnv``);
            give one of the two.
        shadows (bool): render shadows. Defaults to ``True``. Shadows are most of the
            rendering cost on a CPU (llvmpipe); ``False`` keeps the lighting and shading.
        shadow_size (int): shadow map resolution. Defaults to 1024 (RoboHive's models ask
            for 4096, which looks the same at 224x224 and renders slower).
        anti_aliasing (bool): 4x multisampling. Defaults to ``False``.
        max_episode_steps (int, optional): time limit in RoboHive steps, reported as
            ``truncated``. Defaults to the id's registered limit.
        frame_skip (int): repeat each action this many RoboHive steps, summing rewards and
            stopping early at a termination or the time limit. Defaults to 1.
        device (torch.device, optional): where the data lives. ``"cuda:N"`` also renders on
            GPU ``N`` (EGL). Defaults to CPU.

    The output keys are, per step:

    * ``"observation"``: ``float32`` concatenation of the state entries, which is
      RoboHive's observation vector; for visual ids, whose state vector RoboHive
      suppresses, the proprioceptive vector;
    * one ``float32`` entry per state key (e.g. ``"qp_robot"``, ``"reach_err"``);
    * ``"pixels"`` (``uint8`` ``[n_cams, H, W, 3]``) and ``"depth"`` when asked;
    * ``"success"``: RoboHive's ``solved``; ``"reward"``, ``"done"``, ``"terminated"``,
      ``"truncated"``.
    """

    git_url = "https://github.com/vikashplus/robohive"
    libname = "robohive"
    _has_frame_skip = True  # _step repeats actions itself; torchrl must not add a FrameSkipTransform

    def __init__(
        self,
        env=None,
        *,
        from_pixels: bool | None = None,
        pixels_only: bool = False,
        cameras: list[str] | None = None,
        image_size: tuple[int, int] | None = None,
        depth: bool = False,
        from_depths: bool | None = None,
        shadows: bool = True,
        shadow_size: int = 1024,
        anti_aliasing: bool = False,
        max_episode_steps: int | None = None,
        frame_skip: int = 1,
        device=None,
        batch_size=None,
        **kwargs,
    ):
        expected = self._batch_shape()
        if batch_size is not None and tuple(batch_size) != expected:
            raise ValueError(
                f"{type(self).__name__} has batch_size={list(expected)}, got batch_size={list(batch_size)}: "
                "batch several simulators with RoboHiveEnv(name, num_envs=N) (threads, one process) or "
                "torchrl.envs.ParallelEnv(N, EnvCreator(lambda: RoboHiveEnv(...))) (processes)."
            )
        if not isinstance(frame_skip, int) or frame_skip < 1:
            raise ValueError(f"frame_skip must be a positive integer, got {frame_skip!r}.")
        if from_depths is not None:
            if depth and not from_depths:
                raise ValueError("depth=True and from_depths=False contradict each other; from_depths is torchrl's name for depth.")
            depth = bool(from_depths)
        device = torch.device("cpu" if device is None else device)
        super().__init__(
            env=env,
            from_pixels=from_pixels,
            pixels_only=pixels_only,
            cameras=cameras,
            image_size=image_size,
            depth=depth,
            shadows=shadows,
            shadow_size=shadow_size,
            anti_aliasing=anti_aliasing,
            max_episode_steps=max_episode_steps,
            frame_skip=frame_skip,
            device=device,
            batch_size=expected,
            **kwargs,
        )

    def _batch_shape(self) -> tuple[int, ...]:
        """The env's batch size: ``()`` for one simulator."""
        return ()

    @_classproperty
    def available_envs(cls) -> list[str]:
        """Every environment id RoboHive registers (importing RoboHive on first use)."""
        return sorted(_import_robohive().robohive_env_suite)

    @property
    def robohive_env(self):
        """The RoboHive task this env steps (its ``MujocoEnv``: ``sim``, ``sim_obsd``, site ids, ``np_random``)."""
        return self._env

    @property
    def robohive_envs(self) -> list:
        """Every RoboHive task this env steps, one per sub-env (``[robohive_env]`` for one simulator)."""
        return [self._env]

    def _check_kwargs(self, kwargs: dict):
        env = kwargs.get("env")
        if env is None:
            raise TypeError("RoboHiveWrapper needs env=<a RoboHive environment>; to build one by id use RoboHiveEnv(name).")
        _import_robohive()
        from robohive.envs.env_base import MujocoEnv

        if not isinstance(env.unwrapped, MujocoEnv):
            raise TypeError(f"RoboHiveWrapper wraps RoboHive environments (MujocoEnv), got {type(env.unwrapped).__name__}.")

    def _build_env(
        self,
        env,
        from_pixels,
        pixels_only,
        cameras,
        image_size,
        depth,
        shadows,
        shadow_size,
        anti_aliasing,
        max_episode_steps,
    ):
        unwrapped = env.unwrapped
        spec = getattr(env, "spec", None)
        self.max_episode_steps = max_episode_steps or (spec.max_episode_steps if spec is not None else None)
        visual_cameras, visual_size = _parse_visual_keys(unwrapped.visual_keys)
        self.from_pixels = bool(visual_cameras) if from_pixels is None else bool(from_pixels)
        renders = self.from_pixels or depth
        if renders:
            cameras = list(cameras or visual_cameras or _camera_names(unwrapped.sim.model))
            self._check_cameras(env, cameras)
            height, width = image_size or visual_size or (224, 224)
            if height <= 0 or width <= 0:
                raise ValueError(f"image_size must be two positive integers (height, width), got {image_size}.")
            self.image_size = (int(height), int(width))
        elif cameras or pixels_only:
            raise ValueError("cameras and pixels_only need from_pixels=True or depth=True.")
        self.cameras = cameras if renders else []
        self.pixels_only = pixels_only
        self.depth = depth
        self._render_options = dict(shadows=shadows, anti_aliasing=anti_aliasing, shadow_size=shadow_size)
        self._renderer = None
        self._elapsed = 0
        return unwrapped

    def _check_cameras(self, env, cameras: list[str]) -> None:
        model_cameras = _camera_names(env.unwrapped.sim.model)
        unknown = [c for c in cameras if c not in model_cameras]
        if unknown:
            raise ValueError(f"Unknown camera(s) {unknown} for {self._id(env)}; this model has {model_cameras}.")
        if not cameras:
            raise ValueError(f"{self._id(env)} has no camera to render pixels or depth from.")

    @staticmethod
    def _id(env) -> str:
        spec = getattr(env, "spec", None)
        return spec.id if spec is not None else type(env.unwrapped).__name__

    def _make_specs(self, env) -> None:
        # State keys: RoboHive's observation keys, unless they are only "time" (the visual
        # ids suppress the state vector that way), in which case the proprioception keys.
        obs_keys = list(env.obs_keys)
        if set(obs_keys) == {"time"}:
            obs_keys = list(env.proprio_keys or [])
        clash = _RESERVED_KEYS.intersection(obs_keys)
        if clash:
            raise ValueError(f"RoboHive observation key(s) {sorted(clash)} collide with keys this wrapper writes.")
        self.state_obs_keys = [] if self.pixels_only else obs_keys
        sizes = [int(np.size(env.obs_dict[key])) for key in self.state_obs_keys]
        self._slices = {}
        start = 0
        for key, size in zip(self.state_obs_keys, sizes):
            self._slices[key] = slice(start, start + size)
            start += size

        b, device = self._batch_shape(), self.device  # specs of a batched env lead with [N]
        obs_spec = {}
        if self.state_obs_keys:
            obs_spec["observation"] = Unbounded((*b, start), dtype=torch.float32, device=device)
            for key, size in zip(self.state_obs_keys, sizes):
                obs_spec[key] = Unbounded((*b, size), dtype=torch.float32, device=device)
        image = (*b, len(self.cameras), *self.image_size) if self.cameras else None
        if self.from_pixels:
            obs_spec["pixels"] = Bounded(0, 255, (*image, 3), dtype=torch.uint8, device=device)
        if self.depth:
            obs_spec["depth"] = Unbounded((*image, 1), dtype=torch.float32, device=device)
        flag = dict(n=2, shape=(*b, 1), dtype=torch.bool, device=device)
        obs_spec["success"] = Categorical(**flag)
        self.observation_spec = Composite(obs_spec, shape=b, device=device)
        self.full_done_spec = Composite(
            done=Categorical(**flag), terminated=Categorical(**flag), truncated=Categorical(**flag), shape=b, device=device
        )
        self.reward_spec = Unbounded((*b, 1), dtype=torch.float32, device=device)
        space = env.action_space
        self.action_spec = Bounded(
            torch.as_tensor(space.low, dtype=torch.float32).expand(*b, *space.shape),
            torch.as_tensor(space.high, dtype=torch.float32).expand(*b, *space.shape),
            (*b, *space.shape),
            dtype=torch.float32,
            device=device,
        )
        self._action_shape = (*b, *space.shape)

    def _init_env(self):
        self._env.reset()

    def _set_seed(self, seed: int | None) -> None:
        # RoboHive samples targets and initial states from env.np_random and sensor noise
        # from robot.np_random, which it set to the same generator at construction.
        self._env.seed(seed)
        self._env.robot.np_random = self._env.np_random

    # --- data ---------------------------------------------------------------------------
    def _output(self, solved, terminated=False, truncated=False, reward=None) -> TensorDictBase:
        """The TensorDict of the current simulator state (and of the step that led to it)."""
        env = self._env
        out = {}
        if self.state_obs_keys:
            obs_dict = env.obs_dict
            flat = np.concatenate([np.ravel(obs_dict[key]) for key in self.state_obs_keys], dtype=np.float32)
            flat = torch.from_numpy(flat)
            out["observation"] = flat
            for key, sl in self._slices.items():
                out[key] = flat[sl]  # views of "observation": no copy
        if self.cameras:
            self._render(out)
        # the four flags as views of one tensor: one conversion per step instead of four
        flags = torch.from_numpy(np.array([solved, terminated, truncated, terminated or truncated], dtype=bool))
        out["success"], out["terminated"], out["truncated"], out["done"] = flags.split(1)
        if reward is not None:
            out["reward"] = torch.from_numpy(np.array([reward], dtype=np.float32))
        td = TensorDict._new_unsafe(out, batch_size=torch.Size(()), device=torch.device("cpu"))
        # a TensorDict without the env's device would be cast by torchrl at every step
        return td if self.device.type == "cpu" else td.to(self.device, non_blocking=True)

    def _new_renderer(self, env) -> _CameraRenderer:
        gpu_id = (self.device.index or 0) if self.device.type == "cuda" else None
        return _CameraRenderer(env.sim_obsd.model.ptr, *self.image_size, gpu_id=gpu_id, **self._render_options)

    def _render(self, out: dict) -> None:
        renderer = self._renderer
        if renderer is None or renderer.pid != os.getpid():
            renderer = self._renderer = self._new_renderer(self._env)
        data = self._env.sim_obsd.data.ptr
        n, (height, width) = len(self.cameras), self.image_size
        # MuJoCo renders straight into the tensors' memory
        if self.from_pixels:
            pixels = torch.empty((n, height, width, 3), dtype=torch.uint8)
            renderer.rgb(data, self.cameras, pixels.numpy())
            out["pixels"] = pixels
        if self.depth:
            depth = torch.empty((n, height, width, 1), dtype=torch.float32)
            renderer.depth(data, self.cameras, depth.numpy())
            out["depth"] = depth

    def _reset(self, tensordict: TensorDictBase | None = None, **kwargs) -> TensorDictBase:
        env = self._env
        env.reset()
        self._elapsed = 0
        # reset() leaves rwd_dict from the last step: forward() recomputes it for the new state
        *_, info = env.forward()
        return self._output(info["solved"])

    def _step(self, tensordict: TensorDictBase) -> TensorDictBase:
        env = self._env
        action = tensordict.get("action").detach()  # a policy run outside no_grad hands over a graph
        action = (action.cpu() if action.device.type != "cpu" else action).numpy()
        if action.shape != self._action_shape:
            raise ValueError(
                f"{self._id(env)}: got an action of shape {tuple(action.shape)}, expected {self._action_shape} "
                f"(env.action_spec); a batch of actions needs a batch of envs (ParallelEnv/SerialEnv)."
            )
        reward = 0.0
        for _ in range(self.frame_skip):
            _, r, terminated, _, info = env.step(action)
            reward += r
            self._elapsed += 1
            truncated = self.max_episode_steps is not None and self._elapsed >= self.max_episode_steps
            if terminated or truncated:
                break
        return self._output(info["solved"], terminated, truncated, reward)

    def close(self, *, raise_if_closed: bool = True) -> None:
        if self._renderer is not None:
            self._renderer.close()
        self._renderer = None
        super().close(raise_if_closed=raise_if_closed)

    def __repr__(self) -> str:
        pixels = f", cameras={self.cameras}, image_size={self.image_size}" if self.cameras else ""
        return f"{type(self).__name__}(env={self._id(self._env)}{pixels}, frame_skip={self.frame_skip}, device={self.device})"


class RoboHiveEnv(RoboHiveWrapper):
    """A RoboHive task as a TorchRL environment, built from its id.

    Args:
        env_name (str): a RoboHive id, e.g. ``"FrankaReachRandom-v0"``,
            ``"FK1_MicroOpenRandom-v4"`` or a visual id like ``"FrankaReachRandom_v2d-v0"``
            (:attr:`available_envs` lists them).

    Keyword Args:
        num_envs (int, optional): hold this many simulators of the id in this process, as
            one env of batch size ``[num_envs]`` (every key and spec gains a leading
            ``[num_envs]``); each step hands the sub-steps to a thread pool (MuJoCo releases
            the GIL while it simulates). ``None`` (default): one simulator, batch size ``[]``.
            See ``agenthive.envs.robohive_batched``.
        num_threads (int, optional): with ``num_envs``, the threads that step the
            sub-envs. Defaults to the cores available to this process (at most
            ``num_envs``); ``0`` or ``1`` steps them one after the other.
        categorical_action_encoding (bool): accepted for torchrl's ``RoboHiveEnv``
            signature; RoboHive's actions are continuous, so, as in torchrl, it changes
            nothing.
        **kwargs: the rendering, time-limit, ``frame_skip`` and ``device`` options of
            :class:`RoboHiveWrapper` (``from_depths`` is torchrl's name for ``depth``); any
            other keyword goes to RoboHive's constructor (e.g. ``reward_mode="sparse"``,
            ``obs_keys=[...]``). A keyword that RoboHive's class for the id does not take
            (RoboHive would print a warning and ignore it) raises a ``TypeError`` naming
            the accepted ones.

    The simulator backend comes from the ``sim_backend`` environment variable, as in
    RoboHive: ``MUJOCO`` (the default) or ``MUJOCO_PY``.

    Examples:
        >>> from agenthive.envs import RoboHiveEnv
        >>> env = RoboHiveEnv("FrankaReachRandom-v0")
        >>> _ = env.set_seed(0)  # returns the seed for the next env
        >>> td = env.rollout(3)
        >>> td["observation"].shape, td["next", "reward"].shape, td["next", "success"].dtype
        (torch.Size([3, 21]), torch.Size([3, 1]), torch.bool)
        >>> sorted(env.state_obs_keys)
        ['qp_robot', 'qv_robot', 'reach_err']
        >>> env = RoboHiveEnv("FrankaReachRandom-v0", from_pixels=True, cameras=["top_cam"], image_size=(64, 64))
        >>> env.reset()["pixels"].shape
        torch.Size([1, 64, 64, 3])
        >>> batch = RoboHiveEnv("FrankaReachRandom-v0", num_envs=4, num_threads=2)
        >>> batch.rollout(3)["next", "observation"].shape
        torch.Size([4, 3, 21])
        >>> batch.close()
    """

    _WRAPPER_OPTIONS = (
        "from_pixels", "pixels_only", "cameras", "image_size", "depth", "from_depths", "shadows", "shadow_size",
        "anti_aliasing", "max_episode_steps", "frame_skip", "device", "batch_size",
        "allow_done_after_reset", "spec_locked",
    )

    def __new__(cls, *args, num_envs: int | None = None, **kwargs):
        if num_envs is not None and cls is RoboHiveEnv:
            from agenthive.envs.robohive_batched import BatchedRoboHiveEnv

            cls = BatchedRoboHiveEnv
        return super(RoboHiveEnv, cls).__new__(cls, *args, **kwargs)

    def __init__(
        self,
        env_name: str,
        *,
        num_envs: int | None = None,
        num_threads: int | None = None,
        categorical_action_encoding: bool = False,
        **kwargs,
    ):
        if num_envs is not None or num_threads is not None:
            raise ValueError(
                f"num_threads={num_threads} needs num_envs=N (the threads step N simulators); got num_envs={num_envs}."
            )
        self._init_single(env_name, kwargs)

    def _init_single(self, env_name: str, kwargs: dict) -> None:
        options = {k: kwargs.pop(k) for k in self._WRAPPER_OPTIONS if k in kwargs}
        self.env_name = env_name
        self.env_kwargs = kwargs
        super().__init__(env=None, **options)

    @classmethod
    def get_available_cams(cls, env_name: str) -> list[str]:
        """The camera names of a RoboHive id's model (torchrl's ``RoboHiveEnv`` API).

        Builds the simulator once to read them.
        """
        _import_robohive()
        env = _make_gym_env(env_name, {})
        try:
            return _camera_names(env.unwrapped.sim.model)
        finally:
            env.close()

    def _check_kwargs(self, kwargs: dict):
        available = self.available_envs  # imports robohive, checking assets and backend
        if self.env_name not in available:
            close = difflib.get_close_matches(self.env_name, available, n=5, cutoff=0.5)
            hint = f" Closest ids: {close}." if close else ""
            raise ValueError(
                f"Unknown RoboHive env {self.env_name!r}.{hint} RoboHiveEnv.available_envs lists all {len(available)} ids."
            )
        _check_visual_keys(self.env_name, self.env_kwargs)
        accepted = _robohive_keywords(self.env_name)
        unknown = sorted(set(self.env_kwargs) - accepted)
        if unknown:
            raise TypeError(
                f"RoboHiveEnv({self.env_name!r}) got keyword(s) {unknown} that neither agenthive nor RoboHive takes "
                f"(RoboHive would print 'Unused kwargs' and ignore them). agenthive's options: "
                f"{sorted(self._WRAPPER_OPTIONS + ('num_envs', 'num_threads', 'categorical_action_encoding'))}; "
                f"RoboHive's for this id: {sorted(accepted)}."
            )

    def _build_env(self, env, **options):
        return super()._build_env(_make_gym_env(self.env_name, self.env_kwargs), **options)


def _make_gym_env(env_name: str, env_kwargs: dict):
    """``gymnasium.make`` of a RoboHive id; a missing simhive model file names the fix."""
    import gymnasium

    try:
        return gymnasium.make(env_name, **env_kwargs)
    except (FileNotFoundError, ValueError) as err:
        if "simhive" in str(err):  # a model file of a simhive repository that is not installed
            raise FileNotFoundError(
                f"{env_name} needs RoboHive assets that are not installed: {err}. Add the missing "
                "repository to your simhive folder (AGENTHIVE_SIMHIVE_DIR), or run `python -m robohive_init`."
            ) from err
        raise


def _check_visual_keys(env_name: str, env_kwargs: dict) -> None:
    """Refuses RoboHive visual keys that RoboHiveEnv would not honour, before RoboHive builds them.

    RoboHiveEnv renders ``rgb:<camera>:<H>x<W>:2d`` keys itself into ``"pixels"``; RoboHive's
    other keys ask it for depth (``d:...``) or for embeddings by a pretrained encoder
    (``...:r3m18``, ``...:rrl50``, ...), which it downloads at construction.
    """
    import gymnasium

    keys = env_kwargs.get("visual_keys", gymnasium.spec(env_name).kwargs.get("visual_keys")) or []
    keys = [keys] if isinstance(keys, str) else list(keys)
    refused = [k for k in keys if not (k.startswith("rgb:") and k.endswith(":2d"))]
    if refused:
        raise ValueError(
            f"{env_name}: RoboHiveEnv renders raw images only (visual keys 'rgb:<camera>:<H>x<W>:2d' into \"pixels\"), "
            f"it cannot honour {refused}. For depth use depth=True; for an encoder's embeddings use the id's _v2d "
            "variant (or from_pixels=True, cameras=[...]) and embed the pixels with a transform after batching "
            "(agenthive.vision.R3MTransform / VIPTransform)."
        )


# gymnasium.make's own keywords, besides those of the env class
_GYMNASIUM_MAKE_KEYWORDS = {"render_mode", "disable_env_checker", "apply_api_compatibility", "autoreset"}


def _robohive_keywords(env_name: str) -> set[str]:
    """The keywords RoboHive's class for ``env_name`` consumes.

    RoboHive passes a keyword down its classes' ``__init__`` and ``_setup`` methods to
    ``Robot(**kwargs)``, which prints "Unused kwargs found" for those left over and goes on.
    """
    import gymnasium
    from gymnasium.envs.registration import load_env_creator
    from robohive.robot.robot import Robot

    spec = gymnasium.spec(env_name)
    creator = load_env_creator(spec.entry_point) if isinstance(spec.entry_point, str) else spec.entry_point
    names = set(spec.kwargs) | _GYMNASIUM_MAKE_KEYWORDS
    methods = [Robot.__init__] + [
        klass.__dict__[name] for klass in getattr(creator, "__mro__", ()) for name in ("__init__", "_setup")
        if name in klass.__dict__
    ]
    for method in methods:
        names.update(
            p.name for p in inspect.signature(method).parameters.values()
            if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
        )
    return names - {"self", "mj_sim", "random_generator"}  # these two RoboHive fills in itself
