#!/usr/bin/env bash
# The one install path for agenthive on a fresh Debian/Ubuntu machine (Python 3.10+).
#
#   AGENTHIVE_SIMHIVE_DIR=/path/to/simhive bash scripts/install.sh
#
# 1. system libraries for headless rendering from apt: EGL and OSMesa for MuJoCo, Mesa 25's
#    lavapipe Vulkan driver (bookworm-backports) for ManiSkill's SAPIEN;
# 2. a virtual environment at .venv (or $AGENTHIVE_VENV) with pinned torch, torchrl,
#    RoboHive, ManiSkill and agenthive itself (editable);
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

# ManiSkill's SAPIEN needs Vulkan even for state observations. Without a GPU, Mesa's lavapipe (a CPU
# Vulkan driver) serves, but only Mesa >= 25: Debian 12's Mesa 22 lavapipe is refused
# ("Failed to find a supported physical device"). Mesa 25 comes from the
# <codename>-backports suite of the mirror this machine's apt sources already name (no
# host is written here). apt moves Mesa's EGL/OpenGL libraries to 25 with it (shared
# libgallium); MuJoCo's EGL rendering works on them. ManiSkillEnv points Vulkan at
# lavapipe (VK_ICD_FILENAMES) when no GPU is visible and the variable is unset.
mesa_vulkan_version=$(dpkg-query -W -f='${Version}' mesa-vulkan-drivers 2>/dev/null || true)
if [ -f /usr/share/vulkan/icd.d/lvp_icd.json ] && [ -n "$mesa_vulkan_version" ] && dpkg --compare-versions "$mesa_vulkan_version" ge 25; then
  log "Vulkan: lavapipe from Mesa $mesa_vulkan_version already installed"
else
  codename=$(. /etc/os-release && echo "$VERSION_CODENAME")
  sources=/etc/apt/sources.list.d/debian.sources
  # the URIs of the deb822 stanza whose Suites list the release itself (not -security)
  [ -f "$sources" ] && mirror=$(awk -v s="$codename" 'BEGIN { RS = ""; FS = "\n" } {
      uris = ""; suites = ""
      for (i = 1; i <= NF; i++) {
        if ($i ~ /^URIs:/)   { sub(/^URIs:[ \t]*/, "", $i); uris = $i }
        if ($i ~ /^Suites:/) { sub(/^Suites:[ \t]*/, "", $i); suites = " " $i " " }
      }
      if (index(suites, " " s " ")) { print uris; exit }
    }' "$sources")
  if [ -z "${mirror:-}" ]; then
    echo "[install] found no 'URIs:' for suite $codename in $sources; install Mesa >= 25's" \
      "mesa-vulkan-drivers (lavapipe) by hand, e.g. from $codename-backports, and re-run" >&2
    exit 1
  fi
  log "Vulkan: mesa-vulkan-drivers from $codename-backports ($mirror)"
  printf 'Types: deb\nURIs: %s\nSuites: %s-backports\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' \
    "$mirror" "$codename" | $SUDO tee "/etc/apt/sources.list.d/$codename-backports.sources" >/dev/null
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends \
    -t "$codename-backports" mesa-vulkan-drivers >/dev/null
fi

# --- 2. python environment -------------------------------------------------------------
if [ ! -x "$VENV/bin/python" ]; then
  log "creating $VENV with $($PYTHON --version)"
  "$PYTHON" -m venv "$VENV"
fi
pip_install() {
  # A pip configuration that names local package folders missing on this machine makes pip
  # print one "Location ... is ignored" warning per package: drop those, keep the rest.
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check "$@" \
    2> >(grep -v "^WARNING: Location '.*' is ignored: it is neither a file nor a directory" >&2)
}
log "pip: torch, torchrl, RoboHive's and ManiSkill's dependencies, Ray, agenthive"
# torch 2.14.1 + torchvision 0.29.1 are the pair that import together on these machines.
pip_install "torch==2.14.1" "torchvision==0.29.1"
pip_install -e ".[robohive,maniskill,vision,dev,ray]"
# RoboHive's own metadata pins h5py==3.7.0, which does not build on Python 3.11: install
# it without dependencies (the robohive extra above names the real ones).
pip_install --no-deps "robohive==0.7.0"

# --- 3. RoboHive assets ----------------------------------------------------------------
log "RoboHive assets"
"$VENV/bin/python" -m agenthive setup-robohive

log "done: $("$VENV/bin/python" -c 'import agenthive, torch, torchrl, mani_skill; print(f"agenthive {agenthive.__version__}, torch {torch.__version__}, torchrl {torchrl.__version__}, mani_skill {mani_skill.__version__}")')"
