"""RoboHive's simulation assets ("simhive"), found without the network when possible.

RoboHive's wheel ships no models or meshes: ``python -m robohive_init`` git-clones them
into ``site-packages/robohive/simhive``, and ``import robohive`` raises when that folder
is missing. Machines without a route to GitHub keep a copy of those repositories
elsewhere; ``AGENTHIVE_SIMHIVE_DIR`` names it and agenthive links it into place on first
use (or ahead of time with ``python -m agenthive setup-robohive``).
"""
from __future__ import annotations

import argparse
import importlib.metadata
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

SIMHIVE_ENV_VAR = "AGENTHIVE_SIMHIVE_DIR"
VERSION_FILE = "simhive-version"


class SimhiveMissingError(FileNotFoundError):
    """RoboHive's simulation assets are not installed."""


def robohive_package_dir() -> Path:
    """The robohive package folder, found without importing robohive."""
    spec = importlib.util.find_spec("robohive")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(
            "robohive is not installed. Install it with `pip install --no-deps robohive==0.7.0` "
            "plus agenthive's `robohive` extra (scripts/install.sh does both)."
        )
    return Path(list(spec.submodule_search_locations)[0])


def simhive_dir() -> Path:
    """Where robohive looks for its assets."""
    return robohive_package_dir() / "simhive"


def _how_to_fix(target: Path) -> str:
    return (
        f"RoboHive's simulation assets (simhive) are not installed at {target}.\n"
        "Fix it with one of:\n"
        f"  (1) export {SIMHIVE_ENV_VAR}=/path/to/simhive   (a folder holding franka_sim, scene_sim, "
        f"furniture_sim, ... and a {VERSION_FILE} file); agenthive links it on first use, or run\n"
        "      python -m agenthive setup-robohive --simhive /path/to/simhive\n"
        "  (2) where the network reaches GitHub: python -m robohive_init"
    )


def _check_version(source: Path) -> None:
    version_file = source / VERSION_FILE
    if not version_file.is_file():
        raise SimhiveMissingError(
            f"{source} is not a simhive folder: it has no {VERSION_FILE} file "
            f"(set {SIMHIVE_ENV_VAR} to the folder that holds franka_sim, scene_sim, ... and {VERSION_FILE})."
        )
    wanted = importlib.metadata.version("robohive")
    found = version_file.read_text().strip()
    if found != wanted:
        raise SimhiveMissingError(
            f"{version_file} says {found!r} but robohive {wanted} is installed: "
            f"point {SIMHIVE_ENV_VAR} at assets made for robohive {wanted}."
        )


def _symlink_atomic(source: Path, link: Path) -> None:
    # ParallelEnv workers may all get here at once: make the link under a private name,
    # then rename it into place (rename is atomic; whoever comes second replaces an
    # identical link).
    tmp = link.with_name(f".{link.name}.{os.getpid()}")
    if tmp.is_symlink():
        tmp.unlink()
    tmp.symlink_to(source, target_is_directory=source.is_dir())
    os.replace(tmp, link)


def link_simhive(source: str | os.PathLike) -> Path:
    """Links the asset repositories found in ``source`` into robohive's simhive folder.

    Where robohive has no simhive folder yet, the folder itself becomes a link to
    ``source``; where one exists (e.g. made by ``robohive_init``), only the repositories
    it lacks are linked. Returns robohive's simhive folder.
    """
    source = Path(source).expanduser().resolve()
    if not source.is_dir():
        raise SimhiveMissingError(f"{SIMHIVE_ENV_VAR}={source} is not a directory.")
    _check_version(source)
    target = simhive_dir()
    if not target.exists():
        if target.is_symlink():  # a dangling link from an earlier install
            target.unlink()
        _symlink_atomic(source, target)
        return target
    for entry in source.iterdir():
        dest = target / entry.name
        if not dest.exists():
            _symlink_atomic(entry, dest)
    return target


def ensure_simhive() -> Path:
    """Makes sure ``import robohive`` finds its assets; links them from ``AGENTHIVE_SIMHIVE_DIR`` if needed.

    Raises:
        SimhiveMissingError: with the exact steps to fix it, when the assets are missing
            and ``AGENTHIVE_SIMHIVE_DIR`` is not set.
    """
    target = simhive_dir()
    if (target / VERSION_FILE).is_file():
        return target
    source = os.environ.get(SIMHIVE_ENV_VAR)
    if not source:
        raise SimhiveMissingError(_how_to_fix(target))
    return link_simhive(source)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m agenthive setup-robohive",
        description="Make RoboHive's simulation assets available: link a local copy, "
        "or (with no copy) fetch them with robohive_init.",
    )
    parser.add_argument(
        "--simhive",
        default=os.environ.get(SIMHIVE_ENV_VAR),
        help=f"folder holding the simhive repositories (default: ${SIMHIVE_ENV_VAR})",
    )
    args = parser.parse_args(argv)
    target = simhive_dir()
    if args.simhive:
        link_simhive(args.simhive)
        print(f"simhive: {target} -> {Path(args.simhive).resolve()}")
        return 0
    if (target / VERSION_FILE).is_file():
        print(f"simhive: already installed at {target}")
        return 0
    print(f"simhive: no {SIMHIVE_ENV_VAR} given, fetching with `python -m robohive_init` (needs GitHub)")
    return subprocess.call([sys.executable, "-m", "robohive_init"])
