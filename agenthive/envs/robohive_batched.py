"""``RoboHiveEnv(name, num_envs=N)``: N RoboHive simulators in one process, one TorchRL env.

Why threads and not processes: torchrl's per-step machinery costs about as much as a
FrankaReach step, and ``ParallelEnv`` adds inter-process copies on top; on a 2-core machine
``ParallelEnv(2)`` ran at half the speed of one raw loop. MuJoCo releases the GIL inside
``mj_step``, so N simulators stepped by a few threads of one process share one torchrl
step and its overhead (benchmarks/bench_robohive_batched.py).

How it stays correct:

* each sub-env is always stepped by the same thread (its share is fixed), and every
  random draw RoboHive makes comes from the sub-env's own generator, so trajectories
  do not depend on ``num_threads`` (test/test_robohive_batched.py compares them step
  for step with a sequential run and with ``SerialEnv`` of single envs);
* images are rendered in the calling thread, one sub-env after the other: an OpenGL
  context is current in one thread at a time, so one thread owning them all keeps
  ``close()`` simple; per-thread contexts measured from 1.0x to 1.76x faster on a loaded
  CPU (benchmarks/RESULTS.md, issue 15), to be settled on an idle machine;
* a sub-env that raises is reported with its index once the other sub-envs of the step
  have finished, so that ``reset()`` or ``close()`` find every thread idle.
"""
from __future__ import annotations

import os
import queue
import threading

import numpy as np
import torch
from tensordict import TensorDict, TensorDictBase
from torchrl._utils import seed_generator

from agenthive.envs.robohive import RoboHiveEnv, _make_gym_env


def available_cores() -> int:
    """The cores this process may run on (its CPU affinity where the OS has one); at least 1."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


class SubEnvError(RuntimeError):
    """A sub-env of a batched env raised; ``__cause__`` is its original exception."""


class _SubEnvThreads:
    """Calls a function on every sub-env, each sub-env always in the same thread.

    The calling thread takes the first share; ``num_threads - 1`` daemon threads the others.
    """

    def __init__(self, num_envs: int, num_threads: int):
        self.shares = [list(share) for share in np.array_split(np.arange(num_envs), max(num_threads, 1))]
        self._inboxes: list[queue.SimpleQueue] = []
        self._outbox: queue.SimpleQueue = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []
        self._pid = None

    def _start(self) -> None:
        self._inboxes, self._threads = [], []
        for share in self.shares[1:]:
            inbox = queue.SimpleQueue()
            thread = threading.Thread(target=_serve, args=(share, inbox, self._outbox), daemon=True)
            thread.start()
            self._inboxes.append(inbox)
            self._threads.append(thread)
        self._pid = os.getpid()  # threads do not survive a fork: a child starts its own

    def run(self, fn, wanted: np.ndarray | None = None) -> list[tuple[int, BaseException]]:
        """``fn(i)`` for each sub-env ``i`` (those with ``wanted[i]``); returns the failures."""
        if self._pid != os.getpid():
            self._start()
        for inbox in self._inboxes:
            inbox.put((fn, wanted))
        errors = _run_share(fn, self.shares[0], wanted)
        for _ in self._inboxes:
            errors.extend(self._outbox.get())
        return sorted(errors, key=lambda e: e[0])

    def close(self) -> None:
        if self._pid == os.getpid():
            for inbox in self._inboxes:
                inbox.put(None)
            for thread in self._threads:
                thread.join()
        self._inboxes, self._threads, self._pid = [], [], None


def _run_share(fn, share, wanted) -> list[tuple[int, BaseException]]:
    errors = []
    for i in share:
        if wanted is None or wanted[i]:
            try:
                fn(i)
            except BaseException as err:  # noqa: BLE001  reported, with its index, by the caller
                errors.append((i, err))
    return errors


def _serve(share, inbox: queue.SimpleQueue, outbox: queue.SimpleQueue) -> None:
    while (task := inbox.get()) is not None:
        fn, wanted = task
        outbox.put(_run_share(fn, share, wanted))


class _Buffers:
    """The tensors of one batched output, with numpy views that the sub-envs write into."""

    def __init__(self, env: "BatchedRoboHiveEnv", *, with_reward: bool, zeros: bool = False):
        n, new = env.num_envs, torch.zeros if zeros else torch.empty
        self.tensors = {}
        if env.state_obs_keys:
            self.observation = new((n, env._obs_size), dtype=torch.float32)
            self.tensors["observation"] = self.observation
            for key, sl in env._slices.items():
                self.tensors[key] = self.observation[:, sl]  # views of "observation": no copy
        image = (n, len(env.cameras), *env.image_size) if env.cameras else None
        if env.from_pixels:
            self.tensors["pixels"] = new((*image, 3), dtype=torch.uint8)
        if env.depth:
            self.tensors["depth"] = new((*image, 1), dtype=torch.float32)
        # success, terminated, truncated, done: four views of one tensor
        self.flags = torch.zeros((4, n, 1), dtype=torch.bool)
        for name, flag in zip(("success", "terminated", "truncated", "done"), self.flags):
            self.tensors[name] = flag
        if with_reward:
            self.reward = torch.empty((n, 1), dtype=torch.float32)
            self.tensors["reward"] = self.reward
        self.np = {name: self.tensors[name].numpy() for name in ("observation", "pixels", "depth", "reward") if name in self.tensors}
        self.np["flags"] = self.flags.numpy()

    def tensordict(self, env: "BatchedRoboHiveEnv") -> TensorDictBase:
        td = TensorDict._new_unsafe(dict(self.tensors), batch_size=env.batch_size, device=torch.device("cpu"))
        return td if env.device.type == "cpu" else td.to(env.device, non_blocking=True)


class BatchedRoboHiveEnv(RoboHiveEnv):
    """``RoboHiveEnv(env_name, num_envs=N, num_threads=T)``: build it through :class:`RoboHiveEnv`.

    The keys, dtypes and specs are those of ``RoboHiveEnv(env_name, ...)`` with a leading
    ``[N]``; ``"pixels"`` is ``[N, n_cams, H, W, 3]``. ``"success"``, ``"terminated"``,
    ``"truncated"`` and each sub-env's time limit are per sub-env, and torchrl's
    ``"_reset"`` mask (shape ``[N, 1]``) resets only the sub-envs it names.

    ``set_seed(s)`` gives sub-env ``i`` the seed that worker ``i`` of
    ``ParallelEnv(N, ...)``/``SerialEnv(N, ...)`` gets from ``set_seed(s)``, so both layouts
    produce the same trajectories, whatever ``num_threads`` is.

    A sub-env that raises during a step or reset surfaces as :class:`SubEnvError`, naming its
    index, with the original exception as ``__cause__``; the other sub-envs have finished
    their step. ``reset()`` starts every sub-env afresh; ``close()`` stops the threads and
    frees the simulators and renderers.
    """

    def __init__(self, env_name: str, *, num_envs: int, num_threads: int | None = None, **kwargs):
        if isinstance(num_envs, bool) or not isinstance(num_envs, int) or num_envs < 1:
            raise ValueError(f"num_envs must be an integer >= 1 (the number of simulators), got {num_envs!r}.")
        if num_threads is None:
            num_threads = available_cores()
        elif isinstance(num_threads, bool) or not isinstance(num_threads, int) or num_threads < 0:
            raise ValueError(f"num_threads must be an integer >= 0 (0 or 1: step the sub-envs in turn), got {num_threads!r}.")
        kwargs.pop("categorical_action_encoding", None)  # continuous actions: nothing to encode
        self.num_envs = num_envs
        self.num_threads = max(1, min(num_threads, num_envs))
        self._threads = _SubEnvThreads(num_envs, self.num_threads)
        self._init_single(env_name, kwargs)

    def _batch_shape(self) -> tuple[int, ...]:
        return (self.num_envs,)

    @property
    def robohive_envs(self) -> list:
        """The RoboHive task of each sub-env, in order."""
        return list(self._envs)

    def _build_env(self, env, **options):
        first = super()._build_env(env, **options)
        self._envs = [first] + [_make_gym_env(self.env_name, self.env_kwargs).unwrapped for _ in range(self.num_envs - 1)]
        self._elapsed = np.zeros(self.num_envs, dtype=np.int64)
        self._renderers = [None] * self.num_envs
        return first

    def _make_specs(self, env) -> None:
        super()._make_specs(env)
        self._obs_size = sum(sl.stop - sl.start for sl in self._slices.values())

    def _init_env(self):
        pass  # every sub-env was stepped once by RoboHive at construction; torchrl resets before stepping

    # --- seeding ------------------------------------------------------------------------
    def set_seed(self, seed: int | None = None, static_seed: bool = False) -> int | None:
        """Seeds sub-env ``i`` as ``SerialEnv``/``ParallelEnv`` seed their worker ``i``; returns the next seed."""
        for env in self._envs:
            env.seed(seed)
            # RoboHive draws sensor noise from robot.np_random, set to env.np_random at construction
            env.robot.np_random = env.np_random
            if seed is not None and not static_seed:
                seed = seed_generator(seed)
        return seed

    def _set_seed(self, seed: int | None) -> None:
        self.set_seed(seed)

    # --- stepping -----------------------------------------------------------------------
    def _write_observation(self, i: int, buffers: _Buffers) -> None:
        if self.state_obs_keys:
            obs_dict = self._envs[i].obs_dict
            np.concatenate([np.ravel(obs_dict[key]) for key in self.state_obs_keys], out=buffers.np["observation"][i])

    def _render(self, buffers: _Buffers, wanted: np.ndarray | None = None) -> None:
        """Renders the cameras of the (wanted) sub-envs, in turn, straight into the buffers."""
        for i, env in enumerate(self._envs):
            if wanted is not None and not wanted[i]:
                continue
            renderer = self._renderers[i]
            if renderer is None or renderer.pid != os.getpid():
                renderer = self._renderers[i] = self._new_renderer(env)
            data = env.sim_obsd.data.ptr
            if self.from_pixels:
                renderer.rgb(data, self.cameras, buffers.np["pixels"][i])
            if self.depth:
                renderer.depth(data, self.cameras, buffers.np["depth"][i])

    def _raise_sub_env_errors(self, errors, what: str) -> None:
        if errors:
            index, err = errors[0]
            others = f" ({len(errors) - 1} other sub-env(s) failed too: {[i for i, _ in errors[1:]]})" if len(errors) > 1 else ""
            raise SubEnvError(
                f"sub-env {index} of RoboHiveEnv({self.env_name!r}, num_envs={self.num_envs}) raised during {what}: "
                f"{type(err).__name__}: {err}{others}. The other sub-envs finished their {what}; reset() restarts "
                "them all, close() frees them."
            ) from err

    def _step(self, tensordict: TensorDictBase) -> TensorDictBase:
        action = tensordict.get("action").detach()
        action = (action.cpu() if action.device.type != "cpu" else action).numpy()
        if action.shape != self._action_shape:
            raise ValueError(
                f"{self.env_name} with num_envs={self.num_envs}: got an action batch of shape {tuple(action.shape)}, "
                f"expected {self._action_shape} (env.action_spec: one action per sub-env)."
            )
        buffers = _Buffers(self, with_reward=True)
        flags, reward = buffers.np["flags"], buffers.np["reward"]

        def step(i):
            env, total = self._envs[i], 0.0
            for _ in range(self.frame_skip):
                _, r, terminated, _, info = env.step(action[i])
                total += r
                self._elapsed[i] += 1
                truncated = self.max_episode_steps is not None and self._elapsed[i] >= self.max_episode_steps
                if terminated or truncated:
                    break
            reward[i, 0] = total
            flags[:, i, 0] = (info["solved"], terminated, truncated, terminated or truncated)
            self._write_observation(i, buffers)

        self._raise_sub_env_errors(self._threads.run(step), "step")
        if self.cameras:
            self._render(buffers)
        return buffers.tensordict(self)

    def _reset_mask(self, tensordict: TensorDictBase | None) -> np.ndarray | None:
        """The sub-envs to reset, from torchrl's ``"_reset"`` mask; ``None``: all of them."""
        reset = tensordict.get("_reset", None) if tensordict is not None else None
        if reset is None:
            return None
        expected = (self.num_envs, 1)
        if tuple(reset.shape) != expected:
            raise ValueError(
                f"'_reset' has shape {tuple(reset.shape)}, expected {expected} (the done spec's shape: one flag per sub-env)."
            )
        mask = reset.reshape(-1).cpu().numpy()
        return None if mask.all() else mask

    def _reset(self, tensordict: TensorDictBase | None = None, **kwargs) -> TensorDictBase:
        wanted = self._reset_mask(tensordict)
        # torchrl takes the rows of the sub-envs that go on from its input tensordict (zeros
        # where it has none): those rows are zeros here, not a copy of the last step
        buffers = _Buffers(self, with_reward=False, zeros=wanted is not None)
        flags = buffers.np["flags"]

        def reset(i):
            env = self._envs[i]
            env.reset()
            self._elapsed[i] = 0
            # reset() leaves rwd_dict from the last step: forward() recomputes it for the new state
            *_, info = env.forward()
            flags[:, i, 0] = (info["solved"], False, False, False)
            self._write_observation(i, buffers)

        self._raise_sub_env_errors(self._threads.run(reset, wanted), "reset")
        if self.cameras:
            self._render(buffers, wanted)
        return buffers.tensordict(self)

    def close(self, *, raise_if_closed: bool = True) -> None:
        self._threads.close()
        for i, renderer in enumerate(self._renderers):
            if renderer is not None:
                renderer.close()
            self._renderers[i] = None
        for env in self._envs[1:]:
            env.close()
        super().close(raise_if_closed=raise_if_closed)

    def __repr__(self) -> str:
        pixels = f", cameras={self.cameras}, image_size={self.image_size}" if self.cameras else ""
        return (
            f"RoboHiveEnv(env={self.env_name}, num_envs={self.num_envs}, num_threads={self.num_threads}{pixels}, "
            f"frame_skip={self.frame_skip}, device={self.device})"
        )
