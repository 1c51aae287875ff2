"""R3M and VIP image embeddings with their weights read from the local disk.

torchrl's :class:`~torchrl.envs.transforms.R3MTransform` and
:class:`~torchrl.envs.transforms.VIPTransform` fetch the published weights from the
internet at construction (``download=True``), or keep a randomly initialised ResNet
without a word (``download=False``). Robots, clusters and CI often have no internet, and
a random encoder mistaken for a pretrained one wastes a training run. The subclasses here
load the published checkpoint files from disk, say where to put them when they are
missing, and build a random network only when asked to with ``pretrained=False``.

Where the weights are looked for, in order:

1. ``weights=``: a checkpoint file, or a directory holding it;
2. the directory named by the ``AGENTHIVE_WEIGHTS_DIR`` environment variable;
3. torch hub's cache (``$TORCH_HOME/hub/checkpoints``), where torchrl's ``download=True``
   leaves them.

The files are the published ones, unchanged: ``r3m_18.pt``, ``r3m_34.pt``, ``r3m_50.pt``
(``{"r3m": state_dict}``) and VIP's ``model.pt`` (``{"vip": state_dict}``, also found as
``vip_50.pt``), whose state dicts hold the ResNet under ``module.convnet.``.

Put the embedding after the batching (``TransformedEnv(ParallelEnv(...), R3MTransform(...))``):
each step then runs the ResNet once on the images of every env and camera.
"""
from __future__ import annotations

import os
from pathlib import Path

import torch
from torchrl.envs import transforms as _torchrl

WEIGHTS_DIR_ENV = "AGENTHIVE_WEIGHTS_DIR"
_BASE_URL = "https://pytorch.s3.amazonaws.com/models/rl"
# model -> (URL of the published file, file names it is found under)
R3M_WEIGHTS = {
    "resnet18": (f"{_BASE_URL}/r3m/r3m_18.pt", ("r3m_18.pt",)),
    "resnet34": (f"{_BASE_URL}/r3m/r3m_34.pt", ("r3m_34.pt",)),
    "resnet50": (f"{_BASE_URL}/r3m/r3m_50.pt", ("r3m_50.pt",)),
}
VIP_WEIGHTS = {"resnet50": (f"{_BASE_URL}/vip/model.pt", ("vip_50.pt", "model.pt"))}


def find_weights(kind: str, model_name: str, weights: str | os.PathLike | None = None) -> Path:
    """The checkpoint file of ``kind`` (``"r3m"`` or ``"vip"``) ``model_name``.

    Raises:
        FileNotFoundError: no such file where it is looked for; the message names the
            places, the file names and the URL to download it from.
    """
    table = {"r3m": R3M_WEIGHTS, "vip": VIP_WEIGHTS}[kind]
    if model_name not in table:
        raise ValueError(f"{kind.upper()} has no {model_name!r} model: expected one of {sorted(table)}.")
    url, names = table[model_name]
    if weights is not None:
        weights = Path(weights).expanduser()
        if weights.is_file():
            return weights
        places = [weights]
    else:
        places = [Path(os.environ[WEIGHTS_DIR_ENV]).expanduser()] if os.environ.get(WEIGHTS_DIR_ENV) else []
        places.append(Path(torch.hub.get_dir()) / "checkpoints")
    for place in places:
        for name in names:
            if (place / name).is_file():
                return place / name
    looked = ", ".join(str(p / names[0]) for p in places)
    raise FileNotFoundError(
        f"No {kind.upper()} {model_name} weights: looked for {looked}. Download {url} and save it as "
        f"{names[0]} in a directory named by weights=... or by ${WEIGHTS_DIR_ENV}; or pass pretrained=False "
        "for a randomly initialised encoder."
    )


def load_convnet_weights(convnet: torch.nn.Module, path: Path, key: str) -> None:
    """Loads the ResNet of a published R3M/VIP checkpoint (``{key: {"module.convnet.*": ...}}``)."""
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(checkpoint, dict) or key not in checkpoint:
        found = sorted(checkpoint) if isinstance(checkpoint, dict) else type(checkpoint).__name__
        raise ValueError(f"{path} is not a {key.upper()} checkpoint: expected a dict with key {key!r}, found {found}.")
    prefix = "module.convnet."
    state = {name[len(prefix):]: value for name, value in checkpoint[key].items() if name.startswith(prefix)}
    if not state:
        raise ValueError(f"{path}: {key!r} holds no {prefix}* entries, which is where the published checkpoints keep the ResNet.")
    convnet.load_state_dict(state)


def _network(transform: _torchrl.Compose) -> torch.nn.Module:
    return next(t for t in transform.transforms if hasattr(t, "convnet"))


class R3MTransform(_torchrl.R3MTransform):
    """torchrl's R3M embedding, with the weights read from disk (see the module doc).

    Args:
        model_name (str): ``"resnet18"``, ``"resnet34"`` or ``"resnet50"``.

    Keyword Args:
        in_keys (list of str): image entries (uint8 ``[..., H, W, 3]``). Defaults to ``["pixels"]``.
        out_keys (list of str, optional): defaults to ``["r3m_vec"]``.
        size (int): the images are resized to ``size x size``. Defaults to 224 (R3M's).
        weights (path, optional): the checkpoint file or its directory.
        pretrained (bool): ``False`` keeps the ResNet randomly initialised. Defaults to ``True``.
        stack_images, tensor_pixels_keys, requires_grad: as in torchrl's ``R3MTransform``.

    Raises:
        FileNotFoundError: ``pretrained=True`` and no checkpoint where it is looked for.

    Examples:
        >>> import torch
        >>> from tensordict import TensorDict
        >>> r3m = R3MTransform("resnet18", pretrained=False, size=64)
        >>> td = TensorDict({"pixels": torch.zeros(4, 2, 64, 64, 3, dtype=torch.uint8)}, [4])  # 4 envs, 2 cameras
        >>> r3m(td)["r3m_vec"].shape
        torch.Size([4, 2, 512])
    """

    def __init__(
        self,
        model_name: str = "resnet50",
        *,
        in_keys: list[str] | None = None,
        out_keys: list[str] | None = None,
        size: int = 224,
        weights: str | os.PathLike | None = None,
        pretrained: bool = True,
        stack_images: bool = True,
        tensor_pixels_keys: list[str] | None = None,
        requires_grad: bool = False,
    ):
        path = find_weights("r3m", model_name, weights) if pretrained else None
        super().__init__(
            model_name, in_keys=in_keys or ["pixels"], out_keys=out_keys, size=size, stack_images=stack_images,
            download=False, tensor_pixels_keys=tensor_pixels_keys, requires_grad=requires_grad,
        )
        self.weights_path = path
        if path is not None:
            load_convnet_weights(_network(self).convnet, path, "r3m")
        if not requires_grad:
            self.eval()  # a frozen encoder: batch-norm uses its statistics, not the batch's


class VIPTransform(_torchrl.VIPTransform):
    """torchrl's VIP embedding, with the weights read from disk (see the module doc).

    Args:
        model_name (str): ``"resnet50"`` (VIP's only model).

    Keyword Args:
        in_keys (list of str): image entries (uint8 ``[..., H, W, 3]``). Defaults to ``["pixels"]``.
        out_keys (list of str, optional): defaults to ``["vip_vec"]``.
        size (int): the images are resized to ``size x size``. Defaults to 224 (VIP's).
        weights (path, optional): the checkpoint file or its directory.
        pretrained (bool): ``False`` keeps the ResNet randomly initialised. Defaults to ``True``.
        stack_images, tensor_pixels_keys: as in torchrl's ``VIPTransform``.

    Raises:
        FileNotFoundError: ``pretrained=True`` and no checkpoint where it is looked for.
    """

    def __init__(
        self,
        model_name: str = "resnet50",
        *,
        in_keys: list[str] | None = None,
        out_keys: list[str] | None = None,
        size: int = 224,
        weights: str | os.PathLike | None = None,
        pretrained: bool = True,
        stack_images: bool = True,
        tensor_pixels_keys: list[str] | None = None,
    ):
        path = find_weights("vip", model_name, weights) if pretrained else None
        super().__init__(
            model_name, in_keys=in_keys or ["pixels"], out_keys=out_keys, size=size, stack_images=stack_images,
            download=False, tensor_pixels_keys=tensor_pixels_keys,
        )
        self.weights_path = path
        if path is not None:
            load_convnet_weights(_network(self).convnet, path, "vip")
        self.eval()  # a frozen encoder: batch-norm uses its statistics, not the batch's


EMBEDDINGS = {"r3m": R3MTransform, "vip": VIPTransform}
