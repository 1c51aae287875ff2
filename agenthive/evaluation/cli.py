"""``python -m agenthive eval``: a checkpoint, a served policy, or a range of checkpoints (see ``agenthive.evaluation``)."""
from __future__ import annotations

import argparse
import json
import shlex
import socket
from pathlib import Path

import torch

import agenthive.evaluation
from agenthive.checkpoint import load_policy, read_env_config
from agenthive.env_config import EnvConfig, make_env
from agenthive.evaluation.checkpoints import evaluate_checkpoints, parse_steps
from agenthive.evaluation.policy import evaluate
from agenthive.serving.process import ServerProcess


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m agenthive eval", description=agenthive.evaluation.__doc__.split("\n\n")[0])
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
        return _evaluate_run(args)
    configs = _env_configs(args.envs, read_env_config(args.checkpoint) if args.checkpoint else None)
    label = str(args.checkpoint or args.server_command)
    torch.manual_seed(args.seed)
    run = {"episodes": args.episodes, "num_envs": args.num_envs, "videos": args.videos, "video_camera": args.video_camera,
           "device": args.device, "seed": args.seed, "label": label}
    if args.server_command:
        summary = _evaluate_served(args, configs, run)
    else:
        summary = evaluate(load_policy(args.checkpoint).to(args.device), configs, args.out_dir, **run)
    for env in summary["envs"]:
        ret = f"{env['return_mean']:.2f} ± {env['return_std']:.2f}"
        print(f"{env['name']}: success {env['success_rate']:.2f}, return {ret}, length {env['length_mean']:.1f} "
              f"over {env['episodes']} episodes")
    print(f"wrote {Path(args.out_dir) / 'summary.json'}, summary.csv, episodes.csv, summary.png and {args.videos * len(configs)} video(s)")
    return 0


def _evaluate_run(args) -> int:
    """``--run-dir``: the checkpoints at ``--steps``, one worker each, given this command's other options."""
    if not args.steps:
        raise SystemExit("--run-dir needs --steps (start:stop:step, or a list a,b,c)")
    passed = ["--episodes", str(args.episodes), "--num-envs", str(args.num_envs), "--videos", str(args.videos),
              "--video-camera", args.video_camera, "--seed", str(args.seed)]
    passed += ["--envs", *args.envs] if args.envs else []
    passed += ["--in-keys", args.in_keys] if args.in_keys else []
    summary = evaluate_checkpoints(args.run_dir, parse_steps(args.steps), args.out_dir, devices=args.devices.split(","),
                                   worker_args=passed, server_command=args.server_command)
    return 1 if summary["failed"] else 0


def _evaluate_served(args, configs: list[EnvConfig], run: dict) -> dict:
    """``--server-command``: starts the server (``{port}``: a free port, ``{checkpoint}``: ``--checkpoint``) and queries it."""
    from agenthive.modules import RemotePolicyModule

    command = args.server_command.replace("{checkpoint}", str(args.checkpoint)) if args.checkpoint else args.server_command
    with ServerProcess(shlex.split(command), port=_free_port(), start_timeout=300.0) as server:
        probe = make_env(configs[0])
        remote = RemotePolicyModule(
            server.host, server.port, in_keys=json.loads(args.in_keys) if args.in_keys else None,
            observation_spec=probe.observation_spec, action_spec=probe.action_spec,
        )
        probe.close()
        try:
            return evaluate(remote, configs, args.out_dir, **run)
        finally:
            remote.close()


def _free_port() -> int:
    """A free loopback port, for server commands that cannot be told to pick one (``--port 0``)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
