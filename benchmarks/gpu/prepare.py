"""Downloads what the GPU suite needs on a lent GPU machine, one folder per call, and checks its size.

The lent machine (Python 3.12, torch 2.11 + CUDA 13, numpy 2, no network) lacks torchrl,
tensordict, ManiSkill, SAPIEN, MuJoCo and RoboHive. They travel as wheels, the EGL/Vulkan
loaders as .debs, RoboHive's assets as a subset of simhive, and everything that travels
in one call (this repository's files included) must fit in 64 MiB. ManiSkill's and
SAPIEN's wheels alone are 146 MiB, mostly assets and libraries no check uses, so the
wheels are repacked without them (``SLIM``) and LZMA-compressed (pip reads any zip).

    python benchmarks/gpu/prepare.py            # both calls, into .gpu/<call>/
    python benchmarks/gpu/prepare.py maniskill  # one

Each ``.gpu/<call>/`` holds ``wheels/``, ``debs/``, ``simhive/`` (robohive only) and
``manifest.json`` (what is there and the byte counts). Exits 1 when a call is over budget.
"""
from __future__ import annotations

import argparse
import fnmatch
import hashlib
import json
import os
import shutil
import subprocess
import sys
import zipfile
from base64 import urlsafe_b64encode
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DEST = REPO / ".gpu"
BUDGET = 64 * 2**20  # the device tool's limit on everything that travels in one call
# The lent machine's Python and platforms (pip matches each manylinux tag exactly).
PLATFORM_ARGS = ["--python-version", "3.12", "--implementation", "cp", "--only-binary=:all:"] + [
    arg for tag in ("manylinux2014_x86_64", "manylinux_2_17_x86_64", "manylinux_2_27_x86_64", "manylinux_2_28_x86_64")
    for arg in ("--platform", tag)
]
TORCHRL = ["torchrl==0.14.1", "tensordict==0.14.3", "pyvers==0.2.3", "gymnasium==0.29.1", "farama-notifications==0.0.6"]
# Loaders for headless rendering (device README): unpacked into / at the start of a call.
GL_DEBS = ["libvulkan1", "libegl1", "libglvnd0", "libopengl0", "libgl1", "libglx0", "libgles2"]
# SAPIEN's libsvulkan2.so needs libX11 even headless; unpacked under /tmp/sysroot only if missing.
X11_DEBS = ["libx11-6", "libxcb1", "libxau6", "libxdmcp6", "libbsd0", "libmd0"]


@dataclass
class Slim:
    """Data files to leave out of a wheel: ``drop`` globs, minus ``keep`` globs; ``.py`` files always stay."""

    drop: list[str]
    keep: list[str] = field(default_factory=list)

    def leaves_out(self, name: str) -> bool:
        if name.endswith(".py") or ".dist-info/" in name:
            return False
        matches = lambda patterns: any(fnmatch.fnmatchcase(name, p) for p in patterns)  # noqa: E731
        return matches(self.drop) and not matches(self.keep)


SLIM = {
    # Panda's meshes, the table, the grid texture and partnet metadata are what PickCube and
    # PushCube open (read off strace); other robots, scenes and the 23 MiB environment map are not.
    "mani_skill": Slim(
        drop=["mani_skill/assets/*", "mani_skill/utils/scene_builder/*/*"],
        keep=["mani_skill/assets/robots/panda/franka_description/*", "mani_skill/assets/robots/panda/panda_v2.*",
              "mani_skill/assets/partnet_mobility/meta/*", "mani_skill/utils/scene_builder/table/*"],
    ),
    # RoboHive imports dm_control.mujoco and opens none of dm_control's data files (strace): its
    # soccer, walker and dog assets and test models are 51 of the wheel's 53 MiB.
    "dm_control": Slim(drop=["dm_control/locomotion/*", "dm_control/suite/*", "dm_control/mujoco/testing/*",
                             "dm_control/mjcf/test_assets/*", "dm_control/third_party/*"]),
    # C++ headers, macOS libraries, the stereo-depth sensor patterns, OIDN's CUDA denoiser (ray tracing only).
    "sapien": Slim(drop=["sapien/include/*", "*.dylib", "sapien/sensor/assets/patterns/*",
                         "sapien/oidn_library/libOpenImageDenoise_device_cuda*"]),
}


@dataclass
class Call:
    """What one device call carries: the most valuable checks decide what goes first."""

    wheels: list[str]
    debs: list[str]
    simhive: list[str] = field(default_factory=list)


CALLS = {
    "maniskill": Call(
        wheels=TORCHRL + [
            "mani_skill==3.0.1", "sapien==3.0.3", "dacite==1.9.2", "transforms3d==0.4.2", "trimesh==5.2.0",
            "pytorch_kinematics==0.7.6", "arm_pytorch_utilities==0.5.0", "pytorch_seed==0.2.0", "defusedxml==0.7.1",
            # ManiSkill imports IPython.display at import time
            "ipython==9.18.1", "traitlets==5.16.1", "ipython_pygments_lexers==1.1.1", "decorator==5.2.1",
            "jedi==0.20.1", "parso==0.8.7", "prompt_toolkit==3.0.53", "wcwidth==0.9.4", "pexpect==4.9.0",
            "ptyprocess==0.7.0", "matplotlib_inline==0.2.2", "stack_data==0.6.3", "asttokens==3.0.2",
            "executing==2.3.0", "pure_eval==0.2.4",
        ],
        debs=GL_DEBS + X11_DEBS,
    ),
    "robohive": Call(
        wheels=TORCHRL + [
            "robohive==0.7.0", "mujoco==3.1.3", "PyOpenGL==3.1.10", "glfw==2.11.0", "dm-control==1.0.16", "dm-env==1.6", "dm-tree==0.1.10",
            "flatten-dict==0.5.0", "GitPython==3.2.1", "gitdb==4.0.12", "smmap==5.0.3", "sk-video==1.1.10",
            "termcolor==3.3.0",
        ],
        debs=GL_DEBS,
        # what FrankaReachRandom-v0 opens under simhive (read off strace), relative to simhive/
        simhive=["simhive-version", "franka_sim/assets/*.xml", "franka_sim/meshes/collision/*.stl",
                 "franka_sim/meshes/visual/*.stl", "furniture_sim/simpleTable/*.xml",
                 "furniture_sim/common/textures/*.png", "scene_sim/topfloor_scene.xml", "scene_sim/meshes/*.stl",
                 "scene_sim/textures/*.png"],
    ),
}


def _record_line(name: str, data: bytes) -> str:
    digest = urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{name},sha256={digest},{len(data)}"


def slim_wheel(source: Path, target: Path, slim: Slim | None) -> list[str]:
    """Rewrites ``source`` as ``target`` without ``slim``'s files, LZMA-compressed, RECORD updated.

    Returns the names left out.
    """
    left_out, records = [], []
    with zipfile.ZipFile(source) as zin, zipfile.ZipFile(target, "w", zipfile.ZIP_LZMA) as zout:
        record_name = next(n for n in zin.namelist() if n.endswith(".dist-info/RECORD"))
        for info in zin.infolist():
            if info.filename == record_name or info.is_dir():
                continue
            if slim is not None and slim.leaves_out(info.filename):
                left_out.append(info.filename)
                continue
            data = zin.read(info)
            info.compress_type = zipfile.ZIP_LZMA
            zout.writestr(info, data)
            records.append(_record_line(info.filename, data))
        records.append(f"{record_name},,")
        zout.writestr(record_name, "\n".join(records) + "\n")
    return left_out


def repo_bytes(repo: Path = REPO) -> int:
    """What the device tool sends besides carried paths: tracked and untracked-not-ignored files."""
    listing = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=repo, check=True, capture_output=True,
    ).stdout.decode().split("\0")
    return sum((repo / name).stat().st_size for name in listing if name and (repo / name).is_file())


def folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def check_budget(call: str, repo: int, carried: int, budget: int = BUDGET) -> dict:
    """The size line of one call; raises when repository + carried folder exceed the budget."""
    total = repo + carried
    line = {"call": call, "repo_bytes": repo, "carried_bytes": carried, "total_bytes": total, "budget_bytes": budget}
    if total > budget:
        raise SystemExit(
            f"call {call!r} carries {total / 2**20:.1f} MiB (repository {repo / 2**20:.1f} + .gpu/{call} "
            f"{carried / 2**20:.1f}), over the {budget / 2**20:.0f} MiB a device call may carry: "
            f"slim more wheels (SLIM) or move checks to another call."
        )
    return line


def download_wheels(specs: list[str], cache: Path) -> dict[str, Path]:
    """Each pinned wheel for the lent machine, from the cache or PyPI (``--no-deps``: every need is named)."""
    cache.mkdir(parents=True, exist_ok=True)
    missing = [s for s in specs if _cached(s, cache) is None]
    if missing:
        subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", *PLATFORM_ARGS,
                        "-d", str(cache), *missing], check=True)
    found = {spec: _cached(spec, cache) for spec in specs}
    absent = [s for s, path in found.items() if path is None]
    if absent:
        raise SystemExit(f"pip downloaded no wheel for {absent} into {cache}")
    return found


def _normal(name: str) -> str:
    return name.lower().replace("-", "_").replace(".", "_")


def _cached(spec: str, cache: Path) -> Path | None:
    name, version = spec.split("==")
    for wheel in cache.glob("*.whl"):
        wheel_name, wheel_version = wheel.name.split("-")[:2]
        if _normal(wheel_name) == _normal(name) and wheel_version == version:
            return wheel
    return None


def download_debs(packages: list[str], target: Path) -> None:
    """``apt-get download`` of amd64 packages with a private package list (the device README's recipe)."""
    target.mkdir(parents=True, exist_ok=True)
    lists = DEST / "apt-lists"
    (lists / "partial").mkdir(parents=True, exist_ok=True)
    options = ["-oAPT::Architecture=amd64", "-oAPT::Architectures=amd64", f"-oDir::State::Lists={lists}"]
    if not any(lists.glob("*Packages*")):
        subprocess.run(["apt-get", *options, "-qq", "update"], check=True)
    subprocess.run(["apt-get", *options, "-qq", "download", *packages], cwd=target, check=True)
    for deb in target.glob("*.deb"):  # epochs come as '%3a': keep names to letters, digits, '.', '_', '-'
        deb.rename(deb.with_name(deb.name.replace("%3a", "_").replace("+", "_")))


def copy_simhive(patterns: list[str], source: Path, target: Path) -> int:
    files = sorted({p for pattern in patterns for p in source.glob(pattern) if p.is_file()})
    if not files:
        raise SystemExit(f"no simhive file under {source} matches {patterns}: set AGENTHIVE_SIMHIVE_DIR")
    for path in files:
        out = target / path.relative_to(source)
        out.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, out)
    return len(files)


def prepare(name: str, simhive_source: Path) -> dict:
    call, folder = CALLS[name], DEST / name
    shutil.rmtree(folder, ignore_errors=True)
    (folder / "wheels").mkdir(parents=True)
    wheels = download_wheels(call.wheels, DEST / "cache")
    left_out = {}
    for spec, wheel in wheels.items():
        dist = _normal(spec.split("==")[0])
        left_out[dist] = len(slim_wheel(wheel, folder / "wheels" / wheel.name, SLIM.get(dist)))
    download_debs(call.debs, folder / "debs")
    if call.simhive:
        copy_simhive(call.simhive, simhive_source, folder / "simhive")
    sizes = check_budget(name, repo_bytes(), folder_bytes(folder))
    manifest = {**sizes, "wheels": sorted(p.name for p in (folder / "wheels").iterdir()),
                "debs": sorted(p.name for p in (folder / "debs").iterdir()), "files_left_out_per_wheel": left_out,
                "simhive_files": len(list((folder / "simhive").rglob("*.*"))) if call.simhive else 0}
    (folder / "manifest.json").write_text(json.dumps(manifest, indent=1))
    return manifest


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("calls", nargs="*", help=f"calls to prepare, of {list(CALLS)} (default: all)")
    parser.add_argument("--simhive", type=Path, default=None, help="simhive folder (default: $AGENTHIVE_SIMHIVE_DIR or ../shared/simhive)")
    args = parser.parse_args()
    unknown = set(args.calls) - set(CALLS)
    if unknown:
        parser.error(f"unknown calls {sorted(unknown)}; expected some of {list(CALLS)}")
    simhive = args.simhive or Path(os.environ.get("AGENTHIVE_SIMHIVE_DIR", REPO.parent / "shared" / "simhive"))
    for name in args.calls or CALLS:
        m = prepare(name, simhive)
        print(f"{name}: {m['total_bytes'] / 2**20:.1f} MiB of {m['budget_bytes'] / 2**20:.0f} "
              f"(repository {m['repo_bytes'] / 2**20:.1f}, .gpu/{name} {m['carried_bytes'] / 2**20:.1f}: "
              f"{len(m['wheels'])} wheels, {len(m['debs'])} debs, {m['simhive_files']} simhive files)")


if __name__ == "__main__":
    main()
