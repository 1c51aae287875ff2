"""Many checkpoints of one training run, evaluated in parallel: one ``python -m agenthive eval`` worker process each."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from agenthive.checkpoint import CHECKPOINT_PREFIX, list_checkpoints
from agenthive.evaluation.report import plot_steps, print_table, write_csv


def parse_steps(text: str) -> list[int]:
    """``"10000:100000:10000"`` (start:stop:step, stop included) or ``"5000,20000"``."""
    if ":" in text:
        start, stop, step = (int(x) for x in text.split(":"))
        return list(range(start, stop + 1, step))
    return [int(x) for x in text.split(",")]


def evaluate_checkpoints(run_dir, steps: list[int], out_dir, *, devices=("cpu",), worker_args=(), server_command=None) -> dict:
    """Evaluates the checkpoints of ``run_dir`` at ``steps`` in parallel, one process each.

    Worker ``i`` runs on ``devices[i % len(devices)]``; ``worker_args`` are passed on to
    each ``python -m agenthive eval`` worker. Returns and writes the summary over steps;
    a worker that fails is listed under ``"failed"`` with its checkpoint and output tail.
    """
    available = list_checkpoints(run_dir)
    missing = [s for s in steps if s not in available]
    if missing:
        raise FileNotFoundError(f"No checkpoint for step(s) {missing} in {Path(run_dir) / 'checkpoints'}; it has {sorted(available)}.")
    out_dir = Path(out_dir)
    workers = [
        (step, available[step], *_start_worker(available[step], out_dir / f"{CHECKPOINT_PREFIX}{step:09d}", devices[i % len(devices)], worker_args, server_command))
        for i, step in enumerate(steps)
    ]
    results, failed = [], []
    from tqdm import tqdm

    for step, checkpoint, worker_dir, log, process in tqdm(workers, desc=f"evaluating {len(workers)} checkpoints", unit="ckpt"):
        code = process.wait()
        log.close()
        if code == 0 and (worker_dir / "summary.json").is_file():
            for env in json.loads((worker_dir / "summary.json").read_text())["envs"]:
                results.append({"step": step, **{k: v for k, v in env.items() if k not in ("env", "videos")}})
        else:
            tail = (worker_dir / "worker.log").read_text().strip().splitlines()[-15:]
            failed.append({"step": step, "checkpoint": str(checkpoint), "returncode": code, "output_tail": tail})
    summary = {"run_dir": str(run_dir), "steps": steps, "results": results, "failed": failed}
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=2))
    if results:
        write_csv(out_dir / "summary.csv", results)
        plot_steps(results, failed, out_dir / "summary.png", title=f"{run_dir}")
    print_table(results, failed)
    return summary


def _start_worker(checkpoint: Path, worker_dir: Path, device: str, worker_args, server_command):
    """``(worker_dir, log file, process)`` of one ``eval --checkpoint`` worker writing to ``worker_dir``."""
    command = [sys.executable, "-m", "agenthive", "eval", "--checkpoint", str(checkpoint), "--out-dir", str(worker_dir),
               "--device", device, *worker_args]
    if server_command:
        command += ["--server-command", server_command]
    worker_dir.mkdir(parents=True, exist_ok=True)
    log = open(worker_dir / "worker.log", "w")
    return worker_dir, log, subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
