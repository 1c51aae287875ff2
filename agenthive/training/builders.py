"""Named builders of ``scripts/train.py``: replay buffer, collector, evaluator, logger."""
from __future__ import annotations

import dataclasses
import functools
from pathlib import Path

from torchrl.collectors import Collector, Evaluator, MultiAsyncCollector, MultiSyncCollector
from torchrl.data import HERReplayBuffer, LazyMemmapStorage, TensorDictReplayBuffer
from torchrl.record.loggers import get_logger

from agenthive.env_config import EnvConfig, make_env, threads_per_process
from agenthive.evaluation.metrics import success_rate
from agenthive.training.networks import make_eval_policy
from agenthive.training.teacher import teacher_view


def make_replay_buffer(args, run_dir: Path, *, her_reward=None, resumed: bool = False):
    """SAC's replay buffer, memory-mapped under ``run_dir/replay_buffer`` (reloaded there when resuming); None for PPO."""
    if args.algo != "sac":
        return None
    storage = LazyMemmapStorage(args.buffer_size, scratch_dir=run_dir / "replay_buffer" / "storage")
    if args.her:  # relabels goals with achieved ones of the same episode (stored whole, in order)
        replay_buffer = HERReplayBuffer(reward_fn=her_reward, strategy=args.her, her_ratio=args.her_ratio,
                                        achieved_goal_key=("next", "achieved_goal"), storage=storage, batch_size=args.batch_size)
    else:
        replay_buffer = TensorDictReplayBuffer(storage=storage, batch_size=args.batch_size)
    if resumed:
        replay_buffer.loads(run_dir / "replay_buffer")
    return replay_buffer


def make_collector(args, env_config: EnvConfig, actor, *, frames: int, device):
    """The collector of the frames still to collect (``args.total_frames - frames``).

    One worker process per ``--collector-devices`` entry; a single device collects in this
    process, between updates, unless ``--async-collection``; ``--collector-backend`` other
    than local: torchrl's distributed collectors (:mod:`agenthive.distributed`).
    """
    devices = args.collector_devices.split(",")
    worker_env = functools.partial(make_env, env_config, num_envs=args.num_envs, num_threads=env_threads(args), **teacher_view(args))
    remaining = args.total_frames - frames
    common = dict(
        frames_per_batch=args.frames_per_batch, total_frames=remaining, storing_device=device,
        init_random_frames=max(args.init_random_frames - frames, 0) if args.algo == "sac" else None,
    )
    if args.her:  # whole episodes, each contiguous: HER finds an episode's goals between its done flags
        common.update(trajs_per_batch=args.num_envs, traj_format="cat")
    if args.collector_backend != "local":  # PPO: every batch from all workers with the same weights
        from agenthive.distributed import distributed_collector

        return distributed_collector(
            functools.partial(worker_env, device=devices[0]), actor,
            backend=args.collector_backend, num_workers=args.collector_workers, sync=args.algo == "ppo",
            launcher=args.collector_launcher, tcp_port=args.tcp_port, frames_per_batch=args.frames_per_batch,
            total_frames=remaining, storing_device=device, init_random_frames=common["init_random_frames"] or -1,
        )
    if len(devices) == 1 and not args.async_collection:
        collector = Collector(worker_env(device=devices[0]), actor,
                              env_device=devices[0], policy_device=devices[0], **common)
    else:
        worker_envs = [functools.partial(worker_env, device=d) for d in devices]
        multi = MultiAsyncCollector if args.algo == "sac" else MultiSyncCollector
        collector = multi(worker_envs, actor, env_device=devices, policy_device=devices, **common)
    collector.set_seed(args.seed + frames)  # (torchrl 0.14.1's distributed set_seed is broken: remote envs seed themselves)
    return collector


def env_threads(args) -> int:
    """Threads per batched RoboHive env: the cores shared by the collector workers and the learner beside them."""
    local = args.collector_backend == "local"
    workers = len(args.collector_devices.split(",")) if local else args.collector_workers
    in_process = local and workers == 1 and not args.async_collection
    return threads_per_process(1 if in_process else workers + 1)


def make_evaluator(args, env_config: EnvConfig, **policy_shape) -> Evaluator:
    """torchrl's ``Evaluator`` beside training (another process by default); ``policy_shape``: ``make_eval_policy``'s keywords."""
    return Evaluator(
        functools.partial(make_env, env_config),
        policy_factory=functools.partial(make_eval_policy, **policy_shape),
        num_trajectories=args.eval_episodes,
        frames_per_batch=100,  # steps between checks for finished episodes (torchrl's default, 1000, is slow to render)
        backend=args.eval_backend,
        metrics_fn=functools.partial(success_rate, success_steps=env_config.success_steps),
        collector_kwargs={"traj_format": "padded"},
    )


def make_logger(args, run_dir: Path, *, state=None):
    """torchrl's logger under ``run_dir/logs``: CSV unless asked otherwise (TensorBoard and wandb are imported only then)."""
    kwargs = {"wandb_kwargs": {"project": args.wandb_project, "config": dataclasses.asdict(args)}} if args.logger == "wandb" else {}
    return get_logger(args.logger, str(run_dir / "logs"), run_dir.name, state_dict=state, **kwargs)
