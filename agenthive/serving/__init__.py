"""Serving policies to TorchRL from other Python environments; numpy, pyzmq and msgpack only.

Nothing here imports torch, torchrl or tensordict: a JAX or transformers environment installs
``agenthive[serve]`` and runs ``python -m agenthive start-server <policy>``. The torch side is
``agenthive.modules.RemotePolicyModule``.

* ``wire``: the protocol (msgpack header + raw array frames).
* ``shared_memory``: the same-host fast path for large arrays.
* ``policy``: what a served policy implements (``Policy``, ``PolicyMetadata``).
* ``server``: ``PolicyServer``, with dynamic batching across clients.
* ``client``: ``PolicyClient``, numpy in and out.
* ``openpi``: interoperability with openpi's websocket protocol.
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
