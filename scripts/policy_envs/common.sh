# Sourced by scripts/policy_envs/<family>.sh: creates the policy environment named by $1 and
# defines pip_install for it. Each family's script then installs its framework and
# agenthive's serve extra, and nothing of the project's own .venv.
#
#   bash scripts/policy_envs/<family>.sh VENV_DIR
#
# PYTHON picks the interpreter (default: python3). The repository root is found from this
# file, so the scripts run from any directory.
set -euo pipefail
if [ $# -ne 1 ]; then
  echo "usage: bash $0 VENV_DIR  (the folder to create the policy environment in)" >&2
  exit 2
fi
VENV=$1
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
PYTHON=${PYTHON:-python3}
log() { printf '[policy env %s] %s\n' "$(basename "$VENV")" "$*"; }
if [ ! -x "$VENV/bin/python" ]; then
  log "creating $VENV with $("$PYTHON" --version)"
  "$PYTHON" -m venv "$VENV"
fi
pip_install() {
  # A pip configuration that names local package folders missing on this machine makes pip
  # print one "Location ... is ignored" warning per package: drop those, keep the rest.
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check "$@" \
    2> >(grep -v "^WARNING: Location '.*' is ignored: it is neither a file nor a directory" >&2)
}
