"""A served teacher policy in PPO's loss: VLA-guided RL in the manner of Refined Policy Distillation (RPD).

``scripts/train.py --algo ppo --teacher HOST:PORT`` adds one more named term to PPO's loss,
``loss_teacher = coef(frames) * L(student, teacher action)``:

* ``mse`` / ``l1``: between the student's deterministic action (the tanh of its Gaussian
  mean, scaled to the action bounds) and the teacher's;
* ``nll``: minus the student's log-likelihood of the teacher's action (behaviour cloning).

``coef`` is ``--teacher-coef`` annealed over ``--total-frames``: ``none`` (constant),
``linear`` (down to 0) or ``cosine`` (half a cosine down to 0).

The teacher is a policy served by ``python -m agenthive start-server`` (agenthive's own
protocol), queried in the update through :class:`agenthive.serving.PolicyClient`: one
request per minibatch, with the observations the teacher announces, of which the first
action of each chunk is used. Unlike RPD, which asks again for every minibatch of every
epoch, the teacher's answer for each transition of the batch is cached across the PPO
epochs: the teacher is asked once per transition, which spares a slow server
``ppo_epochs - 1`` of every ``ppo_epochs`` requests (the observations do not change, so a
deterministic teacher would answer the same).
"""
from __future__ import annotations

import math

import numpy as np
import torch


ANNEALS = ("none", "linear", "cosine")
LOSSES = ("mse", "l1", "nll")


class TeacherLost(RuntimeError):
    """The teacher stopped answering during training."""


def parse_address(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise SystemExit(f"--teacher {address!r}: expected HOST:PORT of a policy served by `python -m agenthive start-server`")
    return host, int(port)


def check_teacher_args(args) -> None:
    """Refuses teacher flags that cannot run, saying why."""
    if not args.teacher:
        return
    if args.algo != "ppo":
        raise SystemExit(f"--teacher guides PPO's update (RPD); --algo {args.algo!r} is not supported: use --algo ppo.")
    parse_address(args.teacher)
    if args.teacher_anneal not in ANNEALS:
        raise SystemExit(f"--teacher-anneal {args.teacher_anneal!r}: expected one of {', '.join(ANNEALS)}")
    if args.teacher_loss not in LOSSES:
        raise SystemExit(f"--teacher-loss {args.teacher_loss!r}: expected one of {', '.join(LOSSES)}")
    if args.teacher_timeout <= 0:
        raise SystemExit(f"--teacher-timeout {args.teacher_timeout}: expected seconds > 0")
    if args.teacher_coef < 0:
        raise SystemExit(f"--teacher-coef {args.teacher_coef}: expected a weight >= 0")


def teacher_coefficient(coef: float, anneal: str, frames: int, total_frames: int) -> float:
    """``coef`` at ``frames`` of ``total_frames``, annealed by ``anneal`` (none, linear or cosine) towards 0."""
    progress = min(max(frames / total_frames, 0.0), 1.0)
    if anneal == "linear":
        return coef * (1.0 - progress)
    if anneal == "cosine":
        return coef * 0.5 * (1.0 + math.cos(math.pi * progress))
    return coef


class Teacher:
    """A served policy's actions for the transitions of a batch, cached across PPO epochs.

    Args:
        address: ``HOST:PORT`` of the policy server.
        observation_spec, action_spec: the env's, checked against what the teacher announces.
        timeout: seconds to wait for each reply; a teacher silent that long is lost.
        instruction: the language instruction, for a teacher that takes one (a VLA).

    Raises:
        SystemExit: nothing answers at ``address``, or the teacher's observations or action
            do not match the env's.
    """

    def __init__(self, address: str, *, observation_spec, action_spec, timeout: float = 30.0, instruction: str = ""):
        self.address, self.instruction = address, instruction or None
        from agenthive.serving.client import PolicyClient  # here: training without a teacher needs no pyzmq

        host, port = parse_address(address)
        try:
            self.client = PolicyClient(host, port, timeout=timeout, ready_timeout=timeout)
        except Exception as error:  # noqa: BLE001  (any failure to connect is reported the same way)
            raise SystemExit(f"--teacher {address}: no policy server answered there ({error}). "
                             f"Start one with `python -m agenthive start-server ... --port {port}`.") from None
        metadata = self.client.metadata
        missing = sorted(set(metadata.observations) - set(observation_spec.keys()))
        action_dim = action_spec.shape[-1]
        if missing or tuple(metadata.action_shape) != (action_dim,):
            self.client.close()
            raise SystemExit(f"--teacher {address}: policy {metadata.name!r} reads {dict(metadata.observations)} and acts "
                             f"{tuple(metadata.action_shape)}; the env has no {missing} observations "
                             f"or acts ({action_dim},). The teacher's observations must be the env's keys.")
        if metadata.takes_instruction and not instruction:
            self.client.close()
            raise SystemExit(f"--teacher {address}: policy {metadata.name!r} takes a language instruction: pass --teacher-instruction.")
        self.in_keys = list(metadata.observations)
        self.low, self.high = action_spec.space.low, action_spec.space.high
        self.cache = self.known = None
        self.success = None  # its evaluation (train.py: evaluate_teacher at the start)

    def new_batch(self, size: int, device) -> None:
        """Forgets the previous batch's answers (a new batch of ``size`` transitions follows)."""
        self.cache = torch.zeros(size, *self.low.shape, device=device)
        self.known = torch.zeros(size, dtype=torch.bool, device=device)

    def actions(self, data, index: torch.Tensor) -> torch.Tensor:
        """The teacher's actions for ``data[index]`` (a minibatch of the batch), asking only for those not asked yet."""
        ask = index[~self.known[index]]
        if ask.numel():
            obs = {key: data[key][ask].cpu().numpy() for key in self.in_keys}
            try:
                reply = self.client.act(obs, instruction=self.instruction)
            except Exception as error:  # noqa: BLE001  (a timeout, a dead server, a refused request: the run cannot go on)
                raise TeacherLost(f"the teacher at {self.address} stopped answering ({type(error).__name__}: {error})") from error
            first = np.asarray(reply["actions"])[:, 0]
            self.cache[ask] = torch.as_tensor(first, dtype=self.cache.dtype, device=self.cache.device)
            self.known[ask] = True
        return self.cache[index]

    def close(self) -> None:
        self.client.close()


def teacher_loss(actor, minibatch, target: torch.Tensor, kind: str) -> torch.Tensor:
    """``L`` between the student ``actor`` on ``minibatch`` and the teacher's actions ``target`` (mean over the minibatch)."""
    dist = actor.get_dist(minibatch.select(*actor.in_keys).clone())
    if kind == "nll":
        low, high = dist.low, dist.high
        margin = 1e-4 * (high - low)  # the tanh-Gaussian has no density on its bounds
        return -dist.log_prob(target.clamp(low + margin, high - margin)).mean()
    mean = dist.deterministic_sample
    error = (mean - target).abs() if kind == "l1" else (mean - target).pow(2)
    return error.sum(-1).mean()


def evaluate_teacher(address: str, env_config, episodes: int, *, seed: int = 0, timeout: float = 30.0, instruction: str = "") -> dict[str, float]:
    """The served teacher's success rates and mean return on ``episodes`` episodes of ``env_config`` (the student's evaluation rules)."""
    from agenthive.env_config import make_env
    from agenthive.evaluation.metrics import episode_records, run_episodes, success_rates
    from agenthive.modules import RemotePolicyModule

    host, port = parse_address(address)
    env = make_env(env_config)
    policy = RemotePolicyModule(host, port, timeout=timeout, instruction=instruction or None, observation_spec=env.observation_spec, action_spec=env.action_spec)
    try:
        records = episode_records(run_episodes(env, policy, episodes, seed=seed), env_config.success_steps)
    finally:
        policy.close()
        env.close()
    return {**success_rates(records), "return": sum(r["return"] for r in records) / max(len(records), 1)}
