"""Servable policies, by name; each module imports its framework only inside methods.

``python -m agenthive start-server <name>`` accepts a name below or ``module:Class`` for a
policy defined anywhere on the Python path. ``make_policy`` checks the keyword arguments
against the constructor before calling it, so a misspelt one is reported in one line with
the accepted names, and it accepts the names a class lists in its ``keyword_aliases``.

Example:
    >>> load_policy_class("mlp").__name__
    'MLPPolicy'
    >>> make_policy("mlp", {"obs_dim": 3, "action_dim": 2}).metadata.action_shape
    (2,)
    >>> try:
    ...     make_policy("mlp", {"obs_dim": 3, "act_dim": 2})
    ... except PolicyArgumentError as err:
    ...     print(err)
    policy 'mlp' (MLPPolicy) takes no keyword 'act_dim'; it accepts: obs_dim, action_dim, chunk_length, hidden, seed, obs_key, images
"""
import importlib
import inspect

POLICIES = {
    "mlp": "agenthive.serving.policies.mlp:MLPPolicy",
    "jax-mlp": "agenthive.serving.policies.jax_mlp:JaxMLPPolicy",
    "torchrl-checkpoint": "agenthive.serving.policies.torchrl_checkpoint:TorchRLCheckpointPolicy",
    "octo": "agenthive.serving.policies.octo:OctoPolicy",
    "openvla": "agenthive.serving.policies.openvla:OpenVLAPolicy",
    "lerobot": "agenthive.serving.policies.lerobot:LeRobotPolicy",
}


def load_policy_class(name):
    """The policy class registered as ``name``, or named by ``"module:Class"``."""
    target = POLICIES.get(name, name)
    if ":" not in target:
        raise ValueError(f"unknown policy {name!r}: expected one of {sorted(POLICIES)} or 'module:Class'")
    module, _, attribute = target.partition(":")
    return getattr(importlib.import_module(module), attribute)


class PolicyArgumentError(ValueError):
    """The keyword arguments do not fit the policy's constructor (a usage error, said in one line)."""


def make_policy(name, kwargs):
    """Construct the policy registered as ``name`` (or ``"module:Class"``) from ``kwargs``.

    Names in the class's ``keyword_aliases`` (alias -> parameter) are renamed first.

    Raises:
        PolicyArgumentError: an unknown keyword, one given twice under two names, or a
            required one missing; the message names the accepted keywords.
    """
    cls = load_policy_class(name)
    parameters = {
        key: parameter for key, parameter in inspect.signature(cls).parameters.items()
        if parameter.kind not in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD)
    }
    takes_any = any(p.kind == p.VAR_KEYWORD for p in inspect.signature(cls).parameters.values())
    where = f"policy {name!r} ({cls.__name__})"
    accepted = ", ".join([*parameters, *getattr(cls, "keyword_aliases", {})])
    renamed = {}
    for key, value in kwargs.items():
        target = key if key in parameters else getattr(cls, "keyword_aliases", {}).get(key, key)
        if target not in parameters and not takes_any:
            raise PolicyArgumentError(f"{where} takes no keyword {key!r}; it accepts: {accepted}")
        if target in renamed:
            raise PolicyArgumentError(f"{where} got {target!r} twice (once as {key!r}); give it once")
        renamed[target] = value
    missing = [key for key, p in parameters.items() if p.default is p.empty and key not in renamed]
    if missing:
        raise PolicyArgumentError(f"{where} needs {', '.join(map(repr, missing))} in --kwargs; it accepts: {accepted}")
    return cls(**renamed)
