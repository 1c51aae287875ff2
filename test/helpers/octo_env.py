"""The Octo policy environment and tiny Octo checkpoints, for the tests and the benchmark.

``octo_venv()`` builds (once per machine, cached by ``policy_venvs``) the environment of
``scripts/policy_envs/octo.sh``; ``tiny_checkpoints(venv)`` runs ``octo_tiny_checkpoint.py``
in it and keeps what it wrote beside the environment, keyed by the builder's contents, so
a rerun loads them instead of rebuilding (a minute on a loaded 2-core machine).
``cd test && python -m helpers.octo_env`` builds both and prints where.
"""
import hashlib
import json
import os
import shutil
import sys
from pathlib import Path

from helpers.policy_venvs import ROOT, SCRIPTS, ensure_venv

UPSTREAM = Path(os.environ.get("AGENTHIVE_UPSTREAM", ROOT.parent / "shared" / "upstream"))
HELPERS = Path(__file__).resolve().parent
BUILDER = HELPERS / "octo_tiny_checkpoint.py"
CHECK = "import importlib.util, octo.model.octo_model, agenthive.serving.policies.octo; assert importlib.util.find_spec('torch') is None"
QUIET = {"TF_CPP_MIN_LOG_LEVEL": "3"}  # TensorFlow's start-up warnings about missing CUDA


def octo_venv():
    """The Octo policy environment (``policy_venvs.PolicyVenv``), built if needed (minutes)."""
    inputs = [UPSTREAM / "octo-241fb35.tar.gz", SCRIPTS / "octo-constraints.txt", SCRIPTS / "octo_dlimp_placeholder.py"]
    return ensure_venv("octo", check=CHECK, inputs=inputs)


def tiny_checkpoints(venv):
    """name -> checkpoint folder of ``octo_tiny_checkpoint.CHECKPOINTS``, built by Octo's ``save_pretrained``."""
    digest = hashlib.sha256(BUILDER.read_bytes()).hexdigest()[:12]
    out = venv.path.parent / f"{venv.path.name}-checkpoints-{digest}"
    index = out / "checkpoints.json"
    if not index.exists():
        shutil.rmtree(out, ignore_errors=True)
        result = venv.run([str(BUILDER), str(out)], env=QUIET)
        index.write_text(result.stdout.strip().splitlines()[-1])
    return {name: Path(entry["path"]) for name, entry in json.loads(index.read_text()).items()}


if __name__ == "__main__":
    venv = octo_venv()
    print(venv.python)
    print(json.dumps({name: str(path) for name, path in tiny_checkpoints(venv).items()}))
    sys.exit(0)
