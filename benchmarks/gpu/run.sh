#!/usr/bin/env bash
# The GPU suite on a lent GPU machine, one device call: unpack the loaders, install the
# carried wheels, run suite.py. Results go to $OUT (results.md, results.json, logs.txt, setup.txt).
#
#   bash benchmarks/gpu/run.sh maniskill        # carry .gpu/maniskill (made by prepare.py)
#   bash benchmarks/gpu/run.sh robohive         # carry .gpu/robohive
#   GPU_SUITE_DRY_RUN=1 PYTHON=.venv/bin/python bash benchmarks/gpu/run.sh all --device cpu --size tiny
#
# GPU_SUITE_DRY_RUN=1 installs nothing and runs the suite with $PYTHON's packages (the CPU dry run).
# Arguments after the call go to suite.py (--only NAMES, --limit-scale X, --device, --size).
set -uo pipefail
call=${1:?usage: run.sh maniskill|robohive|all [suite.py options]}
shift
repo=$(cd "$(dirname "$0")/../.." && pwd)
cd "$repo"
out=${OUT:-/tmp/gpu_suite_out}
mkdir -p "$out"
python=${PYTHON:-python3}
carried=.gpu/$call

setup() {  # runs in this shell (its exports stay); its output goes to $out/setup.txt
  [ -d "$carried/wheels" ] || { echo "no $carried/wheels: on a GPU give maniskill or robohive, made by benchmarks/gpu/prepare.py, and carry .gpu/<call>"; return 2; }
  # EGL/Vulkan loaders into / (the device README's recipe); SAPIEN's libX11 elsewhere, only if missing
  local x11_missing deb nv=/usr/local/nvidia/share
  x11_missing=$(ldconfig -p | grep -q 'libX11.so.6 ' || echo 1)
  for deb in "$carried"/debs/*.deb; do
    case $(basename "$deb") in
      libx11*|libxcb*|libxau*|libxdmcp*|libbsd*|libmd0*) [ -n "$x11_missing" ] && dpkg -x "$deb" /tmp/sysroot ;;
      *) dpkg -x "$deb" / ;;
    esac
  done
  ldconfig
  export LD_LIBRARY_PATH=/tmp/sysroot/usr/lib/x86_64-linux-gnu:/tmp/sysroot/lib/x86_64-linux-gnu:${LD_LIBRARY_PATH:-}
  if [ -f $nv/vulkan/icd.d/nvidia_icd.json ]; then
    export VK_DRIVER_FILES=$nv/vulkan/icd.d/nvidia_icd.json VK_ICD_FILENAMES=$nv/vulkan/icd.d/nvidia_icd.json
  fi
  if [ -f $nv/glvnd/egl_vendor.d/10_nvidia.json ]; then
    export __EGL_VENDOR_LIBRARY_FILENAMES=$nv/glvnd/egl_vendor.d/10_nvidia.json
  fi
  time "$python" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site "$carried"/wheels/*.whl || return 3
  nvidia-smi
  "$python" -m pip list 2>/dev/null | grep -i -E '^(torch|numpy|torchrl|tensordict|mani.skill|sapien|mujoco|robohive|gymnasium) '
  env | grep -E '^(VK_|__EGL|LD_LIBRARY_PATH)'
  return 0
}

if [ "${GPU_SUITE_DRY_RUN:-0}" != 1 ]; then
  setup >"$out/setup.txt" 2>&1 || { cat "$out/setup.txt"; exit 1; }
  export PYTHONPATH=/tmp/site:$repo
  if [ -d "$carried/simhive" ]; then export AGENTHIVE_SIMHIVE_DIR=$repo/$carried/simhive; fi
else
  export PYTHONPATH=$repo${PYTHONPATH:+:$PYTHONPATH}
fi
export MUJOCO_GL=egl PYTHONUNBUFFERED=1
exec "$python" benchmarks/gpu/suite.py "$call" --out "$out" "$@"
