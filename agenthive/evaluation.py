"""Evaluate policies: success rate, return and episode length over K episodes, with videos.

``python -m agenthive eval`` evaluates

* a checkpoint written by ``scripts/train.py`` (``--checkpoint DIR``), in the environment
  it was trained in or in others (``--envs``);
* or a policy served by a server that it starts from a command line (``--server-command``),
  possibly in another Python environment (``conda run -n octo python -m agenthive
  start-server ...``), queried through :class:`~agenthive.modules.RemotePolicyModule`;
* or a range of checkpoints of one run (``--run-dir RUN --steps 10000:100000:10000``), one
  worker process per checkpoint, on ``--devices`` round-robin, each with its own server
  port when the policy is served. A worker that crashes is reported with its checkpoint;
  the others' results are kept.

It writes ``summary.json``, ``summary.csv``, ``episodes.csv``, ``summary.png`` and MP4s of
a few episodes under ``--out-dir``.

An episode counts as a success when the env's ``"success"`` held on more than
:attr:`~agenthive.env_config.EnvConfig.success_steps` of its steps (RoboHive's rule: 5).
For goal-reaching tasks two more rates are reported: success at the episode's last step
(``success_end``: the goal is held) and at any step (``success_any``: it was reached).
"""
from __future__ import annotations

import argparse
import csv
import json
import re
import shlex
import subprocess
import sys
import threading
import time
from pathlib import Path

import agenthive.envs  # noqa: F401  (sets MUJOCO_GL before torchrl imports mujoco)
import torch
from tensordict import TensorDictBase
from torchrl.collectors import Collector
from torchrl.envs.utils import ExplorationType, set_exploration_type

from agenthive.env_config import VIDEO_KEY, EnvConfig, make_env

CHECKPOINT_PREFIX = "step_"  # checkpoints are <run>/checkpoints/step_<frames, 9 digits>


# --- episodes ---------------------------------------------------------------------------
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


def success_rate(trajectories: TensorDictBase, success_steps: int) -> dict[str, float]:
    """``{"success_rate", "success_end", "success_any"}`` of padded trajectories (a ``metrics_fn`` for torchrl's ``Evaluator``)."""
    records = episode_records(trajectories, success_steps)
    return {key: sum(r[field] for r in records) / max(len(records), 1)
            for key, field in (("success_rate", "success"), ("success_end", "success_end"), ("success_any", "success_any"))}


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


def record_video(policy, config: EnvConfig, path, *, camera="top_cam", size=128, steps=None, seed=0, fps=12) -> Path:
    """Films one episode of ``policy`` in ``config``'s environment as an MP4 (and a PNG strip beside it)."""
    import imageio.v2 as imageio
    import numpy as np

    env = make_env(config, num_envs=1, video_camera=camera, video_size=size)
    env.set_seed(seed)
    with torch.no_grad(), set_exploration_type(ExplorationType.DETERMINISTIC):
        rollout = env.rollout(steps or 10_000, policy, break_when_any_done=steps is None)
    env.close()
    frames = rollout.get(("next", VIDEO_KEY))
    frames = (frames[:, 0] if frames.ndim == 5 else frames).cpu().numpy()  # the first camera: [T, H, W, 3]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    imageio.mimwrite(path, frames, fps=fps, macro_block_size=1)
    imageio.imwrite(path.with_suffix(".png"), np.concatenate(list(frames[:: max(1, len(frames) // 8)]), axis=1))
    return path


# --- policies -----------------------------------------------------------------------------
def checkpoint_env_config(checkpoint) -> EnvConfig:
    """The env config saved in a ``scripts/train.py`` checkpoint directory."""
    path = Path(checkpoint) / "config.json"
    if not path.is_file():
        raise FileNotFoundError(f"{checkpoint} is not a train.py checkpoint: it has no config.json (nor, likely, policy.pt).")
    return EnvConfig.from_dict(json.loads(path.read_text())["env"])


def load_policy(checkpoint) -> torch.nn.Module:
    """The policy module saved in a ``scripts/train.py`` checkpoint directory (its ``policy.pt``)."""
    path = Path(checkpoint) / "policy.pt"
    try:  # torch.save'd modules unpickle code: load only checkpoints you trust
        return torch.load(path, map_location="cpu", weights_only=False)
    except Exception as err:  # torch raises several types for a missing or damaged file
        raise RuntimeError(f"{path} does not load as a torch.save'd policy module ({type(err).__name__}: {err}).") from err


def list_checkpoints(run_dir) -> dict[int, Path]:
    """``{frames: checkpoint directory}`` of a training run."""
    found = {}
    for path in sorted((Path(run_dir) / "checkpoints").glob(f"{CHECKPOINT_PREFIX}*")):
        if path.name[len(CHECKPOINT_PREFIX):].isdigit():
            found[int(path.name[len(CHECKPOINT_PREFIX):])] = path
    return found


def parse_steps(text: str) -> list[int]:
    """``"10000:100000:10000"`` (start:stop:step, stop included) or ``"5000,20000"``."""
    if ":" in text:
        start, stop, step = (int(x) for x in text.split(":"))
        return list(range(start, stop + 1, step))
    return [int(x) for x in text.split(",")]


class PolicyServerProcess:
    """Starts a policy server from a command line and stops it on exit.

    ``{port}`` in the command is replaced by a free port, and ``{checkpoint}`` by the
    checkpoint directory. The server is ready once it prints agenthive's
    ``agenthive: serving <policy> on tcp://HOST:PORT`` line (``start-server`` does).
    """

    _SERVING = re.compile(r"agenthive: serving .* on tcp://([^:\s]+):(\d+)")

    def __init__(self, command: str, *, checkpoint=None, start_timeout: float = 300.0):
        command = command.replace("{port}", str(_free_port()))
        if checkpoint is not None:
            command = command.replace("{checkpoint}", str(checkpoint))
        self.command, self.start_timeout = command, start_timeout
        self.process, self.host, self.port, self.output = None, None, None, []

    def __enter__(self):
        self.process = subprocess.Popen(
            shlex.split(self.command), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, text=True,
        )
        found = threading.Event()

        def read():  # keeps the pipe drained for the server's whole life
            for line in self.process.stdout:
                self.output.append(line.rstrip())
                match = self._SERVING.search(line)
                if match and not found.is_set():
                    self.host, self.port = match.group(1), int(match.group(2))
                    found.set()

        threading.Thread(target=read, daemon=True).start()
        deadline = time.monotonic() + self.start_timeout
        while not found.wait(0.1):
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.__exit__(None, None, None)
                why = f"exited with code {self.process.returncode}" if self.process.returncode is not None else (
                    f"printed no 'agenthive: serving ... on tcp://HOST:PORT' line in {self.start_timeout:.0f}s")
                tail = "\n".join(self.output[-20:])
                raise RuntimeError(f"The policy server `{self.command}` {why}. Its output:\n{tail}")
        return self

    def __exit__(self, *exc):
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# --- one policy, several envs -----------------------------------------------------------------
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
        trajectories = run_episodes(env, policy, episodes, seed=seed)
        env.close()
        records = episode_records(trajectories, config.success_steps)
        returns = torch.tensor([r["return"] for r in records])
        video_paths = [
            str(record_video(policy, config, out_dir / f"{name}_episode{k}.mp4", camera=video_camera, seed=seed + 1000 + k))
            for k in range(videos)
        ]
        summary["envs"].append({
            "name": name,
            "env": config.to_dict(),
            "episodes": len(records),
            "success_rate": sum(r["success"] for r in records) / len(records),
            "success_end": sum(r["success_end"] for r in records) / len(records),
            "success_any": sum(r["success_any"] for r in records) / len(records),
            "return_mean": returns.mean().item(),
            "return_std": returns.std().item() if len(records) > 1 else 0.0,
            "length_mean": sum(r["length"] for r in records) / len(records),
            "videos": video_paths,
        })
        rows += [{"env": name, "episode": i, **r} for i, r in enumerate(records)]
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=2))
    _write_csv(out_dir / "episodes.csv", rows)
    _write_csv(out_dir / "summary.csv", [{k: v for k, v in e.items() if k not in ("env", "videos")} for e in summary["envs"]])
    _plot_envs(summary, out_dir / "summary.png")
    return summary


def _write_csv(path: Path, rows: list[dict]) -> None:
    fields = list(dict.fromkeys(k for row in rows for k in row))
    with open(path, "w", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)


def _plot_envs(summary: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    envs = summary["envs"]
    names = [e["name"] for e in envs]
    fig, axes = plt.subplots(1, 3, figsize=(4 + 1.2 * len(envs), 3.5))
    for ax, key, title in zip(axes, ("success_rate", "return_mean", "length_mean"), ("success rate", "return", "episode length")):
        ax.bar(names, [e[key] for e in envs], yerr=[e["return_std"] for e in envs] if key == "return_mean" else None)
        ax.set_title(title)
        ax.tick_params(axis="x", rotation=20)
    axes[0].set_ylim(0, 1.05)
    fig.suptitle(f"{summary['policy']}: {envs[0]['episodes']} episodes per env", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


# --- many checkpoints ----------------------------------------------------------------------------
def evaluate_checkpoints(run_dir, steps: list[int], out_dir, *, devices=("cpu",), worker_args=(), server_command=None) -> dict:
    """Evaluates the checkpoints of ``run_dir`` at ``steps`` in parallel, one process each.

    Worker ``i`` runs on ``devices[i % len(devices)]``; ``worker_args`` are passed on to
    each ``python -m agenthive eval`` worker. Returns and writes the summary over steps;
    a worker that fails is listed under ``"failed"`` with its checkpoint and output tail.
    """
    available = list_checkpoints(run_dir)
    missing = [s for s in steps if s not in available]
    if missing:
        raise FileNotFoundError(f"No checkpoint for step(s) {missing} in {Path(run_dir) / 'checkpoints'}; it has {sorted(available)}.")
    out_dir = Path(out_dir)
    workers = []
    for i, step in enumerate(steps):
        worker_dir = out_dir / f"{CHECKPOINT_PREFIX}{step:09d}"
        command = [sys.executable, "-m", "agenthive", "eval", "--checkpoint", str(available[step]),
                   "--out-dir", str(worker_dir), "--device", devices[i % len(devices)], *worker_args]
        if server_command:
            command += ["--server-command", server_command]
        worker_dir.mkdir(parents=True, exist_ok=True)
        log = open(worker_dir / "worker.log", "w")
        workers.append((step, available[step], worker_dir, log, subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)))
    results, failed = [], []
    from tqdm import tqdm

    for step, checkpoint, worker_dir, log, process in tqdm(workers, desc=f"evaluating {len(workers)} checkpoints", unit="ckpt"):
        code = process.wait()
        log.close()
        if code == 0 and (worker_dir / "summary.json").is_file():
            for env in json.loads((worker_dir / "summary.json").read_text())["envs"]:
                results.append({"step": step, **{k: v for k, v in env.items() if k not in ("env", "videos")}})
        else:
            tail = (worker_dir / "worker.log").read_text().strip().splitlines()[-15:]
            failed.append({"step": step, "checkpoint": str(checkpoint), "returncode": code, "output_tail": tail})
    summary = {"run_dir": str(run_dir), "steps": steps, "results": results, "failed": failed}
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=2))
    if results:
        _write_csv(out_dir / "summary.csv", results)
        _plot_steps(results, failed, out_dir / "summary.png", title=f"{run_dir}")
    _print_table(results, failed)
    return summary


def _plot_steps(results: list[dict], failed: list[dict], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(9, 3.5))
    for name in dict.fromkeys(r["name"] for r in results):
        rows = sorted((r for r in results if r["name"] == name), key=lambda r: r["step"])
        steps = [r["step"] for r in rows]
        axes[0].plot(steps, [r["success_rate"] for r in rows], "o-", label=name)
        mean = torch.tensor([r["return_mean"] for r in rows])
        std = torch.tensor([r["return_std"] for r in rows])
        axes[1].plot(steps, mean, "o-", label=name)
        axes[1].fill_between(steps, mean - std, mean + std, alpha=0.2)
    for i, f in enumerate(failed):
        axes[0].axvline(f["step"], color="red", ls=":", label="worker failed" if i == 0 else None)
    axes[0].set(xlabel="training frames", ylabel="success rate", ylim=(-0.02, 1.02))
    axes[1].set(xlabel="training frames", ylabel="return (mean ± std)")
    axes[0].legend(fontsize=8)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _print_table(results: list[dict], failed: list[dict]) -> None:
    print(f"{'step':>10}  {'env':<28} {'success':>8} {'return':>16} {'length':>7}")
    for r in sorted(results, key=lambda r: (r["step"], r["name"])):
        ret = f"{r['return_mean']:.2f} ± {r['return_std']:.2f}"
        print(f"{r['step']:>10}  {r['name']:<28} {r['success_rate']:>8.2f} {ret:>16} {r['length_mean']:>7.1f}")
    for f in failed:
        last = f["output_tail"][-1] if f["output_tail"] else ""
        print(f"{f['step']:>10}  FAILED (exit code {f['returncode']}) {f['checkpoint']}: {last}")


# --- command line ----------------------------------------------------------------------------------
def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m agenthive eval", description=__doc__.split("\n\n")[0])
    what = parser.add_argument_group("what to evaluate (one of)")
    what.add_argument("--checkpoint", help="a scripts/train.py checkpoint directory (holds policy.pt and config.json)")
    what.add_argument("--run-dir", help="a training run: evaluate its checkpoints at --steps, in parallel")
    what.add_argument("--server-command", help="start this policy server for the evaluation and query it; {port} and "
                      "{checkpoint} are filled in. e.g. \"python -m agenthive start-server torchrl-checkpoint --port 0 "
                      "--kwargs '{\\\"path\\\": \\\"{checkpoint}/policy.pt\\\", ...}'\"")
    parser.add_argument("--steps", help="checkpoints of --run-dir: start:stop:step (stop included) or a list a,b,c")
    parser.add_argument("--envs", nargs="+", default=[], help="env configs: a task id, or a JSON object of EnvConfig fields "
                        "('{\"env\": \"FrankaReachFixed-v0\", \"frame_skip\": 2}'); they override the checkpoint's env config "
                        "(default: the checkpoint's own; with only a server: FrankaReachRandom-v0 state)")
    parser.add_argument("--in-keys", help="with --server-command: JSON {tensordict key: server observation name} "
                        "(default: the server's names)")
    parser.add_argument("--episodes", type=int, default=10, help="episodes per env config")
    parser.add_argument("--num-envs", type=int, default=2, help="envs stepped in parallel")
    parser.add_argument("--videos", type=int, default=1, help="episodes filmed per env config (MP4 + PNG strip)")
    parser.add_argument("--video-camera", default="top_cam", help="RoboHive camera to film state-based policies with")
    parser.add_argument("--device", default="cpu", help="device of the env and the policy")
    parser.add_argument("--devices", default="cpu", help="with --steps: comma-separated devices, given to the workers round-robin")
    parser.add_argument("--seed", type=int, default=0, help="seed of the first env")
    parser.add_argument("--out-dir", default="outputs/eval", help="where the summary, plot and videos go")
    return parser


def _env_configs(specs: list[str], base: EnvConfig | None) -> list[EnvConfig]:
    base = base.to_dict() if base is not None else EnvConfig().to_dict()
    if not specs:
        return [EnvConfig.from_dict(base)]
    configs = []
    for spec in specs:
        fields = json.loads(spec) if spec.lstrip().startswith("{") else {"env": spec}
        if not isinstance(fields, dict):
            raise SystemExit(f"--envs {spec!r}: expected a task id or a JSON object of EnvConfig fields")
        configs.append(EnvConfig.from_dict({**base, **fields}))
    return configs


def main(argv=None) -> int:
    args = _parser().parse_args(argv)
    if sum(x is not None for x in (args.checkpoint, args.run_dir)) > 1 or not (args.checkpoint or args.run_dir or args.server_command):
        raise SystemExit("python -m agenthive eval: give one of --checkpoint, --run-dir (with --steps) or --server-command.")
    if args.run_dir:
        if not args.steps:
            raise SystemExit("--run-dir needs --steps (start:stop:step, or a list a,b,c)")
        passed = ["--episodes", str(args.episodes), "--num-envs", str(args.num_envs), "--videos", str(args.videos),
                  "--video-camera", args.video_camera, "--seed", str(args.seed)]
        passed += ["--envs", *args.envs] if args.envs else []
        passed += ["--in-keys", args.in_keys] if args.in_keys else []
        summary = evaluate_checkpoints(args.run_dir, parse_steps(args.steps), args.out_dir, devices=args.devices.split(","),
                                       worker_args=passed, server_command=args.server_command)
        return 1 if summary["failed"] else 0

    configs = _env_configs(args.envs, checkpoint_env_config(args.checkpoint) if args.checkpoint else None)
    label = str(args.checkpoint or args.server_command)
    torch.manual_seed(args.seed)
    if args.server_command:
        from agenthive.modules import RemotePolicyModule

        with PolicyServerProcess(args.server_command, checkpoint=args.checkpoint) as server:
            probe = make_env(configs[0])
            remote = RemotePolicyModule(
                server.host, server.port, in_keys=json.loads(args.in_keys) if args.in_keys else None,
                observation_spec=probe.observation_spec, action_spec=probe.action_spec,
            )
            probe.close()
            summary = evaluate(remote, configs, args.out_dir, episodes=args.episodes, num_envs=args.num_envs, videos=args.videos,
                               video_camera=args.video_camera, device=args.device, seed=args.seed, label=label)
            remote.close()
    else:
        policy = load_policy(args.checkpoint).to(args.device)
        summary = evaluate(policy, configs, args.out_dir, episodes=args.episodes, num_envs=args.num_envs, videos=args.videos,
                           video_camera=args.video_camera, device=args.device, seed=args.seed, label=label)
    for env in summary["envs"]:
        ret = f"{env['return_mean']:.2f} ± {env['return_std']:.2f}"
        print(f"{env['name']}: success {env['success_rate']:.2f}, return {ret}, length {env['length_mean']:.1f} "
              f"over {env['episodes']} episodes")
    print(f"wrote {Path(args.out_dir) / 'summary.json'}, summary.csv, episodes.csv, summary.png and {args.videos * len(configs)} video(s)")
    return 0
