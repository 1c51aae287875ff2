"""The MLP policy computed with JAX: the policy of the torch-free isolation test.

Same weights and function as ``MLPPolicy`` (so a torch-side test can check every action it
returns), jit-compiled in ``initialize`` and vmapped over the batch in ``act_batch``.

Example:
    >>> import numpy as np
    >>> policy = JaxMLPPolicy(obs_dim=3, action_dim=2)
    >>> policy.initialize()  # doctest: +SKIP
    >>> policy.act({"observation": np.zeros(3, np.float32)}, policy.reset())["actions"].shape  # doctest: +SKIP
    (1, 2)
"""
import numpy as np

from agenthive.serving.policies.mlp import MLPPolicy


class JaxMLPPolicy(MLPPolicy):
    """``MLPPolicy`` on JAX (CPU or accelerator); takes the same arguments."""

    def initialize(self):
        import jax
        import jax.numpy as jnp

        weights = [(jnp.asarray(w), jnp.asarray(b)) for w, b in self.weights]

        def forward(x):
            for weight, bias in weights:
                x = jnp.tanh(x @ weight + bias)
            return x

        self._forward = jax.jit(forward)
        self._forward(jnp.zeros((1, self.obs_dim), jnp.float32)).block_until_ready()  # compile now, not on the first request
        self.metadata = type(self.metadata)(**{**self.metadata.__dict__, "info": {**self.metadata.info, "framework": f"jax {jax.__version__}"}})

    def forward(self, states):
        return np.asarray(self._forward(states)).reshape(len(states), self.chunk_length, self.action_dim)
