"""The GPU suite (benchmarks/gpu) on this CPU machine: prepare's packing and size rules, and
the CPU dry run of every check in an environment that imports only what the lent machine
will have, so that the suite still runs when a GPU is lent."""
from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
GPU = REPO / "benchmarks" / "gpu"


def _load(name: str):
    spec = importlib.util.spec_from_file_location(f"gpu_suite_{name}", GPU / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


prepare = _load("prepare")
suite = _load("suite")
lent_machine = _load("lent_machine")


def test_a_call_over_64_mib_is_refused_with_its_sizes():
    line = prepare.check_budget("robohive", repo=2**20, carried=60 * 2**20)
    assert line["total_bytes"] == 61 * 2**20 and line["budget_bytes"] == 64 * 2**20
    with pytest.raises(SystemExit, match=r"'maniskill' carries 65.0 MiB \(repository 1.0 \+ .gpu/maniskill 64.0\)"):
        prepare.check_budget("maniskill", repo=2**20, carried=64 * 2**20)


def _wheel(path: Path) -> Path:
    with zipfile.ZipFile(path, "w") as whl:
        whl.writestr("toy/__init__.py", "VALUE = 3\n")
        whl.writestr("toy/assets/big.bin", b"\0" * 100_000)
        whl.writestr("toy/assets/keep.txt", "kept\n")
        whl.writestr("toy-1.0.dist-info/METADATA", "Metadata-Version: 2.1\nName: toy\nVersion: 1.0\n")
        whl.writestr("toy-1.0.dist-info/WHEEL", "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n")
        whl.writestr("toy-1.0.dist-info/RECORD", "")
    return path


def test_slimmed_wheel_is_lzma_and_installs_offline_without_the_dropped_files(tmp_path):
    (tmp_path / "src").mkdir()
    source, target = _wheel(tmp_path / "src" / "toy-1.0-py3-none-any.whl"), tmp_path / "toy-1.0-py3-none-any.whl"
    left_out = prepare.slim_wheel(source, target, prepare.Slim(drop=["toy/assets/*"], keep=["toy/assets/keep.txt"]))
    assert left_out == ["toy/assets/big.bin"]
    with zipfile.ZipFile(target) as whl:
        assert {i.compress_type for i in whl.infolist()} == {zipfile.ZIP_LZMA}
        record = whl.read("toy-1.0.dist-info/RECORD").decode()
    assert "toy/assets/keep.txt,sha256=" in record and "big.bin" not in record
    site = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--target", str(site),
                    str(target)], check=True, capture_output=True)
    assert (site / "toy" / "assets" / "keep.txt").read_text() == "kept\n"
    assert not (site / "toy" / "assets" / "big.bin").exists()
    out = subprocess.run([sys.executable, "-c", "import toy; print(toy.VALUE)"], env={**os.environ, "PYTHONPATH": str(site)},
                         capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "3"


@pytest.mark.parametrize("dist", ["mani_skill", "sapien", "dm_control"])
def test_slim_rules_keep_every_file_the_checks_open(dist):
    try:
        names = [str(f) for f in importlib.metadata.files(dist)]
    except importlib.metadata.PackageNotFoundError:
        pytest.skip(f"{dist} is not installed")
    opened = {  # read off strace: PickCube/PushCube state, rgb, render_mode="rgb_array"; FrankaReach pixels
        "mani_skill": ["mani_skill/assets/robots/panda/panda_v2.urdf", "mani_skill/assets/robots/panda/panda_v2.srdf",
                       "mani_skill/assets/robots/panda/franka_description/meshes/visual/link0.glb",
                       "mani_skill/utils/scene_builder/table/assets/table.glb",
                       "mani_skill/utils/building/assets/grid_texture.png",
                       "mani_skill/assets/partnet_mobility/meta/info_bucket_train.json"],
        "sapien": ["sapien/oidn_library/libOpenImageDenoise_core.so.2.0.1", "sapien/vulkan_shader/minimal/gbuffer.frag"],
        "dm_control": ["dm_control/mjcf/schema.xml", "dm_control/mujoco/engine.py"],  # RoboHive: dm_control.mujoco
    }[dist]
    slim = prepare.SLIM[dist]
    assert all(name in names and not slim.leaves_out(name) for name in opened)
    assert not any(slim.leaves_out(name) for name in names if name.endswith(".py"))
    dropped = sum(1 for name in names if slim.leaves_out(name))
    assert dropped > 20  # the rules still match this release's layout


def test_each_call_carries_torchrl_and_its_own_simulator_and_the_checks_are_ordered():
    names = {call: {spec.split("==")[0].lower() for spec in c.wheels} for call, c in prepare.CALLS.items()}
    assert {"torchrl", "tensordict"} <= names["maniskill"] & names["robohive"]
    assert {"mani_skill", "sapien"} <= names["maniskill"] and not {"mujoco", "robohive"} & names["maniskill"]
    assert {"mujoco", "robohive"} <= names["robohive"] and prepare.CALLS["robohive"].simhive
    assert set(suite.CHECKS) == set(prepare.CALLS)
    assert [c.name for c in suite.CHECKS["maniskill"]][:2] == ["ms_gpu_test", "ms_state_fps"]


def test_cpu_dry_run_runs_every_check_with_only_what_the_lent_machine_will_have(tmp_path):
    # the lent machine's image packages (with what they require) and the carried wheels, nothing else
    carried = [spec.split("==")[0] for call in prepare.CALLS.values() for spec in call.wheels]
    python = lent_machine.build(tmp_path / "lent", carried)
    hidden = subprocess.run([str(python), "-c", "import ray"], capture_output=True, text=True)
    assert "No module named 'ray'" in hidden.stderr  # installed here, neither carried nor on the lent machine
    env = {**os.environ, "OUT": str(tmp_path), "GPU_SUITE_DRY_RUN": "1", "PYTHON": str(python)}
    proc = subprocess.run(["bash", str(GPU / "run.sh"), "all", "--device", "cpu", "--size", "tiny", "--in-process"],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    results = json.loads((tmp_path / "results.json").read_text())
    by_name = {r["name"]: r for r in results["checks"]}
    assert list(by_name) == [c.name for call in suite.CHECKS.values() for c in call]
    assert all(r["status"] in ("pass", "skip") for r in by_name.values()), by_name
    assert by_name["ms_state_fps"]["metrics"]["1"]["raw"] > 0 and by_name["rh_egl_pixels"]["metrics"]["defaults"] > 0
    assert by_name["ms_ppo_pushcube"]["metrics"]["eval_points"]
    table = (tmp_path / "results.md").read_text()
    assert all(f"| {name} |" in table for name in by_name) and (tmp_path / "logs.txt").exists()
