"""A small numpy MLP policy: the reference the JAX policy and the tests compare against.

Its weights come from a seeded numpy generator, so any process (one with torch, one with
JAX only) can rebuild exactly the same function. Extra uint8 image inputs can be declared
to exercise the image path of the wire; the MLP reads only the state.

Example:
    >>> import numpy as np
    >>> policy = MLPPolicy(obs_dim=3, action_dim=2, chunk_length=4)
    >>> policy.act({"observation": np.zeros(3, np.float32)}, policy.reset())["actions"].shape
    (4, 2)
"""
import numpy as np

from agenthive.serving.policy import Policy, PolicyMetadata


def mlp_weights(obs_dim, action_dim, chunk_length=1, hidden=(64,), seed=0):
    """The (weight, bias) pairs of the MLP, from ``numpy.random.default_rng(seed)``."""
    rng = np.random.default_rng(seed)
    sizes = [obs_dim, *hidden, chunk_length * action_dim]
    return [
        (rng.normal(0, 1 / np.sqrt(fan_in), (fan_in, fan_out)).astype(np.float32), rng.normal(0, 0.1, fan_out).astype(np.float32))
        for fan_in, fan_out in zip(sizes[:-1], sizes[1:])
    ]


def mlp_forward(weights, x):
    """tanh MLP; x is (batch, obs_dim), the result (batch, chunk_length * action_dim) in [-1, 1]."""
    for weight, bias in weights:
        x = np.tanh(x @ weight + bias)
    return x


class MLPPolicy(Policy):
    """Maps one state observation to a chunk of actions in [-1, 1].

    Args:
        obs_dim: size of the state observation.
        action_dim: size of one action.
        chunk_length: actions per prediction.
        hidden: hidden layer sizes.
        seed: seed of the weights (see ``mlp_weights``).
        obs_key: name of the state observation.
        images: optional image name -> [H, W, C] of uint8 images the policy also accepts.
    """

    def __init__(self, obs_dim, action_dim, chunk_length=1, hidden=(64,), seed=0, obs_key="observation", images=None):
        self.obs_dim, self.action_dim, self.chunk_length = obs_dim, action_dim, chunk_length
        self.hidden, self.seed, self.obs_key = tuple(hidden), seed, obs_key
        observations = {obs_key: ((obs_dim,), "float32")}
        observations.update({name: (tuple(shape), "uint8") for name, shape in (images or {}).items()})
        self.metadata = PolicyMetadata(
            name=type(self).__name__, observations=observations, action_shape=(action_dim,), chunk_length=chunk_length,
            info={"seed": seed, "hidden": list(self.hidden)},
        )
        self.weights = mlp_weights(obs_dim, action_dim, chunk_length, self.hidden, seed)

    def forward(self, states):
        """(batch, obs_dim) float32 -> (batch, chunk_length, action_dim)."""
        return mlp_forward(self.weights, states).reshape(len(states), self.chunk_length, self.action_dim)

    def act_batch(self, observations, episodes):
        return {"actions": self.forward(observations[self.obs_key])}
