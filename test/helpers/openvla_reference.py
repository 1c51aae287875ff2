"""OpenVLA's actions for images, computed in-process the way OpenVLA's README calls it.

Runs in the OpenVLA policy environment: ``python test/helpers/openvla_reference.py CHECKPOINT IN.npz OUT.npz``.
``AutoProcessor`` / ``AutoModelForVision2Seq.from_pretrained(..., trust_remote_code=True)``
with ``attn_implementation="sdpa"`` in float32, then per image
``processor(prompt, image)`` and ``predict_action(**inputs, unnorm_key=..., do_sample=False)``,
untouched (no token appended by the caller: with sdpa, OpenVLA's own call works). The
statistics of the folder's ``dataset_statistics.json`` are added to ``norm_stats``, as
OpenVLA's deployment of fine-tuned checkpoints does. The tests compare the served adapter
(any attention implementation) with this.

IN.npz: ``images`` ``[T, H, W, 3]`` uint8, ``instruction`` (str), ``unnorm_key`` (str).
OUT.npz: ``actions`` ``[T, action_dim]``.
"""
import json
import sys
from pathlib import Path

import agenthive  # noqa: F401  (the project's rule for programs: agenthive before torch)
import numpy as np
import torch
from PIL import Image
from transformers import AutoModelForVision2Seq, AutoProcessor


def main(checkpoint, source, target):
    torch.set_num_threads(1)  # as the served policy in the tests: fast on a shared machine
    data = np.load(source)
    processor = AutoProcessor.from_pretrained(checkpoint, trust_remote_code=True)
    vla = AutoModelForVision2Seq.from_pretrained(checkpoint, attn_implementation="sdpa", torch_dtype=torch.float32, low_cpu_mem_usage=True, trust_remote_code=True)
    vla.norm_stats = {**vla.norm_stats, **json.loads((Path(checkpoint) / "dataset_statistics.json").read_text())}
    prompt = f"In: What action should the robot take to {str(data['instruction']).lower()}?\nOut:"
    actions = []
    for image in data["images"]:
        inputs = processor(prompt, Image.fromarray(image).convert("RGB")).to("cpu", dtype=torch.float32)
        with torch.inference_mode():
            actions.append(vla.predict_action(**inputs, unnorm_key=str(data["unnorm_key"]), do_sample=False))
    np.savez(target, actions=np.stack(actions))


if __name__ == "__main__":
    main(*sys.argv[1:4])
