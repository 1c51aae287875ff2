"""Octo (JAX) as a served policy: language tasks, observation history, unnormalized action chunks.

The server does what Octo's own gym wrappers do around ``OctoModel.sample_actions``: it
resizes each camera image to the model's input size (Lanczos, antialiased, rounded to
uint8, as ``ResizeImageWrapper`` and Octo's dataset conversion), normalizes proprio with the
dataset statistics (``NormalizeProprio``), keeps each client episode's last ``window``
observations with a padding mask (``HistoryWrapper``/``stack_and_pad``: the first
observation fills the window until it is full), and unnormalizes the actions with the
statistics of ``unnorm_key``. Clients send images at ``image_size`` and say which of their
cameras feeds which of the model's image inputs (``image_primary``, ``image_wrist``, ...)
through ``RemotePolicyModule``'s ``in_keys``.

Keyword names are those of the ``agents`` policy-server project: ``checkpoint_path``,
``checkpoint_step``, ``horizon`` (its name for the history window) and ``unnorm_key`` (a
dataset name, or a list of keys into the statistics, ``[]`` for a checkpoint whose
statistics hold one dataset at the top level).

Example:
    >>> policy = OctoPolicy("hf://rail-berkeley/octo-small-1.5", window=2, unnorm_key="bridge_dataset", image_size=(224, 224))
    >>> policy.initialize()  # doctest: +SKIP
"""
import collections
import logging

import numpy as np

from agenthive.serving.policy import Policy, PolicyMetadata

logger = logging.getLogger(__name__)


class OctoPolicy(Policy):
    """Serves an Octo model; each client episode keeps its own observation history.

    Args:
        checkpoint_path: checkpoint folder or ``hf://`` id, as for ``OctoModel.load_pretrained``.
        checkpoint_step: checkpoint step (None: the latest).
        window: observation history length fed to the model (Octo's ``window_size``); at
            most the model's ``max_horizon``.
        unnorm_key: whose action statistics unnormalize the actions: a dataset name, a list
            of keys into ``dataset_statistics`` (``[]``: its top level), or None when the
            statistics hold a single dataset.
        image_size: (height, width) of the images clients send, for every camera, or a dict
            image key -> (height, width); None: the model's own input size (no resizing).
        seed: seed of the sampling RNG (diffusion heads sample; L1/MSE heads do not).
        compile_batch_sizes: batch sizes compiled while loading, before clients are served
            (a batch is padded to the next power of two; JAX compiles each size once, on first
            use, which stalls the clients waiting for it).

    ``start-server`` also takes ``horizon`` (the ``agents`` project's name) for ``window``, and
    this adapter's former names ``checkpoint`` and ``step``.
    """

    keyword_aliases = {"horizon": "window", "checkpoint": "checkpoint_path", "step": "checkpoint_step"}

    def __init__(self, checkpoint_path, checkpoint_step=None, window=2, unnorm_key=None, image_size=None, seed=0, compile_batch_sizes=(1,)):
        if not isinstance(window, int) or window < 1:
            raise ValueError(f"window={window!r}: expected a positive number of observations")
        self.checkpoint_path, self.checkpoint_step, self.window = checkpoint_path, checkpoint_step, window
        if not compile_batch_sizes or any(not isinstance(size, int) or size < 1 for size in compile_batch_sizes):
            raise ValueError(f"compile_batch_sizes={compile_batch_sizes!r}: expected positive batch sizes, such as [1, 2, 4, 8]")
        self.unnorm_key, self.image_size, self.seed, self.compile_batch_sizes = unnorm_key, image_size, seed, compile_batch_sizes
        self.model = None

    def _load_model(self):
        from octo.model.octo_model import OctoModel

        return OctoModel.load_pretrained(self.checkpoint_path, self.checkpoint_step)

    def initialize(self):
        import jax

        self.model = self._load_model()
        example = self.model.example_batch["observation"]
        max_horizon = self.model.config["model"]["max_horizon"]
        if self.window > max_horizon:
            raise ValueError(f"window={self.window}: this checkpoint's positional embeddings cover at most max_horizon={max_horizon} observations")
        trained_window = np.shape(example["timestep_pad_mask"])[1]
        if self.window > trained_window:
            logger.warning("window=%d exceeds the window of %d the model was trained with", self.window, trained_window)
        self._image_keys = sorted(key for key in example if key.startswith("image_"))
        self._model_sizes = {key: tuple(np.shape(example[key])[2:4]) for key in self._image_keys}
        self._client_sizes = _client_sizes(self.image_size, self._model_sizes)
        statistics, self._statistics_name = select_statistics(self.model.dataset_statistics, self.unnorm_key)
        self._action_statistics = statistics["action"]
        self._proprio_statistics = statistics.get("proprio") if "proprio" in example else None
        observations = {key: ((*self._client_sizes[key], 3), "uint8") for key in self._image_keys}
        if "proprio" in example:
            observations["proprio"] = (np.shape(example["proprio"])[2:], "float32")
        self._rng = jax.random.PRNGKey(self.seed)
        self.metadata = PolicyMetadata(
            name=f"octo:{self.checkpoint_path}",
            observations=observations,
            action_shape=(len(self._action_statistics["mean"]),),
            chunk_length=self.model.config["model"]["heads"]["action"]["kwargs"]["action_horizon"],
            takes_instruction=True,
            info={
                "framework": f"jax {jax.__version__}",
                "window": self.window,
                "unnorm_key": self._statistics_name,
                "model_image_sizes": {key: list(size) for key, size in self._model_sizes.items()},
            },
        )
        warm_up = {key: np.zeros(shape, dtype) for key, (shape, dtype) in self.metadata.observations.items()}
        for size in self.compile_batch_sizes:  # compiles sample_actions for these batch sizes
            self.act_batch({key: np.stack([value] * size) for key, value in warm_up.items()}, [self.reset("") for _ in range(size)])

    def reset(self, instruction=None):
        return {"instruction": instruction, "history": collections.deque(maxlen=self.window), "seen": 0}

    def act_batch(self, observations, episodes):
        import jax

        frames = self._preprocess(observations)
        for i, episode in enumerate(episodes):
            frame = {key: value[i] for key, value in frames.items()}
            if not episode["history"]:  # Octo's HistoryWrapper fills the window with the first observation
                episode["history"].extend([frame] * self.window)
            else:
                episode["history"].append(frame)
            episode["seen"] += 1
        batch = _pad_batch([_stack_window(episode) for episode in episodes])
        texts = [episode["instruction"] or "" for episode in episodes]
        tasks = self.model.create_tasks(texts=texts + [texts[-1]] * (len(batch["timestep_pad_mask"]) - len(texts)))
        self._rng, key = jax.random.split(self._rng)
        actions = self.model.sample_actions(batch, tasks, unnormalization_statistics=self._action_statistics, rng=key)
        return {"actions": np.asarray(actions, dtype=np.float32)[: len(episodes)]}

    def _preprocess(self, observations):
        """The batch's images at the model's size and its normalized proprio (copies: requests' buffers go away)."""
        import tensorflow as tf

        frames = {}
        for key in self._image_keys:
            images = np.array(observations[key])
            if self._client_sizes[key] != self._model_sizes[key]:
                resized = tf.image.resize(images, self._model_sizes[key], method="lanczos3", antialias=True)
                images = tf.cast(tf.clip_by_value(tf.round(resized), 0, 255), tf.uint8).numpy()
            frames[key] = images
        if "proprio" in self.metadata.observations:
            proprio = np.array(observations["proprio"], dtype=np.float32)
            if self._proprio_statistics is not None:
                stats = self._proprio_statistics
                mask = np.asarray(stats.get("mask", np.ones_like(stats["mean"], dtype=bool)))
                proprio = np.where(mask, (proprio - stats["mean"]) / (stats["std"] + 1e-8), proprio).astype(np.float32)
            frames["proprio"] = proprio
        return frames


def select_statistics(dataset_statistics, unnorm_key):
    """The statistics (with an ``"action"`` entry) that ``unnorm_key`` names, and a label for it.

    Example:
        >>> stats = {"bridge": {"action": {"mean": [0.0]}}, "fractal": {"action": {"mean": [1.0]}}}
        >>> select_statistics(stats, ["fractal"])[0]["action"]["mean"]
        [1.0]
        >>> select_statistics({"action": {"mean": [2.0]}}, [])[1]
        '[]'
    """
    path = [] if unnorm_key is None else [unnorm_key] if isinstance(unnorm_key, str) else list(unnorm_key)
    if unnorm_key is None and "action" not in dataset_statistics and len(dataset_statistics) == 1:
        path = list(dataset_statistics)
    node = dataset_statistics
    for depth, key in enumerate(path):
        if not isinstance(node, dict) or key not in node:
            options = sorted(node) if isinstance(node, dict) else []
            raise ValueError(f"unnorm_key={unnorm_key!r}: the checkpoint's statistics have no {key!r} at {path[:depth]}; expected one of {options}")
        node = node[key]
    if not isinstance(node, dict) or "action" not in node:
        options = sorted(key for key, value in dataset_statistics.items() if isinstance(value, dict) and "action" in value)
        raise ValueError(f"unnorm_key={unnorm_key!r}: names no action statistics; this checkpoint has them for {options} (pass one of them)")
    return node, (path[0] if len(path) == 1 else repr(path))


def _client_sizes(image_size, model_sizes):
    if image_size is None:
        return dict(model_sizes)
    if isinstance(image_size, dict):
        unknown = sorted(set(image_size) - set(model_sizes))
        if unknown:
            raise ValueError(f"image_size names {unknown}: this model's image inputs are {sorted(model_sizes)}")
        return {key: tuple(image_size.get(key, size)) for key, size in model_sizes.items()}
    if len(image_size) != 2:
        raise ValueError(f"image_size={image_size!r}: expected (height, width) or a dict image key -> (height, width)")
    return {key: tuple(image_size) for key in model_sizes}


def _stack_window(episode):
    """Octo's ``stack_and_pad``: the window oldest first, padding (repeats of the first frame) masked."""
    history = list(episode["history"])
    stacked = {key: np.stack([frame[key] for frame in history]) for key in history[0]}
    stacked["timestep_pad_mask"] = np.arange(len(history)) >= len(history) - min(episode["seen"], len(history))
    return stacked


def _pad_batch(windows):
    """Stacks the clients' windows, padded to a power of two by repeating the last one: jax compiles once per size."""
    size = 1 << (len(windows) - 1).bit_length()
    windows = windows + [windows[-1]] * (size - len(windows))
    return {key: np.stack([window[key] for window in windows]) for key in windows[0]}
