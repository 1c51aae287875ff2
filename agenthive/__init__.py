"""agenthive: robot simulators and remote foundation-model policies as TorchRL citizens.

``import agenthive`` imports neither torch nor any simulator, so the torch-free parts
(the wire protocol and the policy server) work in a JAX-only environment. The TorchRL
classes are loaded on first use::

    >>> import agenthive
    >>> agenthive.RoboHiveEnv  # doctest: +SKIP
    <class 'agenthive.envs.robohive.RoboHiveEnv'>
"""
import importlib

__version__ = "0.1.0"

# public name -> module that defines it; imported on first attribute access
_LAZY = {
    "RoboHiveEnv": "agenthive.envs.robohive",
    "RoboHiveWrapper": "agenthive.envs.robohive",
    "ManiSkillEnv": "agenthive.envs.maniskill",
    "RemoteEnv": "agenthive.envs.remote",
    "RemotePolicyModule": "agenthive.modules.remote_policy",
    "GoalView": "agenthive.goals",
    "GoalSetter": "agenthive.goals",
    "DistanceCurriculum": "agenthive.goals",
    "goal_task": "agenthive.goals",
}


def __getattr__(name):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'agenthive' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


def __dir__():
    return sorted(list(globals()) + list(_LAZY))
