"""torchrl's legacy (pre-0.3) collector names and arguments, for RoboHive/TorchRL scripts that still use them.

Not agenthive's collection code: that is torchrl's own collectors (``scripts/train.py``,
``scripts/collect.py``) and :mod:`agenthive.distributed`. This module only translates.

torchrl 0.14 renamed its collectors and their device arguments. Code written against
torchrl < 0.3 (RoboHive's and agenthive's own examples among it) says::

    MultiaSyncDataCollector([env] * 2, policy, devices=["cuda:0", "cuda:1"], passing_devices=["cuda:0", "cuda:1"])

The classes here accept those arguments, translate them, print one deprecation line naming
the new spelling, and are otherwise torchrl's classes (subclasses, so ``isinstance`` checks
against torchrl hold):

===========================  ===============================================================
old                          torchrl 0.14
===========================  ===============================================================
``SyncDataCollector``        :class:`torchrl.collectors.Collector`
``MultiSyncDataCollector``   :class:`torchrl.collectors.MultiSyncCollector`
``MultiaSyncDataCollector``  :class:`torchrl.collectors.MultiAsyncCollector`
``devices`` / ``device``     ``policy_device`` (where the policy runs); alone: ``device``
``passing_devices``          ``env_device`` and ``storing_device`` (where the envs step and
(``passing_device``)         the batches are written)
``exploration_mode="x"``     ``exploration_type=ExplorationType.X``
``seed=s``                   ``torch.manual_seed(s)``, ``collector.set_seed(s)`` and a reset
===========================  ===============================================================

In torchrl < 0.3 the environment was moved to ``passing_device`` and the policy to
``device``; ``passing_device`` defaulted to ``device``. ``pin_memory``, ``init_with_lag``
and ``return_in_place`` no longer exist: ``False`` is accepted (it was the no-op),
``True`` is refused.
"""
from __future__ import annotations

import warnings

import torch
from torchrl.collectors import Collector, MultiAsyncCollector, MultiSyncCollector
from torchrl.envs.utils import ExplorationType

# arguments of torchrl < 0.3 with no counterpart: accepted only with their no-op value
_REMOVED = ("pin_memory", "init_with_lag", "return_in_place")


def _translate(old_name: str, new_name: str, kwargs: dict, *, plural: bool) -> tuple[dict, int | None]:
    """Maps torchrl < 0.3 keyword arguments to torchrl 0.14's; returns them and the seed."""
    device_key, passing_key = ("devices", "passing_devices") if plural else ("device", "passing_device")
    kwargs = dict(kwargs)
    old, new = [], []
    policy_device = kwargs.pop(device_key, None)
    passing_device = kwargs.pop(passing_key, None)
    if passing_device is not None:
        kwargs["env_device"] = kwargs["storing_device"] = passing_device
        old.append(passing_key)
        new += ["env_device", "storing_device"]
        if policy_device is not None:
            kwargs["policy_device"] = policy_device
            old.insert(0, device_key)
            new.insert(0, "policy_device")
    elif policy_device is not None:  # alone, the old device(s) meant every device
        kwargs["device"] = policy_device
        if plural:  # (a lone ``device`` means the same in torchrl 0.14: nothing to say)
            old.append(device_key)
            new.append("device")
    mode = kwargs.pop("exploration_mode", None)
    if mode is not None:
        try:
            kwargs["exploration_type"] = ExplorationType(mode)
        except ValueError:
            valid = [t.value for t in ExplorationType]
            raise ValueError(f"exploration_mode={mode!r}: expected one of {valid}") from None
        old.append("exploration_mode")
        new.append(f"exploration_type=ExplorationType.{kwargs['exploration_type'].name}")
    seed = kwargs.pop("seed", None)
    if seed is not None:
        old.append("seed")
    for name in _REMOVED:
        if name in kwargs:
            if kwargs.pop(name):
                raise TypeError(f"{old_name}({name}=True): {name} was removed from torchrl and has no equivalent; drop it.")
            old.append(f"{name}=False")
    if old:
        new_args = ", ".join(n if "=" in n else f"{n}=..." for n in new)
        then = " then collector.set_seed(seed)" if seed is not None else ""
        warnings.warn(
            f"{old_name}({', '.join(old)}) is torchrl < 0.3's API; use torchrl.collectors.{new_name}({new_args}){then}.",
            FutureWarning,
            stacklevel=4,  # the caller, above __init__ and the collector metaclass
        )
    return kwargs, seed


def _seed(collector, seed: int | None) -> None:
    """torchrl < 0.3's ``seed``: seeds torch and the envs, whose first episodes then start from it."""
    if seed is not None:
        torch.manual_seed(seed)
        collector.set_seed(seed)
        collector.reset()  # the envs were reset, unseeded, at construction


class SyncDataCollector(Collector):
    """:class:`torchrl.collectors.Collector` accepting torchrl < 0.3's arguments (see the module doc).

    Examples:
        >>> import warnings
        >>> from agenthive.envs import RoboHiveEnv
        >>> with warnings.catch_warnings(record=True) as caught:
        ...     warnings.simplefilter("always")
        ...     collector = SyncDataCollector(RoboHiveEnv("FrankaReachRandom-v0"), None, frames_per_batch=10,
        ...                                   total_frames=10, device="cpu", passing_device="cpu", seed=0)
        >>> print(caught[0].message)
        SyncDataCollector(device, passing_device, seed) is torchrl < 0.3's API; use torchrl.collectors.Collector(policy_device=..., env_device=..., storing_device=...) then collector.set_seed(seed).
        >>> next(iter(collector))["next", "observation"].shape
        torch.Size([10, 21])
        >>> collector.shutdown()
    """

    def __init__(self, create_env_fn, policy=None, **kwargs):
        kwargs, seed = _translate("SyncDataCollector", "Collector", kwargs, plural=False)
        super().__init__(create_env_fn, policy, **kwargs)
        _seed(self, seed)


class MultiSyncDataCollector(MultiSyncCollector):
    """:class:`torchrl.collectors.MultiSyncCollector` accepting torchrl < 0.3's arguments (see the module doc)."""

    def __init__(self, create_env_fn, policy=None, **kwargs):
        kwargs, seed = _translate("MultiSyncDataCollector", "MultiSyncCollector", kwargs, plural=True)
        super().__init__(create_env_fn, policy, **kwargs)
        _seed(self, seed)


class MultiaSyncDataCollector(MultiAsyncCollector):
    """:class:`torchrl.collectors.MultiAsyncCollector` accepting torchrl < 0.3's arguments (see the module doc)."""

    def __init__(self, create_env_fn, policy=None, **kwargs):
        kwargs, seed = _translate("MultiaSyncDataCollector", "MultiAsyncCollector", kwargs, plural=True)
        super().__init__(create_env_fn, policy, **kwargs)
        _seed(self, seed)
