"""Policy environments for the tests: built once per machine, reused by every clone.

Each model family (LeRobot, Octo, OpenVLA, ...) is served from a virtual environment of its
own, built by ``scripts/policy_envs/<name>.sh VENV_DIR`` (the same script users run; it
sources ``common.sh``). Building one takes minutes and gigabytes, so the tests keep them
outside the repository, in ``$AGENTHIVE_VENV_CACHE`` (default ``~/.cache/agenthive/venvs``),
under ``<name>-<hash>``. The hash covers everything the build reads: the family's script,
``common.sh``, the extra input files a family names (an upstream tarball, a constraints
file), the serve extra of ``setup.py`` and the interpreter's version. A fresh clone with the
same inputs reuses the environment; changed inputs build a new one and delete the stale
``<name>-*`` ones. pip reads wheels from its cache and the machine's local indexes, so a
rebuild needs no network beyond PyPI.

agenthive itself is NOT taken from the environment: the script installs it editable from
the clone that built it, which may be gone or older, so every command run through
``PolicyVenv.env()`` puts *this* checkout first on ``PYTHONPATH``.

A build holds an exclusive lock (``<name>-<hash>.lock``), so parallel test processes build
once; an environment counts as built only once its marker file exists, written after the
family's ``check`` code imported successfully in it. A half-built one is wiped and rebuilt.

API (for test fixtures and other families' helpers)::

    from helpers.policy_venvs import ensure_venv
    venv = ensure_venv("lerobot", check="import lerobot.policies.act.modeling_act")
    venv.python                      # Path of its interpreter
    venv.env(HF_HUB_OFFLINE="1")     # os.environ + this checkout on PYTHONPATH + extras
    venv.run(["-c", "print(1)"])     # subprocess.run with that env; RuntimeError with the output on failure

``ensure_venv(name, *, check, inputs=(), env=None)``: ``inputs`` are extra files whose
contents enter the hash; ``env`` are variables passed to the build script (their values
enter the hash too). ``cd test && python -m helpers.policy_venvs NAME`` builds one from the command line.
"""
import contextlib
import dataclasses
import fcntl
import hashlib
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCRIPTS = ROOT / "scripts" / "policy_envs"
CACHE = Path(os.environ.get("AGENTHIVE_VENV_CACHE", "~/.cache/agenthive/venvs")).expanduser()
_MARKER = "agenthive-policy-env.txt"


@dataclasses.dataclass(frozen=True)
class PolicyVenv:
    """A built policy environment."""

    name: str
    path: Path

    @property
    def python(self):
        return self.path / "bin" / "python"

    def env(self, **extra):
        """os.environ with this checkout first on PYTHONPATH, plus ``extra``."""
        paths = [str(ROOT), *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
        return {**os.environ, "PYTHONPATH": os.pathsep.join(paths), **extra}

    def run(self, args, *, env=None, timeout=900, **kwargs):
        """``python args...`` in this environment; raises ``RuntimeError`` with its output's tail on failure."""
        result = subprocess.run(
            [str(self.python), *args], env=self.env(**(env or {})), timeout=timeout, capture_output=True, text=True, **kwargs
        )
        if result.returncode != 0:
            output = (result.stdout + result.stderr)[-4000:]
            raise RuntimeError(f"{self.name} environment: python {' '.join(map(str, args))} exited with {result.returncode}:\n{output}")
        return result


def _serve_requirements():
    """The ``SERVE = [...]`` line of setup.py: what ``agenthive[serve]`` installs."""
    match = re.search(r"^SERVE = .*$", (ROOT / "setup.py").read_text(), re.MULTILINE)
    return match.group(0) if match else ""


def input_hash(name, inputs=(), env=None):
    """Hash of everything that building environment ``name`` reads (12 hex digits)."""
    digest = hashlib.sha256()
    python = os.environ.get("PYTHON", sys._base_executable)
    version = subprocess.run([python, "--version"], capture_output=True, text=True, check=True).stdout.strip()
    for part in (version, _serve_requirements(), repr(sorted((env or {}).items()))):
        digest.update(part.encode() + b"\0")
    for path in (SCRIPTS / "common.sh", SCRIPTS / f"{name}.sh", *map(Path, inputs)):
        digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:12]


@contextlib.contextmanager
def _locked(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _built(venv, check):
    if not (venv.path / _MARKER).exists():
        return False
    return subprocess.run([str(venv.python), "-c", check], env=venv.env(), capture_output=True).returncode == 0


def ensure_venv(name, *, check, inputs=(), env=None):
    """The policy environment ``name``, built by ``scripts/policy_envs/<name>.sh`` unless cached.

    Args:
        name: the family; ``scripts/policy_envs/<name>.sh`` must exist.
        check: Python code that must run in the built environment (with this checkout on
            PYTHONPATH), e.g. imports of the framework and of the adapter's server side.
        inputs: extra files the build reads; their contents enter the hash.
        env: extra environment variables for the build script; they enter the hash.

    Raises:
        RuntimeError: the build script failed (its output tail is in the message) or the
            built environment does not pass ``check``.
    """
    script = SCRIPTS / f"{name}.sh"
    if not script.exists():
        known = sorted(p.stem for p in SCRIPTS.glob("*.sh") if p.stem != "common")
        raise ValueError(f"no build script {script}: expected one of {known}")
    venv = PolicyVenv(name, CACHE / f"{name}-{input_hash(name, inputs, env)}")
    with _locked(venv.path.with_suffix(".lock")):
        if _built(venv, check):
            return venv
        shutil.rmtree(venv.path, ignore_errors=True)
        for stale in CACHE.glob(f"{name}-*"):  # other hashes of this family: outdated inputs
            if stale.is_dir() and stale != venv.path:
                shutil.rmtree(stale, ignore_errors=True)
        _build(venv, script, env)
        if not _built_now(venv, check):
            raise RuntimeError(f"{venv.path} was built by {script} but cannot run {check!r}")
    return venv


def _build(venv, script, env):
    start = time.monotonic()
    print(f"[policy_venvs] building {venv.path} with {script.relative_to(ROOT)} (minutes)", file=sys.stderr, flush=True)
    build_env = {**os.environ, "PIP_NO_INPUT": "1", **(env or {})}
    build_env.setdefault("PYTHON", sys._base_executable)
    result = subprocess.run(["bash", str(script), str(venv.path)], env=build_env, capture_output=True, text=True)
    if result.returncode != 0:
        shutil.rmtree(venv.path, ignore_errors=True)
        tail = (result.stdout + result.stderr)[-4000:]
        raise RuntimeError(f"building policy environment {venv.name} with {script} failed (exit {result.returncode}):\n{tail}")
    print(f"[policy_venvs] built {venv.name} in {time.monotonic() - start:.0f} s", file=sys.stderr, flush=True)


def _built_now(venv, check):
    result = subprocess.run([str(venv.python), "-c", check], env=venv.env(), capture_output=True, text=True)
    if result.returncode != 0:
        print(result.stderr[-4000:], file=sys.stderr)
        return False
    (venv.path / _MARKER).write_text(f"built {time.strftime('%Y-%m-%d %H:%M:%S')} by {ROOT}\ncheck: {check}\n")
    return True


if __name__ == "__main__":
    for family in sys.argv[1:] or ["lerobot"]:
        print(ensure_venv(family, check="import agenthive.serving.server").python)
