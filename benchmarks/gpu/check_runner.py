"""What every check module shares: its command line, its result file, and a median timer.

A check is a function ``(device, size) -> dict`` returning ``status`` (pass, fail, skip),
``summary`` (one line, with the number) and ``metrics``. ``size="tiny"`` is the CPU dry
run: the same code path with a few envs and steps.
"""
from __future__ import annotations

import argparse
import json
import statistics
import time
import traceback
from pathlib import Path
from typing import Callable

REPO = Path(__file__).resolve().parents[2]


def median_rate(run_once: Callable[[], int], repeats: int) -> float:
    """Median over ``repeats`` of (items run_once reports) / seconds; run_once synchronises itself."""
    rates = []
    for _ in range(repeats):
        start = time.perf_counter()
        items = run_once()
        rates.append(items / (time.perf_counter() - start))
    return statistics.median(rates)


def sync(device) -> None:
    import torch

    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def main(checks: dict[str, Callable[[str, str], dict]]) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("check", choices=list(checks))
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--size", choices=["full", "tiny"], default="full")
    parser.add_argument("--result", type=Path, required=True)
    args = parser.parse_args()
    try:
        result = checks[args.check](args.device, args.size)
    except Exception as error:  # the suite reports it as this check's failure and goes on
        traceback.print_exc()
        result = {"status": "error", "summary": f"{type(error).__name__}: {str(error)[:300]}"}
    print(json.dumps(result, indent=1), flush=True)
    args.result.write_text(json.dumps(result))


def pytest_one(test: str, test_file: str, size: str) -> dict:
    """Runs one test by name; ``skip`` where it skips. The dry run (tiny) only checks that the test exists."""
    import ast
    import subprocess
    import sys

    tree = ast.parse((REPO / test_file).read_text())
    if not any(isinstance(node, ast.FunctionDef) and node.name == test for node in tree.body):
        return {"status": "fail", "summary": f"{test_file} has no test named {test}", "metrics": {}}
    if size == "tiny":
        return {"status": "skip", "summary": f"{test_file}::{test} exists; the dry run does not run it", "metrics": {}}
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-rA", "-p", "no:cacheprovider", f"{test_file}::{test}"],
                          cwd=REPO, capture_output=True, text=True)
    print(proc.stdout[-20000:], proc.stderr[-5000:])
    last = proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else proc.stderr[-200:]
    if proc.returncode == 0 and " passed" in last:
        return {"status": "pass", "summary": last.strip("= "), "metrics": {}}
    if proc.returncode == 0 and " skipped" in last:
        reason = next((line for line in proc.stdout.splitlines() if line.startswith("SKIPPED")), last)
        return {"status": "skip", "summary": reason.strip()[:200], "metrics": {}}
    return {"status": "fail", "summary": last.strip("= ")[:200], "metrics": {}}
