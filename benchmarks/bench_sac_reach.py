"""Learning-quality benchmark: SAC on FrankaReachRandom-v0 (state) must reach RoboHive's solved rate 0.9.

    .venv/bin/python benchmarks/bench_sac_reach.py                  # one seed, ~15-20 min on a 2-core CPU
    .venv/bin/python benchmarks/bench_sac_reach.py --seed 1 --run-dir runs/bench_sac_reach_seed1

Target (issue 5): evaluation success rate >= 0.9 within 100,000 frames, in under 20 minutes of
wall time on a 2-core CPU. An episode succeeds when RoboHive's ``solved`` (end effector
within 5 cm of the target) held on more than 5 of its 50 steps, RoboHive's own rule.

Runs ``scripts/train.py`` with the settings below (its defaults plus collection in a worker
process beside training, and 20 evaluation episodes every 5,000 frames), then reads the
run's ``history.csv`` and prints when the target was first met. The learning curve is
copied to ``--curve``. Not a CI test: it takes minutes and its outcome is statistical.
"""
from __future__ import annotations

import argparse
import csv
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TARGET_SUCCESS, TARGET_FRAMES, TARGET_SECONDS = 0.9, 100_000, 20 * 60
SETTINGS = ["--algo", "sac", "--env", "FrankaReachRandom-v0", "--observation", "state", "--total-frames", str(TARGET_FRAMES),
            "--eval-every", "5000", "--eval-episodes", "20", "--checkpoint-every", "25000", "--async-collection"]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run-dir", default="runs/bench_sac_reach", help="train.py's run directory (must not hold checkpoints)")
    parser.add_argument("--seed", type=int, default=0, help="training seed")
    parser.add_argument("--curve", default=str(ROOT / "benchmarks" / "sac_reach_curve.png"), help="where to copy the learning curve")
    args, extra = parser.parse_known_args(argv)
    command = [sys.executable, str(ROOT / "scripts" / "train.py"), "--run-dir", args.run_dir, "--seed", str(args.seed), *SETTINGS, *extra]
    print(" ".join(command), flush=True)
    subprocess.run(command, check=True, cwd=ROOT)

    run_dir = ROOT / args.run_dir
    with open(run_dir / "history.csv") as file:
        evals = [row for row in csv.DictReader(file) if row["kind"] == "eval"]
    shutil.copy(run_dir / "learning_curve.png", args.curve)
    met = next((row for row in evals if float(row["success_rate"]) >= TARGET_SUCCESS), None)
    final, best = evals[-1], max(evals, key=lambda row: float(row["success_rate"]))
    print("\n| measure | value |\n|---|---|")
    if met is not None:
        print(f"| first evaluation with success >= {TARGET_SUCCESS} | {int(met['frames']):,} frames, {float(met['wall_s']) / 60:.1f} min |")
    else:
        print(f"| first evaluation with success >= {TARGET_SUCCESS} | not reached in {int(final['frames']):,} frames |")
    print(f"| best evaluation | {float(best['success_rate']):.2f} at {int(best['frames']):,} frames |")
    print(f"| final evaluation | {float(final['success_rate']):.2f}, return {float(final['return']):.1f} at {int(final['frames']):,} frames |")
    print(f"| evaluations >= {TARGET_SUCCESS} | {sum(float(r['success_rate']) >= TARGET_SUCCESS for r in evals)} of {len(evals)} |")
    print(f"| wall time of the run | {float(final['wall_s']) / 60:.1f} min |")
    on_time = met is not None and int(met["frames"]) <= TARGET_FRAMES and float(met["wall_s"]) <= TARGET_SECONDS
    print(f"\ntarget (success >= {TARGET_SUCCESS} within {TARGET_FRAMES:,} frames and {TARGET_SECONDS // 60} min): "
          f"{'met' if on_time else 'NOT met'}; curve: {args.curve}")
    return 0 if on_time else 1


if __name__ == "__main__":
    sys.exit(main())
