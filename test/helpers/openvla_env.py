"""The OpenVLA policy environment and a tiny OpenVLA checkpoint, for the tests and the benchmark.

``openvla_venv()`` builds (once per machine, cached by ``policy_venvs``) the environment of
``scripts/policy_envs/openvla.sh``; ``tiny_checkpoint(venv)`` runs
``openvla_tiny_checkpoint.py`` in it with OpenVLA's Hugging Face modeling files
(``$AGENTHIVE_UPSTREAM/openvla-hf``) and keeps the folder it wrote beside the environment,
keyed by the contents of the builder and of those files. ``cd test && python -m
helpers.openvla_env`` builds both and prints where.
"""
import hashlib
import json
import shutil
import sys
from pathlib import Path

from helpers.octo_env import UPSTREAM
from helpers.policy_venvs import ensure_venv

MODELING = UPSTREAM / "openvla-hf"
BUILDER = Path(__file__).resolve().parent / "openvla_tiny_checkpoint.py"
CHECK = "import torch, torchvision, timm, transformers, sentencepiece, PIL, agenthive.serving.policies.openvla"
OFFLINE = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}  # nothing can be downloaded here: fail fast instead of retrying


def openvla_venv():
    """The OpenVLA policy environment (``policy_venvs.PolicyVenv``), built if needed (minutes)."""
    return ensure_venv("openvla", check=CHECK)


def tiny_checkpoint(venv):
    """Folder of a tiny random-weight OpenVLA checkpoint (``openvla_tiny_checkpoint.py``)."""
    digest = hashlib.sha256(BUILDER.read_bytes())
    for path in sorted(MODELING.glob("*.py")):
        digest.update(path.read_bytes())
    out = venv.path.parent / f"{venv.path.name}-checkpoint-{digest.hexdigest()[:12]}"
    index = out / "checkpoint.json"
    if not index.exists():
        shutil.rmtree(out, ignore_errors=True)
        result = venv.run([str(BUILDER), str(MODELING), str(out / "openvla-tiny")], env=OFFLINE)
        index.write_text(result.stdout.strip().splitlines()[-1])
    return Path(json.loads(index.read_text())["path"])


if __name__ == "__main__":
    venv = openvla_venv()
    print(venv.python)
    print(tiny_checkpoint(venv))
    sys.exit(0)
