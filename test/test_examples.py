"""The examples run as documented."""
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_robohive_pixels_example():
    out = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "robohive_pixels.py"), "--workers", "2", "--steps", "3"],
        capture_output=True, text=True, timeout=600, check=True,
    ).stdout
    # [workers, steps, cams, H, W, 3] uint8 in; [workers, steps, cams, 4 stacked gray frames, 64, 64] out
    assert "pixels (2, 3, 1, 128, 128, 3) torch.uint8 -> pixels_float (2, 3, 1, 4, 64, 64)" in out
