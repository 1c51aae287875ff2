"""Train a SAC or PPO agent with TorchRL on a RoboHive or ManiSkill task; plot its learning curve and film it.

    sim_backend=MUJOCO .venv/bin/python scripts/train.py --total-frames 20000      # SAC on FrankaReachRandom-v0, state
    .venv/bin/python scripts/train.py --algo ppo --num-envs 8 --frames-per-batch 4000
    .venv/bin/python scripts/train.py --env FrankaReachRandom_v2d-v0 --observation r3m --cameras top_cam
    .venv/bin/python scripts/train.py --backend maniskill --env PickCube-v1 --algo ppo --num-envs 1024 \\
        --collector-devices cuda:0 --device cuda:0 --frames-per-batch 51200 --gamma 0.8 --gae-lambda 0.9
    .venv/bin/python scripts/train.py --run-dir runs/reach --resume     # continue a run from its last checkpoint
    .venv/bin/python scripts/train.py --goal-reward success --her future --gamma 0.98   # SAC+HER, sparse reward
    .venv/bin/python scripts/train.py --algo ppo --teacher 127.0.0.1:5555 --teacher-anneal cosine  # guided by a served policy
    .venv/bin/python scripts/train.py --algo ppo --teacher 127.0.0.1:5555 --teacher-camera top_cam --teacher-keys image=teacher_image

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

``--teacher HOST:PORT`` (PPO) adds ``loss_teacher``, ``--teacher-coef`` (annealed by
``--teacher-anneal``) times an ``--teacher-loss`` between the student and a served policy,
to PPO's loss (:mod:`agenthive.training.teacher`); the teacher is evaluated once at the
start and its success printed beside the student's at the end. ``--teacher-camera CAMERA``
keeps that camera's images under ``teacher_image`` for a teacher that reads images (a VLA)
while the student reads state.

``--resume`` reloads the last checkpoint of ``--run-dir`` with its saved arguments (only
``--total-frames`` may be raised) and continues counting frames from there.
"""
from __future__ import annotations

import argparse
from dataclasses import dataclass

import agenthive  # noqa: F401  (before torchrl: importing agenthive picks MUJOCO_GL)
import torch
from tqdm import tqdm

from agenthive.checkpoint import list_checkpoints
from agenthive.config_args import add_dataclass_arguments, arg, parse_kwargs
from agenthive.env_config import EnvConfig, make_env
from agenthive.evaluation.video import record_video
from agenthive.goals import goal_task
from agenthive.training.algorithms import ALGORITHMS, make_algorithm
from agenthive.training.builders import make_collector, make_evaluator, make_logger, make_replay_buffer
from agenthive.training.networks import make_actor
from agenthive.training.run import EvaluationSchedule, LearningCurve, save_checkpoint, start_run
from agenthive.training.teacher import Teacher, TeacherLost, check_teacher_args, evaluate_teacher, parse_keys, teacher_view


@dataclass
class Args:
    # run
    run_dir: str = arg("", "where logs, checkpoints, plot and video go (default: runs/<env>-<algo>-seed<seed>)")
    resume: bool = arg(False, "continue the run in --run-dir from its last checkpoint, with its saved arguments")
    algo: str = arg("sac", "sac or ppo (agenthive.training.algorithms)")
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
    env_kwargs: str = arg("", "JSON object (or Python dict literal) of more keyword arguments for RoboHiveEnv / ManiSkillEnv "
                          "(e.g. '{\"control_mode\": \"pd_ee_delta_pose\"}' for a VLA's 7-d end-effector actions)")
    goal_reward: str = arg("", "goal-conditioned (policy reads observation, achieved_goal, desired_goal) with the task's "
                           "reward (env) or 0 on success, else -1 (success); empty: not goal-conditioned")
    # collection
    num_envs: int = arg(1, "envs per collector worker: RoboHive's in one process, stepped by threads; ManiSkill on cuda in one GPU simulator")
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
    # PPO guided by a served teacher (agenthive.training.teacher)
    teacher: str = arg("", "PPO: HOST:PORT of a served policy (start-server) whose actions the student is pulled towards")
    teacher_coef: float = arg(1.0, "teacher: weight lambda of the teacher term in PPO's loss")
    teacher_anneal: str = arg("none", "teacher: none, linear or cosine decay of --teacher-coef to 0 over --total-frames")
    teacher_timeout: float = arg(30.0, "teacher: seconds to wait for its reply; longer, and it is lost (at the start or mid-run)")
    teacher_instruction: str = arg("", "teacher: the language instruction, for a teacher that takes one (a VLA)")
    teacher_loss: str = arg("mse", "teacher: mse or l1 between the student's mean action and the teacher's, or nll (its log-likelihood)")
    teacher_keys: str = arg("", "teacher: TEACHER_KEY=ENV_KEY[,...]: feed the teacher's observation TEACHER_KEY from the env's ENV_KEY")
    teacher_protocol: str = arg("agenthive", "teacher: agenthive (start-server) or openpi (openpi's websocket servers; needs --teacher-keys)")
    teacher_camera: str = arg("", "teacher: keep this camera's uint8 images under 'teacher_image' for a teacher that reads images "
                              "(RoboHive: a camera name; ManiSkill: any, its human-view camera); the student reads state")
    teacher_image_size: int = arg(224, "teacher: height and width of --teacher-camera's images")
    # evaluation, checkpoints, logging
    eval_every: int = arg(10_000, "evaluate every this many frames (0: only at the end)")
    eval_episodes: int = arg(10, "episodes per evaluation")
    eval_backend: str = arg("process", "where evaluation runs: process (beside training) or thread")
    checkpoint_every: int = arg(10_000, "checkpoint every this many frames (and at the end)")
    logger: str = arg("csv", "csv, tensorboard or wandb")
    wandb_project: str = arg("agenthive", "wandb project (with --logger wandb)")
    video: bool = arg(True, "film one episode of the final policy (rollout.mp4)")
    video_camera: str = arg("top_cam", "RoboHive camera to film state-based policies with")


def parse_args(argv=None) -> dict:
    """The arguments given on the command line (only those)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    add_dataclass_arguments(parser, Args, only_given=True)
    return vars(parser.parse_args(argv))


def check_args(args: Args, run_dir, frames: int) -> None:
    """Refuses combinations that cannot run, saying why."""
    if args.algo not in ALGORITHMS:
        raise SystemExit(f"--algo {args.algo!r}: expected one of {', '.join(ALGORITHMS)}")
    if args.her and (args.her not in ("future", "final", "episode") or not args.goal_reward or args.algo != "sac"):
        raise SystemExit(f"--her {args.her!r}: expected future, final or episode, with --algo sac and --goal-reward env or success")
    if args.her and args.collector_backend != "local":
        raise SystemExit("--her needs whole episodes from the collector: use --collector-backend local.")
    if args.async_collection and args.algo != "sac":
        raise SystemExit("--async-collection is for SAC (off-policy); PPO trains on the batch its policy just collected.")
    check_teacher_args(args)
    if args.total_frames <= frames:
        raise SystemExit(f"{run_dir} already has {frames} frames (--total-frames {args.total_frames}): raise --total-frames to go on.")


def env_config_of(args: Args) -> EnvConfig:
    return EnvConfig(
        env=args.env, backend=args.backend, observation=args.observation, encoder_model=args.encoder_model,
        encoder_weights=args.encoder_weights or None, encoder_pretrained=args.encoder_pretrained,
        cameras=[c for c in args.cameras.split(",") if c], image_size=args.image_size, frame_skip=args.frame_skip,
        goal_reward=args.goal_reward or None,
        env_kwargs=parse_kwargs(args.env_kwargs, example='{"control_mode": "pd_ee_delta_pose"}', flag="--env-kwargs") if args.env_kwargs else {},
    )


def policy_shape(env_config: EnvConfig, args: Args) -> tuple[dict, object]:
    """What the networks are built from (``in_keys``, ``obs_dim``, ``action_spec``, ``hidden``), read from one env; and HER's reward function."""
    probe = make_env(env_config)
    in_keys = env_config.policy_keys
    shape = {"in_keys": in_keys, "obs_dim": sum(probe.observation_spec[key].shape[-1] for key in in_keys),
             "action_spec": probe.action_spec, "hidden": [int(h) for h in args.hidden_sizes.split(",")]}
    her_reward = goal_task(probe.base_env, reward=args.goal_reward) if args.her else None  # HER's reward_fn, for any goal
    probe.close()
    return shape, her_reward


def start_teacher(args: Args, env_config: EnvConfig) -> Teacher | None:
    """``--teacher``: connects (SystemExit naming HOST:PORT when nothing answers) and evaluates the teacher once, as the student is."""
    if not args.teacher:
        return None
    view = teacher_view(args)  # the teacher's camera images, where it reads some
    probe = make_env(env_config, **view)
    teacher = Teacher(args.teacher, observation_spec=probe.observation_spec, action_spec=probe.action_spec,
                      timeout=args.teacher_timeout, instruction=args.teacher_instruction,
                      keys=parse_keys(args.teacher_keys), protocol=args.teacher_protocol)
    probe.close()
    teacher.success = evaluate_teacher(args.teacher, env_config, args.eval_episodes, seed=args.seed + 20_000,
                                       timeout=args.teacher_timeout, instruction=args.teacher_instruction,
                                       keys=teacher.env_keys, protocol=args.teacher_protocol, view=view)
    print(f"teacher {args.teacher}: success rate {teacher.success['success_rate']:.2f}, return {teacher.success['return']:.2f} "
          f"over {args.eval_episodes} episodes")
    return teacher


def stop_without_teacher(error: TeacherLost, run_dir) -> None:
    """A teacher lost mid-run ends the run; its checkpoints stay, and ``--resume`` continues once the teacher serves again."""
    kept = list_checkpoints(run_dir)
    where = f"the last checkpoint, {kept[max(kept)].name}, is kept" if kept else "no checkpoint had been written yet"
    raise SystemExit(f"{error}: training stopped; {where}. Serve the teacher again and continue with "
                     f"`scripts/train.py --run-dir {run_dir} --resume`.")


def main(argv=None):
    args, run_dir, resumed = start_run(parse_args(argv), Args)
    frames = resumed["frames"] if resumed else 0
    check_args(args, run_dir, frames)
    run_dir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(args.seed)
    if args.torch_threads:
        torch.set_num_threads(args.torch_threads)
    env_config, device = env_config_of(args), torch.device(args.device)
    shape, her_reward = policy_shape(env_config, args)

    teacher = start_teacher(args, env_config)  # before anything is started: an unreachable teacher fails at once
    actor = make_actor(shape["in_keys"], shape["obs_dim"], shape["action_spec"], shape["hidden"]).to(device)
    replay_buffer = make_replay_buffer(args, run_dir, her_reward=her_reward, resumed=resumed is not None)
    algorithm = make_algorithm(args, actor, **shape, device=device, replay_buffer=replay_buffer, **({"teacher": teacher} if teacher else {}))
    if resumed is not None:
        algorithm.load_state_dict(resumed)
        torch.set_rng_state(resumed["torch_rng"])
    logger = make_logger(args, run_dir, state=resumed and resumed["logger"])
    collector = make_collector(args, env_config, actor, frames=frames, device=device)
    evaluator = make_evaluator(args, env_config, **shape)
    curve = LearningCurve(logger, resumed)  # its clock starts now
    evaluations = EvaluationSchedule(evaluator, curve, args.eval_every, frames)
    evaluations.resume(resumed, actor, frames)

    def checkpoint(pending_eval=None):
        return save_checkpoint(run_dir, frames, args=args, env_config=env_config, actor=actor, algorithm=algorithm, curve=curve,
                               logger=logger, pending_eval=pending_eval)

    next_checkpoint = (frames // args.checkpoint_every + 1) * args.checkpoint_every
    bar = tqdm(total=args.total_frames, initial=frames, desc=f"{args.algo} {args.env}", unit="frame")
    try:
        for batch in collector:
            frames += batch.numel()
            curve.record_episodes(batch, frames)
            try:
                logged = algorithm.update(batch, frames)
            except TeacherLost as error:
                stop_without_teacher(error, run_dir)
            for key, value in logged.items():
                logger.log_scalar(f"train/{key}", value, step=frames)
            collector.update_policy_weights_()
            logger.log_scalar("train/fps", bar.format_dict["rate"] or 0.0, step=frames)
            evaluations.step(actor, frames)
            if next_checkpoint <= frames < args.total_frames:  # (the last one is written after the final evaluation)
                checkpoint(pending_eval=evaluations.pending)
                next_checkpoint += args.checkpoint_every
            bar.update(batch.numel())
            bar.set_postfix(**curve.postfix())
    except BaseException:  # an error or Ctrl-C: stop the workers, or the interpreter waits for them at exit
        collector.shutdown()
        evaluations.evaluator.shutdown()
        raise
    bar.close()
    collector.shutdown()

    # final evaluation, checkpoint, curve and video
    evaluations.finish(actor, frames)
    written = checkpoint()
    curve.plot(run_dir / "learning_curve.png", f"{args.algo.upper()} on {args.env} ({args.observation})")
    curve.write_csv(run_dir / "history.csv")
    final = curve.history["eval"][-1]
    print(f"{frames} frames in {curve.wall():.0f}s: evaluation success rate {final['success_rate']:.2f}, return {final['return']:.2f}")
    if teacher is not None:
        print(f"teacher {args.teacher}: success rate {teacher.success['success_rate']:.2f}, return {teacher.success['return']:.2f} "
              f"(student {final['success_rate']:.2f}, {final['return']:.2f})")
        print(f"teacher requests: {teacher.requests} in {teacher.request_seconds:.3f}s of {curve.wall():.0f}s of training")
        teacher.close()
    print(f"wrote {written}, {run_dir / 'learning_curve.png'}, {run_dir / 'history.csv'}")
    if args.video:
        video = record_video(actor.cpu(), env_config, run_dir / "rollout.mp4", camera=args.video_camera, seed=args.seed + 10_000)
        print(f"wrote {video} and {video.with_suffix('.png')}")


if __name__ == "__main__":
    main()
