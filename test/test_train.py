"""scripts/train.py: SAC and PPO for a few hundred frames, checkpoints, resuming after a crash, outputs."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import imageio.v2 as imageio
import pytest
import torch

from agenthive.checkpoint import list_checkpoints
from agenthive.distributed import _has_ray
from agenthive.env_config import EnvConfig, make_env
from agenthive.envs.maniskill import _has_maniskill
from helpers.ports import free_port_pair

ROOT = Path(__file__).resolve().parents[1]
SMALL = ["--hidden-sizes", "32,32", "--frames-per-batch", "100", "--eval-episodes", "2"]


def train(run_dir, *args) -> list[str]:
    return [sys.executable, str(ROOT / "scripts" / "train.py"), "--run-dir", str(run_dir), *args]


def run(command, timeout=600) -> subprocess.CompletedProcess:
    done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, cwd=ROOT)
    assert done.returncode == 0, f"{command} failed:\n{done.stdout[-2000:]}\n{done.stderr[-4000:]}"
    return done


def test_sac_resumes_after_a_crash_with_the_same_config_and_frame_count(tmp_path):
    run_dir = tmp_path / "sac"
    command = train(run_dir, "--algo", "sac", "--total-frames", "1000", "--init-random-frames", "100", "--batch-size", "32",
                    "--checkpoint-every", "200", "--eval-every", "200", "--no-video", *SMALL)
    # a crash: the whole process group (trainer, env and evaluation workers) killed at once
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    deadline = time.monotonic() + 600
    while not (run_dir / "checkpoints" / "step_000000400").exists():
        assert process.poll() is None, f"train.py exited ({process.returncode}) before its 400-frame checkpoint:\n{process.stderr.read()[-3000:]}"
        assert time.monotonic() < deadline, "no 400-frame checkpoint after 600s"
        time.sleep(0.05)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    process.stderr.close()
    before = list_checkpoints(run_dir)
    crashed_at = max(before)
    assert 400 <= crashed_at < 1000, f"train.py was not interrupted mid-run (checkpoints {sorted(before)})"

    resumed = run(train(run_dir, "--resume"))
    assert f"resuming {run_dir} from step_{crashed_at:09d} ({crashed_at} frames)" in resumed.stdout

    checkpoints = list_checkpoints(run_dir)
    assert max(checkpoints) == 1000 and set(before) <= set(checkpoints)
    first_config = json.loads((checkpoints[200] / "config.json").read_text())
    last_config = json.loads((checkpoints[1000] / "config.json").read_text())
    assert first_config == last_config
    state = torch.load(checkpoints[1000] / "state.pt", weights_only=False)
    assert state["frames"] == 1000
    train_frames = [point["frames"] for point in state["history"]["train"]]
    # one history: the points up to the checkpoint, then the resumed run's, counting on
    assert train_frames == sorted(set(train_frames)) and train_frames[-1] == 1000
    assert any(f <= crashed_at for f in train_frames) and any(f > crashed_at for f in train_frames)
    eval_frames = [e["frames"] for e in state["history"]["eval"]]
    assert eval_frames == sorted(eval_frames) and eval_frames[-1] == 1000
    # the evaluation at the checkpoint resumed from was running when the process died: run again, not lost silently
    assert crashed_at in eval_frames or "was still running when the checkpoint" in resumed.stdout, (eval_frames, resumed.stdout[-2000:])
    # the replay buffer on disk kept the frames from before the crash and got the rest
    assert json.loads((checkpoints[1000] / "replay_buffer.json").read_text())["len"] == 1000
    assert (run_dir / "learning_curve.png").stat().st_size > 10_000
    with open(run_dir / "history.csv") as file:
        kinds = [line.split(",")[2] for line in file.read().splitlines()[1:]]
    assert kinds.count("eval") == len(state["history"]["eval"]) >= 2


def test_ppo_trains_checkpoints_plots_and_films(tmp_path):
    run_dir = tmp_path / "ppo"
    done = run(train(run_dir, "--algo", "ppo", "--total-frames", "400", "--num-envs", "2", "--ppo-epochs", "2",
                     "--minibatch-size", "64", "--checkpoint-every", "200", "--eval-every", "200", *SMALL))
    assert "400 frames in" in done.stdout and "evaluation success rate" in done.stdout
    checkpoints = list_checkpoints(run_dir)
    assert sorted(checkpoints) == [200, 400]
    assert "replay_buffer.json" not in {p.name for p in checkpoints[400].iterdir()}  # on-policy: no buffer

    policy = torch.load(checkpoints[400] / "policy.pt", weights_only=False)
    env = make_env(EnvConfig.from_dict(json.loads((checkpoints[400] / "config.json").read_text())["env"]))
    with torch.no_grad():
        rollout = env.rollout(5, policy)
    env.close()
    assert rollout["action"].shape == (5, 9) and rollout["action"].abs().max() <= 1
    # outside an exploration context the saved policy acts deterministically
    assert torch.equal(policy(rollout[:1].exclude("action"))["action"], policy(rollout[:1].exclude("action"))["action"])

    video = imageio.mimread(run_dir / "rollout.mp4")
    assert len(video) == 50 and video[0].shape == (128, 128, 3)
    assert (run_dir / "rollout.png").is_file() and (run_dir / "learning_curve.png").is_file()
    assert list((run_dir / "logs").rglob("*.csv")), "the CSV logger wrote nothing"


def test_resume_refuses_changed_arguments_and_fresh_runs_refuse_old_directories(tmp_path):
    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        import train as train_script
    finally:
        sys.path.remove(str(ROOT / "scripts"))
    checkpoint = tmp_path / "run" / "checkpoints" / "step_000000100"
    checkpoint.mkdir(parents=True)
    saved = {**{f: getattr(train_script.Args(), f) for f in train_script.Args.__dataclass_fields__}, "run_dir": str(tmp_path / "run")}
    (checkpoint / "config.json").write_text(json.dumps({"args": saved, "env": EnvConfig().to_dict()}))
    with pytest.raises(SystemExit, match=r"these differ: --lr=0\.001 \(saved: 0\.0003\)"):
        train_script.main(["--run-dir", str(tmp_path / "run"), "--resume", "--lr", "0.001"])
    with pytest.raises(SystemExit, match="already holds checkpoints: pass --resume"):
        train_script.main(["--run-dir", str(tmp_path / "run")])
    with pytest.raises(SystemExit, match="no checkpoint under"):
        train_script.main(["--run-dir", str(tmp_path / "empty"), "--resume"])


def test_sac_on_r3m_embeddings_of_camera_images(tmp_path):
    from torchvision import models

    convnet = models.resnet18()
    convnet.fc = torch.nn.Identity()
    torch.save({"r3m": {f"module.convnet.{k}": v for k, v in convnet.state_dict().items()}}, tmp_path / "r3m_18.pt")
    run_dir = tmp_path / "r3m"
    run(train(run_dir, "--env", "FrankaReachRandom_v2d-v0", "--observation", "r3m", "--encoder-model", "resnet18",
              "--encoder-weights", str(tmp_path), "--cameras", "top_cam", "--image-size", "64", "--total-frames", "100",
              "--init-random-frames", "50", "--batch-size", "16", "--checkpoint-every", "100", "--eval-every", "0",
              "--hidden-sizes", "32,32", "--frames-per-batch", "50", "--eval-episodes", "1"))
    config = json.loads((list_checkpoints(run_dir)[100] / "config.json").read_text())
    assert config["env"]["observation"] == "r3m" and config["env"]["encoder_weights"] == str(tmp_path)
    policy = torch.load(list_checkpoints(run_dir)[100] / "policy.pt", weights_only=False)
    assert policy.in_keys == ["embedding"]  # 512 R3M features of top_cam + the proprioception
    first_layer = next(m for m in policy.modules() if isinstance(m, torch.nn.Linear))
    assert first_layer.in_features == 512 + 18
    video = imageio.mimread(run_dir / "rollout.mp4")
    assert video[0].shape == (64, 64, 3)  # R3M pipelines film the camera they embed


@pytest.mark.parametrize("backend", [
    "distributed",
    pytest.param("ray", marks=pytest.mark.skipif(not _has_ray, reason="Ray is not installed (pip install 'agenthive[ray]'; scripts/install.sh installs it)")),
])
def test_sac_with_torchrl_distributed_collectors(tmp_path, backend):
    run_dir = tmp_path / backend
    done = run(train(run_dir, "--algo", "sac", "--total-frames", "1000", "--init-random-frames", "200", "--batch-size", "32",
                     "--checkpoint-every", "500", "--eval-every", "500", "--no-video", "--collector-backend", backend,
                     "--collector-workers", "2", "--tcp-port", str(free_port_pair()), *SMALL))
    assert "1000 frames in" in done.stdout
    checkpoints = list_checkpoints(run_dir)
    assert sorted(checkpoints) == [500, 1000]
    config = json.loads((checkpoints[1000] / "config.json").read_text())
    assert (config["args"]["collector_backend"], config["args"]["collector_workers"]) == (backend, 2)
    rows = [line.split(",") for line in (run_dir / "history.csv").read_text().splitlines()[1:]]
    assert [row[0] for row in rows if row[2] == "eval"] == ["500", "1000"]  # columns: frames, wall_s, kind, ...
    trained = [int(row[0]) for row in rows if row[2] == "train"]  # episodes the workers finished, logged as they came
    assert trained and trained == sorted(trained) and trained[-1] <= 1000


@pytest.mark.skipif(not _has_maniskill, reason="mani_skill is not installed (pip install 'agenthive[maniskill]')")
def test_ppo_on_maniskill_pickcube_state(tmp_path):
    run_dir = tmp_path / "pickcube"
    done = run(train(run_dir, "--backend", "maniskill", "--env", "PickCube-v1", "--algo", "ppo", "--total-frames", "200",
                     "--ppo-epochs", "1", "--minibatch-size", "50", "--checkpoint-every", "200", "--eval-every", "0", *SMALL))
    assert "200 frames in" in done.stdout
    config = json.loads((list_checkpoints(run_dir)[200] / "config.json").read_text())
    assert config["env"]["backend"] == "maniskill"
    video = imageio.mimread(run_dir / "rollout.mp4", memtest=False)  # ManiSkill's human-view camera
    assert len(video) == 50 and video[0].ndim == 3


def _env_that_cannot_be_made():
    raise RuntimeError("the evaluation env cannot be made")


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")  # the evaluation thread's own error
def test_an_evaluation_that_dies_stops_the_run_instead_of_waiting_for_it():
    """torchrl's Evaluator stays pending forever once its evaluation thread raised; the schedule says so at once."""
    import threading
    import types

    from torchrl.collectors import Evaluator

    from agenthive.training.run import EvaluationSchedule

    evaluator = Evaluator(_env_that_cannot_be_made, policy_factory=lambda env: None, num_trajectories=1, backend="thread")
    schedule = EvaluationSchedule(evaluator, types.SimpleNamespace(wall=lambda: 0.0), eval_every=10, frames=0)
    schedule.step(torch.nn.Linear(2, 2), 10)  # asks for the evaluation at 10 frames, whose thread raises
    assert schedule.pending == 10 and evaluator.pending
    errors = []

    def finish():
        try:
            schedule.finish(torch.nn.Linear(2, 2), 20)
        except RuntimeError as err:
            errors.append(err)

    waiter = threading.Thread(target=finish, daemon=True)
    waiter.start()
    waiter.join(timeout=60)  # before: 600 s of waiting for a result that never comes
    assert not waiter.is_alive() and len(errors) == 1
    assert "evaluation asked for at 10 frames stopped with an error" in str(errors[0]) and "--resume" in str(errors[0])
    with pytest.raises(RuntimeError, match="stopped with an error"):
        schedule.step(torch.nn.Linear(2, 2), 30)  # training does not go on without evaluations
    evaluator.shutdown()
