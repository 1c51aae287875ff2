"""Runs the GPU checks of one device call, each in its own process with its own time limit.

    python benchmarks/gpu/suite.py maniskill --out $OUT                 # on the lent GPU machine
    python benchmarks/gpu/suite.py all --out /tmp/dry --device cpu --size tiny   # the CPU dry run

Each check prints nothing the suite relies on: it writes one JSON result (status pass,
fail or skip, one-line summary, numbers) to the file the suite names. A check that runs
past its limit is killed and reported as ``timeout``; one that dies without a result as
``error`` with the end of its log. The suite writes, under ``--out`` (the device tool
brings back at most 8 files): ``results.md`` (a table), ``results.json`` and ``logs.txt``
(every check's log, the last 200 kB of each).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
LOG_TAIL = 200_000


@dataclass
class Check:
    name: str
    module: str  # checks_maniskill or checks_robohive
    limit_s: int  # on the GPU
    measures: str


# Most valuable first within each call: a call cut short still reports what matters most.
# Limits: the maniskill call's add up to 420 s and the robohive call's to 285 s, so that one
# machine start (1-2 min) and both calls, sent back to back while it is warm, fit in the
# 15 minutes of device time a task gets.
CHECKS = {
    "maniskill": [
        Check("ms_gpu_test", "checks_maniskill", 60, "test_gpu_batched_partial_reset_resets_only_masked_sub_envs passes"),
        Check("ms_state_fps", "checks_maniskill", 90, "ManiSkillEnv vs ManiSkill's raw env.step and ManiSkillVectorEnv, 1024/4096 envs, state frames/s, GPU memory"),
        Check("ms_reset_syncs", "checks_maniskill", 40, "host syncs (torch.cuda.set_sync_debug_mode) per partial reset and per step"),
        Check("ms_ppo_pushcube", "checks_maniskill", 170, "scripts/train.py PPO on PushCube state, 1024 envs on cuda:0: success and frames within 150 s"),
        Check("ms_rgb_fps", "checks_maniskill", 60, "rgb 128x128 frames/s at 256 and 1024 envs vs ManiSkill's raw loop"),
    ],
    "robohive": [
        Check("rh_gpu_test", "checks_robohive", 45, "test_cuda_device_renders_there passes"),
        Check("rh_egl_pixels", "checks_robohive", 75, "RoboHiveEnv 224x224 top_cam through EGL on the GPU, steps/s vs torchrl's RoboHiveEnv and the CPU figure"),
        Check("rh_collector_cuda", "checks_robohive", 75, "scripts/collect.py --collector-devices cuda:0 (state) and cuda:0,cuda:0 (pixels, MultiAsyncCollector): frames/s"),
        Check("rh_batched_scaling", "checks_robohive", 90, "RoboHiveEnv(num_envs=...) steps/s over num_envs x num_threads on 16 cores"),
    ],
}


def run_check(check: Check, device: str, size: str, scratch: Path, scale: float) -> dict:
    """Runs one check in a child process (its own session: a timeout kills what it started too)."""
    result_file = scratch / f"{check.name}.json"
    result_file.unlink(missing_ok=True)
    limit = max(10, int(check.limit_s * scale))
    command = [sys.executable, str(HERE / f"{check.module}.py"), check.name, "--device", device, "--size", size,
               "--result", str(result_file)]
    start = time.monotonic()
    with open(scratch / f"{check.name}.log", "w") as log:
        proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                                env={**os.environ, "PYTHONUNBUFFERED": "1"})
        try:
            proc.wait(timeout=limit)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)  # the check and whatever it started (collector workers)
            proc.wait()
    seconds = round(time.monotonic() - start, 1)
    if result_file.exists():
        result = json.loads(result_file.read_text())
        result_file.unlink()
    elif proc.returncode == -9:
        result = {"status": "timeout", "summary": f"killed after its {limit} s limit"}
    else:
        tail = (scratch / f"{check.name}.log").read_text()[-600:].strip().splitlines()
        result = {"status": "error", "summary": f"exit {proc.returncode}: {tail[-1] if tail else 'no output'}"}
    return {"name": check.name, "measures": check.measures, "seconds": seconds, "limit_s": limit,
            "metrics": {}, **result}


def run_check_in_process(check: Check, device: str, size: str, scratch: Path) -> dict:
    """The dry run's way: every check in this process (one import of torch and the simulators), no time limit."""
    import importlib
    import traceback

    if str(HERE) not in sys.path:
        sys.path.insert(0, str(HERE))
    start = time.monotonic()
    try:
        result = getattr(importlib.import_module(check.module), check.name)(device, size)
    except Exception as error:
        traceback.print_exc()
        result = {"status": "error", "summary": f"{type(error).__name__}: {str(error)[:300]}"}
    (scratch / f"{check.name}.log").write_text("(in-process: this check's output went to the suite's own output)\n")
    return {"name": check.name, "measures": check.measures, "seconds": round(time.monotonic() - start, 1),
            "limit_s": None, "metrics": {}, **result}


def machine() -> dict:
    info = {"python": platform.python_version(), "host": platform.node()}
    try:
        import torch

        info["torch"] = torch.__version__
        if torch.cuda.is_available():
            info["gpu"] = torch.cuda.get_device_name(0)
    except ImportError:
        info["torch"] = None
    info["cpus"] = os.cpu_count()
    return info


def write_reports(results: list[dict], out: Path, scratch: Path, header: dict) -> None:
    """Rewritten after every check: a call stopped at its limit still brings back what ran."""
    (out / "results.json").write_text(json.dumps({**header, "checks": results}, indent=1))
    lines = [f"GPU suite, call `{header['call']}`, {header['date']}, {header['machine']}", "",
             "| check | status | result | s (limit) |", "|---|---|---|---|"]
    lines += [f"| {r['name']} | {r['status']} | {r['summary']} | {r['seconds']} ({r['limit_s']}) |" for r in results]
    (out / "results.md").write_text("\n".join(lines) + "\n")
    with open(out / "logs.txt", "w") as logs:
        for r in results:
            log = (scratch / f"{r['name']}.log").read_text()
            logs.write(f"\n===== {r['name']}: {r['status']} =====\n{log[-LOG_TAIL:]}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("call", choices=[*CHECKS, "all"], help="which device call's checks to run")
    parser.add_argument("--out", type=Path, required=True, help="folder for results.md, results.json, logs.txt")
    parser.add_argument("--device", default="cuda", help="cuda on the lent machine, cpu for the dry run")
    parser.add_argument("--size", choices=["full", "tiny"], default="full", help="tiny: a few envs and steps")
    parser.add_argument("--only", default="", help="comma-separated check names to run (default: all of the call)")
    parser.add_argument("--limit-scale", type=float, default=1.0, help="multiplies every check's time limit")
    parser.add_argument("--in-process", action="store_true", help="run the checks in this process, without limits "
                        "(the CPU dry run in CI: one import instead of one per check)")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    checks = [c for call, cs in CHECKS.items() if args.call in (call, "all") for c in cs]
    if args.only:
        checks = [c for c in checks if c.name in args.only.split(",")]
    header = {"call": args.call, "device": args.device, "size": args.size,
              "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "machine": machine()}
    results, scratch = [], Path(tempfile.mkdtemp(prefix="gpu_suite_"))  # checks' logs and result files
    for check in checks:
        if args.in_process:
            results.append(run_check_in_process(check, args.device, args.size, scratch))
        else:
            results.append(run_check(check, args.device, args.size, scratch, args.limit_scale))
        write_reports(results, args.out, scratch, header)
        print(f"[gpu-suite] {check.name}: {results[-1]['status']}: {results[-1]['summary']} "
              f"({results[-1]['seconds']} s)", flush=True)
    return 0 if all(r["status"] in ("pass", "skip") for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
