"""TorchRL environments for robot simulators.

Each simulator lives in its own module and is imported on first use, so
``from agenthive.envs import RoboHiveEnv`` works without ManiSkill installed and the
other way round. ``MUJOCO_GL`` is chosen by ``agenthive/__init__.py``, which runs first.
"""
from agenthive.lazy_exports import lazy_exports

# public name -> module that defines it
_LAZY = {
    "RoboHiveEnv": "agenthive.envs.robohive",
    "RoboHiveWrapper": "agenthive.envs.robohive",
    "ManiSkillEnv": "agenthive.envs.maniskill",
    "RemoteEnv": "agenthive.remote_env.client",
}

__getattr__, __dir__ = lazy_exports("agenthive.envs", _LAZY, globals())
