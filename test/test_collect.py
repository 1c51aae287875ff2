"""scripts/collect.py: a real collection run to a replay buffer on disk."""
import subprocess
import sys
from pathlib import Path

import torch
from torchrl.data import LazyMemmapStorage, TensorDictReplayBuffer

ROOT = Path(__file__).resolve().parents[1]


def test_collect_script_writes_a_buffer_that_reloads(tmp_path):
    buffer_dir = tmp_path / "buffer"
    command = [sys.executable, str(ROOT / "scripts" / "collect.py"), "--pixels", "frames", "--total-frames", "200",
               "--frames-per-batch", "100", "--image-size", "48", "--resize", "32", "--stack", "3", "--norm-init-frames", "40",
               "--buffer-dir", str(buffer_dir), "--video-env", ""]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "200 frames from 1 local worker(s) x 2 envs" in done.stdout, done.stdout
    assert "--pixels is now --observation" in done.stderr  # the old option name still works, and says so

    buffer = TensorDictReplayBuffer(storage=LazyMemmapStorage(200))
    buffer.loads(buffer_dir)
    assert len(buffer) == 200
    data = buffer[:]
    # one camera, 3 stacked grayscale frames of 32x32, normalised by the stats init_stats measured
    assert data["pixels"].shape == (200, 1, 3, 32, 32) and data["pixels"].dtype == torch.float32
    assert abs(data["pixels"].mean().item()) < 0.5 and 0.5 < data["pixels"].std().item() < 2.0
    assert data["action"].shape == (200, 9) and data["action"].abs().max() <= 1
    # the first env's 50 steps of the first batch come first, in order: each step's next
    # observation is the following step's observation
    assert torch.equal(data["next", "observation"][:49], data["observation"][1:50])
