#!/usr/bin/env bash
# OpenVLA (transformers) policy environment: bash scripts/policy_envs/openvla.sh VENV_DIR
#
# OpenVLA checkpoints ship their modeling code (configuration_prismatic.py, modeling_prismatic.py,
# processing_prismatic.py) and load with AutoModelForVision2Seq.from_pretrained(...,
# trust_remote_code=True); that code runs on the versions OpenVLA pins: transformers 4.40.1,
# timm 0.9.10, tokenizers 0.19.1 (plus sentencepiece for Llama's tokenizer, and accelerate for
# low_cpu_mem_usage=True). torch 2.14.1 + torchvision 0.29.1 are the pair that import together on
# CPU-only machines (with the CPU torch 2.13 wheel, timm pulls a torchvision that needs CUDA
# libraries). flash-attn is not installed: it needs a CUDA build; pass attn_implementation
# "sdpa" or "eager" without it.
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
log "torch 2.14.1, torchvision 0.29.1, transformers 4.40.1, timm 0.9.10, tokenizers 0.19.1"
pip_install "torch==2.14.1" "torchvision==0.29.1"
pip_install "torch==2.14.1" "torchvision==0.29.1" "transformers==4.40.1" "timm==0.9.10" "tokenizers==0.19.1" \
  "sentencepiece" "accelerate>=0.25.0" "pillow"
pip_install -e "$ROOT[serve]"
"$VENV/bin/python" -m pip check
log "done: $("$VENV/bin/python" -c 'import torch, torchvision, transformers, timm; print(f"torch {torch.__version__}, torchvision {torchvision.__version__}, transformers {transformers.__version__}, timm {timm.__version__}")')"
