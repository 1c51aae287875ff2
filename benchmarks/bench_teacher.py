"""PPO against PPO guided by a weak served teacher (``train.py --teacher``, RPD) on a sparse-reward reach.

The task is FrankaReachRandom-v0 with ``--goal-reward success`` (0 within RoboHive's 5 cm
of the target, -1 otherwise; the policy reads ``observation``, ``achieved_goal`` and
``desired_goal``), on which plain PPO rarely sees a success.

1. The teacher: a short SAC run of ``scripts/train.py`` on the same goal-conditioned view
   with the env's dense reward (``--goal-reward env``), its checkpoint at ``--teacher-frames``
   ``torch.save``d inside a ``TensorDictSequential`` with torchrl's ``AdditiveGaussianModule``
   (noise of a fixed sigma, projected on the action bounds) so that it succeeds only now and
   then. Sigma is the first of ``--sigmas`` (0: the checkpoint as it is, for an early one that
   is weak already) whose measured success (``--calibration-episodes``) is at most 0.4;
   the chosen teacher is then measured again on ``--teacher-episodes`` fresh episodes (the
   number reported). It is served by a real ``python -m agenthive start-server
   torchrl-checkpoint`` process on 127.0.0.1, unchanged.
2. ``--seeds`` runs of ``train.py --algo ppo`` alone and as many with ``--teacher``, same
   arguments and frames; each run's evaluations (``history.csv``) give success vs frames, and
   its stdout (``train.log``) the requests sent to the teacher and the seconds spent on them.
3. A markdown table (final success per seed, medians, the teacher's success, the teacher's
   cost) and ``teacher_curve.png`` (mean and min-max over seeds; the teacher as a line).

    sim_backend=MUJOCO .venv/bin/python benchmarks/bench_teacher.py
    .venv/bin/python benchmarks/bench_teacher.py --seeds 0 --frames 20000   # a pilot

Runs live under ``--out-dir``; a finished run is read, not rerun, so the benchmark can be run
in pieces (a teacher run that stopped resumes from its last checkpoint).
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
ENV = ["--env", "FrankaReachRandom-v0"]
OBSERVATIONS = {"observation": [[18], "float32"], "achieved_goal": [[3], "float32"], "desired_goal": [[3], "float32"]}
REQUESTS = re.compile(r"teacher requests: (\d+) in ([\d.]+)s of (\d+)s of training")
CHILD_ENV = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
"""train.py's environment: this checkout's agenthive first, even where the venv's editable install points at another one."""


def train_teacher(out_dir: Path, frames: int) -> Path:
    """The SAC run's checkpoint at ``frames`` or later (trained, resumed or read); returns its policy.pt."""
    from agenthive.checkpoint import list_checkpoints

    run_dir = out_dir / "teacher-sac"
    done = {f: path for f, path in list_checkpoints(run_dir).items() if f >= frames}
    if not done:
        command = [sys.executable, str(ROOT / "scripts" / "train.py")]
        if list_checkpoints(run_dir):
            command += ["--run-dir", str(run_dir), "--resume", "--total-frames", str(frames)]
        else:
            command += [*ENV, "--algo", "sac", "--goal-reward", "env", "--seed", "100", "--total-frames", str(frames), "--run-dir",
                        str(run_dir), "--init-random-frames", "2000", "--frames-per-batch", "50", "--lr", "0.001", "--gamma", "0.98",
                        "--eval-every", "5000", "--eval-episodes", "10", "--checkpoint-every", "5000", "--no-video"]
        print("teacher:", " ".join(command[1:]), flush=True)
        subprocess.run(command, check=True, cwd=ROOT, env=CHILD_ENV)
        done = {f: path for f, path in list_checkpoints(run_dir).items() if f >= frames}
    return done[min(done)] / "policy.pt"


def noisy_teacher(policy_path: Path, sigma: float, path: Path) -> Path:
    """``policy_path``'s actor followed by Gaussian action noise of ``sigma``, ``torch.save``d to ``path``."""
    import torch
    from tensordict.nn import TensorDictSequential
    from torchrl.modules import AdditiveGaussianModule

    from agenthive.env_config import EnvConfig, make_env

    actor = torch.load(policy_path, weights_only=False)
    env = make_env(EnvConfig(env=ENV[1], goal_reward="success"))
    noise = AdditiveGaussianModule(spec=env.action_spec, sigma_init=float(sigma), sigma_end=float(sigma))
    env.close()
    torch.save(TensorDictSequential(actor, noise), path)
    return path


def serve(path: Path):
    """A started ``start-server torchrl-checkpoint`` process serving ``path`` on 127.0.0.1 (``.port``, ``.stop()``)."""
    from agenthive.serving.process import ServerProcess

    kwargs = json.dumps({"path": str(path), "observations": OBSERVATIONS, "num_threads": 1, "seed": 0})  # its noise, seeded
    command = [sys.executable, "-m", "agenthive", "start-server", "torchrl-checkpoint", "--host", "127.0.0.1", "--kwargs", kwargs,
               "--log-level", "WARNING", "--port", "{port}"]
    return ServerProcess(command, env=CHILD_ENV).__enter__()


def measure(port: int, episodes: int, seed: int) -> float:
    from agenthive.env_config import EnvConfig
    from agenthive.training.teacher import evaluate_teacher

    return evaluate_teacher(f"127.0.0.1:{port}", EnvConfig(env=ENV[1], goal_reward="success"), episodes, seed=seed)["success_rate"]


def weak_teacher(out_dir: Path, policy_path: Path, sigmas: list[float], calibration: int, episodes: int):
    """The first sigma whose teacher succeeds at most 0.4 of the time: ``(server, sigma, its success on fresh episodes, calibration)``."""
    calibrated = {}
    for sigma in sigmas:
        server = serve(noisy_teacher(policy_path, sigma, out_dir / f"teacher_sigma{sigma}.pt"))
        calibrated[sigma] = measure(server.port, calibration, seed=30_000)
        print(f"teacher with noise sigma {sigma}: success {calibrated[sigma]:.2f} over {calibration} episodes", flush=True)
        if calibrated[sigma] <= 0.4 or sigma == sigmas[-1]:
            break
        server.stop()
    success = measure(server.port, episodes, seed=40_000)
    print(f"teacher (sigma {sigma}): success {success:.2f} over {episodes} fresh episodes", flush=True)
    return server, sigma, success, calibrated


def ppo_args(frames: int, seed: int, run_dir: Path, args) -> list[str]:
    """The arguments both arms share."""
    return [*ENV, "--algo", "ppo", "--goal-reward", "success", "--seed", str(seed), "--total-frames", str(frames),
            "--run-dir", str(run_dir), "--frames-per-batch", str(args.frames_per_batch), "--ppo-epochs", "10",
            "--minibatch-size", "250", "--lr", "3e-4", "--gamma", "0.98", "--hidden-sizes", "256,256",
            "--eval-every", str(args.eval_every), "--eval-episodes", str(args.eval_episodes),
            "--checkpoint-every", str(frames), "--no-video"]


def run(arm: str, seed: int, args, teacher_port: int | None) -> dict:
    """Trains (or reads) one run: its evaluation rows, wall time and teacher requests."""
    run_dir = Path(args.out_dir) / f"{arm}-seed{seed}"
    if not (run_dir / "history.csv").is_file():
        extra = ["--teacher", f"127.0.0.1:{teacher_port}", "--teacher-coef", str(args.teacher_coef),
                 "--teacher-anneal", args.teacher_anneal, "--teacher-loss", args.teacher_loss] if arm == "ppo_teacher" else []
        command = [sys.executable, str(ROOT / "scripts" / "train.py"), *ppo_args(args.frames, seed, run_dir, args), *extra]
        print(f"{arm} seed {seed}: {' '.join(command[1:])}", flush=True)
        print("load:", subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip(), flush=True)
        run_dir.mkdir(parents=True, exist_ok=True)
        with open(run_dir / "train.log", "w") as log:
            subprocess.run(command, check=True, cwd=ROOT, env=CHILD_ENV, stdout=log, stderr=subprocess.STDOUT)
    with open(run_dir / "history.csv") as file:
        rows = [{"frames": int(r["frames"]), "wall_s": float(r["wall_s"]), "success_rate": float(r["success_rate"])}
                for r in csv.DictReader(file) if r["kind"] == "eval"]
    requests = REQUESTS.search((run_dir / "train.log").read_text())
    return {"evals": rows, "wall_s": rows[-1]["wall_s"],
            "requests": int(requests[1]) if requests else 0, "request_s": float(requests[2]) if requests else 0.0}


def final(result: dict) -> float:
    return result["evals"][-1]["success_rate"]


def table(results: dict, teacher: dict, args) -> str:
    """The markdown table: final success per seed of each arm, medians, the teacher's success and cost."""
    alone, guided = results["ppo"], results["ppo_teacher"]
    lines = ["| seed | PPO | PPO + teacher | teacher requests | seconds in teacher requests | run wall time (PPO / PPO + teacher) |",
             "|---|---|---|---|---|---|"]
    for seed in alone:
        a, g = alone[seed], guided[seed]
        lines.append(f"| {seed} | {final(a):.2f} | {final(g):.2f} | {g['requests']} | {g['request_s']:.2f} "
                     f"({100 * g['request_s'] / g['wall_s']:.1f}% of the run) | {a['wall_s']:.0f} s / {g['wall_s']:.0f} s |")
    lines.append(f"| median | {statistics.median(map(final, alone.values())):.2f} | "
                 f"{statistics.median(map(final, guided.values())):.2f} | | | |")
    lines.append("")
    lines.append(f"Teacher: SAC ({args.teacher_frames} frames, dense reward) + Gaussian action noise sigma {teacher['sigma']}: "
                 f"success {teacher['success']:.2f} over {args.teacher_episodes} episodes (calibration: "
                 + ", ".join(f"sigma {s}: {v:.2f}" for s, v in teacher["calibration"].items()) + f" over {args.calibration_episodes}).")
    lines.append(f"Frames per run: {args.frames}; evaluation: {args.eval_episodes} deterministic episodes every {args.eval_every} frames; "
                 f"teacher term: --teacher-coef {args.teacher_coef} --teacher-anneal {args.teacher_anneal} --teacher-loss {args.teacher_loss}.")
    return "\n".join(lines)


def plot(results: dict, teacher_success: float, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    fig, ax = plt.subplots(figsize=(6.5, 4))
    for color, (arm, label) in zip(("C0", "C2"), (("ppo", "PPO"), ("ppo_teacher", "PPO + served teacher"))):
        runs = list(results[arm].values())
        points = min(len(r["evals"]) for r in runs)  # the evaluations every run reached
        x = np.array([np.mean([r["evals"][i]["frames"] for r in runs]) for i in range(points)])
        y = np.array([[r["evals"][i]["success_rate"] for i in range(points)] for r in runs])
        ax.plot(x, y.mean(0), "o-", color=color, label=f"{label} ({len(runs)} seeds, mean)")
        ax.fill_between(x, y.min(0), y.max(0), color=color, alpha=0.2)
    ax.axhline(teacher_success, color="C3", ls="--", label=f"teacher ({teacher_success:.2f})")
    ax.set(xlabel="frames", ylabel="evaluation success rate", ylim=(-0.02, 1.02),
           title="FrankaReachRandom-v0, sparse reward: PPO vs PPO + teacher (min-max shaded)")
    ax.title.set_fontsize(9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", default="0,1,2", help="comma-separated seeds (each arm runs each)")
    parser.add_argument("--frames", type=int, default=40_000, help="frames per PPO run")
    parser.add_argument("--frames-per-batch", type=int, default=2000, help="PPO: frames per batch")
    parser.add_argument("--eval-every", type=int, default=5_000, help="frames between evaluations")
    parser.add_argument("--eval-episodes", type=int, default=20, help="episodes per evaluation")
    parser.add_argument("--teacher-frames", type=int, default=25_000, help="frames of the teacher's SAC run")
    parser.add_argument("--sigmas", default="0.0,0.3,0.6,1.0", help="noise levels to try, ascending (0: the SAC policy as it is)")
    parser.add_argument("--calibration-episodes", type=int, default=20, help="episodes per noise level tried")
    parser.add_argument("--teacher-episodes", type=int, default=50, help="episodes measuring the chosen teacher")
    parser.add_argument("--teacher-coef", type=float, default=1.0, help="train.py --teacher-coef")
    parser.add_argument("--teacher-anneal", default="linear", help="train.py --teacher-anneal")
    parser.add_argument("--teacher-loss", default="mse", help="train.py --teacher-loss (l1: towards the median of the noisy "
                        "teacher's actions, which is the clean policy's action where it lies inside the bounds)")
    parser.add_argument("--out-dir", default="outputs/bench_teacher", help="runs, summary.json and teacher_curve.png")
    parser.add_argument("--plot", default=str(ROOT / "benchmarks" / "teacher_curve.png"), help="where the curve goes")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    os.environ["PYTHONPATH"] = CHILD_ENV["PYTHONPATH"]  # the teacher's server too
    out_dir, started = Path(args.out_dir), time.perf_counter()
    out_dir.mkdir(parents=True, exist_ok=True)
    policy_path = train_teacher(out_dir, args.teacher_frames)
    server, sigma, success, calibration = weak_teacher(out_dir, policy_path, [float(s) for s in args.sigmas.split(",")],
                                                       args.calibration_episodes, args.teacher_episodes)
    teacher = {"sigma": sigma, "success": success, "calibration": calibration, "served": f"127.0.0.1:{server.port}"}
    try:
        seeds = [int(s) for s in args.seeds.split(",")]
        results = {arm: {seed: run(arm, seed, args, server.port) for seed in seeds} for arm in ("ppo_teacher", "ppo")}  # the guided arm first
    finally:
        server.stop()
    (out_dir / "summary.json").write_text(json.dumps({"teacher": teacher, "results": results, "args": vars(args)}, indent=2))
    plot(results, success, Path(args.plot))
    print(table(results, teacher, args))
    print(f"benchmark wall time {time.perf_counter() - started:.0f}s; wrote {out_dir / 'summary.json'} and {args.plot}")


if __name__ == "__main__":
    main()
