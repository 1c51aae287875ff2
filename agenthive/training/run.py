"""A training run's directory and clock: starting or resuming it, its checkpoints, its learning curve and evaluations."""
from __future__ import annotations

import csv
import dataclasses
import time
from pathlib import Path

import torch

from agenthive.checkpoint import EVAL_METRICS, list_checkpoints, read_args, read_state, write_checkpoint

RESUMABLE = {"run_dir", "resume", "total_frames"}
"""The arguments ``--resume`` may change; every other one comes from the checkpoint."""


def start_run(given: dict, args_class) -> tuple:
    """``(args, run directory, the last checkpoint's state or None)`` for the arguments ``given`` on the command line.

    Without ``resume``: a fresh run, refused where checkpoints already are. With it: the
    last checkpoint's arguments, of which only :data:`RESUMABLE` may be given again.
    """
    if not given.get("resume"):
        args = args_class(**given)
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
    saved = read_args(checkpoint)
    changed = {k: (v, saved[k]) for k, v in given.items() if k not in RESUMABLE and saved.get(k) != v}
    if changed:
        lines = ", ".join(f"--{k.replace('_', '-')}={v!r} (saved: {s!r})" for k, (v, s) in changed.items())
        raise SystemExit(f"--resume continues {run_dir} with its saved arguments; these differ: {lines}. "
                         f"Only {sorted(RESUMABLE)} may be given.")
    args = args_class(**{**saved, **{k: v for k, v in given.items() if k in RESUMABLE}})
    state = read_state(checkpoint)
    print(f"resuming {run_dir} from {checkpoint.name} ({state['frames']} frames)")
    return args, run_dir, state


class LearningCurve:
    """The run's history (training episodes, evaluations) and its clock, summed over resumed runs.

    ``history`` is ``{"train": [{frames, wall_s, return, episode_length}], "eval": [{frames,
    wall_s, *EVAL_METRICS}]}``, kept in every checkpoint.
    """

    def __init__(self, logger, resumed: dict | None = None):
        self.logger = logger
        self.history = resumed["history"] if resumed else {"train": [], "eval": []}
        self.wall_offset = resumed["wall_s"] if resumed else 0.0
        self.start = time.perf_counter()

    def wall(self) -> float:
        """Seconds of training, summed over resumed runs."""
        return self.wall_offset + time.perf_counter() - self.start

    def record_episodes(self, batch, frames: int) -> None:
        """The episodes that ended in ``batch``: their mean return and length."""
        done = batch.get(("next", "done")).squeeze(-1)
        if done.any():
            ended = batch.get("next")[done]
            point = {"frames": frames, "wall_s": self.wall(), "return": ended["episode_reward"].mean().item(),
                     "episode_length": ended["step_count"].float().mean().item()}
            self.history["train"].append(point)
            self.logger.log_scalar("train/episode_return", point["return"], step=frames)

    def record_eval(self, result: dict, wall_s: float) -> None:
        """One result of torchrl's ``Evaluator`` (which calls the return ``eval/reward``)."""
        names = {"return": "eval/reward"}
        point = {"frames": int(result["eval/step"]), "wall_s": wall_s,
                 **{key: float(result[names.get(key, f"eval/{key}")]) for key in EVAL_METRICS}}
        self.history["eval"].append(point)
        for key in EVAL_METRICS:
            self.logger.log_scalar(f"eval/{key}", point[key], step=point["frames"])

    def postfix(self) -> dict:
        """The progress bar's last training return and evaluation success rate."""
        train, evals = self.history["train"], self.history["eval"]
        return {"ret": f"{train[-1]['return']:.1f}" if train else "-", "success": f"{evals[-1]['success_rate']:.2f}" if evals else "-"}

    def write_csv(self, path: Path) -> None:
        with open(path, "w", newline="") as file:
            writer = csv.writer(file)
            writer.writerow(["frames", "wall_s", "kind", *EVAL_METRICS])
            for e in self.history["eval"]:
                writer.writerow([e["frames"], f"{e['wall_s']:.1f}", "eval", *(e[key] for key in EVAL_METRICS)])
            for t in self.history["train"]:
                writer.writerow([t["frames"], f"{t['wall_s']:.1f}", "train", *(t.get(key, "") for key in EVAL_METRICS)])

    def plot(self, path: Path, title: str) -> None:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, (ax_success, ax_return) = plt.subplots(1, 2, figsize=(10, 3.8))
        evals, train = self.history["eval"], self.history["train"]
        if evals:
            frames = [e["frames"] for e in evals]
            ax_success.plot(frames, [e["success_rate"] for e in evals], "o-", color="C2")
            ax_return.plot(frames, [e["return"] for e in evals], "o-", color="C2", label="evaluation (deterministic)")
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


class EvaluationSchedule:
    """Evaluations every ``eval_every`` frames by torchrl's ``Evaluator``, beside training, into a :class:`LearningCurve`.

    One runs at a time (a trigger while one runs is skipped). ``pending`` is the step of the
    one running: a checkpoint records it, and a run resumed from that checkpoint evaluates
    the checkpoint's policy again when that step is the checkpoint's.
    """

    def __init__(self, evaluator, curve: LearningCurve, eval_every: int, frames: int):
        self.evaluator, self.curve, self.eval_every = evaluator, curve, eval_every
        self.next = (frames // eval_every + 1) * eval_every if eval_every else None
        self.started = {}  # step -> wall time at which that evaluation was asked for
        self.pending = None

    def resume(self, resumed: dict | None, actor, frames: int) -> None:
        """Runs again the evaluation that was running when the checkpoint resumed from was written."""
        if resumed is None or resumed.get("pending_eval") is None:
            return
        if resumed["pending_eval"] == frames:  # the checkpoint holds the policy it evaluated: run it again
            self.evaluator.trigger_eval(actor, step=frames)
            self.started[frames], self.pending = self.curve.wall_offset, frames
        else:
            print(f"The evaluation at {resumed['pending_eval']} frames was still running when the checkpoint at {frames} "
                  f"was written; its policy is not saved, so that point of the curve is missing.")

    def _record(self, result: dict) -> None:
        step = int(result["eval/step"])
        self.curve.record_eval(result, self.started.get(step, self.curve.wall()))

    def _check_alive(self) -> None:
        """Raises if the evaluation running has died: torchrl's Evaluator then stays pending forever, silently."""
        # torchrl 0.14.1 has no public accessor for its evaluation thread (the "process" backend's too)
        thread = getattr(getattr(self.evaluator, "_backend", None), "_thread", None)
        if self.evaluator.pending and thread is not None and not thread.is_alive():
            raise RuntimeError(f"The evaluation asked for at {self.pending} frames stopped with an error (its traceback is "
                               "printed above) and no evaluation can run after it: fix that error, then --resume this run.")

    def step(self, actor, frames: int) -> None:
        """After each batch: records a finished evaluation, starts the next one when due."""
        self._check_alive()
        result = self.evaluator.poll()
        if result is not None:
            self._record(result)
            self.pending = None
        if self.next is not None and frames >= self.next:
            if self.evaluator.trigger_eval(actor, step=frames):  # False: skipped, the previous one still runs
                self.started[frames], self.pending = self.curve.wall(), frames
            self.next += self.eval_every

    def finish(self, actor, frames: int) -> None:
        """Waits for the running evaluation, evaluates the final policy unless that was it, and shuts the evaluator down."""
        if self.evaluator.pending:
            result, deadline = None, time.monotonic() + 600
            while result is None and time.monotonic() < deadline:
                result = self.evaluator.wait(timeout=1.0)
                if result is None:
                    self._check_alive()
            if result is None:
                raise RuntimeError("The evaluation asked for during training did not finish in 600s; if the evaluation "
                                   "thread or process printed a traceback above, that is why.")
            self._record(result)
        elif (result := self.evaluator.poll()) is not None:
            self._record(result)
        evals = self.curve.history["eval"]
        if not evals or evals[-1]["frames"] != frames:
            self.started[frames] = self.curve.wall()
            self._record(self.evaluator.evaluate(actor, step=frames))
        self.pending = None
        self.evaluator.shutdown()


def save_checkpoint(run_dir: Path, frames: int, *, args, env_config, actor, algorithm, curve: LearningCurve, logger,
                    pending_eval: int | None = None) -> Path:
    """Writes ``checkpoints/step_<frames>/`` (:mod:`agenthive.checkpoint`) with everything a resumed run needs."""
    state = {"wall_s": curve.wall(), **algorithm.state_dict(), "history": curve.history, "torch_rng": torch.get_rng_state(),
             "logger": logger.state_dict(), "pending_eval": pending_eval}
    saved_args = {k: v for k, v in dataclasses.asdict(args).items() if k != "resume"}  # how it ran is not config
    return write_checkpoint(run_dir, frames, policy=actor, state=state, args=saved_args, env_config=env_config,
                            replay_buffer=algorithm.replay_buffer)
