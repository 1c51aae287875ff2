"""Environments served across hosts: ``EnvServer`` on the simulator's (or robot's) host,
``RemoteEnv`` on the learner's, a TorchRL env on both ends.

This package imports torch; it builds downward on ``agenthive.serving``'s router and wire,
which do not (a JAX policy environment installs only ``agenthive[serve]``).

* ``codec``: TorchRL specs and TensorDicts as the wire's nested maps of arrays.
* ``server``: ``EnvServer`` and ``python -m agenthive serve-env``.
* ``client``: ``RemoteEnv`` and its errors.
"""
from agenthive.lazy_exports import lazy_exports

# public name -> module that defines it; imported on first attribute access
_LAZY = {
    "EnvServer": "agenthive.remote_env.server",
    "RemoteEnv": "agenthive.remote_env.client",
    "EnvServerError": "agenthive.remote_env.client",
    "EnvTimeoutError": "agenthive.remote_env.client",
    "EnvSpecMismatchError": "agenthive.remote_env.client",
}

__getattr__, __dir__ = lazy_exports("agenthive.remote_env", _LAZY, globals())
