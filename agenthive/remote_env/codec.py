"""How TorchRL specs and TensorDicts travel on the agenthive wire (``EnvServer`` <-> ``RemoteEnv``).

``agenthive.serving.wire`` carries nested maps of numpy arrays; this module turns TensorDicts
into such maps and back, and describes specs as plain maps, so that neither side ever
unpickles what the other sent. It imports torch, unlike ``wire``: only the environment side
needs it.

* A TensorDict is a map of its keys to arrays (its leaves) or to maps (nested TensorDicts);
  the batch size travels beside it. Arrays that arrive as frames become tensors that share
  the frame's memory: a camera image is not copied again after ZeroMQ received it.
* A spec is ``{"class": name, "shape": [...], "dtype": "float32", ...}`` with the fields
  its class needs (``low``/``high`` for ``Bounded``, scalars when uniform; ``n`` for
  ``Categorical`` and ``OneHot``; ``nvec`` for the multi- ones); a ``Composite`` has
  ``"entries"``. Other spec classes are refused with an error that names them.

Example:
    >>> from torchrl.data import Bounded, Composite, Unbounded
    >>> spec = Composite(obs=Unbounded((3,)), pixels=Bounded(0, 255, (2, 8, 8, 3), dtype=torch.uint8))
    >>> spec_from_wire(spec_to_wire(spec)) == spec
    True
    >>> td = tensordict_from_wire({"obs": np.ones(3, np.float32), "nested": {"flag": np.array([True])}}, [])
    >>> td["nested", "flag"], td["obs"].dtype
    (tensor([True]), torch.float32)
"""
import numpy as np
import torch
from tensordict import TensorDict, is_tensor_collection
from torchrl.data import Binary, Bounded, Categorical, Composite, MultiCategorical, MultiOneHot, OneHot, Unbounded

SPEC_NAMES = ("full_observation_spec", "full_action_spec", "full_state_spec", "full_reward_spec", "full_done_spec")
"""The specs an env server describes in its handshake, by their ``EnvBase`` attribute names."""

# checked in this order: subclasses before their bases
_SPEC_CLASSES = (Composite, Binary, MultiCategorical, Categorical, MultiOneHot, OneHot, Bounded, Unbounded)


def _dtype_name(dtype):
    return str(dtype).removeprefix("torch.")


def _torch_dtype(name):
    dtype = getattr(torch, name, None) if isinstance(name, str) else None
    if not isinstance(dtype, torch.dtype):
        raise ValueError(f"dtype {name!r} is not a torch dtype name such as 'float32'")
    return dtype


def numpy_dtype(dtype):
    """The numpy dtype of a torch dtype (what its tensors look like on the wire)."""
    return torch.empty(0, dtype=dtype).numpy().dtype


def _uniform(tensor):
    """A scalar when every element is the same (the usual case), else the array."""
    flat = tensor.reshape(-1)
    if flat.numel() and bool((flat == flat[0]).all()):
        return flat[0].item()
    return tensor.cpu().numpy()


def spec_to_wire(spec, key="spec"):
    """A msgpack-able description of a TorchRL spec.

    Raises:
        ValueError: the spec (or one of its entries, named by ``key``) is of a class that
            cannot be described.
    """
    wire = {"shape": list(spec.shape)}
    if isinstance(spec, Composite):
        wire["class"] = "Composite"
        wire["entries"] = {name: spec_to_wire(entry, f"{key}.{name}") for name, entry in spec.items()}
        return wire
    wire["dtype"] = _dtype_name(spec.dtype)
    if isinstance(spec, Binary):
        wire["class"] = "Binary"
    elif isinstance(spec, MultiCategorical):
        wire.update({"class": "MultiCategorical", "nvec": spec.nvec.cpu().numpy()})
    elif isinstance(spec, Categorical):
        wire.update({"class": "Categorical", "n": int(spec.n)})
    elif isinstance(spec, MultiOneHot):
        wire.update({"class": "MultiOneHot", "nvec": [int(n) for n in spec.nvec]})
    elif isinstance(spec, OneHot):
        wire.update({"class": "OneHot", "n": int(spec.n)})
    elif isinstance(spec, Bounded):
        wire.update({"class": "Bounded", "low": _uniform(spec.space.low), "high": _uniform(spec.space.high)})
    elif isinstance(spec, Unbounded):
        wire["class"] = "Unbounded"
    else:
        names = ", ".join(cls.__name__ for cls in _SPEC_CLASSES)
        raise ValueError(f"{key} is a {type(spec).__name__}, which cannot be served: expected one of {names}")
    return wire


def spec_from_wire(wire, device=None):
    """The TorchRL spec that ``spec_to_wire`` described, on ``device``."""
    kind, shape = wire["class"], torch.Size(wire["shape"])
    if kind == "Composite":
        entries = {name: spec_from_wire(entry, device) for name, entry in wire["entries"].items()}
        return Composite(entries, shape=shape, device=device)
    dtype = _torch_dtype(wire["dtype"])
    if kind == "Binary":
        return Binary(shape=shape, dtype=dtype, device=device)
    if kind == "MultiCategorical":
        return MultiCategorical(torch.as_tensor(wire["nvec"]), shape=shape, dtype=dtype, device=device)
    if kind == "Categorical":
        return Categorical(wire["n"], shape=shape, dtype=dtype, device=device)
    if kind == "MultiOneHot":
        return MultiOneHot(wire["nvec"], shape=shape, dtype=dtype, device=device)
    if kind == "OneHot":
        return OneHot(wire["n"], shape=shape, dtype=dtype, device=device)
    if kind == "Bounded":
        low, high = (torch.tensor(wire[end]) if isinstance(wire[end], np.ndarray) else wire[end] for end in ("low", "high"))
        return Bounded(low, high, shape=shape, dtype=dtype, device=device)
    if kind == "Unbounded":
        return Unbounded(shape=shape, dtype=dtype, device=device)
    raise ValueError(f"spec class {kind!r} is not one this side knows: expected one of {[cls.__name__ for cls in _SPEC_CLASSES]}")


def tensordict_to_wire(td, keys=None):
    """A TensorDict (or the given leaf ``keys`` of it) as nested maps of numpy arrays (no copies on the CPU)."""
    if keys is not None:
        td = td.select(*keys)
    out = {}
    for key, value in td.items():
        if is_tensor_collection(value):
            out[key] = tensordict_to_wire(value)
        elif value.device.type == "cpu" and not value.requires_grad:
            out[key] = value.numpy()
        else:
            out[key] = value.detach().cpu().numpy()
    return out


def tensordict_from_wire(entries, batch_size, device=None):
    """A TensorDict of nested maps of arrays; arrays received as frames are not copied.

    Arrays that are read-only (small ones carried inside the header) are copied: a few
    hundred bytes, and torch refuses to wrap read-only memory.
    """
    source = {}
    for key, value in entries.items():
        if isinstance(value, dict):
            source[key] = tensordict_from_wire(value, batch_size)
        else:
            source[key] = torch.from_numpy(value if value.flags.writeable else value.copy())
    td = TensorDict._new_unsafe(source, batch_size=torch.Size(batch_size), device=torch.device("cpu"))
    return td if device is None or torch.device(device).type == "cpu" else td.to(device)


def leaf_entries(entries, prefix=()):
    """``(key tuple, value)`` of every leaf of nested maps."""
    for key, value in entries.items():
        if isinstance(value, dict):
            yield from leaf_entries(value, (*prefix, key))
        else:
            yield (*prefix, key), value
