"""Collection on many processes or hosts through torchrl's distributed collectors.

agenthive adds no scheduler of its own: :func:`distributed_collector` builds torchrl's
:class:`~torchrl.collectors.distributed.DistributedCollector` (torch.distributed, gloo),
:class:`~torchrl.collectors.distributed.RPCCollector` (torch.distributed.rpc) or
:class:`~torchrl.collectors.distributed.RayCollector` (Ray, when installed) for an env
that each worker makes for itself (the env function goes to the workers inside an
``EnvCreator``; simulators are never pickled), and sends policy weights with torchrl's
weight-sync schemes (``DistributedWeightSyncScheme``, ``RPCWeightSyncScheme``,
``RayWeightSyncScheme``): after the learner changes its policy in place,
``collector.update_policy_weights_()`` brings every worker up to date.

Where the workers run (``launcher``, for ``distributed`` and ``rpc``):

* ``"mp"``: worker processes on this machine, talking to this process over localhost
  (tests, and the single-host comparison in ``benchmarks/bench_remote_env.py``);
* ``"submitit_delayed"``: workers you start yourself, on any host, with
  ``python -m agenthive collect-worker`` (this module's :func:`main`); the learner waits for
  them. ``docs/multi_host.md`` has the two-host recipe: ports, environment variables, the
  command on each side;
* ``"submitit"``: SLURM jobs through submitit.

With Ray, the workers are Ray actors wherever the Ray cluster has room (``ray start`` on
each host; ``RAY_ADDRESS=auto`` or ``ray_init_config={"address": "auto"}`` on the learner).

Examples:
    >>> import functools
    >>> from tensordict.nn import TensorDictModule
    >>> from torch import nn
    >>> from agenthive.envs import RoboHiveEnv
    >>> policy = TensorDictModule(nn.Linear(21, 9), in_keys=["observation"], out_keys=["action"])
    >>> collector = distributed_collector(  # doctest: +SKIP
    ...     functools.partial(RoboHiveEnv, "FrankaReachRandom-v0"), policy, backend="distributed",
    ...     num_workers=2, frames_per_batch=200, total_frames=2000, tcp_port=10003)
    >>> for batch in collector:  # doctest: +SKIP
    ...     policy.module.bias.data += 0.01  # training, in place
    ...     collector.update_policy_weights_()  # every worker now acts with the new weights
    >>> collector.shutdown()  # doctest: +SKIP

    (``test/test_distributed.py`` runs this with real RoboHive envs on every backend.)
"""
from __future__ import annotations

import argparse
import importlib.util

from torchrl.collectors import Collector
from torchrl.envs import EnvCreator
from torchrl.weight_update import NoWeightSyncScheme

BACKENDS = ("distributed", "rpc", "ray")
LAUNCHERS = ("mp", "submitit_delayed", "submitit")
_has_ray = importlib.util.find_spec("ray") is not None


def distributed_collector(
    create_env,
    policy,
    *,
    backend: str,
    num_workers: int,
    frames_per_batch: int,
    total_frames: int,
    sync: bool = False,
    launcher: str = "mp",
    tcp_port: int | None = None,
    collector_class=Collector,
    collector_kwargs: dict | None = None,
    ray_init_config: dict | None = None,
    update_after_each_batch: bool = False,
    **kwargs,
):
    """torchrl's distributed collector of ``backend`` for ``num_workers`` copies of an env.

    Args:
        create_env: a picklable function with no arguments that makes the env (e.g.
            ``functools.partial(RoboHiveEnv, "FrankaReachRandom-v0")``, or
            ``functools.partial(make_env, env_config)``); each worker calls it.
        policy: the policy (an ``nn.Module``); its weights are what
            ``update_policy_weights_()`` sends. None: random actions, nothing to send.

    Keyword Args:
        backend: ``"distributed"``, ``"rpc"`` or ``"ray"``.
        num_workers: worker processes (Ray actors), one collector each.
        frames_per_batch: frames per batch the collector yields; with ``sync=True`` each
            worker collects ``frames_per_batch / num_workers`` of them.
        total_frames: frames to collect in all.
        sync: ``True``: every batch holds every worker's share, collected with the same
            weights (on-policy); ``False``: a batch is the first that any worker finishes.
        launcher: where the workers run (``"mp"``, ``"submitit_delayed"``, ``"submitit"``;
            see the module doc); ignored by Ray.
        tcp_port: the learner's rendezvous port (``distributed`` also uses the next one);
            torchrl's default is 10003 (or ``$TCP_PORT``).
        collector_class: the collector each worker runs (``Collector``, or
            ``MultiSyncCollector``/``MultiAsyncCollector`` for several envs per worker).
        collector_kwargs: more keyword arguments for each worker's collector.
        ray_init_config: keyword arguments of ``ray.init`` (e.g. ``{"address": "auto"}``).
        update_after_each_batch: send the weights after every batch, without being asked.
        **kwargs: more keyword arguments of torchrl's collector class (e.g.
            ``init_random_frames``, ``storing_device``).

    Raises:
        ValueError: an unknown backend or launcher.
        ImportError: ``backend="ray"`` without Ray installed.
    """
    if backend not in BACKENDS:
        raise ValueError(f"backend={backend!r}: expected one of {BACKENDS}")
    if launcher not in LAUNCHERS:
        raise ValueError(f"launcher={launcher!r}: expected one of {LAUNCHERS}")
    if backend == "ray" and not _has_ray:
        raise ImportError("backend='ray' needs Ray, which is not installed: `pip install ray`")
    env_fns = [EnvCreator(create_env)] * num_workers
    common = dict(
        frames_per_batch=frames_per_batch,
        total_frames=total_frames,
        sync=sync,
        collector_class=collector_class,
        collector_kwargs=collector_kwargs or {},
        update_after_each_batch=update_after_each_batch,
        **kwargs,
    )
    if backend == "distributed":
        from torchrl.collectors.distributed import DistributedCollector
        from torchrl.weight_update import DistributedWeightSyncScheme

        scheme = DistributedWeightSyncScheme(backend="gloo", sync=sync) if policy is not None else NoWeightSyncScheme()
        return DistributedCollector(env_fns, policy, launcher=launcher, tcp_port=tcp_port, backend="gloo", weight_sync_schemes={"policy": scheme}, **common)
    if backend == "rpc":
        from torchrl.collectors.distributed import RPCCollector
        from torchrl.weight_update import RPCWeightSyncScheme

        scheme = RPCWeightSyncScheme() if policy is not None else NoWeightSyncScheme()
        return RPCCollector(env_fns, policy, launcher=launcher, tcp_port=tcp_port, weight_sync_schemes={"policy": scheme}, **common)
    from torchrl.collectors.distributed import RayCollector
    from torchrl.weight_update import RayWeightSyncScheme

    scheme = RayWeightSyncScheme() if policy is not None else NoWeightSyncScheme()
    return RayCollector(env_fns, policy, num_collectors=num_workers, ray_init_config=ray_init_config, weight_sync_schemes={"policy": scheme}, **common)


# -- python -m agenthive collect-worker ---------------------------------------------------------


def _parser():
    parser = argparse.ArgumentParser(
        prog="python -m agenthive collect-worker",
        description="Run one collection worker for a learner whose distributed collector uses launcher='submitit_delayed' "
        "(see docs/multi_host.md). The env and the policy come from the learner.",
    )
    parser.add_argument("--backend", default="distributed", choices=("distributed", "rpc"), help="the learner's --backend")
    parser.add_argument("--master-addr", required=True, help="the learner's address, as this host reaches it")
    parser.add_argument("--master-port", type=int, default=10003, help="the learner's rendezvous port (its tcp_port)")
    parser.add_argument("--rank", type=int, required=True, help="this worker's rank: 1 .. number of workers")
    parser.add_argument("--world-size", type=int, required=True, help="number of workers + 1 (the learner)")
    return parser


def main(argv=None):
    """``python -m agenthive collect-worker``: joins the learner and collects until it shuts down.

    Example:
        >>> main(["--help"])  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        SystemExit: 0
    """
    args = _parser().parse_args(argv)
    if not 1 <= args.rank < args.world_size:
        raise SystemExit(f"--rank {args.rank} with --world-size {args.world_size}: expected 1 <= rank < world size (rank 0 is the learner)")
    print(f"agenthive: {args.backend} worker {args.rank}/{args.world_size - 1} joining {args.master_addr}:{args.master_port}", flush=True)
    if args.backend == "distributed":
        from torchrl.collectors.distributed.generic import _distributed_init_delayed

        _distributed_init_delayed(args.rank, "gloo", args.master_addr, args.master_port, args.world_size)
    else:
        from torchrl.collectors.distributed.default_configs import DEFAULT_TENSORPIPE_OPTIONS
        from torchrl.collectors.distributed.rpc import _rpc_init_collection_node

        _rpc_init_collection_node(args.rank, args.master_addr, args.master_port, args.world_size, None, DEFAULT_TENSORPIPE_OPTIONS, "gloo")
    print(f"agenthive: worker {args.rank} done", flush=True)
    return 0
