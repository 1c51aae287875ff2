"""OpenVLA (transformers) as a served policy: prompt formatting, image in, one action out.

OpenVLA weights cannot be downloaded here, so the tests drive this adapter with stand-in
processor and model objects that have the transformers call signatures; ``_load`` is the
real loading code.

Example:
    >>> policy = OpenVLAPolicy("openvla/openvla-7b", unnorm_key="bridge_orig", device="cuda:0")
    >>> policy.initialize()  # doctest: +SKIP
"""
import numpy as np

from agenthive.serving.policy import Policy, PolicyMetadata


class OpenVLAPolicy(Policy):
    """Serves an OpenVLA checkpoint through transformers' ``AutoModelForVision2Seq``.

    Args:
        checkpoint: model id or path.
        unnorm_key: dataset whose statistics unnormalize the actions (``model.norm_stats``).
        attn_implementation: ``"flash_attention_2"``, ``"sdpa"`` or ``"eager"``.
        device: torch device.
        dtype: torch dtype name of the weights and inputs.
        image_key: name of the RGB image observation.
        image_size: (height, width) of the image clients send.
    """

    def __init__(self, checkpoint, unnorm_key=None, attn_implementation="flash_attention_2", device="cuda:0", dtype="bfloat16", image_key="image", image_size=(224, 224)):
        self.checkpoint, self.unnorm_key, self.attn_implementation = checkpoint, unnorm_key, attn_implementation
        self.device, self.dtype, self.image_key, self.image_size = device, dtype, image_key, tuple(image_size)
        self.processor = self.model = None

    def _load(self):
        import torch
        from transformers import AutoModelForVision2Seq, AutoProcessor

        processor = AutoProcessor.from_pretrained(self.checkpoint, trust_remote_code=True)
        model = AutoModelForVision2Seq.from_pretrained(
            self.checkpoint, attn_implementation=self.attn_implementation, torch_dtype=getattr(torch, self.dtype),
            low_cpu_mem_usage=True, trust_remote_code=True,
        ).to(self.device)
        return processor, model

    def initialize(self):
        import torch

        self.processor, self.model = self._load()
        self._torch_dtype = getattr(torch, self.dtype)
        if self.unnorm_key is None and len(self.model.norm_stats) == 1:
            self.unnorm_key = next(iter(self.model.norm_stats))
        if self.unnorm_key not in self.model.norm_stats:
            raise ValueError(f"unnorm_key={self.unnorm_key!r}: expected one of {sorted(self.model.norm_stats)}")
        self.metadata = PolicyMetadata(
            name=f"openvla:{self.checkpoint}",
            observations={self.image_key: ((*self.image_size, 3), "uint8")},
            action_shape=(self.model.get_action_dim(self.unnorm_key),),
            chunk_length=1,
            takes_instruction=True,
            info={"framework": f"torch {torch.__version__}", "unnorm_key": self.unnorm_key, "attn_implementation": self.attn_implementation},
        )

    @staticmethod
    def prompt(instruction):
        """OpenVLA's prompt for an instruction."""
        return f"In: What action should the robot take to {instruction.lower()}?\nOut:"

    def act_batch(self, observations, episodes):
        images = observations[self.image_key]  # OpenVLA's predict_action takes one image
        return {"actions": np.stack([self._predict(images[i], episode) for i, episode in enumerate(episodes)])}

    def _predict(self, image, episode):
        import torch
        from PIL import Image

        image = Image.fromarray(np.asarray(image)).convert("RGB")
        inputs = self.processor(self.prompt(episode["instruction"] or ""), image).to(self.device, dtype=self._torch_dtype)
        with torch.inference_mode():
            action = self.model.predict_action(**inputs, unnorm_key=self.unnorm_key, do_sample=False)
        return np.asarray(action, dtype=np.float32)[None]  # a chunk of one action
