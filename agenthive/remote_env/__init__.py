"""Environments served across hosts: ``EnvServer`` on the simulator's (or robot's) host,
``RemoteEnv`` on the learner's, a TorchRL env on both ends.

This package imports torch; it builds downward on ``agenthive.serving``'s router and wire,
which do not (a JAX policy environment installs only ``agenthive[serve]``).

* ``codec``: TorchRL specs and TensorDicts as the wire's nested maps of arrays.
* ``server``: ``EnvServer`` and ``python -m agenthive serve-env``.
* ``client``: ``RemoteEnv`` and its errors.
"""
import importlib

# public name -> module that defines it; imported on first attribute access
_LAZY = {
    "EnvServer": "agenthive.remote_env.server",
    "RemoteEnv": "agenthive.remote_env.client",
    "EnvServerError": "agenthive.remote_env.client",
    "EnvTimeoutError": "agenthive.remote_env.client",
    "EnvSpecMismatchError": "agenthive.remote_env.client",
}


def __getattr__(name):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'agenthive.remote_env' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


def __dir__():
    return sorted(list(globals()) + list(_LAZY))
