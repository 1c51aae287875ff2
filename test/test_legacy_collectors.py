"""agenthive.legacy_collectors: torchrl's collectors under their torchrl < 0.3 names and arguments."""
import doctest
import warnings

import pytest
import torch
from torchrl.collectors import Collector, MultiAsyncCollector, MultiSyncCollector
from torchrl.envs import EnvCreator
from torchrl.envs.utils import ExplorationType

import agenthive.legacy_collectors
from agenthive.legacy_collectors import MultiaSyncDataCollector, MultiSyncDataCollector, SyncDataCollector
from agenthive.envs import RoboHiveEnv

ENV = "FrankaReachRandom-v0"


def make_env():
    return RoboHiveEnv(ENV)


def first_observations(collector) -> torch.Tensor:
    batch = next(iter(collector))
    collector.shutdown()
    return batch["observation"][..., 0, :] if batch.ndim > 1 else batch["observation"][0]


def test_sync_collector_maps_old_arguments_with_one_warning():
    with pytest.warns(FutureWarning, match=r"Collector\(policy_device=\.\.\., env_device=\.\.\., storing_device=\.\.\., "
                                           r"exploration_type=ExplorationType.MODE\) "
                                           r"then collector.set_seed\(seed\)") as caught:
        collector = SyncDataCollector(
            make_env(), None, frames_per_batch=25, total_frames=50, device="cpu", passing_device="cpu", seed=3,
            exploration_mode="mode", max_frames_per_traj=-1, pin_memory=False,
        )
    assert len([w for w in caught if issubclass(w.category, FutureWarning)]) == 1
    assert isinstance(collector, Collector)
    assert (collector.policy_device, collector.env_device, collector.storing_device) == (torch.device("cpu"),) * 3
    assert collector.exploration_type == ExplorationType.MODE
    frames = sum(batch.numel() for batch in collector)
    collector.shutdown()
    assert frames == 50


def test_old_seed_argument_seeds_the_envs():
    def collector(seed):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            return SyncDataCollector(make_env(), None, frames_per_batch=5, total_frames=5, seed=seed)

    # the first observation holds reach_err, which depends on the target the seed draws
    assert torch.equal(first_observations(collector(7)), first_observations(collector(7)))
    assert not torch.equal(first_observations(collector(7)), first_observations(collector(8)))


def test_new_argument_names_pass_through_silently():
    with warnings.catch_warnings():
        warnings.simplefilter("error", FutureWarning)
        collector = SyncDataCollector(make_env(), None, frames_per_batch=10, total_frames=10, env_device="cpu",
                                      policy_device="cpu", storing_device="cpu", device=None)
        lone_device = SyncDataCollector(make_env(), None, frames_per_batch=10, total_frames=10, device="cpu")
    assert next(iter(collector))["next", "observation"].shape == (10, 21)
    collector.shutdown()
    lone_device.shutdown()


def test_removed_arguments_and_bad_values_are_refused():
    with pytest.raises(TypeError, match="pin_memory=True.*removed from torchrl"):
        SyncDataCollector(make_env(), None, frames_per_batch=10, total_frames=10, pin_memory=True)
    with pytest.raises(ValueError, match=r"exploration_mode='sample': expected one of \['mode', 'median', 'mean', 'random'"):
        SyncDataCollector(make_env(), None, frames_per_batch=10, total_frames=10, exploration_mode="sample")


@pytest.mark.parametrize("old, new", [(MultiSyncDataCollector, MultiSyncCollector), (MultiaSyncDataCollector, MultiAsyncCollector)])
def test_multi_collectors_with_old_device_arguments(old, new):
    create = EnvCreator(make_env)
    with pytest.warns(FutureWarning, match=rf"{old.__name__}\(devices, passing_devices\).*{new.__name__}\(policy_device="):
        collector = old([create, create], None, frames_per_batch=50, total_frames=200, devices=["cpu", "cpu"],
                        passing_devices=["cpu", "cpu"], update_at_each_batch=False)
    assert isinstance(collector, new)
    assert list(collector.env_device) == list(collector.storing_device) == list(collector.policy_device) == [torch.device("cpu")] * 2
    batches = list(collector)
    collector.shutdown()
    assert sum(b.numel() for b in batches) == 200
    assert all(b.device == torch.device("cpu") and b["next", "observation"].shape[-1] == 21 for b in batches)


def test_docstring_examples_run():
    RoboHiveEnv(ENV).close()  # RoboHive prints its banner once per process, outside the example
    result = doctest.testmod(agenthive.legacy_collectors, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0
