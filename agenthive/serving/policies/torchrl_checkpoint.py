"""Serves a saved TorchRL/TensorDict policy module (``torch.save(module, path)``).

Loading a ``torch.save`` file unpickles it, which runs code from the file: serve only
checkpoints you trust. Nothing is unpickled from the network; requests use the wire protocol.

Example:
    >>> policy = TorchRLCheckpointPolicy("policy.pt", observations={"observation": [[21], "float32"]})
    >>> policy.initialize()  # doctest: +SKIP
"""
import warnings

import numpy as np

from agenthive.serving.policy import Policy, PolicyMetadata


class TorchRLCheckpointPolicy(Policy):
    """A ``TensorDictModule`` saved with ``torch.save``, fed TensorDicts of observations.

    Args:
        path: the checkpoint file.
        observations: observation key -> [shape, dtype] the module reads; keys may be
            nested with ``"."`` (``"pixels.top_cam"``).
        action_key: the key the module writes its action to.
        device: torch device to run on.
        num_threads: torch intra-op threads (None leaves torch's default).
        seed: seeds torch's generator at start, for a module that samples (exploration
            noise, a stochastic policy): the same requests in the same order then get the
            same actions. None: not seeded.
    """

    def __init__(self, path, observations, action_key="action", device="cpu", num_threads=None, seed=None):
        self.path, self.action_key, self.device, self.num_threads, self.seed = path, action_key, device, num_threads, seed
        self.observations = {key: (tuple(shape), dtype) for key, (shape, dtype) in observations.items()}
        self.module = None

    def initialize(self):
        import torch

        if self.seed is not None:
            torch.manual_seed(self.seed)
        self.module = torch.load(self.path, map_location=self.device, weights_only=False).eval()
        zeros = {key: np.zeros((1, *shape), dtype) for key, (shape, dtype) in self.observations.items()}
        action = self._forward(zeros)[0]
        self.metadata = PolicyMetadata(
            name=f"{type(self.module).__name__} from {self.path}", observations=self.observations, action_shape=action.shape[1:],
            action_dtype=action.dtype.name, chunk_length=1, info={"framework": f"torch {torch.__version__}"},
        )

    def _forward(self, batch):
        """observation key -> (batch, ...) arrays in; (batch, 1, *action_shape) actions out."""
        import torch
        from tensordict import TensorDict

        # per calling thread: initialize() and act() run in different threads of the server
        if self.num_threads is not None and torch.get_num_threads() != self.num_threads:
            torch.set_num_threads(self.num_threads)
        td = TensorDict(batch_size=[len(next(iter(batch.values())))], device=self.device)
        with warnings.catch_warnings():  # the request's arrays are read-only; the module only reads them
            warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
            for key, value in batch.items():
                td.set(tuple(key.split(".")), torch.from_numpy(value).to(self.device))
        with torch.no_grad():
            action = self.module(td).get(self.action_key)
        return action.cpu().numpy()[:, None]  # a chunk of one action

    def act_batch(self, observations, episodes):
        return {"actions": self._forward({key: observations[key] for key in self.observations})}
