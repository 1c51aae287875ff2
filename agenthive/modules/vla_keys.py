"""TorchRL's canonical VLA keys (``torchrl.data.vla.schema``) for ``RemotePolicyModule``.

torchrl 0.14's VLA policies (``torchrl.modules.vla``) read images under
``("observation", "image")`` (one tensor, or one entry per camera), the proprioceptive
state under ``("observation", "state")`` and the instruction under
``"language_instruction"`` (one string for the whole batch, or one per element), and write
the predicted chunk to ``("vla_action", "chunk")``. ``VLAKeys`` maps those entries to a
served policy's observation names, so that rollout and evaluation code written against
``torchrl.modules.vla`` runs unchanged with a served policy.

Images: the schema's layout is channels-first (``[..., C, H, W]``); agenthive's image
observations are channels-last ``(H, W, C)`` as cameras produce them, so a channels-first
image is transposed when the server's shape says so. Values and dtypes pass unchanged.

Example:
    >>> import torch
    >>> from tensordict import NonTensorStack, TensorDict
    >>> from agenthive.serving.policy import PolicyMetadata
    >>> metadata = PolicyMetadata("act", {"observation.images.top": ((4, 4, 3), "uint8"), "observation.state": ((2,), "float32")}, (7,))
    >>> keys = VLAKeys()
    >>> keys.names(metadata)
    {('observation', 'image', 'top'): 'observation.images.top', ('observation', 'state'): 'observation.state'}
    >>> td = TensorDict({"observation": {"image": {"top": torch.zeros(2, 3, 4, 4, dtype=torch.uint8)}, "state": torch.zeros(2, 2)},
    ...                  "language_instruction": NonTensorStack("pick", "place")}, batch_size=[2])
    >>> obs = keys.read(td, keys.names(metadata), metadata)
    >>> obs["observation.images.top"].shape, keys.instructions(td, 2)
    ((2, 4, 4, 3), ['pick', 'place'])
"""
import numpy as np
import torch

IMAGE_KEY = ("observation", "image")
STATE_KEY = ("observation", "state")
INSTRUCTION_KEY = "language_instruction"
CHUNK_KEY = ("vla_action", "chunk")
_LEROBOT_CAMERA_PREFIX = "observation.images."


class VLAKeys:
    """Which canonical VLA entries feed which of the server's observations.

    Args:
        cameras: camera name under ``("observation", "image")`` -> the server's image
            observation name, or a single name when ``("observation", "image")`` is one
            tensor. Default: the server's names ``observation.images.<camera>`` (LeRobot's
            convention) map to ``("observation", "image", <camera>)``, other image names
            to ``("observation", "image", <name>)``, and a lone image not named the
            LeRobot way to ``("observation", "image")``.
        state: the server's observation fed from ``("observation", "state")``. Default: its
            only non-image observation, if it has exactly one.
        instruction_key: where the instruction lives (one string, or one per element).
        chunk_key: where the chunk being played is written, besides the action.
    """

    def __init__(self, *, cameras=None, state=None, instruction_key=INSTRUCTION_KEY, chunk_key=CHUNK_KEY):
        self.cameras, self.state = cameras, state
        self.instruction_key, self.chunk_key = instruction_key, chunk_key

    def names(self, metadata):
        """TensorDict key -> the server's observation name, for every observation it expects."""
        images = [name for name, (shape, dtype) in metadata.observations.items() if dtype == "uint8" and len(shape) == 3]
        others = [name for name in metadata.observations if name not in images]
        if isinstance(self.cameras, str):
            mapping = {IMAGE_KEY: self.cameras}
        elif self.cameras is not None:
            mapping = {(*IMAGE_KEY, camera): name for camera, name in self.cameras.items()}
        elif len(images) == 1 and not images[0].startswith(_LEROBOT_CAMERA_PREFIX):
            mapping = {IMAGE_KEY: images[0]}
        else:
            mapping = {(*IMAGE_KEY, name.removeprefix(_LEROBOT_CAMERA_PREFIX)): name for name in images}
        state = self.state if self.state is not None else (others[0] if len(others) == 1 else None)
        if state is not None:
            mapping[STATE_KEY] = state
        missing = sorted(set(metadata.observations) - set(mapping.values()))
        if missing:
            raise ValueError(
                f"policy {metadata.name!r} expects {missing}, which VLAKeys does not map from the VLA schema: "
                f"pass VLAKeys(cameras={{camera: name}}, state=name) naming them (it expects {dict(metadata.observations)})"
            )
        return mapping

    def read(self, tensordict, names, metadata):
        """The observations as the server expects them, flattened to one batch dimension."""
        batch_dims = tensordict.batch_dims
        obs = {}
        for key, name in names.items():
            value = tensordict.get(key)
            shape, _ = metadata.observations[name]
            value = value.detach().reshape(-1, *value.shape[batch_dims:])
            if len(shape) == 3 and tuple(value.shape[1:]) != shape and tuple(value.shape[1:]) == (shape[2], shape[0], shape[1]):
                value = value.permute(0, 2, 3, 1)  # schema's (C, H, W) -> the server's (H, W, C)
            obs[name] = np.ascontiguousarray(value.cpu().numpy())
        return obs

    def instructions(self, tensordict, n):
        """One instruction per batch element (None where there is none)."""
        value = tensordict.get(self.instruction_key, None)
        if value is None:
            return [None] * n
        data = value.tolist() if hasattr(value, "tolist") else getattr(value, "data", value)
        if isinstance(data, str):
            return [data] * n
        flat = list(np.asarray(data, dtype=object).reshape(-1))
        if len(flat) != n:
            raise ValueError(f"{self.instruction_key!r} holds {len(flat)} instructions for a batch of {n}: expected one, or one per element")
        return flat

    def write(self, tensordict, chunks):
        """Write the chunks being played, ``(*batch, chunk, *action_shape)``, to ``chunk_key``."""
        device = tensordict.device if tensordict.device is not None else torch.device("cpu")
        tensordict.set(self.chunk_key, torch.as_tensor(chunks, device=device).reshape(*tensordict.batch_size, *chunks.shape[1:]))
