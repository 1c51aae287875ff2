#!/usr/bin/env bash
# The one install path for agenthive on a fresh Debian/Ubuntu machine (Python 3.10+).
#
#   AGENTHIVE_SIMHIVE_DIR=/path/to/simhive bash scripts/install.sh
#
# 1. system libraries for headless rendering (MuJoCo: EGL and OSMesa) from apt;
# 2. a virtual environment at .venv (or $AGENTHIVE_VENV) with pinned torch, torchrl,
#    RoboHive and agenthive itself (editable);
# 3. RoboHive's simulation assets, linked from $AGENTHIVE_SIMHIVE_DIR, or fetched with
#    robohive_init when that variable is unset (needs GitHub).
# Re-running it only fills in what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=${AGENTHIVE_VENV:-.venv}
PYTHON=${PYTHON:-python3}
SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO=sudo; fi

log() { printf '\n[install] %s\n' "$*"; }

# --- 1. system packages ----------------------------------------------------------------
apt_missing() {  # prints the packages of "$@" that dpkg does not report as installed
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || echo "$p"
  done
}
APT_PACKAGES=(libegl1 libegl-mesa0 libgl1 libgl1-mesa-dri libgles2 libosmesa6 libglfw3)
missing=$(apt_missing "${APT_PACKAGES[@]}")
if [ -n "$missing" ]; then
  log "apt: installing $missing"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $missing >/dev/null
fi

# --- 2. python environment -------------------------------------------------------------
if [ ! -x "$VENV/bin/python" ]; then
  log "creating $VENV with $($PYTHON --version)"
  "$PYTHON" -m venv "$VENV"
fi
PIP=("$VENV/bin/python" -m pip install -q --disable-pip-version-check)
log "pip: torch, torchrl, RoboHive's dependencies, agenthive"
# torch 2.14.1 + torchvision 0.29.1 are the pair that import together on these machines.
"${PIP[@]}" "torch==2.14.1" "torchvision==0.29.1"
"${PIP[@]}" -e ".[robohive,vision,dev]"
# RoboHive's own metadata pins h5py==3.7.0, which does not build on Python 3.11: install
# it without dependencies (the robohive extra above names the real ones).
"${PIP[@]}" --no-deps "robohive==0.7.0"

# --- 3. RoboHive assets ----------------------------------------------------------------
log "RoboHive assets"
"$VENV/bin/python" -m agenthive setup-robohive

log "done: $("$VENV/bin/python" -c 'import agenthive, torch, torchrl; print(f"agenthive {agenthive.__version__}, torch {torch.__version__}, torchrl {torchrl.__version__}")')"
