"""scripts/train.py --teacher: PPO pulled towards a policy served by a real ``start-server`` process (agenthive.training.teacher)."""
import json
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from tensordict import TensorDict
from torchrl.data import Bounded
from torchrl.envs.utils import ExplorationType, set_exploration_type

from agenthive.checkpoint import list_checkpoints
from agenthive.env_config import EnvConfig, make_env
from agenthive.envs.maniskill import _has_maniskill
from agenthive.serving import PolicyClient
from agenthive.training.networks import make_actor
from agenthive.training.teacher import Teacher, teacher_coefficient, teacher_loss
from helpers.ports import free_port_pair
from helpers.servers import PolicyServerProcess

ROOT = Path(__file__).resolve().parents[1]
CONSTANT = 0.5  # every action of the teacher, in every dimension
TEACHER = ("helpers.serving_test_policies:ConstantPolicy", f'{{"obs_dim": 21, "action_dim": 9, "value": {CONSTANT}}}')
QUICK = ["--algo", "ppo", "--hidden-sizes", "32,32", "--frames-per-batch", "200", "--ppo-epochs", "4", "--minibatch-size", "50",
         "--lr", "3e-3", "--eval-every", "0", "--eval-episodes", "1", "--eval-backend", "thread", "--no-video"]


def train(run_dir, *args) -> list[str]:
    return [sys.executable, str(ROOT / "scripts" / "train.py"), "--run-dir", str(run_dir), *args]


def run(command) -> subprocess.CompletedProcess:
    done = subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert done.returncode == 0, f"{command} failed:\n{done.stdout[-2000:]}\n{done.stderr[-4000:]}"
    return done


def distance_to_teacher(run_dir) -> float:
    """Mean |student's deterministic action - the teacher's| over the states of a fixed random rollout."""
    policy = torch.load(max(list_checkpoints(run_dir).items())[1] / "policy.pt", weights_only=False)
    env = make_env(EnvConfig())
    env.set_seed(123)
    torch.manual_seed(123)
    states = env.rollout(100, break_when_any_done=False)
    env.close()
    with torch.no_grad(), set_exploration_type(ExplorationType.DETERMINISTIC):
        actions = policy(states.select("observation"))["action"]
    return (actions - CONSTANT).abs().mean().item()


def sessions_served(port) -> int:
    with PolicyClient("127.0.0.1", port) as client:
        return client.health()["sessions"]


def test_teacher_term_pulls_the_students_actions_towards_the_teachers_and_asks_once_per_transition(tmp_path):
    with PolicyServerProcess(TEACHER[0], kwargs=TEACHER[1]) as server:
        alone = run(train(tmp_path / "alone", "--total-frames", "400", *QUICK))
        before = sessions_served(server.port)
        guided = run(train(tmp_path / "guided", "--total-frames", "400", *QUICK, "--teacher", f"127.0.0.1:{server.port}", "--teacher-coef", "5"))
        asked = sessions_served(server.port) - before
    assert "teacher 127.0.0.1" not in alone.stdout
    # the teacher's own evaluation, and its success beside the student's at the end
    assert f"teacher 127.0.0.1:{server.port}: success rate" in guided.stdout and "(student " in guided.stdout, guided.stdout[-2000:]
    # each of the 400 transitions asked once (plus the teacher's one-episode evaluation), not once per PPO epoch (4 x 400)
    assert 400 <= asked <= 410, asked
    far, near = distance_to_teacher(tmp_path / "alone"), distance_to_teacher(tmp_path / "guided")
    print(f"mean |a - teacher|: {near:.3f} guided, {far:.3f} alone")
    assert near < 0.5 * far, f"the teacher term did not pull the student: mean |a - teacher| {near:.3f} with it, {far:.3f} without"


def test_teacher_lost_mid_run_stops_it_keeping_the_last_checkpoint_and_resume_finishes_it(tmp_path):
    run_dir = tmp_path / "run"
    with PolicyServerProcess(TEACHER[0], kwargs=TEACHER[1]) as server:
        address = f"127.0.0.1:{server.port}"
        command = train(run_dir, "--total-frames", "1400", "--checkpoint-every", "200", *QUICK, "--teacher", address, "--teacher-timeout", "2")
        process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 300
        while not (run_dir / "checkpoints" / "step_000000200").exists():
            assert process.poll() is None, f"train.py exited ({process.returncode}) before its first checkpoint:\n{process.stderr.read()[-3000:]}"
            assert time.monotonic() < deadline, "no 200-frame checkpoint after 300s"
            time.sleep(0.05)
        server.stop()
        _, stderr = process.communicate(timeout=120)
        kept = list_checkpoints(run_dir)
        assert process.returncode != 0 and max(kept) < 1400, f"the run went on without its teacher (checkpoints {sorted(kept)})"
        assert f"the teacher at {address} stopped answering" in stderr, stderr[-3000:]
        assert f"the last checkpoint, {kept[max(kept)].name}, is kept" in stderr and "--resume" in stderr, stderr[-3000:]

        server.start()  # the same port
        resumed = run(train(run_dir, "--resume"))
    assert f"({max(kept)} frames)" in resumed.stdout
    assert max(list_checkpoints(run_dir)) == 1400


def _train_script():
    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        import train as train_script
    finally:
        sys.path.remove(str(ROOT / "scripts"))
    return train_script


@pytest.mark.parametrize("flags, message", [
    (["--algo", "sac", "--teacher", "127.0.0.1:5555"], "--teacher guides PPO's update .*use --algo ppo"),
    (["--algo", "ppo", "--teacher", "localhost"], "--teacher 'localhost': expected HOST:PORT"),
    (["--algo", "ppo", "--teacher", "127.0.0.1:5555", "--teacher-anneal", "exp"], "--teacher-anneal 'exp': expected one of none, linear, cosine"),
    (["--algo", "ppo", "--teacher", "127.0.0.1:5555", "--teacher-loss", "kl"], "--teacher-loss 'kl': expected one of mse, l1, nll"),
    (["--algo", "ppo", "--teacher", "127.0.0.1:5555", "--teacher-coef", "-1"], "--teacher-coef -1.0: expected a weight >= 0"),
    (["--algo", "ppo", "--env-kwargs", "{control_mode: 1}"], "--env-kwargs is neither JSON .* nor a Python literal .*expected an object"),
    (["--algo", "ppo", "--env-kwargs", "[1]"], "--env-kwargs is a list: expected an object with string keys"),
    (["--algo", "ppo", "--teacher-camera", "top_cam"], "--teacher-camera 'top_cam' keeps images for a teacher: expected --teacher HOST:PORT too"),
    (["--algo", "ppo", "--teacher", "127.0.0.1:5555", "--teacher-camera", "top_cam", "--observation", "r3m"],
     "--teacher-camera 'top_cam': expected --observation state"),
])
def test_bad_teacher_flags_are_refused_saying_why(tmp_path, flags, message):
    with pytest.raises(SystemExit, match=message):
        _train_script().main(["--run-dir", str(tmp_path / "run"), *flags])


def test_teacher_keys_feed_a_teacher_reading_state_from_the_envs_observation_and_its_requests_are_timed(tmp_path):
    kwargs = f'{{"obs_dim": 21, "action_dim": 9, "value": {CONSTANT}, "observation_key": "state"}}'
    with PolicyServerProcess(TEACHER[0], kwargs=kwargs) as server:
        address = f"127.0.0.1:{server.port}"
        main = _train_script().main
        with pytest.raises(SystemExit, match=r"reads \{'state'.*the env has no \['state'\] observations.*--teacher-keys"):
            main(["--run-dir", str(tmp_path / "unnamed"), "--algo", "ppo", "--teacher", address])
        unknown = r"announces no \['pose'\] observations \(it reads \['state'\]\); the env has no \['obs'\] keys \(it has \[.*'observation', 'qp_robot'.*\]\)"
        with pytest.raises(SystemExit, match=unknown):
            main(["--run-dir", str(tmp_path / "unknown"), "--algo", "ppo", "--teacher", address, "--teacher-keys", "pose=obs"])
        with pytest.raises(SystemExit, match=r"--teacher-keys 'state': expected TEACHER_KEY=ENV_KEY"):
            main(["--run-dir", str(tmp_path / "malformed"), "--algo", "ppo", "--teacher", address, "--teacher-keys", "state"])
        guided = run(train(tmp_path / "renamed", "--total-frames", "200", *QUICK, "--teacher", address, "--teacher-keys", "state=observation"))
    assert f"teacher {address}: success rate" in guided.stdout, guided.stdout[-2000:]
    # one batch of 200 transitions in minibatches of 50: 4 requests in the first epoch, none in the 3 others (cached)
    requests = re.search(r"teacher requests: (\d+) in ([\d.]+)s of (\d+)s of training", guided.stdout)
    assert requests and int(requests[1]) == 4 and 0 < float(requests[2]) <= float(requests[3]) + 1, guided.stdout[-2000:]


def test_openpi_teacher_is_asked_over_its_websocket_protocol_with_the_observations_named_by_teacher_keys(tmp_path):
    main = _train_script().main
    with pytest.raises(SystemExit, match="openpi servers do not announce their observation names; name each with --teacher-keys"):
        main(["--run-dir", str(tmp_path / "unnamed"), "--algo", "ppo", "--teacher", "127.0.0.1:5555", "--teacher-protocol", "openpi"])
    seven = f'{{"obs_dim": 21, "action_dim": 7, "observation_key": "state"}}'
    with PolicyServerProcess(TEACHER[0], "--openpi-port", "0", kwargs=seven) as server:
        with pytest.raises(SystemExit, match=r"\(openpi\): answered actions of shape \(2, 7\); expected \(chunk, 9\)"):
            main(["--run-dir", str(tmp_path / "seven"), "--algo", "ppo", "--teacher", f"127.0.0.1:{server.openpi_port}",
                  "--teacher-protocol", "openpi", "--teacher-keys", "state=observation"])
    kwargs = f'{{"obs_dim": 21, "action_dim": 9, "value": {CONSTANT}, "observation_key": "state"}}'
    with PolicyServerProcess(TEACHER[0], "--openpi-port", "0", kwargs=kwargs) as server:
        address = f"127.0.0.1:{server.openpi_port}"
        guided = run(train(tmp_path / "openpi", "--total-frames", "200", *QUICK, "--teacher", address,
                           "--teacher-protocol", "openpi", "--teacher-keys", "state=observation"))
    assert f"teacher {address}: success rate" in guided.stdout, guided.stdout[-2000:]
    assert re.search(r"teacher requests: 4 in [\d.]+s", guided.stdout), guided.stdout[-2000:]


def test_unreachable_teacher_fails_at_the_start_naming_its_address(tmp_path):
    port = free_port_pair()
    started = time.monotonic()
    with pytest.raises(SystemExit, match=rf"--teacher 127\.0\.0\.1:{port}: no policy server answered there"):
        _train_script().main(["--run-dir", str(tmp_path / "run"), "--algo", "ppo", "--teacher", f"127.0.0.1:{port}", "--teacher-timeout", "1"])
    assert time.monotonic() - started < 60
    assert not list_checkpoints(tmp_path / "run")


def test_teacher_coefficient_anneals_from_its_value_to_zero():
    assert [teacher_coefficient(2.0, "none", f, 100) for f in (0, 50, 100)] == [2.0, 2.0, 2.0]
    assert [teacher_coefficient(2.0, "linear", f, 100) for f in (0, 50, 100)] == [2.0, 1.0, 0.0]
    assert [round(teacher_coefficient(2.0, "cosine", f, 100), 6) for f in (0, 25, 50, 100)] == [2.0, round(1 + 2 ** -0.5, 6), 1.0, 0.0]


def test_a_teacher_reading_images_gets_teacher_camera_images_kept_in_the_batch_while_the_student_reads_state(tmp_path):
    with PolicyServerProcess("helpers.serving_test_policies:ImageMeanPolicy", kwargs='{"size": 32}') as server:
        address = f"127.0.0.1:{server.port}"
        main = _train_script().main
        with pytest.raises(SystemExit, match=r"the env has no \['image'\] observations.*--teacher-camera CAMERA keeps one camera's under 'teacher_image'"):
            main(["--run-dir", str(tmp_path / "no-camera"), "--algo", "ppo", "--teacher", address])
        with pytest.raises(SystemExit, match=r"other shapes or dtypes.*\(32, 32, 3\), 'uint8'\) from env key 'teacher_image' of \(\(48, 48, 3\).*--teacher-image-size"):
            main(["--run-dir", str(tmp_path / "size"), "--algo", "ppo", "--teacher", address, "--teacher-camera", "top_cam",
                  "--teacher-image-size", "48", "--teacher-keys", "image=teacher_image"])

        # the teacher's answers are for the very images of the batch's transitions
        probe = make_env(EnvConfig(), teacher_camera="top_cam", teacher_image_size=32)
        teacher = Teacher(address, observation_spec=probe.observation_spec, action_spec=probe.action_spec, keys={"image": "teacher_image"})
        probe.close()
        env = make_env(EnvConfig(), num_envs=2, teacher_camera="top_cam", teacher_image_size=32)
        env.set_seed(0)
        batch = env.rollout(5, lambda td: td.set("action", env.action_spec.rand()), break_when_any_done=False).reshape(-1)
        env.close()
        teacher.new_batch(batch.numel(), "cpu")
        answers = teacher.actions(batch, torch.arange(batch.numel()))
        teacher.close()
        images = batch["teacher_image"]
        assert images.shape == (10, 32, 32, 3) and images.dtype == torch.uint8 and images.float().std() > 10, "no camera image in the batch"
        expected = images.double().mean((1, 2, 3)) / 255 * 2 - 1
        torch.testing.assert_close(answers, expected.float()[:, None].expand(10, 9), rtol=0, atol=1e-5)

        guided = run(train(tmp_path / "guided", "--total-frames", "200", *QUICK, "--teacher", address, "--teacher-camera", "top_cam",
                           "--teacher-image-size", "32", "--teacher-keys", "image=teacher_image"))
    assert f"teacher {address}: success rate" in guided.stdout, guided.stdout[-2000:]
    assert re.search(r"teacher requests: 4 in [\d.]+s", guided.stdout), guided.stdout[-2000:]
    student = torch.load(max(list_checkpoints(tmp_path / "guided").items())[1] / "policy.pt", weights_only=False)
    assert student.in_keys == ["observation"], f"the student reads {student.in_keys}: expected state only"


@pytest.mark.skipif(not _has_maniskill, reason="mani_skill is not installed (pip install 'agenthive[maniskill]')")
def test_the_vla_teacher_command_runs_on_maniskill_with_end_effector_actions_and_camera_images(tmp_path):
    """GET_STARTED's ManiSkill + VLA command, at CPU size: 7-d end-effector actions, the human-view camera for the teacher."""
    with PolicyServerProcess("helpers.serving_test_policies:ImageMeanPolicy", kwargs='{"size": 64, "action_dim": 7}') as server:
        address = f"127.0.0.1:{server.port}"
        maniskill = ["--backend", "maniskill", "--env", "PickCube-v1", "--goal-reward", "success",
                     "--env-kwargs", '{"control_mode": "pd_ee_delta_pose"}']
        guided = run(train(tmp_path / "guided", *maniskill, "--total-frames", "200", *QUICK, "--teacher", address,
                           "--teacher-camera", "human", "--teacher-image-size", "64", "--teacher-keys", "image=teacher_image"))
    assert f"teacher {address}: success rate" in guided.stdout, guided.stdout[-2000:]
    assert re.search(r"teacher requests: 4 in [\d.]+s", guided.stdout), guided.stdout[-2000:]
    config = json.loads((list_checkpoints(tmp_path / "guided")[200] / "config.json").read_text())
    assert config["env"]["env_kwargs"] == {"control_mode": "pd_ee_delta_pose"}


def _fit_to_noisy_teacher(kind: str, steps: int = 400) -> tuple[float, float]:
    """A student fitted by ``teacher_loss(kind)`` alone to a teacher whose answers are clean actions + clipped noise:
    (mean |student - clean action|, mean |answer - clean action|)."""
    torch.manual_seed(0)
    obs = torch.randn(512, 4)
    clean = 0.8 * torch.tanh(obs[:, :3] + 0.5 * obs[:, 3:])  # inside the [-1, 1] bounds
    actor = make_actor(["observation"], 4, Bounded(-1.0, 1.0, shape=(3,)), [64, 64])
    optimizer = torch.optim.Adam(actor.parameters(), lr=1e-3)
    data = TensorDict(observation=obs, batch_size=[512])
    for _ in range(steps):  # fresh answers each step, as each PPO batch brings
        answers = (clean + 1.5 * torch.randn_like(clean)).clamp(-1, 1)  # bench_teacher's noise, projected on the bounds
        loss = teacher_loss(actor, data, answers, kind)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        student = actor.get_dist(data.select("observation").clone()).deterministic_sample
    return (student - clean).abs().mean().item(), (answers - clean).abs().mean().item()


def test_l1_pulls_the_student_to_a_noisy_teachers_clean_action_and_mse_to_its_clipped_mean():
    """Why bench_teacher uses --teacher-loss l1: the median of clip(a + noise) is a, its mean is shrunk towards 0."""
    l1, answers = _fit_to_noisy_teacher("l1")
    mse, _ = _fit_to_noisy_teacher("mse")
    print(f"mean |student - clean|: l1 {l1:.3f}, mse {mse:.3f}; the teacher's answers {answers:.3f}")
    assert l1 < 0.1 and l1 < 0.2 * answers, f"l1 did not find the clean action: {l1:.3f} (answers {answers:.3f})"
    assert mse > 2 * l1, f"mse ({mse:.3f}) was expected to be pulled off the clean action by the clipping, more than l1 ({l1:.3f})"
