"""TensorDict modules (torch side): ``RemotePolicyModule`` queries a policy server."""
from agenthive.modules.remote_policy import RemotePolicyModule

__all__ = ["RemotePolicyModule"]
