"""What a served policy implements, and the metadata it announces at the handshake.

A policy object is shared by every client of a server, so whatever belongs to one episode
(the instruction, an observation history) lives in the *episode* object that ``reset``
returns; the server keeps one per client episode and hands it back to ``act``.

Example:
    >>> import numpy as np
    >>> class Hold(Policy):
    ...     metadata = PolicyMetadata(name="hold", observations={"qpos": ((7,), "float32")}, action_shape=(7,))
    ...     def act(self, obs, episode):
    ...         return {"actions": obs["qpos"][None]}  # a chunk of one action: stay where you are
    >>> policy = Hold()
    >>> policy.act_batch([{"qpos": np.zeros(7, np.float32)}] * 2, [policy.reset()] * 2)[1]["actions"].shape
    (1, 7)
"""
import dataclasses

import numpy as np


@dataclasses.dataclass(frozen=True)
class PolicyMetadata:
    """What a policy expects and returns; clients check it when they connect.

    Args:
        name: the policy's name.
        observations: observation name -> (shape, dtype) of one unbatched observation.
        action_shape: shape of one action.
        action_dtype: dtype of the actions.
        chunk_length: actions per prediction (action chunking); ``act`` returns
            ``chunk_length`` actions.
        takes_instruction: whether the policy needs a language instruction.
        info: anything else worth telling clients (framework, checkpoint, ...).
    """

    name: str
    observations: dict
    action_shape: tuple
    action_dtype: str = "float32"
    chunk_length: int = 1
    takes_instruction: bool = False
    info: dict = dataclasses.field(default_factory=dict)

    def __post_init__(self):
        observations = {key: (tuple(shape), np.dtype(dtype).name) for key, (shape, dtype) in self.observations.items()}
        object.__setattr__(self, "observations", observations)
        object.__setattr__(self, "action_shape", tuple(self.action_shape))
        object.__setattr__(self, "action_dtype", np.dtype(self.action_dtype).name)

    def to_wire(self):
        """A msgpack-able dict.

        Example:
            >>> PolicyMetadata.from_wire(PolicyMetadata("p", {"x": ((2,), "uint8")}, (3,)).to_wire()).observations
            {'x': ((2,), 'uint8')}
        """
        wire = dataclasses.asdict(self)
        wire["observations"] = {key: {"shape": list(shape), "dtype": dtype} for key, (shape, dtype) in self.observations.items()}
        wire["action_shape"] = list(self.action_shape)
        return wire

    @classmethod
    def from_wire(cls, wire):
        observations = {key: (spec["shape"], spec["dtype"]) for key, spec in wire["observations"].items()}
        return cls(**{**wire, "observations": observations})


class Policy:
    """Base class of served policies.

    Subclasses set ``metadata`` (an attribute or property, read after ``initialize``) and
    implement ``act``; they import their heavy dependencies (jax, transformers) inside
    methods, never at module level, so the server stays importable everywhere.
    """

    metadata: PolicyMetadata
    #: other names of the constructor's keywords (alias -> parameter), such as another
    #: project's; ``start-server --kwargs`` accepts either (see ``policies.make_policy``)
    keyword_aliases: dict = {}

    def initialize(self):
        """Load weights and compile. Runs after the server's socket is up, in a thread."""

    def reset(self, instruction=None):
        """Start an episode; returns the per-episode state that ``act`` receives."""
        return {"instruction": instruction}

    def act(self, obs, episode):
        """Actions for one observation.

        Args:
            obs: observation name -> unbatched array, as declared in ``metadata``
                (read-only views of the request, valid during this call: copy what you
                keep across calls).
            episode: what ``reset`` returned for this client's episode.

        Returns:
            dict with ``"actions"`` of shape ``(chunk_length, *action_shape)`` and optionally
            other arrays.
        """
        raise NotImplementedError

    def act_batch(self, observations, episodes):
        """Actions for observations from several clients; override to run them as one batch."""
        return [self.act(obs, episode) for obs, episode in zip(observations, episodes)]
