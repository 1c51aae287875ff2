"""One update step per algorithm: what ``scripts/train.py`` does with each collected batch.

``make_algorithm`` returns a :class:`SAC` or a :class:`PPO`: torchrl's loss module, its Adam
optimizer and ``update(batch, frames)``, the gradient steps of one batch, which returns the
scalars to log. A loss is the sum of its ``terms``; a new term (a teacher's, say) is one
more loss output named there.
"""
from __future__ import annotations

import torch
from torch import nn
from torchrl.objectives import ClipPPOLoss, SACLoss, SoftUpdate
from torchrl.objectives.value import GAE

from agenthive.training.networks import make_critic
from agenthive.training.teacher import teacher_coefficient, teacher_loss


class _Algorithm:
    terms: tuple[str, ...] = ()  # the loss outputs summed into the loss that is minimised
    max_grad_norm: float | None = None

    def _step(self, losses) -> None:
        total = sum(losses[term] for term in self.terms)
        self.optimizer.zero_grad()
        total.backward()
        if self.max_grad_norm is not None:
            nn.utils.clip_grad_norm_(self.loss.parameters(), self.max_grad_norm)
        self.optimizer.step()

    def state_dict(self) -> dict:
        """What a checkpoint keeps of the algorithm: ``{"loss": ..., "optimizer": ...}``."""
        return {"loss": self.loss.state_dict(), "optimizer": self.optimizer.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.loss.load_state_dict(state["loss"])
        self.optimizer.load_state_dict(state["optimizer"])


class SAC(_Algorithm):
    """Off-policy: each batch goes to the replay buffer; ``utd_ratio`` gradient steps per frame once past ``init_random_frames``."""

    terms = ("loss_actor", "loss_qvalue", "loss_alpha")
    on_policy = False

    def __init__(self, args, actor, *, in_keys, obs_dim, action_spec, hidden, device, replay_buffer):
        critic = make_critic([*in_keys, "action"], obs_dim + action_spec.shape[-1], hidden).to(device)
        self.loss = SACLoss(actor, critic, num_qvalue_nets=2, loss_function="l2", delay_qvalue=True, alpha_init=1.0, action_spec=action_spec)
        self.loss.make_value_estimator(gamma=args.gamma)
        self.target_update = SoftUpdate(self.loss, tau=args.tau)
        self.optimizer = torch.optim.Adam(self.loss.parameters(), lr=args.lr)
        self.replay_buffer, self.device = replay_buffer, device
        self.utd_ratio, self.init_random_frames = args.utd_ratio, args.init_random_frames

    def update(self, batch, frames: int) -> dict[str, float]:
        self.replay_buffer.extend(batch.reshape(-1))
        updates = int(batch.numel() * self.utd_ratio) if frames >= self.init_random_frames else 0
        for _ in range(updates):
            losses = self.loss(self.replay_buffer.sample().to(self.device))
            self._step(losses)
            self.target_update.step()
        return {"alpha": losses["alpha"].item(), "loss_qvalue": losses["loss_qvalue"].item()} if updates else {}


class PPO(_Algorithm):
    """On-policy: GAE advantages of the batch just collected, then ``ppo_epochs`` passes over it in minibatches."""

    terms = ("loss_objective", "loss_critic", "loss_entropy")
    on_policy = True

    def __init__(self, args, actor, *, in_keys, obs_dim, action_spec, hidden, device, replay_buffer=None, teacher=None):
        critic = make_critic(in_keys, obs_dim, hidden).to(device)
        self.actor, self.teacher, self.args = actor, teacher, args
        if teacher is not None:  # agenthive.training.teacher: one more term, coef * L(student, teacher)
            self.terms = (*self.terms, "loss_teacher")
        self.loss = ClipPPOLoss(actor, critic, clip_epsilon=args.clip_epsilon, entropy_coeff=args.entropy_coef, normalize_advantage=True)
        self.advantage = GAE(gamma=args.gamma, lmbda=args.gae_lambda, value_network=critic, average_gae=False)
        self.optimizer = torch.optim.Adam(self.loss.parameters(), lr=args.lr)
        self.replay_buffer, self.device = None, device
        self.epochs, self.minibatch_size, self.max_grad_norm = args.ppo_epochs, args.minibatch_size, args.max_grad_norm

    def update(self, batch, frames: int) -> dict[str, float]:
        with torch.no_grad():
            data = self.advantage(batch.to(self.device)).reshape(-1)
        if self.teacher is not None:
            self.teacher.new_batch(data.numel(), self.device)  # its answers are kept across the epochs
            start = frames - batch.numel()  # annealed by the frames before this batch: the first batch has the full weight
            coef = teacher_coefficient(self.args.teacher_coef, self.args.teacher_anneal, start, self.args.total_frames)
        for _ in range(self.epochs):
            for index in torch.randperm(data.numel(), device=self.device).split(self.minibatch_size):
                minibatch = data[index]
                losses = self.loss(minibatch)
                if self.teacher is not None:
                    target = self.teacher.actions(data, index)
                    losses["loss_teacher"] = coef * teacher_loss(self.actor, minibatch, target, self.args.teacher_loss)
                self._step(losses)
        logged = {"loss_critic": losses["loss_critic"].item()}
        if self.teacher is not None:
            logged.update(loss_teacher=losses["loss_teacher"].item(), teacher_coef=coef, teacher_requests=self.teacher.requests,
                          teacher_request_s=self.teacher.request_seconds)  # totals so far
        return logged


ALGORITHMS = {"sac": SAC, "ppo": PPO}


def make_algorithm(args, actor, **kwargs) -> _Algorithm:
    """``ALGORITHMS[args.algo]`` over ``actor``; ``kwargs``: ``in_keys``, ``obs_dim``, ``action_spec``, ``hidden``, ``device``, ``replay_buffer``, and for PPO ``teacher``."""
    if args.algo not in ALGORITHMS:
        raise SystemExit(f"--algo {args.algo!r}: expected one of {', '.join(ALGORITHMS)}")
    return ALGORITHMS[args.algo](args, actor, **kwargs)
