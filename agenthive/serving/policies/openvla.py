"""OpenVLA (transformers) as a served policy: prompt formatting, image in, one action out.

Loads a Hugging Face OpenVLA checkpoint (a hub id or a local folder with its modeling files)
with ``AutoModelForVision2Seq.from_pretrained(..., trust_remote_code=True)`` and calls its
``predict_action``, as OpenVLA's own ``vla-scripts/deploy.py`` and the ``agents`` project do.
Keyword names are the ``agents`` project's: ``checkpoint_path`` (``{checkpoint_step}`` in it is
filled from ``checkpoint_step``), ``unnorm_key``, ``attn_implementation``, ``device``. A local
folder's ``dataset_statistics.json`` (written by OpenVLA's fine-tuning script) adds its
datasets to the statistics stored in the config (the ``agents`` project replaces them).

``predict_action`` appends token 29871 (Llama's empty token after "Out:") to ``input_ids``
but not to ``attention_mask``, which breaks ``attn_implementation="eager"``; this adapter
appends it to both before calling it.

Example:
    >>> policy = OpenVLAPolicy("openvla/openvla-7b", unnorm_key="bridge_orig", device="cuda:0", attn_implementation="flash_attention_2")
    >>> policy.initialize()  # doctest: +SKIP
"""
import importlib.util
import json
from pathlib import Path

import numpy as np

from agenthive.serving.policy import Policy, PolicyMetadata

ATTENTION = ("flash_attention_2", "sdpa", "eager")
EMPTY_TOKEN = 29871  # what Llama-2's tokenizer puts after "Out:" at training time; predict_action expects it last
SYSTEM_PROMPT = (  # OpenVLA v0.1 checkpoints were trained with Vicuna's chat prompt
    "A chat between a curious user and an artificial intelligence assistant. "
    "The assistant gives helpful, detailed, and polite answers to the user's questions."
)


class OpenVLAPolicy(Policy):
    """Serves an OpenVLA checkpoint through transformers' ``AutoModelForVision2Seq``.

    Args:
        checkpoint_path: hub id or local folder; ``{checkpoint_step}`` in it is replaced by
            ``checkpoint_step``.
        unnorm_key: dataset whose statistics unnormalize the actions (``model.norm_stats``);
            may be omitted when there is one.
        attn_implementation: ``"flash_attention_2"`` (CUDA and the flash-attn package),
            ``"sdpa"`` or ``"eager"``.
        device: torch device; None: ``"cuda:0"`` when torch sees a GPU, else ``"cpu"``.
        dtype: torch dtype name of the weights and inputs.
        image_key: name of the RGB image observation.
        image_size: (height, width) of the images clients send (the processor resizes them).
        checkpoint_step: fills ``{checkpoint_step}`` in ``checkpoint_path``.
        num_threads: torch's CPU threads (None: torch's default, one per core).

    ``start-server`` also takes this adapter's former name ``checkpoint`` for ``checkpoint_path``.
    """

    keyword_aliases = {"checkpoint": "checkpoint_path"}

    def __init__(self, checkpoint_path, unnorm_key=None, attn_implementation="sdpa", device=None, dtype="bfloat16", image_key="image", image_size=(224, 224), checkpoint_step=None, num_threads=None):
        if attn_implementation not in ATTENTION:
            raise ValueError(f"attn_implementation={attn_implementation!r}: expected one of {list(ATTENTION)}")
        self.checkpoint_path, self.checkpoint_step, self.unnorm_key = checkpoint_path, checkpoint_step, unnorm_key
        self.attn_implementation, self.device, self.dtype = attn_implementation, device, dtype
        self.image_key, self.image_size, self.num_threads = image_key, tuple(image_size), num_threads
        self.path = checkpoint_path.format(checkpoint_step=checkpoint_step) if "{checkpoint_step}" in checkpoint_path else checkpoint_path
        self.processor = self.model = None

    def _check_device(self):
        import torch

        device = torch.device(self.device or ("cuda:0" if torch.cuda.is_available() else "cpu"))
        if self.attn_implementation == "flash_attention_2":
            if device.type != "cuda" or not torch.cuda.is_available():
                where = "torch sees no CUDA device here" if not torch.cuda.is_available() else f"device={self.device!r} is not a CUDA device"
                raise ValueError(f"attn_implementation='flash_attention_2' runs on CUDA only and {where}: pass attn_implementation='sdpa' (PyTorch's fused attention) or 'eager'")
            if importlib.util.find_spec("flash_attn") is None:
                raise ValueError("attn_implementation='flash_attention_2' needs the flash-attn package, which this environment lacks: install it, or pass attn_implementation='sdpa' or 'eager'")
        if device.type == "cuda" and not torch.cuda.is_available():
            raise ValueError(f"device={self.device!r} but torch sees no CUDA device here: pass device='cpu'")
        return device

    def _load(self):
        import torch
        from transformers import AutoModelForVision2Seq, AutoProcessor

        processor = AutoProcessor.from_pretrained(self.path, trust_remote_code=True)
        model = AutoModelForVision2Seq.from_pretrained(
            self.path, attn_implementation=self.attn_implementation, torch_dtype=getattr(torch, self.dtype),
            low_cpu_mem_usage=True, trust_remote_code=True,
        ).to(self._device)
        statistics = Path(self.path) / "dataset_statistics.json"
        if statistics.is_file():  # a fine-tuned checkpoint's own statistics
            model.norm_stats = {**model.norm_stats, **json.loads(statistics.read_text())}
        return processor, model

    def initialize(self):
        import torch

        self._device = self._check_device()
        if self.num_threads is not None:
            torch.set_num_threads(self.num_threads)
        self.processor, self.model = self._load()
        self._torch_dtype = getattr(torch, self.dtype)
        if self.unnorm_key is None and len(self.model.norm_stats) == 1:
            self.unnorm_key = next(iter(self.model.norm_stats))
        if self.unnorm_key not in self.model.norm_stats:
            raise ValueError(f"unnorm_key={self.unnorm_key!r}: expected one of {sorted(self.model.norm_stats)}")
        self.metadata = PolicyMetadata(
            name=f"openvla:{self.path}",
            observations={self.image_key: ((*self.image_size, 3), "uint8")},
            action_shape=(self.model.get_action_dim(self.unnorm_key),),
            chunk_length=1,
            takes_instruction=True,
            info={
                "framework": f"torch {torch.__version__}",
                "unnorm_key": self.unnorm_key,
                "attn_implementation": self.model.config._attn_implementation,
                "device": str(self._device),
                "dtype": self.dtype,
            },
        )

    def prompt(self, instruction):
        """OpenVLA's prompt for an instruction (the chat prompt for v0.1 checkpoints)."""
        if "v01" in self.path:
            return f"{SYSTEM_PROMPT} USER: What action should the robot take to {instruction.lower()}? ASSISTANT:"
        return f"In: What action should the robot take to {instruction.lower()}?\nOut:"

    def inputs(self, image, instruction):
        """The model's inputs for one image and instruction, ending in the token ``predict_action`` expects."""
        import torch
        from PIL import Image

        inputs = self.processor(self.prompt(instruction), Image.fromarray(np.asarray(image)).convert("RGB"))
        inputs = inputs.to(self._device, dtype=self._torch_dtype)
        if not torch.all(inputs["input_ids"][:, -1] == EMPTY_TOKEN):
            token = torch.full_like(inputs["input_ids"][:, :1], EMPTY_TOKEN)
            inputs["input_ids"] = torch.cat([inputs["input_ids"], token], dim=1)
            inputs["attention_mask"] = torch.cat([inputs["attention_mask"], torch.ones_like(token)], dim=1)
        return inputs

    def act_batch(self, observations, episodes):
        """``predict_action`` takes one image at a time: the batch runs element by element."""
        import torch

        actions = []
        for image, episode in zip(observations[self.image_key], episodes):
            inputs = self.inputs(image, episode["instruction"] or "")
            with torch.inference_mode():
                action = self.model.predict_action(**inputs, unnorm_key=self.unnorm_key, do_sample=False)
            actions.append(np.asarray(action, dtype=np.float32)[None])
        return {"actions": np.stack(actions)}
