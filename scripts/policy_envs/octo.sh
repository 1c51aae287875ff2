#!/usr/bin/env bash
# Octo (JAX) policy environment: bash scripts/policy_envs/octo.sh VENV_DIR
#
# Octo is installed from its GitHub repository in its own instructions; these machines keep
# it as a tarball at the commit the `agents` project pins ($AGENTHIVE_UPSTREAM, default
# ../shared/upstream beside the repository). Its requirements.txt pins jax 0.4.20, flax 0.7.5,
# tensorflow 2.15.0 (CPU builds on Python 3.11), plus octo-constraints.txt beside this file.
# dlimp, a data-loading library installed from GitHub only, is replaced by a placeholder
# module (octo_dlimp_placeholder.py: inference never calls it). No torch: checked at the end.
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
UPSTREAM=${AGENTHIVE_UPSTREAM:-$ROOT/../shared/upstream}
TARBALL=$UPSTREAM/octo-241fb35.tar.gz
if [ ! -f "$TARBALL" ]; then
  echo "[policy env] no Octo source at $TARBALL: set AGENTHIVE_UPSTREAM to the folder holding octo-241fb35.tar.gz" >&2
  exit 1
fi
REQUIREMENTS=$(mktemp)
trap 'rm -f "$REQUIREMENTS"' EXIT
tar -xzOf "$TARBALL" octo/requirements.txt | grep -v '^dlimp' > "$REQUIREMENTS"
log "Octo's requirements (without dlimp) + octo-constraints.txt"
pip_install -r "$REQUIREMENTS" -c "$HERE/octo-constraints.txt"
pip_install --no-deps "$TARBALL"
SITE=$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
cp "$HERE/octo_dlimp_placeholder.py" "$SITE/dlimp.py"
pip_install -c "$HERE/octo-constraints.txt" -e "$ROOT[serve]"
"$VENV/bin/python" -m pip check
"$VENV/bin/python" - <<'PY'
import importlib.util
leaked = [name for name in ("torch", "torchvision", "torchrl", "tensordict") if importlib.util.find_spec(name)]
assert not leaked, f"the Octo environment must not hold torch, but has {leaked}"
PY
log "done: $(TF_CPP_MIN_LOG_LEVEL=3 "$VENV/bin/python" -c 'import jax, flax, tensorflow as tf, octo; print(f"octo {octo.__file__}, jax {jax.__version__}, flax {flax.__version__}, tensorflow {tf.__version__}")' 2>/dev/null)"
