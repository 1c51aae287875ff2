"""Episodes of a policy, and what they count: return, length and three success rates."""
from __future__ import annotations

from tensordict import TensorDictBase
from torchrl.collectors import Collector
from torchrl.envs.utils import ExplorationType

SUCCESS_RATES = (("success_rate", "success"), ("success_end", "success_end"), ("success_any", "success_any"))
"""(summary name, episode record field) of each success rate."""


def episode_records(trajectories: TensorDictBase, success_steps: int) -> list[dict]:
    """Return, length, success, success at the last step and at any step of each episode of padded ``[episodes, T]`` trajectories.

    ``trajectories`` carries ``("collector", "mask")`` (as collectors with
    ``trajs_per_batch`` write it), ``("next", "reward")`` and ``("next", "success")``.
    """
    mask = trajectories.get(("collector", "mask"))
    reward = trajectories.get(("next", "reward")).squeeze(-1) * mask
    success = trajectories.get(("next", "success")).squeeze(-1) & mask
    lengths = mask.sum(-1)
    at_end = success.gather(-1, (lengths - 1).clamp(min=0).unsqueeze(-1)).squeeze(-1)
    return [
        {"return": float(r), "length": int(n), "success": bool(s > success_steps), "success_end": e, "success_any": bool(s > 0)}
        for r, n, s, e in zip(reward.sum(-1).tolist(), lengths.tolist(), success.sum(-1).tolist(), at_end.tolist())
    ]


def success_rates(records: list[dict]) -> dict[str, float]:
    """``{"success_rate", "success_end", "success_any"}`` of episode records."""
    return {key: sum(r[field] for r in records) / max(len(records), 1) for key, field in SUCCESS_RATES}


def success_rate(trajectories: TensorDictBase, success_steps: int) -> dict[str, float]:
    """``{"success_rate", "success_end", "success_any"}`` of padded trajectories (a ``metrics_fn`` for torchrl's ``Evaluator``)."""
    return success_rates(episode_records(trajectories, success_steps))


def run_episodes(env, policy, episodes: int, *, seed: int = 0) -> TensorDictBase:
    """``episodes`` complete episodes of ``policy`` (deterministic actions), padded ``[episodes, T]``."""
    env.set_seed(seed)
    collector = Collector(
        env, policy, frames_per_batch=max(env.batch_size.numel(), 1) * 64, total_frames=-1,
        trajs_per_batch=episodes, traj_format="padded", exploration_type=ExplorationType.DETERMINISTIC,
    )
    try:
        return next(iter(collector))
    finally:
        collector.shutdown(close_env=False)
