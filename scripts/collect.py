"""Collect experience from RoboHive environments in parallel, optionally to a replay buffer on disk; film one episode.

    sim_backend=MUJOCO .venv/bin/python scripts/collect.py
    .venv/bin/python scripts/collect.py --env FK1_MicroOpenRandom-v4 --num-envs 4 --total-frames 20000
    .venv/bin/python scripts/collect.py --collector-devices cuda:0,cuda:1 --observation frames --buffer-dir data/reach   # one worker per GPU
    .venv/bin/python scripts/collect.py --observation r3m --encoder-weights ~/weights --policy runs/x/checkpoints/step_000100000/policy.pt
    .venv/bin/python scripts/collect.py --collector-backend distributed --collector-workers 2 --tcp-port 10003   # torchrl's DistributedCollector

One collector worker per entry of ``--collector-devices``, each stepping
``TransformedEnv(RoboHiveEnv(--env, num_envs=--num-envs), pixel pipeline)`` on its device:
the simulators of a worker live in its process and are stepped by threads (the cores shared
among the workers). With one device, the collection runs in this process; with several,
torchrl's ``MultiAsyncCollector`` runs a process per device. On a CPU the fastest layout
measured is a few batched envs in two workers (``--collector-devices cpu,cpu --num-envs 4``:
1.31x ``MultiAsyncCollector(2)`` of single envs on 2 cores, see benchmarks/RESULTS.md,
issue 15). Pixel pipelines, after the batching:

* ``frames``: ToTensorImage -> Resize -> GrayScale -> CatFrames -> ObservationNorm, whose
  mean and standard deviation come from ``init_stats`` on ``--norm-init-frames`` random frames;
* ``r3m`` / ``vip``: the R3M or VIP embedding (:mod:`agenthive.vision`, weights from disk).

``--collector-backend distributed|rpc|ray`` collects with torchrl's distributed collectors instead
(:mod:`agenthive.distributed`): ``--collector-workers`` workers, each making its own
``make_worker_env`` on the first of ``--collector-devices``; ``--collector-launcher submitit_delayed`` waits for
workers started by hand on other hosts (``docs/multi_host.md``). Their envs are not seeded
with ``--seed`` (torchrl's distributed ``set_seed`` is broken in 0.14.1): each worker's
simulator seeds itself.

The options are named as in ``scripts/train.py`` (``--num-envs``, ``--collector-devices``,
``--collector-backend``, ``--collector-workers``, ``--collector-launcher``, ``--observation``);
the old names (``--envs-per-worker``, ``--devices``, ``--backend``, ``--num-workers``,
``--launcher``, ``--pixels``) still work and say so.

The policy is random, or a ``torch.save``d TensorDict module (``--policy``, e.g. a
``scripts/train.py`` checkpoint's ``policy.pt``). ``--buffer-dir`` writes every frame to a
torchrl replay buffer memory-mapped on disk (``LazyMemmapStorage``), which reloads with::

    rb = TensorDictReplayBuffer(storage=LazyMemmapStorage(<size>)); rb.loads("<buffer-dir>")
"""
from __future__ import annotations

import argparse
import functools
import time
from dataclasses import dataclass
from pathlib import Path

import agenthive  # noqa: F401  (before torchrl: importing agenthive picks MUJOCO_GL)
import imageio.v2 as imageio
import numpy as np
import torch
from torchrl.collectors import Collector, MultiAsyncCollector
from torchrl.data import LazyMemmapStorage, TensorDictReplayBuffer
from torchrl.envs import (
    CatFrames,
    GrayScale,
    ObservationNorm,
    Resize,
    ToTensorImage,
    TransformedEnv,
)
from tqdm import tqdm

from agenthive.config_args import add_dataclass_arguments, arg
from agenthive.env_config import make_simulator, threads_per_process
from agenthive.vision import EMBEDDINGS


@dataclass
class Args:
    env: str = arg("FrankaReachRandom-v0", "RoboHive id to collect from")
    collector_devices: str = arg("cpu", "comma-separated devices, one collector worker each (e.g. cuda:0,cuda:1 or cpu,cpu)",
                                 formerly=("--devices",))
    num_envs: int = arg(2, "simulators in each worker (RoboHiveEnv(num_envs=N): one process, stepped by threads)",
                        formerly=("--envs-per-worker",))
    total_frames: int = arg(4000, "frames to collect")
    frames_per_batch: int = arg(200, "frames per collector batch")
    seed: int = arg(0, "seed of the first env (the others get the next seeds)")
    observation: str = arg("state", "state, or a pixel pipeline: frames, r3m or vip", formerly=("--pixels",))
    cameras: str = arg("top_cam", "comma-separated cameras to render (with a pixel --observation)")
    image_size: int = arg(128, "rendered image height and width")
    resize: int = arg(84, "frames: images resized to this height and width")
    stack: int = arg(4, "frames: consecutive grayscale frames stacked by CatFrames")
    norm_init_frames: int = arg(200, "frames: random frames from which ObservationNorm.init_stats takes mean and std")
    encoder_model: str = arg("resnet50", "r3m: resnet18, resnet34 or resnet50; vip: resnet50")
    encoder_weights: str = arg("", "R3M/VIP checkpoint file or directory (default: $AGENTHIVE_WEIGHTS_DIR, torch hub cache)")
    encoder_pretrained: bool = arg(True, "--no-encoder-pretrained: a randomly initialised R3M/VIP encoder")
    policy: str = arg("", "torch.save'd TensorDict policy module (default: uniformly random actions)")
    buffer_dir: str = arg("", "write the collected frames to a replay buffer on disk here")
    collector_backend: str = arg("local", "local (this machine), or torchrl's distributed collectors: distributed, rpc, ray",
                                 formerly=("--backend",))
    collector_workers: int = arg(2, "distributed/rpc/ray: collection workers", formerly=("--num-workers",))
    collector_launcher: str = arg("mp", "distributed/rpc: mp (workers on this machine) or submitit_delayed (started by hand: "
                                  "docs/multi_host.md)", formerly=("--launcher",))
    tcp_port: int = arg(10003, "distributed/rpc: the learner's rendezvous port (distributed also uses the next one)")
    video_env: str = arg("FrankaReachRandom_v2d-v0", "visual RoboHive id to film after collecting (\"\" to skip)")
    video_camera: str = arg("top_cam", "camera of --video-env to film")
    video_steps: int = arg(50, "length of the filmed episode")
    out_dir: str = arg("outputs/collect", "where the video and image strip go")


def parse_args(argv=None) -> Args:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_dataclass_arguments(parser, Args)
    args = Args(**vars(parser.parse_args(argv)))
    if args.observation == "none":  # the old --pixels none
        args.observation = "state"
    if args.observation not in ("state", "frames", "r3m", "vip"):
        parser.error(f"--observation {args.observation!r}: expected state, frames, r3m or vip")
    if args.collector_backend not in ("local", "distributed", "rpc", "ray"):
        parser.error(f"--collector-backend {args.collector_backend!r}: expected local, distributed, rpc or ray")
    return args


def make_worker_env(args: Args, device: str, norm_stats: tuple[torch.Tensor, torch.Tensor] | None = None) -> TransformedEnv:
    """One worker's envs: a batched RoboHiveEnv, then the pixel pipeline on the whole batch."""
    render = {}
    if args.observation != "state":
        render = dict(from_pixels=True, cameras=args.cameras.split(","), image_size=(args.image_size,) * 2, shadows=False)
    if args.num_envs > 1:
        workers = len(args.collector_devices.split(",")) if args.collector_backend == "local" else args.collector_workers
        render.update(num_envs=args.num_envs, num_threads=threads_per_process(workers))
    base = make_simulator("robohive", args.env, device=device, **render)
    env = TransformedEnv(base)
    if args.observation == "frames":
        env.append_transform(ToTensorImage(in_keys=["pixels"]))  # uint8 [.., H, W, 3] -> float [.., 3, H, W] in [0, 1]
        env.append_transform(Resize(args.resize, args.resize, in_keys=["pixels"]))
        env.append_transform(GrayScale(in_keys=["pixels"]))
        env.append_transform(CatFrames(N=args.stack, dim=-3, in_keys=["pixels"]))
        loc, scale = (t.to(device) for t in norm_stats) if norm_stats is not None else (None, None)
        env.append_transform(ObservationNorm(loc=loc, scale=scale, in_keys=["pixels"], standard_normal=True))
    elif args.observation in EMBEDDINGS:
        env.append_transform(EMBEDDINGS[args.observation](
            args.encoder_model, in_keys=["pixels"], out_keys=[f"{args.observation}_vec"], size=args.image_size,
            weights=args.encoder_weights or None, pretrained=args.encoder_pretrained,
        ))
    return env


def frame_norm_stats(args: Args, device: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and standard deviation of the stacked frames over random rollouts (ObservationNorm.init_stats)."""
    env = make_worker_env(args, device)
    env.set_seed(args.seed)
    # [envs, time, cams, stack, H, W] reduced to one mean and one std
    env.transform[-1].init_stats(num_iter=args.norm_init_frames, reduce_dim=(0, 1, 2, 3, 4, 5), cat_dim=1)
    loc, scale = env.transform[-1].loc.clone(), env.transform[-1].scale.clone()
    env.close()
    return loc, scale


def collect(args: Args) -> float:
    devices = args.collector_devices.split(",")
    norm_stats = frame_norm_stats(args, devices[0]) if args.observation == "frames" else None
    if norm_stats is not None:
        print(f"ObservationNorm from {args.norm_init_frames} random frames: mean {norm_stats[0].item():.3f}, std {norm_stats[1].item():.3f}")
    policy = None
    if args.policy:
        policy = torch.load(args.policy, map_location="cpu", weights_only=False)  # unpickles code: trusted files only
    common = dict(frames_per_batch=args.frames_per_batch, total_frames=args.total_frames, storing_device="cpu")
    if args.collector_backend != "local":
        from agenthive.distributed import distributed_collector

        collector = distributed_collector(
            functools.partial(make_worker_env, args, devices[0], norm_stats), policy, backend=args.collector_backend,
            num_workers=args.collector_workers, frames_per_batch=args.frames_per_batch, total_frames=args.total_frames,
            launcher=args.collector_launcher, tcp_port=args.tcp_port,
        )
    elif len(devices) == 1:
        env = make_worker_env(args, devices[0], norm_stats)
        if policy is not None:
            missing = [k for k in policy.in_keys if k not in env.observation_spec.keys(True)]
            if missing:
                raise SystemExit(f"--policy {args.policy} reads {missing}, which --observation {args.observation} does not produce "
                                 f"(the env has {list(env.observation_spec.keys(True))}).")
        collector = Collector(env, policy, env_device=devices[0], policy_device=devices[0], **common)
    else:
        workers = [functools.partial(make_worker_env, args, d, norm_stats) for d in devices]
        collector = MultiAsyncCollector(workers, policy, env_device=devices, policy_device=devices, **common)
    if args.collector_backend == "local":
        collector.set_seed(args.seed)

    buffer = None
    if args.buffer_dir:
        size = -(-args.total_frames // args.frames_per_batch) * args.frames_per_batch  # whole batches
        storage = LazyMemmapStorage(size, scratch_dir=Path(args.buffer_dir) / "storage")
        buffer = TensorDictReplayBuffer(storage=storage)

    frames, episodes, successes = 0, 0, 0
    start = time.perf_counter()
    desc = f"collecting {args.env} on {args.collector_devices} x{args.num_envs} ({args.observation})"
    with tqdm(total=args.total_frames, desc=desc, unit="frame") as bar:
        for batch in collector:
            frames += batch.numel()
            done = batch["next", "done"]
            episodes += int(done.sum())
            successes += int((batch["next", "success"] & done).sum())
            if buffer is not None:
                buffer.extend(batch.reshape(-1))
            bar.update(batch.numel())
            bar.set_postfix(fps=f"{frames / (time.perf_counter() - start):.0f}", episodes=episodes)
    fps = frames / (time.perf_counter() - start)
    collector.shutdown()
    workers = len(devices) if args.collector_backend == "local" else args.collector_workers
    print(f"{frames} frames from {workers} {args.collector_backend} worker(s) x {args.num_envs} envs in {frames / fps:.1f}s: "
          f"{fps:.0f} frames/s; {episodes} episodes ended, {successes} solved at their last step")
    if buffer is not None:
        buffer.dumps(args.buffer_dir)
        print(f"replay buffer of {len(buffer)} frames in {args.buffer_dir}; reload it with "
              f"TensorDictReplayBuffer(storage=LazyMemmapStorage({storage.max_size})).loads({args.buffer_dir!r})")
    return fps


def film(args: Args) -> None:
    env = make_simulator("robohive", args.video_env, cameras=[args.video_camera])
    env.set_seed(args.seed)
    with torch.no_grad():
        td = env.rollout(args.video_steps, break_when_any_done=False)
    env.close()
    frames = td["next", "pixels"][:, 0].numpy()  # [T, H, W, 3], the one camera
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    video = out / f"{args.video_env}_{args.video_camera}.mp4"
    imageio.mimwrite(video, frames, fps=12, macro_block_size=1)
    strip = out / f"{args.video_env}_{args.video_camera}_strip.png"
    imageio.imwrite(strip, np.concatenate(list(frames[:: max(1, len(frames) // 8)]), axis=1))
    print(f"saved {video} and {strip}")


def main(argv=None):
    args = parse_args(argv)
    collect(args)
    if args.video_env:
        film(args)


if __name__ == "__main__":
    main()
