"""Serving policies to TorchRL from other Python environments; numpy, pyzmq and msgpack only.

No module here imports torch, torchrl or tensordict (``test_serving_isolation`` imports every
one of them in a venv without torch): a JAX or transformers environment installs
``agenthive[serve]`` and runs ``python -m agenthive start-server <policy>``. The torch side is
``agenthive.modules.RemotePolicyModule``; the env-serving side (``EnvServer``, ``RemoteEnv``),
which needs torch, is ``agenthive.remote_env``, built on this package's ``router`` and ``wire``.

* ``wire``: the protocol (msgpack header + raw array frames).
* ``router``: the socket loop and the client's request/retry, shared by ``PolicyServer`` and
  ``agenthive.remote_env.EnvServer``.
* ``shared_memory``: the same-host fast path for large arrays.
* ``policy``: what a served policy implements (``Policy``, ``PolicyMetadata``).
* ``server``: ``PolicyServer``, with dynamic batching across clients.
* ``client``: ``PolicyClient``, numpy in and out.
* ``openpi``: interoperability with openpi's websocket protocol.
* ``process``: ``ServerProcess``, a server command run as a child process until ready
  (``eval --server-command`` and the tests).
* ``cli``: ``python -m agenthive start-server``.
* ``policies``: servable policies by name (MLP, JAX MLP, TorchRL checkpoint, Octo, OpenVLA).
"""
from agenthive.serving.client import MetadataMismatchError, PolicyClient, PolicyServerError, PolicyTimeoutError
from agenthive.serving.policy import Policy, PolicyMetadata
from agenthive.serving.router import RequestTooLargeError
from agenthive.serving.server import PolicyServer

__all__ = [
    "MetadataMismatchError",
    "Policy",
    "PolicyClient",
    "PolicyMetadata",
    "PolicyServer",
    "PolicyServerError",
    "PolicyTimeoutError",
    "RequestTooLargeError",
]
