"""python -m agenthive eval: checkpoints, several env configs, served policies, parallel sweeps over checkpoints."""
import csv
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from agenthive.checkpoint import list_checkpoints
from agenthive.evaluation.checkpoints import parse_steps

ROOT = Path(__file__).resolve().parents[1]
FAST = ["--episodes", "2", "--num-envs", "1"]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    """A short SAC run with checkpoints at 100, 200 and 300 frames."""
    run_dir = tmp_path_factory.mktemp("eval") / "run"
    command = [sys.executable, str(ROOT / "scripts" / "train.py"), "--run-dir", str(run_dir), "--total-frames", "300",
               "--frames-per-batch", "100", "--init-random-frames", "100", "--checkpoint-every", "100", "--eval-every", "0",
               "--eval-episodes", "1", "--hidden-sizes", "32,32", "--batch-size", "32", "--no-video"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-3000:]
    assert sorted(list_checkpoints(run_dir)) == [100, 200, 300]
    return run_dir


def agenthive_eval(*args, check=True) -> subprocess.CompletedProcess:
    done = subprocess.run([sys.executable, "-m", "agenthive", "eval", *map(str, args)], capture_output=True, text=True,
                          timeout=600, cwd=ROOT)
    if check:
        assert done.returncode == 0, f"{done.stdout[-2000:]}\n{done.stderr[-4000:]}"
    return done


def server_command(checkpoint="{checkpoint}") -> str:
    kwargs = json.dumps({"path": f"{checkpoint}/policy.pt", "observations": {"observation": [[21], "float32"]}})
    return f"{sys.executable} -m agenthive start-server torchrl-checkpoint --port {{port}} --kwargs '{kwargs}'"


def test_parse_steps():
    assert parse_steps("10000:50000:10000") == [10000, 20000, 30000, 40000, 50000]
    assert parse_steps("100,300") == [100, 300]


def test_three_checkpoints_in_parallel_give_one_summary(run_dir, tmp_path):
    out = tmp_path / "sweep"
    done = agenthive_eval("--run-dir", run_dir, "--steps", "100:300:100", "--devices", "cpu,cpu", "--videos", "0",
                          "--out-dir", out, *FAST)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["failed"] == []
    assert sorted(r["step"] for r in summary["results"]) == [100, 200, 300]
    assert all(r["episodes"] == 2 and 0 <= r["success_rate"] <= 1 and r["length_mean"] == 50 for r in summary["results"])
    with open(out / "summary.csv") as file:
        assert [int(row["step"]) for row in csv.DictReader(file)] == [100, 200, 300]
    assert (out / "summary.png").stat().st_size > 10_000
    assert all(f"{step:>10}  FrankaReachRandom-v0" in done.stdout for step in (100, 200, 300)), done.stdout


def test_a_crashed_worker_is_reported_and_the_others_kept(run_dir, tmp_path):
    broken = tmp_path / "run"
    shutil.copytree(run_dir / "checkpoints", broken / "checkpoints")
    (broken / "checkpoints" / "step_000000200" / "policy.pt").write_bytes(b"not a checkpoint")
    out = tmp_path / "sweep"
    done = agenthive_eval("--run-dir", broken, "--steps", "100,200,300", "--videos", "0", "--out-dir", out, *FAST, check=False)
    assert done.returncode == 1  # after writing what the other workers found
    assert "FAILED (exit code 1)" in done.stdout and "step_000000200" in done.stdout
    summary = json.loads((out / "summary.json").read_text())
    assert sorted(r["step"] for r in summary["results"]) == [100, 300]
    [failed] = summary["failed"]
    assert failed["step"] == 200 and failed["checkpoint"].endswith("step_000000200") and failed["returncode"] != 0
    assert "step_000000200/policy.pt does not load as a torch.save'd policy module" in failed["output_tail"][-1]


def test_one_checkpoint_on_several_env_configs_with_videos(run_dir, tmp_path):
    out = tmp_path / "eval"
    spec = json.dumps({"env": "FrankaReachFixed-v0", "frame_skip": 2})
    done = agenthive_eval("--checkpoint", list_checkpoints(run_dir)[300], "--envs", "FrankaReachRandom-v0", spec,
                          "--videos", "1", "--out-dir", out, *FAST)
    summary = json.loads((out / "summary.json").read_text())
    assert [e["name"] for e in summary["envs"]] == ["0_FrankaReachRandom-v0", "1_FrankaReachFixed-v0"]
    assert summary["envs"][1]["env"]["frame_skip"] == 2
    assert summary["envs"][1]["length_mean"] == 25  # 50 RoboHive steps, two per env step
    with open(out / "episodes.csv") as file:
        assert len(list(csv.DictReader(file))) == 4
    for env in summary["envs"]:
        assert Path(env["videos"][0]).stat().st_size > 1_000
    assert "success" in done.stdout and (out / "summary.png").is_file()


def test_a_served_checkpoint_scores_like_the_checkpoint_itself(run_dir, tmp_path):
    checkpoint = list_checkpoints(run_dir)[300]
    agenthive_eval("--checkpoint", checkpoint, "--videos", "0", "--out-dir", tmp_path / "local", *FAST)
    agenthive_eval("--server-command", server_command(checkpoint), "--videos", "0", "--out-dir", tmp_path / "served", *FAST)
    local = json.loads((tmp_path / "local" / "summary.json").read_text())["envs"][0]
    served = json.loads((tmp_path / "served" / "summary.json").read_text())["envs"][0]
    # same deterministic policy, same seeds: the same episodes, through the wire or not
    assert served["return_mean"] == pytest.approx(local["return_mean"], rel=1e-4)
    assert served["success_rate"] == local["success_rate"]


def test_sweep_with_one_server_per_checkpoint(run_dir, tmp_path):
    out = tmp_path / "sweep"
    agenthive_eval("--run-dir", run_dir, "--steps", "100,300", "--server-command", server_command(), "--videos", "0",
                   "--out-dir", out, *FAST)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["failed"] == [] and sorted(r["step"] for r in summary["results"]) == [100, 300]
    logs = [(out / f"step_{step:09d}" / "worker.log").read_text() for step in (100, 300)]
    assert all("success" in log for log in logs)


def test_a_server_that_dies_is_reported_with_its_output(tmp_path):
    done = agenthive_eval("--server-command", f"{sys.executable} -m agenthive start-server no-such-policy --port {{port}}",
                          "--out-dir", tmp_path, check=False)
    assert done.returncode != 0
    assert "exited with code" in done.stderr and "no-such-policy" in done.stderr
