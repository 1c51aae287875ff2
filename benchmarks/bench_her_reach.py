"""SAC+HER against SAC without HER on FrankaReachRandom-v0 with a sparse reward.

Both arms run ``scripts/train.py`` with the same arguments, frames and seeds; they differ
only in ``--her``. The reward is ``--goal-reward success``: 0 when the end effector is
within RoboHive's 5 cm of the target, -1 otherwise (RoboHive's own ``reward_mode="sparse"``
is the negative distance, a dense signal). The policy reads the goal-free observation
(joint positions and velocities), the achieved goal (end effector) and the desired goal.
Evaluation: deterministic policy, ``--eval-episodes`` episodes every ``--eval-every``
frames; RoboHive's success (``solved`` on more than 5 steps of the episode, as in the
dense SAC benchmark), success at the episode's last step (the target is held) and at any
step (it was reached).

    .venv/bin/python benchmarks/bench_her_reach.py                      # 3 seeds x 100k frames x 2 arms
    .venv/bin/python benchmarks/bench_her_reach.py --seeds 0 --frames 50000

Runs live under ``--out-dir``/<arm>-seed<seed>; a run that stopped resumes from its last
checkpoint, and a finished one is read, not rerun, so the benchmark can be run in pieces.
Writes ``summary.json`` and ``her_reach.png`` (success vs frames, mean and min-max over seeds).
"""
from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ARMS = {"sac_her": ["--her", "future"], "sac": []}
NEAR = 1000  # frames: whole-episode batches make runs and evaluations overshoot or stop short by this much at most


def train_args(frames: int, seed: int, run_dir: Path, eval_every: int, eval_episodes: int) -> list[str]:
    """The arguments both arms share."""
    return [
        "--env", "FrankaReachRandom-v0", "--goal-reward", "success", "--seed", str(seed), "--total-frames", str(frames),
        "--run-dir", str(run_dir), "--gamma", "0.98", "--lr", "0.001", "--utd-ratio", "0.5", "--init-random-frames", "2000",
        "--frames-per-batch", "50", "--eval-every", str(eval_every), "--eval-episodes", str(eval_episodes),
        "--checkpoint-every", "10000", "--no-video",
    ]


def run(arm: str, seed: int, frames: int, out_dir: Path, eval_every: int, eval_episodes: int) -> list[dict]:
    """Trains (or resumes, or reads) one run; returns its evaluation rows."""
    run_dir = out_dir / f"{arm}-seed{seed}"
    history = run_dir / "history.csv"
    rows = _eval_rows(history) if history.is_file() else []
    if rows and rows[-1]["frames"] > frames - NEAR:
        return rows
    command = [sys.executable, str(ROOT / "scripts" / "train.py")]
    if (run_dir / "checkpoints").is_dir() and any((run_dir / "checkpoints").glob("step_*[0-9]")):
        command += ["--resume", "--run-dir", str(run_dir), "--total-frames", str(frames)]
    else:
        command += [*train_args(frames, seed, run_dir, eval_every, eval_episodes), *ARMS[arm]]
    print(f"{arm} seed {seed}: {' '.join(command[1:])}", flush=True)
    subprocess.run(command, check=True, cwd=ROOT)
    return _eval_rows(history)


def _eval_rows(path: Path) -> list[dict]:
    with open(path) as file:
        rows = [r for r in csv.DictReader(file) if r["kind"] == "eval"]
    return [{"frames": int(r["frames"]), "wall_s": float(r["wall_s"]), "success_rate": float(r["success_rate"]),
             "success_end": float(r["success_end"]), "success_any": float(r["success_any"]),
             "episode_length": float(r["episode_length"])} for r in rows]


def at(rows: list[dict], frames: int, key: str) -> float | None:
    """The evaluation nearest to ``frames`` (within ``NEAR``), or None."""
    near = [r for r in rows if abs(r["frames"] - frames) < NEAR]
    return min(near, key=lambda r: abs(r["frames"] - frames))[key] if near else None


def plot(results: dict, path: Path, seeds: list[int]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    panels = (("success_rate", "success (solved on > 5 steps)"), ("success_end", "success at the episode's last step"),
              ("success_any", "success at any step"))
    fig, axes = plt.subplots(1, 3, figsize=(14, 3.8), sharey=True)
    for ax, (key, title) in zip(axes, panels):
        for color, (arm, runs) in zip(("C2", "C0"), results.items()):
            frames = sorted({round(r["frames"], -3) for rows in runs.values() for r in rows})  # 50036 -> 50000
            table = [[at(rows, f, key) for f in frames] for rows in runs.values()]
            # points every run reached
            keep = [i for i in range(len(frames)) if all(row[i] is not None for row in table)]
            if not keep:
                continue
            x = np.array([frames[i] for i in keep])
            y = np.array([[row[i] for i in keep] for row in table])
            label = f"{'SAC+HER (future)' if arm == 'sac_her' else 'SAC'}, {len(table)} seed(s)"
            ax.plot(x, y.mean(0), "o-", color=color, label=label)
            ax.fill_between(x, y.min(0), y.max(0), color=color, alpha=0.2)
        ax.axhline(0.9, color="gray", ls="--", lw=0.8)
        ax.set(title=title, xlabel="frames", ylim=(-0.02, 1.02))
        ax.legend(fontsize=8)
    axes[0].set_ylabel("evaluation success rate")
    fig.suptitle(f"FrankaReachRandom-v0, sparse reward (0 / -1), seeds {seeds}: mean and min-max", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", default="0,1,2", help="comma-separated seeds (each arm runs each)")
    parser.add_argument("--frames", type=int, default=100_000, help="frames per run")
    parser.add_argument("--arms", default="sac_her,sac", help="which arms to run: sac_her, sac")
    parser.add_argument("--eval-every", type=int, default=10_000, help="frames between evaluations")
    parser.add_argument("--eval-episodes", type=int, default=20, help="episodes per evaluation")
    parser.add_argument("--out-dir", default="outputs/bench_her_reach", help="runs, summary.json and her_reach.png")
    args = parser.parse_args(argv)
    seeds = [int(s) for s in args.seeds.split(",")]
    out_dir = Path(args.out_dir)
    results = {arm: {seed: run(arm, seed, args.frames, out_dir, args.eval_every, args.eval_episodes) for seed in seeds}
               for arm in args.arms.split(",")}
    checkpoints = [f for f in (50_000, 100_000) if f <= args.frames]
    summary = {"frames": args.frames, "seeds": seeds, "arms": {}}
    for arm, runs in results.items():
        summary["arms"][arm] = {
            f"{key}@{f}": [at(rows, f, key) for rows in runs.values()] for key in ("success_rate", "success_end", "success_any", "episode_length") for f in checkpoints
        }
        summary["arms"][arm]["wall_s"] = [rows[-1]["wall_s"] for rows in runs.values()]
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=2))
    plot(results, out_dir / "her_reach.png", seeds)
    print(f"{'arm':<8} {'metric':<22} per seed")
    for arm, metrics in summary["arms"].items():
        for name, values in metrics.items():
            print(f"{arm:<8} {name:<22} {values}")
    print(f"wrote {out_dir / 'summary.json'} and {out_dir / 'her_reach.png'}")


if __name__ == "__main__":
    main()
