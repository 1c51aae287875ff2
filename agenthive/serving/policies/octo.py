"""Octo (JAX) as a served policy: observation history, language tasks, unnormalized chunks.

Octo checkpoints cannot be downloaded here, so the tests drive this adapter with a stand-in
model that has ``OctoModel``'s call signature; ``_load_model`` is the real loading code.

Example:
    >>> policy = OctoPolicy("hf://rail-berkeley/octo-small-1.5", window=2, unnorm_key="bridge_dataset")
    >>> policy.initialize()  # doctest: +SKIP
"""
import collections

import numpy as np

from agenthive.serving.policy import Policy, PolicyMetadata


class OctoPolicy(Policy):
    """Serves an Octo model; each client episode keeps its own observation history.

    Args:
        checkpoint: checkpoint path or ``hf://`` id, as for ``OctoModel.load_pretrained``.
        step: checkpoint step (None: the latest).
        window: observation history length fed to the model (Octo's ``window_size``).
        unnorm_key: dataset whose action statistics unnormalize the actions; may be omitted
            when the checkpoint has statistics for one dataset only.
        seed: seed of the sampling RNG.
    """

    keyword_aliases = {"checkpoint_path": "checkpoint", "checkpoint_step": "step", "horizon": "window"}  # the agents project's names

    def __init__(self, checkpoint, step=None, window=2, unnorm_key=None, seed=0):
        self.checkpoint, self.step, self.window, self.unnorm_key, self.seed = checkpoint, step, window, unnorm_key, seed
        self.model = None

    def _load_model(self):
        from octo.model.octo_model import OctoModel

        return OctoModel.load_pretrained(self.checkpoint, self.step)

    def initialize(self):
        import jax

        self.model = self._load_model()
        example = self.model.example_batch["observation"]
        self._keys = [key for key in example if key.startswith(("image_", "proprio"))]
        statistics = self.model.dataset_statistics
        if "action" not in statistics:  # one entry per training dataset
            if self.unnorm_key is None and len(statistics) == 1:
                self.unnorm_key = next(iter(statistics))
            if self.unnorm_key not in statistics:
                raise ValueError(f"unnorm_key={self.unnorm_key!r}: expected one of {sorted(statistics)}")
            statistics = statistics[self.unnorm_key]
        self._action_statistics = statistics["action"]
        horizon = self.model.config["model"]["heads"]["action"]["kwargs"]["action_horizon"]
        self._rng = jax.random.PRNGKey(self.seed)
        self.metadata = PolicyMetadata(
            name=f"octo:{self.checkpoint}",
            observations={key: (np.shape(example[key])[2:], np.asarray(example[key]).dtype) for key in self._keys},
            action_shape=(len(self._action_statistics["mean"]),),
            chunk_length=horizon,
            takes_instruction=True,
            info={"framework": f"jax {jax.__version__}", "window": self.window, "unnorm_key": self.unnorm_key},
        )

    def reset(self, instruction=None):
        return {"instruction": instruction, "history": collections.deque(maxlen=self.window)}

    def _stack_history(self, episode):
        """The window of observations, oldest first, left-padded by repeating the first one."""
        history = list(episode["history"])
        padding = self.window - len(history)
        frames = [history[0]] * padding + history
        stacked = {key: np.stack([frame[key] for frame in frames]) for key in self._keys}
        stacked["timestep_pad_mask"] = np.arange(self.window) >= padding
        return stacked

    def act_batch(self, observations, episodes):
        import jax

        for i, episode in enumerate(episodes):
            episode["history"].append({key: np.array(observations[key][i]) for key in self._keys})  # copies: the request's buffers go away
        windows = [self._stack_history(episode) for episode in episodes]
        batch = {key: np.stack([window[key] for window in windows]) for key in windows[0]}
        tasks = self.model.create_tasks(texts=[episode["instruction"] or "" for episode in episodes])
        self._rng, key = jax.random.split(self._rng)
        actions = self.model.sample_actions(batch, tasks, unnormalization_statistics=self._action_statistics, rng=key)
        return {"actions": np.asarray(actions, dtype=np.float32)}
