"""One policy on several env configs: episodes, videos and the summary files of each."""
from __future__ import annotations

import json
from pathlib import Path

import torch

from agenthive.env_config import EnvConfig, make_env
from agenthive.evaluation.metrics import episode_records, run_episodes, success_rates
from agenthive.evaluation.report import plot_envs, write_csv
from agenthive.evaluation.video import record_video


def evaluate(
    policy,
    env_configs: list[EnvConfig],
    out_dir,
    *,
    episodes: int = 10,
    num_envs: int = 2,
    videos: int = 1,
    video_camera: str = "top_cam",
    device: str = "cpu",
    seed: int = 0,
    label: str = "",
) -> dict:
    """Evaluates ``policy`` on each env config; writes and returns the summary.

    Returns:
        ``{"policy": label, "envs": [{"env": ..., "success_rate", "return_mean", "return_std",
        "length_mean", "episodes", "videos": [...]}, ...]}``.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    summary, rows = {"policy": label, "envs": []}, []
    for index, config in enumerate(env_configs):
        name = f"{index}_{config.env}" if len(env_configs) > 1 else config.env
        env = make_env(config, num_envs=num_envs, device=device)
        records = episode_records(run_episodes(env, policy, episodes, seed=seed), config.success_steps)
        env.close()
        video_paths = [
            str(record_video(policy, config, out_dir / f"{name}_episode{k}.mp4", camera=video_camera, seed=seed + 1000 + k))
            for k in range(videos)
        ]
        summary["envs"].append({"name": name, "env": config.to_dict(), **_summarize(records), "videos": video_paths})
        rows += [{"env": name, "episode": i, **r} for i, r in enumerate(records)]
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=2))
    write_csv(out_dir / "episodes.csv", rows)
    write_csv(out_dir / "summary.csv", [{k: v for k, v in e.items() if k not in ("env", "videos")} for e in summary["envs"]])
    plot_envs(summary, out_dir / "summary.png")
    return summary


def _summarize(records: list[dict]) -> dict:
    returns = torch.tensor([r["return"] for r in records])
    return {
        "episodes": len(records),
        **success_rates(records),
        "return_mean": returns.mean().item(),
        "return_std": returns.std().item() if len(records) > 1 else 0.0,
        "length_mean": sum(r["length"] for r in records) / len(records),
    }
