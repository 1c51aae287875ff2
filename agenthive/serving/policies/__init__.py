"""Servable policies, by name; each module imports its framework only inside methods.

``python -m agenthive start-server <name>`` accepts a name below or ``module:Class`` for a
policy defined anywhere on the Python path.

Example:
    >>> load_policy_class("mlp").__name__
    'MLPPolicy'
"""
import importlib

POLICIES = {
    "mlp": "agenthive.serving.policies.mlp:MLPPolicy",
    "jax-mlp": "agenthive.serving.policies.jax_mlp:JaxMLPPolicy",
    "torchrl-checkpoint": "agenthive.serving.policies.torchrl_checkpoint:TorchRLCheckpointPolicy",
    "octo": "agenthive.serving.policies.octo:OctoPolicy",
    "openvla": "agenthive.serving.policies.openvla:OpenVLAPolicy",
}


def load_policy_class(name):
    """The policy class registered as ``name``, or named by ``"module:Class"``."""
    target = POLICIES.get(name, name)
    if ":" not in target:
        raise ValueError(f"unknown policy {name!r}: expected one of {sorted(POLICIES)} or 'module:Class'")
    module, _, attribute = target.partition(":")
    return getattr(importlib.import_module(module), attribute)
