"""Creates (once) the torch-free policy environment the isolation tests serve from.

``.venv-serve/`` at the repository root: a virtual environment with JAX (CPU) and
``agenthive[serve]`` installed editable, and no torch. It is reused while it imports
``jax`` and ``agenthive.serving``; otherwise it is rebuilt. Run ``python test/helpers/serve_venv.py``
to build it ahead of the tests.
"""
import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
VENV = ROOT / ".venv-serve"
PYTHON = VENV / "bin" / "python"
_CHECK = "import jax, agenthive.serving.server, agenthive.serving.policies.jax_mlp"


def _works():
    return PYTHON.exists() and subprocess.run([PYTHON, "-c", _CHECK], capture_output=True).returncode == 0


def ensure_serve_venv():
    """Path of the serve venv's python, building the venv if needed (a minute or two)."""
    if _works():
        return PYTHON
    venv.EnvBuilder(with_pip=True, clear=True).create(VENV)
    pip = [str(PYTHON), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    env = {**os.environ, "PIP_NO_INPUT": "1"}
    subprocess.run([*pip, "jax[cpu]"], check=True, env=env)
    subprocess.run([*pip, "-e", f"{ROOT}[serve]"], check=True, env=env)
    if not _works():
        raise RuntimeError(f"{VENV} was built but cannot run: {_CHECK}")
    return PYTHON


if __name__ == "__main__":
    print(ensure_serve_venv())
    sys.exit(0)
