"""TensorDict modules (torch side): ``RemotePolicyModule`` queries a policy server; ``VLAKeys``
maps torchrl's canonical VLA keys onto its observations."""
from agenthive.modules.remote_policy import RemotePolicyModule
from agenthive.modules.vla_keys import VLAKeys

__all__ = ["RemotePolicyModule", "VLAKeys"]
