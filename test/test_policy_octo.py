"""Octo served from its own JAX environment (no torch), with tiny random-weight checkpoints
saved by Octo's ``save_pretrained`` and loaded by the adapter through ``load_pretrained``.

The environment is built by ``scripts/policy_envs/octo.sh`` and cached outside the
repository (``policy_venvs``); the first run on a machine builds it (minutes)."""
import json
import re
import subprocess
import sys

import numpy as np
import pytest
import torch

from agenthive.checkpoint import list_checkpoints
from agenthive.serving import PolicyClient
from agenthive.serving.policies.octo import select_statistics
from helpers.octo_env import HELPERS, QUIET, octo_venv, tiny_checkpoints
from helpers.policy_venvs import ROOT
from helpers.servers import PolicyServerProcess


@pytest.fixture(scope="module")
def octo():
    venv = octo_venv()
    return venv, tiny_checkpoints(venv)


@pytest.fixture
def octo_server_env(octo, monkeypatch):
    """Servers started by the test run in the Octo environment with this checkout's agenthive."""
    venv, _ = octo
    for name, value in venv.env(**QUIET).items():
        if name in ("PYTHONPATH", *QUIET):
            monkeypatch.setenv(name, value)
    return venv


def octo_reference(venv, checkpoint, tmp_path, *, unnorm_key, window, episodes):
    """Octo called in-process (``octo_reference.py``) on ``episodes``: (instruction, {key: [T, ...]}) pairs."""
    source, target = tmp_path / "reference-in.npz", tmp_path / "reference-out.npz"
    arrays = {f"{i}/{key}": value for i, (_, observations) in enumerate(episodes) for key, value in observations.items()}
    np.savez(source, instructions=[instruction for instruction, _ in episodes], unnorm_key=json.dumps(unnorm_key), window=window, **arrays)
    venv.run([str(HELPERS / "octo_reference.py"), str(checkpoint), str(source), str(target)], env=QUIET)
    actions = np.load(target)
    return [actions[str(i)] for i in range(len(episodes))]


def test_the_octo_environment_has_octos_pins_and_no_torch(octo):
    venv, _ = octo
    code = (
        "import importlib.util, jax, flax, tensorflow as tf, transformers, octo, dlimp\n"
        "print(jax.__version__, flax.__version__, tf.__version__, transformers.__version__)\n"
        "print([name for name in ('torch', 'torchvision', 'torchrl', 'tensordict') if importlib.util.find_spec(name)])\n"
        "print(dlimp.__doc__.splitlines()[0])"
    )
    versions, leaked, placeholder = venv.run(["-c", code], env=QUIET).stdout.strip().splitlines()[-3:]
    assert versions == "0.4.20 0.7.5 2.15.0 4.40.1"
    assert leaked == "[]"
    assert placeholder.startswith("Placeholder for ``dlimp``")
    out = subprocess.run([str(venv.python), "-c", "import torch"], capture_output=True, text=True)
    assert "No module named 'torch'" in out.stderr


def test_unnorm_key_selects_statistics_like_the_agents_project():
    stats = {"bridge": {"action": {"mean": 1}}, "fractal": {"action": {"mean": 2}}}
    assert select_statistics(stats, "fractal") == ({"action": {"mean": 2}}, "fractal")
    assert select_statistics(stats, ["bridge"]) == ({"action": {"mean": 1}}, "bridge")
    assert select_statistics({"only": {"action": {"mean": 3}}}, None)[0] == {"action": {"mean": 3}}
    assert select_statistics({"action": {"mean": 4}, "proprio": {}}, []) == ({"action": {"mean": 4}, "proprio": {}}, "[]")
    with pytest.raises(ValueError, match=r"unnorm_key=\[\]: names no action statistics; this checkpoint has them for \['bridge', 'fractal'\]"):
        select_statistics(stats, [])
    with pytest.raises(ValueError, match=r"unnorm_key='viola': the checkpoint's statistics have no 'viola' at \[\]; expected one of \['bridge', 'fractal'\]"):
        select_statistics(stats, "viola")


def test_served_octo_gives_octos_own_actions_per_episode(octo, octo_server_env, tmp_path):
    """Two episodes with their own instructions and histories, images resized on the server,
    against Octo's wrappers + sample_actions called in-process on the same observations."""
    venv, checkpoints = octo
    rng = np.random.default_rng(0)
    images = {name: rng.integers(0, 256, (3, 96, 80, 3), dtype=np.uint8) for name in "ab"}
    kwargs = json.dumps({"checkpoint_path": str(checkpoints["bridge"]), "checkpoint_step": 0, "horizon": 2, "unnorm_key": ["fractal"], "image_size": [96, 80]})
    with PolicyServerProcess("octo", kwargs=kwargs, python=venv.python) as server:
        with PolicyClient("127.0.0.1", server.port, ready_timeout=300) as client:
            meta = client.metadata
            served = {"a": [], "b": []}
            for t in range(3):  # episode b starts one step late, so the two histories differ
                served["a"].append(client.act({"image_primary": images["a"][t : t + 1]}, sessions=["a"], reset=[t == 0], instruction="pick up the red cube")["actions"][0])
                if t < 2:
                    served["b"].append(client.act({"image_primary": images["b"][t : t + 1]}, sessions=["b"], reset=[t == 0], instruction="open the drawer")["actions"][0])
    assert (meta.observations, meta.action_shape, meta.chunk_length, meta.takes_instruction) == ({"image_primary": ((96, 80, 3), "uint8")}, (7,), 4, True)
    assert (meta.info["window"], meta.info["unnorm_key"], meta.info["model_image_sizes"]) == (2, "fractal", {"image_primary": [64, 64]})
    episodes = [("pick up the red cube", {"image_primary": images["a"]}), ("open the drawer", {"image_primary": images["b"][:2]})]
    expected_a, expected_b = octo_reference(venv, checkpoints["bridge"], tmp_path, unnorm_key=["fractal"], window=2, episodes=episodes)
    np.testing.assert_allclose(np.stack(served["a"]), expected_a, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(np.stack(served["b"]), expected_b, rtol=1e-5, atol=1e-5)
    assert np.abs(np.diff(expected_a, axis=0)).max() > 1e-4  # the history and the images move the actions
    assert np.abs(expected_a[0] - expected_b[0]).max() > 1e-4


def test_octo_with_two_cameras_and_proprio_batches_clients(octo, octo_server_env, tmp_path):
    """Both cameras resized, proprio normalized with the dataset statistics, two episodes in one batch."""
    venv, checkpoints = octo
    rng = np.random.default_rng(1)
    obs = {"image_primary": rng.integers(0, 256, (2, 2, 224, 224, 3), dtype=np.uint8), "image_wrist": rng.integers(0, 256, (2, 2, 224, 224, 3), dtype=np.uint8), "proprio": rng.normal(size=(2, 2, 9)).astype(np.float32)}
    kwargs = json.dumps({"checkpoint_path": str(checkpoints["two_cams"]), "image_size": [224, 224], "compile_batch_sizes": [1, 2]})
    with PolicyServerProcess("octo", kwargs=kwargs, python=venv.python) as server:
        with PolicyClient("127.0.0.1", server.port, ready_timeout=300) as client:
            assert client.metadata.observations == {"image_primary": ((224, 224, 3), "uint8"), "image_wrist": ((224, 224, 3), "uint8"), "proprio": ((9,), "float32")}
            served = [client.act({key: value[:, t] for key, value in obs.items()}, sessions=["a", "b"], reset=[t == 0] * 2, instruction="put the fork in the pot")["actions"] for t in range(2)]
    episodes = [("put the fork in the pot", {key: value[i] for key, value in obs.items()}) for i in range(2)]
    expected = octo_reference(venv, checkpoints["two_cams"], tmp_path, unnorm_key=["bridge_dataset"], window=2, episodes=episodes)
    for i in range(2):
        np.testing.assert_allclose(np.stack([served[t][i] for t in range(2)]), expected[i], rtol=1e-5, atol=1e-5)


def test_start_server_octo_drives_a_robohive_camera_rollout(octo, octo_server_env, tmp_path):
    """The agents project's keyword names, a RoboHive camera chosen by the client, chunks played by RemotePolicyModule."""
    from torchrl.envs import SqueezeTransform, TransformedEnv

    from agenthive.envs import RoboHiveEnv
    from agenthive.modules import RemotePolicyModule

    venv, checkpoints = octo
    # the agents project's keywords, written as its README writes them (a Python literal: None)
    kwargs = f'{{"checkpoint_path": "{checkpoints["reach"]}", "checkpoint_step": None, "horizon": 1, "unnorm_key": [], "image_size": [96, 96]}}'
    base = RoboHiveEnv("FrankaReachRandom-v0", from_pixels=True, cameras=["top_cam"], image_size=(96, 96), shadows=False)
    env = TransformedEnv(base, SqueezeTransform(-4, in_keys=["pixels"], out_keys=["top_cam"]))  # [1 camera, H, W, 3] -> [H, W, 3]
    with PolicyServerProcess("octo", kwargs=kwargs, python=venv.python) as server:
        policy = RemotePolicyModule(
            "127.0.0.1", server.port, in_keys={"top_cam": "image_primary"}, instruction="reach the red target",
            ready_timeout=300, observation_spec=env.observation_spec, action_spec=env.action_spec,
        )
        env.set_seed(0)
        rollout = env.rollout(6, policy, break_when_any_done=False)
        policy.close()
    assert rollout["action"].shape == (6, 9) and torch.isfinite(rollout["action"]).all()
    queried = rollout["top_cam"][[0, 4]].numpy()  # RemotePolicyModule asks at steps 0 and 4 (chunks of 4)
    (expected,) = octo_reference(venv, checkpoints["reach"], tmp_path, unnorm_key=[], window=1, episodes=[("reach the red target", {"image_primary": queried})])
    np.testing.assert_allclose(rollout["action"].numpy(), np.concatenate([expected[0], expected[1][:2]]), rtol=1e-5, atol=1e-5)
    assert not torch.equal(rollout["top_cam"][0], rollout["top_cam"][5])  # the arm moved in the camera image


def test_a_served_octo_guides_a_state_ppo_student_reading_teacher_camera_images(octo, octo_server_env, tmp_path):
    """VLA-guided RL with a real Octo model in its own environment: train.py keeps the camera's images in the batch for it."""
    venv, checkpoints = octo
    kwargs = json.dumps({"checkpoint_path": str(checkpoints["reach"]), "horizon": 1, "unnorm_key": [], "compile_batch_sizes": [1, 64]})
    quick = ["--algo", "ppo", "--hidden-sizes", "32,32", "--frames-per-batch", "200", "--ppo-epochs", "2", "--minibatch-size", "50",
             "--total-frames", "200", "--eval-every", "0", "--eval-episodes", "1", "--eval-backend", "thread", "--no-video"]
    with PolicyServerProcess("octo", kwargs=kwargs, python=venv.python) as server:
        teacher = ["--teacher", f"127.0.0.1:{server.port}", "--teacher-camera", "top_cam", "--teacher-image-size", "64",
                   "--teacher-keys", "image_primary=teacher_image", "--teacher-instruction", "reach the red target", "--teacher-timeout", "300"]
        done = subprocess.run([sys.executable, str(ROOT / "scripts" / "train.py"), "--run-dir", str(tmp_path / "guided"), *quick, *teacher],
                              capture_output=True, text=True, timeout=900, cwd=ROOT)
    assert done.returncode == 0, f"{done.stdout[-2000:]}\n{done.stderr[-4000:]}"
    assert f"teacher 127.0.0.1:{server.port}: success rate" in done.stdout, done.stdout[-2000:]
    # 200 transitions in minibatches of 50: one Octo request per minibatch of the first epoch, each with its 50 images
    assert re.search(r"teacher requests: 4 in [\d.]+s", done.stdout), done.stdout[-2000:]
    student = torch.load(list_checkpoints(tmp_path / "guided")[200] / "policy.pt", weights_only=False)
    assert student.in_keys == ["observation"]
