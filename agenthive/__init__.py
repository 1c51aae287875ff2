"""agenthive: robot simulators and remote foundation-model policies as TorchRL citizens.

``import agenthive`` imports neither torch nor any simulator, so the torch-free parts
(the wire protocol and the policy server) work in a JAX-only environment. The TorchRL
classes are loaded on first use. Importing any agenthive module first runs this file,
which picks MuJoCo's OpenGL backend (``MUJOCO_GL``) for headless machines: the one place
that does, so a script need only import agenthive before torchrl::

    >>> import agenthive
    >>> agenthive.RoboHiveEnv  # doctest: +SKIP
    <class 'agenthive.envs.robohive.RoboHiveEnv'>
"""
import os
import sys

from agenthive.lazy_exports import lazy_exports as _lazy_exports

__version__ = "0.1.0"


def _default_mujoco_gl() -> None:
    """Headless Linux has no window system: default MuJoCo to EGL (a value already set wins).

    MuJoCo picks its OpenGL backend when it is imported, and ``import torchrl`` imports it,
    so this runs when ``agenthive`` is imported, before any simulator or torchrl module.
    """
    if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        os.environ.setdefault("MUJOCO_GL", "egl")


_default_mujoco_gl()

# public name -> module that defines it; imported on first attribute access
_LAZY = {
    "RoboHiveEnv": "agenthive.envs.robohive",
    "RoboHiveWrapper": "agenthive.envs.robohive",
    "ManiSkillEnv": "agenthive.envs.maniskill",
    "RemoteEnv": "agenthive.remote_env.client",
    "RemotePolicyModule": "agenthive.modules.remote_policy",
    "GoalView": "agenthive.goals",
    "GoalSetter": "agenthive.goals",
    "DistanceCurriculum": "agenthive.goals",
    "goal_task": "agenthive.goals",
}

__getattr__, __dir__ = _lazy_exports("agenthive", _LAZY, globals())
