"""Train a SAC or PPO agent with TorchRL on a RoboHive or ManiSkill task; plot its learning curve and film it.

    sim_backend=MUJOCO .venv/bin/python scripts/train.py --total-frames 20000      # SAC on FrankaReachRandom-v0, state
    .venv/bin/python scripts/train.py --algo ppo --num-envs 8 --frames-per-batch 4000
    .venv/bin/python scripts/train.py --env FrankaReachRandom_v2d-v0 --observation r3m --cameras top_cam
    .venv/bin/python scripts/train.py --backend maniskill --env PickCube-v1 --algo ppo --num-envs 1024 \\
        --collector-devices cuda:0 --device cuda:0 --frames-per-batch 51200 --gamma 0.8 --gae-lambda 0.9
    .venv/bin/python scripts/train.py --run-dir runs/reach --resume     # continue a run from its last checkpoint
    .venv/bin/python scripts/train.py --goal-reward success --her future --gamma 0.98   # SAC+HER, sparse reward

Everything goes under ``--run-dir`` (default ``runs/<env>-<algo>-seed<seed>``):

* ``logs/``: torchrl's CSV logger (``--logger tensorboard`` or ``wandb`` when asked);
* ``checkpoints/step_<frames>/``: ``policy.pt`` (the policy module, ``torch.save``d: what
  ``python -m agenthive eval`` and the ``torchrl-checkpoint`` policy server load),
  ``state.pt`` (networks, optimizer, counters, learning-curve history, logger state),
  ``config.json`` (these arguments and the env config), ``replay_buffer.json`` (SAC);
* ``replay_buffer/``: SAC's replay buffer, memory-mapped on disk (torchrl's
  ``LazyMemmapStorage``); each checkpoint records its length and write position there;
* ``learning_curve.png``, ``history.csv`` and ``rollout.mp4`` (+ ``rollout.png``) at the end.

The policy is evaluated every ``--eval-every`` frames by torchrl's ``Evaluator`` in a
separate process (``--eval-backend process``), while collection and training go on.
An episode is a success when RoboHive's ``solved`` held on more than 5 of its steps
(RoboHive's own rule; ManiSkill: success reached).

``--goal-reward`` makes the task goal-conditioned (:mod:`agenthive.goals`, RoboHive
reach/push/pick-place and ManiSkill PickCube/PushCube): the networks read ``observation``,
``achieved_goal`` and ``desired_goal``, and ``success`` rewards 0 on success and -1
otherwise. ``--her`` adds hindsight relabelling (torchrl's ``HERReplayBuffer``): the
collector yields whole episodes (finished sub-envs reset alone, their last transition
kept), and sampled goals are replaced by goals achieved later in the episode
(``future``), at its end (``final``) or anywhere in it (``episode``), with the task's
reward recomputed for them. Evaluations then also report the success rate at the
episodes' last step and at any step.

``--resume`` reloads the last checkpoint of ``--run-dir`` with its saved arguments (only
``--total-frames`` may be raised) and continues counting frames from there.
"""
from __future__ import annotations

import argparse
import copy
import csv
import dataclasses
import functools
import json
import time
from dataclasses import dataclass
from pathlib import Path

import agenthive.envs  # noqa: F401  (sets MUJOCO_GL before torchrl imports mujoco)
import torch
from tensordict.nn import TensorDictModule, TensorDictSequential
from tensordict.nn.distributions import NormalParamExtractor
from torch import nn
from torchrl.collectors import Collector, Evaluator, MultiAsyncCollector, MultiSyncCollector
from torchrl.data import HERReplayBuffer, LazyMemmapStorage, TensorDictReplayBuffer
from torchrl.modules import MLP, ProbabilisticActor, TanhNormal, ValueOperator
from torchrl.objectives import ClipPPOLoss, SACLoss, SoftUpdate
from torchrl.objectives.value import GAE
from torchrl.record.loggers import get_logger
from tqdm import tqdm

from agenthive.config_args import add_dataclass_arguments, arg
from agenthive.env_config import EnvConfig, make_env
from agenthive.evaluation import CHECKPOINT_PREFIX, list_checkpoints, record_video, success_rate
from agenthive.goals import goal_task


@dataclass
class Args:
    # run
    run_dir: str = arg("", "where logs, checkpoints, plot and video go (default: runs/<env>-<algo>-seed<seed>)")
    resume: bool = arg(False, "continue the run in --run-dir from its last checkpoint, with its saved arguments")
    algo: str = arg("sac", "sac or ppo")
    seed: int = arg(0, "seed of torch and of the first env")
    total_frames: int = arg(100_000, "environment steps to train for")
    # environment (see agenthive.env_config.EnvConfig)
    env: str = arg("FrankaReachRandom-v0", "task id")
    backend: str = arg("robohive", "robohive or maniskill")
    observation: str = arg("state", "state, r3m or vip (camera images embedded by R3M/VIP, plus proprioception)")
    encoder_model: str = arg("resnet50", "R3M: resnet18, resnet34 or resnet50; VIP: resnet50")
    encoder_weights: str = arg("", "R3M/VIP checkpoint file or directory (default: $AGENTHIVE_WEIGHTS_DIR, torch hub cache)")
    encoder_pretrained: bool = arg(True, "--no-encoder-pretrained: a randomly initialised R3M/VIP encoder")
    cameras: str = arg("", "comma-separated cameras for r3m/vip (default: the task's own)")
    image_size: int = arg(224, "image height and width for r3m/vip")
    frame_skip: int = arg(1, "repeat each action this many simulator steps")
    goal_reward: str = arg("", "goal-conditioned (policy reads observation, achieved_goal, desired_goal) with the task's "
                           "reward (env) or 0 on success, else -1 (success); empty: not goal-conditioned")
    # collection
    num_envs: int = arg(1, "envs stepped in parallel per collector worker (ManiSkill on cuda: in one GPU simulator)")
    collector_devices: str = arg("cpu", "comma-separated devices, one collector worker each (e.g. cuda:0,cuda:1)")
    device: str = arg("cpu", "device of the networks and the loss")
    torch_threads: int = arg(1, "torch intra-op CPU threads (small MLPs run fastest on one; 0: torch's default)")
    frames_per_batch: int = arg(1000, "frames per collected batch (all envs together)")
    collector_backend: str = arg("local", "local, or torchrl's distributed collectors: distributed, rpc, ray (docs/multi_host.md)")
    collector_workers: int = arg(2, "distributed/rpc/ray: workers, each with --num-envs envs on the first --collector-devices")
    collector_launcher: str = arg("mp", "distributed/rpc: mp (this machine) or submitit_delayed (workers started by hand)")
    tcp_port: int = arg(10003, "distributed/rpc: the learner's rendezvous port (distributed also uses the next one)")
    async_collection: bool = arg(False, "SAC: collect in a worker process while training (MultiAsyncCollector)")
    # networks and optimisation
    hidden_sizes: str = arg("256,256", "comma-separated hidden layer sizes of the actor and critic MLPs")
    lr: float = arg(3e-4, "Adam learning rate")
    gamma: float = arg(0.99, "discount factor")
    # SAC
    init_random_frames: int = arg(5000, "SAC: frames of uniformly random actions before the policy acts")
    batch_size: int = arg(256, "SAC: transitions per gradient step")
    utd_ratio: float = arg(0.5, "SAC: gradient steps per collected frame")
    buffer_size: int = arg(100_000, "SAC: replay buffer capacity (frames)")
    tau: float = arg(0.005, "SAC: target network update rate")
    her: str = arg("", "SAC: hindsight goal relabelling (needs --goal-reward) with strategy future, final or episode")
    her_ratio: float = arg(0.8, "HER: fraction of each sampled batch whose goals are relabelled")
    # PPO
    ppo_epochs: int = arg(10, "PPO: passes over each batch")
    minibatch_size: int = arg(256, "PPO: transitions per gradient step")
    clip_epsilon: float = arg(0.2, "PPO: ratio clipping")
    gae_lambda: float = arg(0.95, "PPO: GAE lambda")
    entropy_coef: float = arg(1e-3, "PPO: entropy bonus weight")
    max_grad_norm: float = arg(1.0, "PPO: gradient norm clipping")
    # evaluation, checkpoints, logging
    eval_every: int = arg(10_000, "evaluate every this many frames (0: only at the end)")
    eval_episodes: int = arg(10, "episodes per evaluation")
    eval_backend: str = arg("process", "where evaluation runs: process (beside training) or thread")
    checkpoint_every: int = arg(10_000, "checkpoint every this many frames (and at the end)")
    logger: str = arg("csv", "csv, tensorboard or wandb")
    wandb_project: str = arg("agenthive", "wandb project (with --logger wandb)")
    video: bool = arg(True, "film one episode of the final policy (rollout.mp4)")
    video_camera: str = arg("top_cam", "RoboHive camera to film state-based policies with")


# arguments that --resume may change; every other one comes from the checkpoint
RESUMABLE = {"run_dir", "resume", "total_frames"}


def parse_args(argv=None) -> dict:
    """The arguments given on the command line (only those)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    add_dataclass_arguments(parser, Args, only_given=True)
    return vars(parser.parse_args(argv))


def env_config_of(args: Args) -> EnvConfig:
    return EnvConfig(
        env=args.env, backend=args.backend, observation=args.observation, encoder_model=args.encoder_model,
        encoder_weights=args.encoder_weights or None, encoder_pretrained=args.encoder_pretrained,
        cameras=[c for c in args.cameras.split(",") if c], image_size=args.image_size, frame_skip=args.frame_skip,
        goal_reward=args.goal_reward or None,
    )


# --- networks -----------------------------------------------------------------------------------
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


# --- run directory, checkpoints ---------------------------------------------------------------------
def start_run(given: dict) -> tuple[Args, Path, dict | None]:
    """The arguments, run directory and (with --resume) the last checkpoint's state."""
    if not given.get("resume"):
        args = Args(**given)
        run_dir = Path(args.run_dir or f"runs/{args.env}-{args.algo}-seed{args.seed}")
        if list_checkpoints(run_dir):
            raise SystemExit(f"{run_dir} already holds checkpoints: pass --resume to continue that run, or another --run-dir.")
        return args, run_dir, None
    if not given.get("run_dir"):
        raise SystemExit("--resume continues the run in --run-dir: name it.")
    run_dir = Path(given["run_dir"])
    checkpoints = list_checkpoints(run_dir)
    if not checkpoints:
        raise SystemExit(f"--resume: no checkpoint under {run_dir / 'checkpoints'}; start the run without --resume.")
    checkpoint = checkpoints[max(checkpoints)]
    saved = json.loads((checkpoint / "config.json").read_text())["args"]
    changed = {k: (v, saved[k]) for k, v in given.items() if k not in RESUMABLE and saved.get(k) != v}
    if changed:
        lines = ", ".join(f"--{k.replace('_', '-')}={v!r} (saved: {s!r})" for k, (v, s) in changed.items())
        raise SystemExit(f"--resume continues {run_dir} with its saved arguments; these differ: {lines}. "
                         f"Only {sorted(RESUMABLE)} may be given.")
    args = Args(**{**saved, **{k: v for k, v in given.items() if k in RESUMABLE}})
    state = torch.load(checkpoint / "state.pt", weights_only=False)
    print(f"resuming {run_dir} from {checkpoint.name} ({state['frames']} frames)")
    return args, run_dir, state


def save_checkpoint(run_dir: Path, frames: int, wall_s: float, args: Args, env_config: EnvConfig, actor, loss, optimizer,
                    history: dict, logger, replay_buffer, pending_eval: int | None = None) -> Path:
    """Writes checkpoints/step_<frames>/; a directory appears complete or not at all.

    ``pending_eval``: the step of an evaluation still running (its result is not in ``history``
    yet); a resumed run evaluates the checkpoint's policy again when that step is ``frames``.
    """
    final = run_dir / "checkpoints" / f"{CHECKPOINT_PREFIX}{frames:09d}"
    tmp = final.with_name(final.name + ".tmp")
    tmp.mkdir(parents=True, exist_ok=True)
    torch.save(copy.deepcopy(actor).cpu().eval(), tmp / "policy.pt")
    state = {"frames": frames, "wall_s": wall_s, "loss": loss.state_dict(), "optimizer": optimizer.state_dict(), "history": history,
             "torch_rng": torch.get_rng_state(), "logger": logger.state_dict(), "pending_eval": pending_eval}
    torch.save(state, tmp / "state.pt")
    saved_args = {k: v for k, v in dataclasses.asdict(args).items() if k != "resume"}  # how it ran is not config
    (tmp / "config.json").write_text(json.dumps({"args": saved_args, "env": env_config.to_dict()}, indent=2))
    if replay_buffer is not None:
        replay_buffer.dumps(run_dir / "replay_buffer")  # in place: writes only its metadata
        (tmp / "replay_buffer.json").write_text(json.dumps({"path": str(run_dir / "replay_buffer"), "len": len(replay_buffer)}))
    tmp.rename(final)
    return final


# --- outputs -------------------------------------------------------------------------------------------
def plot_learning_curve(history: dict, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_success, ax_return) = plt.subplots(1, 2, figsize=(10, 3.8))
    evals = history["eval"]
    if evals:
        frames = [e["frames"] for e in evals]
        ax_success.plot(frames, [e["success_rate"] for e in evals], "o-", color="C2")
        ax_return.plot(frames, [e["return"] for e in evals], "o-", color="C2", label="evaluation (deterministic)")
    train = history["train"]
    if train:
        ax_return.plot([t["frames"] for t in train], [t["return"] for t in train], color="C0", alpha=0.6, label="training episodes")
    ax_success.axhline(0.9, color="gray", ls="--", lw=0.8)
    first = next((e for e in evals if e["success_rate"] >= 0.9), None)
    if first is not None:
        ax_success.annotate(f"first >= 0.9: {first['frames']:,} frames, {first['wall_s'] / 60:.1f} min",
                            (first["frames"], first["success_rate"]), xytext=(0.35, 0.35), textcoords="axes fraction",
                            arrowprops={"arrowstyle": "->", "color": "gray"}, fontsize=8)
    ax_success.set(xlabel="frames", ylabel="success rate (evaluation)", ylim=(-0.02, 1.02))
    ax_return.set(xlabel="frames", ylabel="episode return")
    ax_return.legend(fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write_history(history: dict, path: Path) -> None:
    with open(path, "w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(["frames", "wall_s", "kind", "return", "success_rate", "episode_length", "success_end", "success_any"])
        for e in history["eval"]:
            writer.writerow([e["frames"], f"{e['wall_s']:.1f}", "eval", e["return"], e["success_rate"], e["episode_length"],
                             e["success_end"], e["success_any"]])
        for t in history["train"]:
            writer.writerow([t["frames"], f"{t['wall_s']:.1f}", "train", t["return"], "", t["episode_length"], "", ""])


# --- training ------------------------------------------------------------------------------------------
def main(argv=None):
    args, run_dir, resumed = start_run(parse_args(argv))
    if args.algo not in ("sac", "ppo"):
        raise SystemExit(f"--algo {args.algo!r}: expected sac or ppo")
    if args.her and (args.her not in ("future", "final", "episode") or not args.goal_reward or args.algo != "sac"):
        raise SystemExit(f"--her {args.her!r}: expected future, final or episode, with --algo sac and --goal-reward env or success")
    run_dir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(args.seed)
    if args.torch_threads:
        torch.set_num_threads(args.torch_threads)
    env_config = env_config_of(args)
    device = torch.device(args.device)
    hidden = [int(h) for h in args.hidden_sizes.split(",")]

    # specs from one env
    probe = make_env(env_config)
    in_keys = env_config.policy_keys
    obs_dim = sum(probe.observation_spec[key].shape[-1] for key in in_keys)
    action_spec = probe.action_spec
    her_reward = goal_task(probe.base_env, reward=args.goal_reward) if args.her else None  # HER's reward_fn, for any goal
    probe.close()
    action_dim = action_spec.shape[-1]

    # networks and loss
    actor = make_actor(in_keys, obs_dim, action_spec, hidden).to(device)
    if args.algo == "sac":
        critic = make_critic([*in_keys, "action"], obs_dim + action_dim, hidden).to(device)
        loss = SACLoss(actor, critic, num_qvalue_nets=2, loss_function="l2", delay_qvalue=True, alpha_init=1.0, action_spec=action_spec)
        loss.make_value_estimator(gamma=args.gamma)
        target_update = SoftUpdate(loss, tau=args.tau)
    else:
        critic = make_critic(in_keys, obs_dim, hidden).to(device)
        loss = ClipPPOLoss(actor, critic, clip_epsilon=args.clip_epsilon, entropy_coeff=args.entropy_coef, normalize_advantage=True)
        advantage = GAE(gamma=args.gamma, lmbda=args.gae_lambda, value_network=critic, average_gae=False)
    optimizer = torch.optim.Adam(loss.parameters(), lr=args.lr)

    frames, wall_offset, history = 0, 0.0, {"train": [], "eval": []}
    if resumed is not None:
        loss.load_state_dict(resumed["loss"])
        optimizer.load_state_dict(resumed["optimizer"])
        torch.set_rng_state(resumed["torch_rng"])
        frames, wall_offset, history = resumed["frames"], resumed["wall_s"], resumed["history"]

    # replay buffer on disk (SAC)
    replay_buffer = None
    if args.algo == "sac":
        storage = LazyMemmapStorage(args.buffer_size, scratch_dir=run_dir / "replay_buffer" / "storage")
        if args.her:  # relabels goals with achieved ones of the same episode (stored whole, in order)
            replay_buffer = HERReplayBuffer(reward_fn=her_reward, strategy=args.her, her_ratio=args.her_ratio,
                                            achieved_goal_key=("next", "achieved_goal"), storage=storage, batch_size=args.batch_size)
        else:
            replay_buffer = TensorDictReplayBuffer(storage=storage, batch_size=args.batch_size)
        if resumed is not None:
            replay_buffer.loads(run_dir / "replay_buffer")

    # logger: CSV unless asked otherwise; TensorBoard and wandb are imported only then
    logger_kwargs = {"wandb_kwargs": {"project": args.wandb_project, "config": dataclasses.asdict(args)}} if args.logger == "wandb" else {}
    logger = get_logger(args.logger, str(run_dir / "logs"), run_dir.name, state_dict=resumed and resumed["logger"], **logger_kwargs)

    # collectors: one worker process per device; a single device collects in this process,
    # between updates, unless --async-collection
    devices = args.collector_devices.split(",")
    if args.async_collection and args.algo != "sac":
        raise SystemExit("--async-collection is for SAC (off-policy); PPO trains on the batch its policy just collected.")
    remaining = args.total_frames - frames
    if remaining <= 0:
        raise SystemExit(f"{run_dir} already has {frames} frames (--total-frames {args.total_frames}): raise --total-frames to go on.")
    common = dict(
        frames_per_batch=args.frames_per_batch, total_frames=remaining, storing_device=device,
        init_random_frames=max(args.init_random_frames - frames, 0) if args.algo == "sac" else None,
    )
    if args.her:  # whole episodes, each contiguous: HER finds an episode's goals between its done flags
        if args.collector_backend != "local":
            raise SystemExit("--her needs whole episodes from the collector: use --collector-backend local.")
        common.update(trajs_per_batch=args.num_envs, traj_format="cat")
    if args.collector_backend != "local":  # PPO: every batch from all workers with the same weights
        from agenthive.distributed import distributed_collector

        collector = distributed_collector(
            functools.partial(make_env, env_config, num_envs=args.num_envs, device=devices[0]), actor,
            backend=args.collector_backend, num_workers=args.collector_workers, sync=args.algo == "ppo",
            launcher=args.collector_launcher, tcp_port=args.tcp_port, frames_per_batch=args.frames_per_batch,
            total_frames=remaining, storing_device=device, init_random_frames=common["init_random_frames"] or -1,
        )
    elif len(devices) == 1 and not args.async_collection:
        collector = Collector(make_env(env_config, num_envs=args.num_envs, device=devices[0]), actor,
                              env_device=devices[0], policy_device=devices[0], **common)
    else:
        worker_envs = [functools.partial(make_env, env_config, num_envs=args.num_envs, device=d) for d in devices]
        multi = MultiAsyncCollector if args.algo == "sac" else MultiSyncCollector
        collector = multi(worker_envs, actor, env_device=devices, policy_device=devices, **common)
    if args.collector_backend == "local":  # torchrl 0.14.1's distributed set_seed is broken: remote envs seed themselves
        collector.set_seed(args.seed + frames)

    # evaluation beside training (another process by default)
    evaluator = Evaluator(
        functools.partial(make_env, env_config),
        policy_factory=functools.partial(make_eval_policy, in_keys=in_keys, obs_dim=obs_dim, action_spec=action_spec, hidden=hidden),
        num_trajectories=args.eval_episodes,
        frames_per_batch=100,  # steps between checks for finished episodes (torchrl's default, 1000, is slow to render)
        backend=args.eval_backend,
        metrics_fn=functools.partial(success_rate, success_steps=env_config.success_steps),
        collector_kwargs={"traj_format": "padded"},
    )
    start = time.perf_counter()

    def wall() -> float:  # seconds of training, summed over resumed runs
        return wall_offset + time.perf_counter() - start

    eval_started = {}  # frames -> wall time at which that evaluation was asked for
    pending_eval = None  # the step of the evaluation running beside training
    if resumed is not None and resumed.get("pending_eval") is not None:
        # the evaluation was still running when the checkpoint was written: its result was lost
        if resumed["pending_eval"] == frames:  # the checkpoint holds the policy it evaluated: run it again
            evaluator.trigger_eval(actor, step=frames)
            eval_started[frames], pending_eval = wall_offset, frames
        else:
            print(f"The evaluation at {resumed['pending_eval']} frames was still running when the checkpoint at {frames} "
                  f"was written; its policy is not saved, so that point of the curve is missing.")

    def record_eval(result: dict) -> None:
        step = int(result["eval/step"])
        point = {"frames": step, "wall_s": eval_started.get(step, wall()), "return": float(result["eval/reward"]),
                 "success_rate": float(result["eval/success_rate"]), "episode_length": float(result["eval/episode_length"]),
                 "success_end": float(result["eval/success_end"]), "success_any": float(result["eval/success_any"])}
        history["eval"].append(point)
        for key in ("return", "success_rate", "episode_length", "success_end", "success_any"):
            logger.log_scalar(f"eval/{key}", point[key], step=point["frames"])

    next_eval = (frames // args.eval_every + 1) * args.eval_every if args.eval_every else None
    next_checkpoint = (frames // args.checkpoint_every + 1) * args.checkpoint_every
    bar = tqdm(total=args.total_frames, initial=frames, desc=f"{args.algo} {args.env}", unit="frame")
    for batch in collector:
        frames += batch.numel()
        # episodes that ended in this batch
        done = batch.get(("next", "done")).squeeze(-1)
        if done.any():
            ended = batch.get("next")[done]
            point = {"frames": frames, "wall_s": wall(), "return": ended["episode_reward"].mean().item(),
                     "episode_length": ended["step_count"].float().mean().item()}
            history["train"].append(point)
            logger.log_scalar("train/episode_return", point["return"], step=frames)

        if args.algo == "sac":
            replay_buffer.extend(batch.reshape(-1))
            updates = int(batch.numel() * args.utd_ratio) if frames >= args.init_random_frames else 0
            for _ in range(updates):
                losses = loss(replay_buffer.sample().to(device))
                total = losses["loss_actor"] + losses["loss_qvalue"] + losses["loss_alpha"]
                optimizer.zero_grad()
                total.backward()
                optimizer.step()
                target_update.step()
            if updates:
                logger.log_scalar("train/alpha", losses["alpha"].item(), step=frames)
                logger.log_scalar("train/loss_qvalue", losses["loss_qvalue"].item(), step=frames)
        else:
            with torch.no_grad():
                data = advantage(batch.to(device)).reshape(-1)
            for _ in range(args.ppo_epochs):
                for index in torch.randperm(data.numel(), device=device).split(args.minibatch_size):
                    losses = loss(data[index])
                    total = losses["loss_objective"] + losses["loss_critic"] + losses["loss_entropy"]
                    optimizer.zero_grad()
                    total.backward()
                    nn.utils.clip_grad_norm_(loss.parameters(), args.max_grad_norm)
                    optimizer.step()
            logger.log_scalar("train/loss_critic", losses["loss_critic"].item(), step=frames)
        collector.update_policy_weights_()
        logger.log_scalar("train/fps", bar.format_dict["rate"] or 0.0, step=frames)

        result = evaluator.poll()
        if result is not None:
            record_eval(result)
            pending_eval = None
        if next_eval is not None and frames >= next_eval:
            if evaluator.trigger_eval(actor, step=frames):  # False: skipped, the previous one still runs
                eval_started[frames], pending_eval = wall(), frames
            next_eval += args.eval_every
        if next_checkpoint <= frames < args.total_frames:  # (the last one is written after the final evaluation)
            save_checkpoint(run_dir, frames, wall(), args, env_config, actor, loss, optimizer, history, logger, replay_buffer,
                            pending_eval=pending_eval)
            next_checkpoint += args.checkpoint_every
        bar.update(batch.numel())
        last = history["eval"][-1] if history["eval"] else None
        bar.set_postfix(ret=f"{history['train'][-1]['return']:.1f}" if history["train"] else "-",
                        success=f"{last['success_rate']:.2f}" if last else "-")
    bar.close()
    collector.shutdown()

    # final evaluation, checkpoint, curve and video
    if evaluator.pending:
        result = evaluator.wait(timeout=600)
        if result is None:
            raise RuntimeError("The evaluation asked for during training did not finish in 600s; if the evaluation "
                               "thread or process printed a traceback above, that is why.")
        record_eval(result)
    elif (result := evaluator.poll()) is not None:
        record_eval(result)
    if not history["eval"] or history["eval"][-1]["frames"] != frames:
        eval_started[frames] = wall()
        record_eval(evaluator.evaluate(actor, step=frames))
    evaluator.shutdown()
    checkpoint = save_checkpoint(run_dir, frames, wall(), args, env_config, actor, loss, optimizer, history, logger, replay_buffer)
    plot_learning_curve(history, run_dir / "learning_curve.png", f"{args.algo.upper()} on {args.env} ({args.observation})")
    write_history(history, run_dir / "history.csv")
    final = history["eval"][-1]
    print(f"{frames} frames in {wall():.0f}s: evaluation success rate {final['success_rate']:.2f}, return {final['return']:.2f}")
    print(f"wrote {checkpoint}, {run_dir / 'learning_curve.png'}, {run_dir / 'history.csv'}")
    if args.video:
        video = record_video(actor.cpu(), env_config, run_dir / "rollout.mp4", camera=args.video_camera, seed=args.seed + 10_000)
        print(f"wrote {video} and {video.with_suffix('.png')}")


if __name__ == "__main__":
    main()
