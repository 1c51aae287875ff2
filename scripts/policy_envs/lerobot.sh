#!/usr/bin/env bash
# LeRobot 0.4.4 (ACT, Diffusion Policy, ...) policy environment: bash scripts/policy_envs/lerobot.sh VENV_DIR
#
# lerobot 0.4.4 is the newest release that installs on Python 3.11 here. Its metadata pins
# torch<2.11 and torchvision<0.26 (pip would fetch torch 2.10 with a second CUDA stack) and
# asks for wandb, rerun-sdk, torchcodec (built against torch 2.10), pynput, opencv and
# cmake, none of which its policies import. So: torch 2.14.1 + torchvision 0.29.1 (the pair
# that imports on CPU-only machines), lerobot --no-deps, then the dependencies its policy,
# processor and factory code imports (gymnasium: lerobot.policies.factory imports it), with
# lerobot's own bounds. torchrl beside it runs torchrl's in-process LeRobotPolicyWrapper,
# which the tests compare the served policy with.
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
log "torch 2.14.1, torchvision 0.29.1, lerobot 0.4.4 (--no-deps) and the dependencies its policies import"
pip_install "torch==2.14.1" "torchvision==0.29.1"
pip_install --no-deps "lerobot==0.4.4"
pip_install "torch==2.14.1" "torchvision==0.29.1" \
  "datasets>=4.0.0,<5.0.0" "diffusers>=0.27.2,<0.36.0" "huggingface-hub>=0.34.2,<0.36.0" \
  "accelerate>=1.10.0,<2.0.0" "setuptools>=71.0.0,<81.0.0" "einops>=0.8.0,<0.9.0" "av>=15.0.0,<16.0.0" \
  "jsonlines>=4.0.0,<5.0.0" "packaging>=24.2,<26.0" "pyserial>=3.5,<4.0" "draccus==0.10.0" \
  "deepdiff>=7.0.1,<9.0.0" "imageio>=2.34.0,<3.0.0" "termcolor>=2.4.0,<4.0.0" "gymnasium>=1.1.1,<2.0.0" \
  "torchrl==0.14.1" "tensordict>=0.14,<0.15"
pip_install -e "$ROOT[serve]"
log "done: $("$VENV/bin/python" -c 'import lerobot, torch, torchrl; print(f"lerobot {lerobot.__version__}, torch {torch.__version__}, torchrl {torchrl.__version__}")')"
