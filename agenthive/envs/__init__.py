"""TorchRL environments for robot simulators.

Each simulator lives in its own module and is imported on first use, so
``from agenthive.envs import RoboHiveEnv`` works without ManiSkill installed and the
other way round.
"""
import importlib
import os
import sys


def _default_mujoco_gl() -> None:
    """Headless Linux has no window system: default MuJoCo to EGL.

    MuJoCo picks its OpenGL backend when it is imported, and ``import torchrl`` imports
    it, so this runs when ``agenthive.envs`` is imported, before any simulator module.
    """
    if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        os.environ.setdefault("MUJOCO_GL", "egl")


_default_mujoco_gl()

# public name -> module that defines it
_LAZY = {
    "RoboHiveEnv": "agenthive.envs.robohive",
    "RoboHiveWrapper": "agenthive.envs.robohive",
    "ManiSkillEnv": "agenthive.envs.maniskill",
    "RemoteEnv": "agenthive.envs.remote",
}


def __getattr__(name):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'agenthive.envs' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


def __dir__():
    return sorted(list(globals()) + list(_LAZY))
