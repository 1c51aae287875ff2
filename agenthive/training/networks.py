"""The networks of ``scripts/train.py``: a tanh-Gaussian actor and Q/V critics over concatenated observation keys."""
from __future__ import annotations

from tensordict.nn import TensorDictModule, TensorDictSequential
from tensordict.nn.distributions import NormalParamExtractor
from torch import nn
from torchrl.modules import MLP, ProbabilisticActor, TanhNormal, ValueOperator


def make_actor(in_keys: list[str], obs_dim: int, action_spec, hidden: list[int]) -> ProbabilisticActor:
    """A tanh-Gaussian policy of ``in_keys`` (its MLP concatenates them); outside an exploration context it acts deterministically (tanh of the mean)."""
    mlp = MLP(in_features=obs_dim, out_features=2 * action_spec.shape[-1], num_cells=hidden, activation_class=nn.ReLU)
    net = TensorDictSequential(
        TensorDictModule(mlp, in_keys=in_keys, out_keys=["params"]),
        TensorDictModule(NormalParamExtractor(), in_keys=["params"], out_keys=["loc", "scale"]),
        selected_out_keys=["loc", "scale"],
    )
    return ProbabilisticActor(
        net,
        in_keys=["loc", "scale"],
        spec=action_spec,
        distribution_class=TanhNormal,
        distribution_kwargs={"low": action_spec.space.low, "high": action_spec.space.high},
        return_log_prob=True,
    )


def make_eval_policy(env=None, *, in_keys, obs_dim, action_spec, hidden):
    """Evaluator's policy_factory: the same architecture, built in the evaluation process (``env`` unused)."""
    return make_actor(in_keys, obs_dim, action_spec, hidden)


def make_critic(in_keys: list[str], in_dim: int, hidden: list[int]) -> ValueOperator:
    """Q(s, a) for SAC (in_keys: the policy's and action), V(s) for PPO (the policy's only)."""
    return ValueOperator(MLP(in_features=in_dim, out_features=1, num_cells=hidden, activation_class=nn.ReLU), in_keys=in_keys)
