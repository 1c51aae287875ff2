"""TorchRL environments for robot simulators.

Each simulator lives in its own module and is imported on first use, so
``from agenthive.envs import RoboHiveEnv`` works without ManiSkill installed and the
other way round. ``MUJOCO_GL`` is chosen by ``agenthive/__init__.py``, which runs first.
"""
import importlib

# public name -> module that defines it
_LAZY = {
    "RoboHiveEnv": "agenthive.envs.robohive",
    "RoboHiveWrapper": "agenthive.envs.robohive",
    "ManiSkillEnv": "agenthive.envs.maniskill",
    "RemoteEnv": "agenthive.remote_env.client",
}


def __getattr__(name):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'agenthive.envs' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


def __dir__():
    return sorted(list(globals()) + list(_LAZY))
