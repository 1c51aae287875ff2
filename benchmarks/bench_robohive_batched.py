"""RoboHiveEnv(num_envs=N) against the raw simulator loop and the multi-process layouts.

Every contender is built once (worker processes start once), then timed once per round,
rounds interleaved, medians reported, each as frames/s and as a ratio to the raw gymnasium
loop of the same rounds; torch on one thread. Process start-up is outside the timings.

    .venv/bin/python benchmarks/bench_robohive_batched.py            # about 5 minutes on 2 cores
    .venv/bin/python benchmarks/bench_robohive_batched.py --quick    # a smoke run
    .venv/bin/python benchmarks/bench_robohive_batched.py --mujoco-share   # only MuJoCo's share of a step
    .venv/bin/python benchmarks/bench_robohive_batched.py --sweep 1,2,4,8,16 --num-envs 8,16,32,64   # a big machine

State, FrankaReachRandom-v0 and FK1_MicroOpenRandom-v4, random actions:

* ``raw``: RoboHive's gymnasium env stepped in a Python loop;
* ``raw x2 threads``: two such loops in two threads of this process;
* ``batched(N).rollout``: ``RoboHiveEnv(name, num_envs=N).rollout``;
* ``ParallelEnv(2).rollout``: two single ``RoboHiveEnv`` in worker processes;
* ``MultiAsyncCollector(2)``: two collector processes, one single env each;
* ``Collector(batched(N))``: torchrl's ``Collector`` over the batched env, in this process;
* ``MultiAsyncCollector(2 x batched(N/2, 1 thread))``: batched envs inside collector workers.

Then how much of a raw step is MuJoCo's ``mj_step`` (it releases the GIL, RoboHive's Python
does not: the Amdahl bound on what threads can gain), where a batched step's time goes, and
one 224x224 camera: the single env against the
batched env (which renders its sub-envs one after the other in the calling thread), and
MuJoCo rendering with one EGL context per thread against one after the other.
"""
from __future__ import annotations

import argparse
import os
import statistics
import threading
import time

import agenthive.envs  # noqa: F401  (sets MUJOCO_GL before torchrl imports mujoco)
import gymnasium as gym
import numpy as np
import torch
from torchrl.collectors import Collector, MultiAsyncCollector
from torchrl.envs import EnvCreator, ParallelEnv

from agenthive.envs import RoboHiveEnv
from agenthive.envs.robohive import _CameraRenderer, _import_robohive

CAMERA = "top_cam"


def raw_fps(env_id: str, frames: int) -> float:
    env = gym.make(env_id)
    env.reset(seed=0)
    actions = np.random.default_rng(0).uniform(-1, 1, (frames, *env.action_space.shape)).astype(np.float32)
    start = time.perf_counter()
    for action in actions:
        _, _, terminated, truncated, _ = env.step(action)
        if terminated or truncated:
            env.reset()
    elapsed = time.perf_counter() - start
    env.close()
    return frames / elapsed


def raw_threads_fps(env_id: str, frames: int, threads: int = 2) -> float:
    """``threads`` raw loops in threads of this process; frames/s of all of them together."""
    envs = [gym.make(env_id) for _ in range(threads)]
    for i, env in enumerate(envs):
        env.reset(seed=i)
    actions = np.random.default_rng(0).uniform(-1, 1, (frames, *envs[0].action_space.shape)).astype(np.float32)

    def loop(env):
        for action in actions:
            _, _, terminated, truncated, _ = env.step(action)
            if terminated or truncated:
                env.reset()

    workers = [threading.Thread(target=loop, args=(env,)) for env in envs]
    start = time.perf_counter()
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    elapsed = time.perf_counter() - start
    for env in envs:
        env.close()
    return threads * frames / elapsed


def rollout_timer(env, frames: int):
    """A function that times ``env.rollout`` of random actions (frames/s); the env is built once."""
    n = env.batch_size.numel()
    env.set_seed(0)
    env.reset()

    def run():
        start = time.perf_counter()
        env.rollout(max(1, frames // n), break_when_any_done=False)
        return max(1, frames // n) * n / (time.perf_counter() - start)

    run.close = env.close
    return run


def collector_timer(collector, frames: int):
    """A function that times ``frames`` frames of a running collector (frames/s)."""
    iterator = iter(collector)
    next(iterator)  # warm-up batch: worker start-up and first resets are not throughput

    def run():
        next(iterator)  # a batch collected ahead while the other contenders ran
        collected, start = 0, time.perf_counter()
        while collected < frames:
            collected += next(iterator).numel()
        return collected / (time.perf_counter() - start)

    run.close = collector.shutdown
    return run


def state_contenders(env_id: str, frames: int, num_envs: int, processes: bool) -> dict:
    """name -> builder of a timer; ``processes=False`` leaves out the multi-process layouts."""
    single = EnvCreator(lambda: RoboHiveEnv(env_id))
    half = EnvCreator(lambda: RoboHiveEnv(env_id, num_envs=max(1, num_envs // 2), num_threads=1))
    batch = 8 * num_envs
    contenders = {
        "raw": lambda: lambda: raw_fps(env_id, frames),
        "raw x2 threads": lambda: lambda: raw_threads_fps(env_id, frames // 2),
        f"batched({num_envs}).rollout": lambda: rollout_timer(RoboHiveEnv(env_id, num_envs=num_envs), frames),
        f"Collector(batched({num_envs}))": lambda: collector_timer(
            Collector(RoboHiveEnv(env_id, num_envs=num_envs), None, frames_per_batch=batch, total_frames=-1), frames),
    }
    if processes:
        contenders.update({
            "ParallelEnv(2).rollout": lambda: rollout_timer(ParallelEnv(2, single), frames),
            "MultiAsyncCollector(2)": lambda: collector_timer(
                MultiAsyncCollector([single] * 2, None, frames_per_batch=batch // 2, total_frames=-1), frames),
            f"MultiAsyncCollector(2 x batched({max(1, num_envs // 2)}, 1 thread))": lambda: collector_timer(
                MultiAsyncCollector([half] * 2, None, frames_per_batch=batch // 2, total_frames=-1), frames),
        })
    return contenders


def measure(contenders: dict, rounds: int) -> dict[str, float]:
    """Builds every contender's timer, then runs them ``rounds`` times, interleaved; medians."""
    timers = {name: build() for name, build in contenders.items()}
    speeds = {name: [] for name in contenders}
    for _ in range(rounds):
        for name, run in timers.items():
            speeds[name].append(run())
    for run in timers.values():
        getattr(run, "close", lambda: None)()
    return {name: statistics.median(values) for name, values in speeds.items()}


def report(title: str, medians: dict[str, float], baseline: str) -> None:
    print(f"\n## {title} (median frames/s, ratio to {baseline})")
    for name, fps in medians.items():
        print(f"  {name:<58} {fps:8.1f} frames/s   {fps / medians[baseline]:5.2f}x")


def median_us_per_step(loops: dict, steps: int, rounds: int) -> dict[str, float]:
    """Each loop (``steps`` steps) timed once per round, rounds interleaved: name -> median microseconds per step."""
    times = {name: [] for name in loops}
    for _ in range(rounds):
        for name, loop in loops.items():
            start = time.perf_counter()
            loop()
            times[name].append((time.perf_counter() - start) / steps * 1e6)
    return {name: statistics.median(values) for name, values in times.items()}


def breakdown(env_id: str, num_envs: int, steps: int, rounds: int) -> None:
    """Where a batched step's time goes, each loop adding one layer to the previous one."""
    env = RoboHiveEnv(env_id, num_envs=num_envs)
    sequential = RoboHiveEnv(env_id, num_envs=num_envs, num_threads=0)
    actions = torch.rand(steps, *env.action_spec.shape) * 2 - 1

    def sub_steps(e):
        def run():
            for a in actions.numpy():
                e._threads.run(lambda i: e._envs[i].step(a[i]))
        return run

    def batched_step():  # + the batched TensorDict (torchrl's _step)
        from tensordict import TensorDict
        for a in actions:
            env._step(TensorDict(action=a))

    def rollout():  # + torchrl's step, step_mdp, auto-reset, the stacked trajectory
        env.rollout(steps, break_when_any_done=False)

    env.reset()
    sequential.reset()
    loops = {"sub-env steps, one after the other": sub_steps(sequential),
             f"sub-env steps in {env.num_threads} threads": sub_steps(env),
             "+ batched TensorDict (_step)": batched_step, "+ torchrl rollout": rollout}
    print(f"\n## where a batched step goes: {env_id}, num_envs={num_envs}, median us per batched step")
    for name, us in median_us_per_step(loops, steps, rounds).items():
        print(f"  {name:<40} {us:8.0f} us   ({us / num_envs:6.0f} us per frame)")
    env.close()
    sequential.close()


def mujoco_share(env_id: str, steps: int, rounds: int) -> None:
    """The share of a raw ``env.step`` spent in ``mj_step`` (x frame_skip), timed side by side, and the Amdahl bound it sets."""
    import mujoco

    env = gym.make(env_id).unwrapped
    env.reset(seed=0)
    model, data = env.sim.model.ptr, env.sim.data.ptr
    actions = np.random.default_rng(0).uniform(-1, 1, (steps, *env.action_space.shape))

    def step():
        for a in actions:
            env.step(a)

    def physics():  # the same model and data, MuJoCo alone
        for _ in range(steps):
            mujoco.mj_step(model, data, nstep=env.frame_skip)

    whole, mujoco_us = median_us_per_step({"env.step": step, "mj_step x frame_skip": physics}, steps, rounds).values()
    share = mujoco_us / whole
    print(f"\n## MuJoCo's share of a raw step: {env_id}, frame_skip {env.frame_skip}, median us per step")
    print(f"  env.step {whole:8.0f} us; mj_step x {env.frame_skip} {mujoco_us:8.0f} us: {100 * share:.0f}% releases the GIL")
    for threads in sorted({2, os.cpu_count() or 1}):
        print(f"  Amdahl bound with {threads} threads: {1 / ((1 - share) + share / threads):.2f}x the raw loop")
    env.close()


def render_threads_vs_sequential(num_envs: int, images: int, rounds: int) -> None:
    """MuJoCo rendering of N sub-envs' 224x224 camera: in turn vs one EGL context per thread."""
    envs = [gym.make("FrankaReachRandom-v0").unwrapped for _ in range(num_envs)]
    out = np.empty((num_envs, 1, 224, 224, 3), np.uint8)
    options = dict(shadows=True, anti_aliasing=False, shadow_size=1024, gpu_id=None)
    in_turn = [_CameraRenderer(e.sim_obsd.model.ptr, 224, 224, **options) for e in envs]
    shares = np.array_split(np.arange(num_envs), 2)
    owned = [None] * num_envs
    go, done = [threading.Event() for _ in shares], threading.Semaphore(0)

    def owner(k):  # each thread makes, and then always uses, its own contexts
        for i in shares[k]:
            owned[i] = _CameraRenderer(envs[i].sim_obsd.model.ptr, 224, 224, **options)
        done.release()
        while go[k].wait() and not stop:
            go[k].clear()
            for i in shares[k]:
                owned[i].rgb(envs[i].sim_obsd.data.ptr, [CAMERA], out[i])
            done.release()
        for i in shares[k]:
            owned[i].close()

    def sequential():
        for _ in range(images):
            for i, e in enumerate(envs):
                in_turn[i].rgb(e.sim_obsd.data.ptr, [CAMERA], out[i])

    def threaded():
        for _ in range(images):
            for event in go:
                event.set()
            for _ in shares:
                done.acquire()

    stop = False
    workers = [threading.Thread(target=owner, args=(k,)) for k in range(len(shares))]
    for w in workers:
        w.start()
    for _ in shares:
        done.acquire()
    speeds = measure({"in turn, calling thread": lambda: lambda: _timed(sequential, images * num_envs),
                      "one context per thread, 2 threads": lambda: lambda: _timed(threaded, images * num_envs)}, rounds)
    stop = True
    for event in go:
        event.set()
    for w in workers:
        w.join()
    for r in in_turn:
        r.close()
    report(f"rendering {num_envs} sub-envs' 224x224 camera (images/s)", speeds, "in turn, calling thread")


def _timed(fn, frames: int) -> float:
    start = time.perf_counter()
    fn()
    return frames / (time.perf_counter() - start)


def sweep(env_id: str, num_envs_list: list[int], threads_list: list[int], frames: int, rounds: int) -> None:
    contenders = {"raw": lambda: lambda: raw_fps(env_id, frames)}
    for n in num_envs_list:
        for t in threads_list:
            if t <= n:
                contenders[f"batched({n}), {t} threads"] = (
                    lambda n=n, t=t: rollout_timer(RoboHiveEnv(env_id, num_envs=n, num_threads=t), frames))
    report(f"scaling: {env_id}, {os.cpu_count()} cores", measure(contenders, rounds), "raw")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="few frames and one round (smoke run)")
    parser.add_argument("--num-envs", default="8", help="batched sizes; more than one (with --sweep) sweeps them")
    parser.add_argument("--sweep", default=None, help="comma-separated num_threads: run only the scaling sweep")
    parser.add_argument("--mujoco-share", action="store_true", help="run only MuJoCo's share of a raw step (and its Amdahl bound)")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    _import_robohive()  # registers RoboHive's ids with gymnasium
    num_envs = [int(n) for n in args.num_envs.split(",")]
    if args.sweep:
        frames = 400 if args.quick else 8000
        sweep("FrankaReachRandom-v0", num_envs, [int(t) for t in args.sweep.split(",")], frames, 1 if args.quick else 3)
        return
    rounds = 1 if args.quick else 3
    if args.mujoco_share:
        mujoco_share("FrankaReachRandom-v0", 10 if args.quick else 300, 5)
        return
    # the multi-process layouts on FrankaReach only: their worker start-up is most of a run's time
    for env_id, frames, processes in (("FrankaReachRandom-v0", 1200, True), ("FK1_MicroOpenRandom-v4", 400, False)):
        frames = 8 * num_envs[0] if args.quick else frames
        report(f"state: {env_id}", measure(state_contenders(env_id, frames, num_envs[0], processes), rounds), "raw")
    mujoco_share("FrankaReachRandom-v0", 10 if args.quick else 300, rounds)
    breakdown("FrankaReachRandom-v0", num_envs[0], 10 if args.quick else 100, rounds)
    pixel_frames = 4 if args.quick else 12
    camera = dict(from_pixels=True, cameras=[CAMERA], image_size=(224, 224))
    report("one 224x224 camera: FrankaReachRandom-v0", measure({
        "single env": lambda: rollout_timer(RoboHiveEnv("FrankaReachRandom-v0", **camera), pixel_frames),
        "batched(4)": lambda: rollout_timer(RoboHiveEnv("FrankaReachRandom-v0", num_envs=4, **camera), pixel_frames),
        "single env, shadows=False": lambda: rollout_timer(
            RoboHiveEnv("FrankaReachRandom-v0", shadows=False, **camera), pixel_frames),
        "batched(4), shadows=False": lambda: rollout_timer(
            RoboHiveEnv("FrankaReachRandom-v0", num_envs=4, shadows=False, **camera), pixel_frames),
    }, rounds), "single env")
    render_threads_vs_sequential(4, 1 if args.quick else 3, rounds)


if __name__ == "__main__":
    main()
