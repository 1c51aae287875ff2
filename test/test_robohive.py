"""RoboHiveEnv on real RoboHive 0.7 simulators (assets from AGENTHIVE_SIMHIVE_DIR)."""
from __future__ import annotations

import doctest
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch
from torchrl.envs import EnvCreator, ParallelEnv, SerialEnv
from torchrl.envs.utils import check_env_specs

from agenthive.envs import RoboHiveEnv, robohive_assets
from agenthive.envs.robohive import _import_robohive
from helpers.step_checks import assert_step_output_is_complete

robohive = _import_robohive()
# Every arm and Franka-kitchen id whose assets ship in ../shared/simhive. The *_vr3m*/
# *_vrrl* variants are left out: they download pretrained encoders at construction.
ARM_AND_KITCHEN_IDS = sorted(
    env_id
    for env_id in [*robohive.robohive_arm_suite, *robohive.robohive_multitask_suite]
    if "_vr" not in env_id
)
STATE_IDS = [i for i in ARM_AND_KITCHEN_IDS if "_v2d" not in i]
REACH = "FrankaReachRandom-v0"


def replay(actions):
    """A policy that plays back a fixed sequence of actions."""
    it = iter(actions)

    def policy(td):
        td["action"] = next(it)
        return td

    return policy


def test_suite_is_the_expected_one():
    # guards the parametrisation below against silently testing nothing
    assert len(ARM_AND_KITCHEN_IDS) >= 80
    assert {"FrankaReachRandom-v0", "FetchReachRandom-v0", "FrankaPickPlaceRandom-v0", "FrankaPushRandom-v0",
            "FK1_MicroOpenRandom-v4", "franka_micro_open-v3"} <= set(ARM_AND_KITCHEN_IDS)


@pytest.mark.parametrize("num_envs", [None, 2], ids=["single", "batched"])
@pytest.mark.parametrize("env_id", STATE_IDS)
def test_check_env_specs_state(env_id, num_envs):
    env = RoboHiveEnv(env_id, num_envs=num_envs)
    batch = () if num_envs is None else (num_envs,)
    assert env.batch_size == batch
    check_env_specs(env, seed=0)
    assert_step_output_is_complete(env)
    td = env.reset()
    assert td["observation"].dtype == torch.float32
    # each state key is its slice of "observation", in order
    parts = [td[key] for key in env.state_obs_keys]
    torch.testing.assert_close(torch.cat(parts, -1), td["observation"])
    assert td["success"].dtype == torch.bool and td["success"].shape == (*batch, 1)
    env.close()


def test_matches_raw_robohive_loop():
    """Same seed, same actions: RoboHiveEnv reproduces RoboHive's own gymnasium loop."""
    actions = torch.rand(20, 9) * 2 - 1
    env = RoboHiveEnv(REACH)
    env.set_seed(3)
    td = env.rollout(20, replay(actions))

    raw = gym.make(REACH).unwrapped
    raw.seed(3)
    obs, _ = raw.reset()
    np.testing.assert_allclose(td["observation"][0].numpy(), obs.astype(np.float32), rtol=1e-6)
    for t, action in enumerate(actions.numpy()):
        obs, reward, terminated, _, info = raw.step(action)
        nxt = td["next"][t]
        np.testing.assert_allclose(nxt["observation"].numpy(), obs.astype(np.float32), rtol=1e-6, atol=1e-6)
        assert nxt["reward"].item() == pytest.approx(reward, rel=1e-5)
        assert nxt["success"].item() == bool(info["solved"])
        assert nxt["terminated"].item() == bool(terminated)


def test_success_reports_solved():
    # FK1_Relax asks the arm to stay at its start pose: RoboHive reports it solved at once
    env = RoboHiveEnv("FK1_RelaxFixed-v4")
    td = env.rollout(3, replay(torch.zeros(3, 9)))
    assert td["next", "success"].all()
    env = RoboHiveEnv("FK1_MicroOpenFixed-v4")
    assert not env.rollout(3, replay(torch.zeros(3, 9)))["next", "success"].any()


def test_visual_ids_state_keys_are_proprioception():
    env = RoboHiveEnv("FrankaReachRandom_v2d-v0")
    assert env.from_pixels and env.cameras == ["left_cam", "right_cam", "top_cam"]
    assert env.image_size == (224, 224)
    # RoboHive suppresses the state vector of visual ids; "observation" is proprioception
    assert env.state_obs_keys == ["qp_robot", "qv_robot"]
    assert env.observation_spec["observation"].shape == (18,)


@pytest.mark.parametrize("num_envs", [None, 2], ids=["single", "batched"])
@pytest.mark.parametrize(
    "env_id, n_cams, size",
    [("FrankaReachRandom_v2d-v0", 3, 224), ("FK1_MicroOpenRandom_v2d-v4", 4, 256)],
)
def test_pixels_visual_ids(env_id, n_cams, size, num_envs):
    env = RoboHiveEnv(env_id, num_envs=num_envs)
    check_env_specs(env, seed=0)
    assert_step_output_is_complete(env, steps=1)
    td = env.rollout(2, break_when_any_done=False)
    td = td if num_envs is None else td[-1]  # the last sub-env: each sub-env renders its own images
    pixels = td["next", "pixels"]
    assert pixels.shape == (2, n_cams, size, size, 3) and pixels.dtype == torch.uint8
    for cam in range(n_cams):  # a real picture, not a blank buffer
        assert pixels[0, cam].float().std() > 10
    assert "depth" not in td["next"].keys()  # no depth unless asked
    env.close()


def test_pixels_options_and_depth():
    env = RoboHiveEnv(REACH, from_pixels=True, cameras=["top_cam", "Franka_wrist_cam"], image_size=(48, 64), depth=True)
    check_env_specs(env, seed=0)
    td = env.reset()
    assert td["pixels"].shape == (2, 48, 64, 3)
    depth = td["depth"]
    assert depth.shape == (2, 48, 64, 1) and depth.dtype == torch.float32
    assert torch.isfinite(depth).all() and (depth > 0).all() and depth.std() > 0  # meters, not blank
    assert "observation" in td.keys()  # state stays unless pixels_only
    only = RoboHiveEnv(REACH, from_pixels=True, pixels_only=True, cameras=["top_cam"], image_size=(32, 32))
    td = only.reset()
    assert set(td.keys()) == {"pixels", "success", "done", "terminated", "truncated"}


def test_shadows_knob_changes_the_image_not_the_scene():
    kwargs = dict(from_pixels=True, cameras=["top_cam"], image_size=(96, 96))
    with_shadows, without = RoboHiveEnv(REACH, **kwargs), RoboHiveEnv(REACH, shadows=False, **kwargs)
    with_shadows.set_seed(0)
    without.set_seed(0)
    a, b = with_shadows.reset()["pixels"].float(), without.reset()["pixels"].float()
    diff = (a - b).abs().mean()
    assert 0.5 < diff < 40  # shadows darken part of the image; the scene is the same
    assert b.std() > 10  # shading remains without shadows


def test_parallel_env_state_and_pixels():
    env = ParallelEnv(2, EnvCreator(lambda: RoboHiveEnv(REACH)))
    check_env_specs(env, seed=0)
    td = env.rollout(60, break_when_any_done=False)
    assert td.batch_size == (2, 60)
    # two workers, two seeds: their targets differ
    assert not torch.allclose(td["reach_err"][0, 0], td["reach_err"][1, 0])
    assert td["next", "truncated"][:, 49].all()  # RoboHive's 50-step limit, in each worker
    env.close()

    pix = ParallelEnv(2, EnvCreator(lambda: RoboHiveEnv(REACH, from_pixels=True, cameras=["top_cam"], image_size=(32, 32))))
    td = pix.rollout(3)
    assert td["pixels"].shape == (2, 3, 1, 32, 32, 3) and td["pixels"].float().std() > 5
    pix.close()


def test_serial_env():
    env = SerialEnv(2, lambda: RoboHiveEnv("FK1_MicroOpenRandom-v4"))
    check_env_specs(env, seed=0)
    env.close()


def test_seeding_reproduces_trajectories():
    actions = torch.rand(10, 9) * 2 - 1

    def run(seed):
        env = RoboHiveEnv("FrankaPushRandom-v0")
        env.set_seed(seed)
        return env.rollout(10, replay(actions))

    a, b, c = run(7), run(7), run(8)
    assert (a == b).all()
    assert not torch.allclose(a["observation"], c["observation"])


def test_truncation_at_time_limit():
    env = RoboHiveEnv(REACH)
    td = env.rollout(100)  # stops at the first done
    assert td.shape == (50,)  # RoboHive registers FrankaReach with max_episode_steps=50
    assert td["next", "truncated"][-1].item() and not td["next", "terminated"][-1].item()
    assert not td["next", "done"][:-1].any()
    short = RoboHiveEnv(REACH, max_episode_steps=10)
    assert short.rollout(100).shape == (10,)


def test_frame_skip_repeats_action_and_sums_reward():
    actions = torch.rand(6, 9) * 2 - 1
    skip = RoboHiveEnv(REACH, frame_skip=2)
    skip.set_seed(1)
    td_skip = skip.rollout(3, replay(actions[::2]))
    one = RoboHiveEnv(REACH)
    one.set_seed(1)
    td_one = one.rollout(6, replay(actions[::2].repeat_interleave(2, 0)))
    torch.testing.assert_close(td_skip["next", "observation"], td_one["next", "observation"][1::2])
    torch.testing.assert_close(td_skip["next", "reward"], td_one["next", "reward"].view(3, 2, 1).sum(1))
    assert RoboHiveEnv(REACH, frame_skip=2).rollout(100).shape == (25,)  # the limit counts RoboHive steps


def test_available_envs_and_unknown_id():
    assert REACH in RoboHiveEnv.available_envs
    with pytest.raises(ValueError, match=r"Unknown RoboHive env 'FrankaReachRandm-v0'.*FrankaReachRandom-v0"):
        RoboHiveEnv("FrankaReachRandm-v0")


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(from_pixels=True, cameras=["nope_cam"]), ValueError, r"Unknown camera.*nope_cam.*top_cam"),
        (dict(cameras=["top_cam"]), ValueError, "need from_pixels=True"),
        (dict(frame_skip=0), ValueError, "frame_skip must be a positive integer"),
        (dict(batch_size=[2]), ValueError, "ParallelEnv"),
        (dict(from_pixels=True, cameras=["top_cam"], image_size=(0, 10)), ValueError, "image_size"),
    ],
)
def test_bad_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        RoboHiveEnv(REACH, **kwargs)


def test_action_of_the_wrong_shape_names_both_shapes():
    env = RoboHiveEnv(REACH)
    td = env.reset()
    with pytest.raises(ValueError, match=r"FrankaReachRandom-v0: got an action of shape \(7,\), expected \(9,\)"):
        env.step(td.set("action", torch.zeros(7)))
    env.step(td.set("action", torch.zeros(9)))  # the env is still usable


@pytest.mark.skipif(importlib.util.find_spec("mujoco_py") is not None, reason="checks the error shown without mujoco_py")
def test_sim_backend(monkeypatch):
    monkeypatch.setenv("sim_backend", "MUJOCO_PY")
    with pytest.raises(ModuleNotFoundError, match="sim_backend=MUJOCO_PY needs mujoco_py"):
        RoboHiveEnv(REACH)
    monkeypatch.setenv("sim_backend", "BULLET")
    with pytest.raises(ValueError, match=r"sim_backend='BULLET'.*MUJOCO"):
        RoboHiveEnv(REACH)


def test_missing_gl_platform_names_mujoco_gl(tmp_path):
    # GLFW needs a display; without one MuJoCo cannot render and the error says how to fix it
    code = (
        "from agenthive.envs import RoboHiveEnv\n"
        "RoboHiveEnv('FrankaReachRandom-v0', from_pixels=True, cameras=['top_cam']).reset()\n"
    )
    env = {**os.environ, "MUJOCO_GL": "glfw"}
    env.pop("DISPLAY", None)
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode != 0
    assert "MUJOCO_GL=glfw" in out.stderr and "MUJOCO_GL=egl" in out.stderr


def test_robohive_credits_banner_prints_once_per_run_not_per_process():
    # a main process and a ParallelEnv of two workers: RoboHive alone prints its banner in each of the three
    code = (
        "from torchrl.envs import EnvCreator, ParallelEnv\n"
        "from agenthive.envs import RoboHiveEnv\n"
        "RoboHiveEnv('FrankaReachRandom-v0').close()\n"
        "env = ParallelEnv(2, EnvCreator(lambda: RoboHiveEnv('FrankaReachRandom-v0')))\n"
        "env.rollout(2); env.close()\n"
        "print('rolled out')\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "AGENTHIVE_ROBOHIVE_CREDITED"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "rolled out" in out.stdout
    assert (out.stdout + out.stderr).count("A unified framework for robot learning") == 1, out.stdout


@pytest.mark.skipif(not torch.cuda.is_available(), reason="renders on a CUDA device: this machine has no GPU")
def test_cuda_device_renders_there():
    env = RoboHiveEnv(REACH, from_pixels=True, cameras=["top_cam"], device="cuda:0")
    td = env.rollout(3)
    assert td["pixels"].device.type == "cuda" and td["pixels"].float().std() > 5


def test_missing_assets_error_says_how_to_fix(tmp_path, monkeypatch):
    target = tmp_path / "robohive" / "simhive"
    target.parent.mkdir()
    monkeypatch.setattr(robohive_assets, "simhive_dir", lambda: target)
    monkeypatch.delenv(robohive_assets.SIMHIVE_ENV_VAR, raising=False)
    with pytest.raises(robohive_assets.SimhiveMissingError) as err:
        robohive_assets.ensure_simhive()
    assert "AGENTHIVE_SIMHIVE_DIR" in str(err.value) and "robohive_init" in str(err.value)


def test_simhive_linking(tmp_path, monkeypatch):
    source = tmp_path / "assets"
    (source / "franka_sim").mkdir(parents=True)
    (source / "simhive-version").write_text("0.7.0")
    target = tmp_path / "robohive" / "simhive"
    target.parent.mkdir()
    monkeypatch.setattr(robohive_assets, "simhive_dir", lambda: target)
    monkeypatch.setenv(robohive_assets.SIMHIVE_ENV_VAR, str(source))
    assert robohive_assets.ensure_simhive() == target
    assert target.is_symlink() and (target / "franka_sim").is_dir()
    # an existing simhive folder (e.g. from robohive_init) gets only what it lacks
    target.unlink()
    (target / "scene_sim").mkdir(parents=True)
    assert robohive_assets.main(["--simhive", str(source)]) == 0
    assert (target / "franka_sim").is_symlink() and not (target / "scene_sim").is_symlink()
    (source / "simhive-version").write_text("0.6.0")
    with pytest.raises(robohive_assets.SimhiveMissingError, match="0.6.0.*robohive 0.7.0"):
        robohive_assets.link_simhive(source)


def test_import_agenthive_is_lazy():
    code = (
        "import sys, agenthive, agenthive.envs\n"
        "heavy = [m for m in ('torch', 'torchrl', 'robohive', 'mujoco', 'mani_skill') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
        "assert agenthive.RoboHiveEnv.__name__ == 'RoboHiveEnv'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=300)


def test_docstring_examples_run():
    import agenthive.envs.robohive as module

    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0


def test_readme_names_the_commands_ci_runs():
    root = Path(__file__).resolve().parents[1]
    ci = (root / ".ci" / "run").read_text()
    readme = (root / "README.md").read_text()
    test_command = ".venv/bin/python -m pytest test"
    assert test_command in ci and test_command in readme
    assert "bash scripts/install.sh" in ci and "bash scripts/install.sh" in readme


def test_rollout_with_a_grad_tracking_policy():
    # a torch policy called outside torch.no_grad() returns actions that require grad
    net = torch.nn.Linear(21, 9)
    env = RoboHiveEnv(REACH)

    def policy(td):
        td["action"] = torch.tanh(net(td["observation"]))
        return td

    td = env.rollout(3, policy)
    assert td["action"].requires_grad and td.shape == (3,)


# torchrl's own RoboHive test (pytorch/rl test/libs/test_misc.py::TestRoboHive::test_robohive),
# its body unchanged, run against agenthive's RoboHiveEnv. The state case runs on every arm
# and kitchen id; the rendering cases (all cameras at 224x224, 15-40 s each on a 2-core CPU)
# on one arm, one kitchen and one visual id.
TORCHRL_RENDER_IDS = [REACH, "FK1_MicroOpenRandom-v4", "FrankaReachRandom_v2d-v0"]
TORCHRL_CASES = [(i, False, False) for i in ARM_AND_KITCHEN_IDS] + [
    (i, p, d) for i in TORCHRL_RENDER_IDS for p, d in [(True, False), (False, True), (True, True)]
]


@pytest.mark.parametrize("envname, from_pixels, from_depths", TORCHRL_CASES)
def test_torchrl_robohive_test_passes(envname, from_pixels, from_depths):
    from tensordict import LazyStackedTensorDict, is_tensor_collection

    if any(substr in envname for substr in ("_vr3m", "_vrrl", "_vflat", "_vvc1s")):
        return
    if "Adroit" in envname:
        return
    if from_pixels and len(RoboHiveEnv.get_available_cams(env_name=envname)) == 0:
        return
    env = RoboHiveEnv(envname, from_pixels=from_pixels, from_depths=from_depths)
    # Make sure that the stack is dense
    for val in env.rollout(4).values(True):
        if is_tensor_collection(val):
            assert not isinstance(val, LazyStackedTensorDict)
            assert not val.is_empty()
    check_env_specs(env)
    # and what the test does not check: a depth asked for is rendered
    assert ("depth" in env.observation_spec.keys()) == from_depths


def test_from_depths_is_depth_and_depth_alone_renders_no_pixels():
    env = RoboHiveEnv(REACH, from_depths=True, cameras=["top_cam"], image_size=(32, 32))
    td = env.reset()
    assert "pixels" not in td.keys() and td["depth"].shape == (1, 32, 32, 1) and td["depth"].std() > 0
    assert "observation" in td.keys()
    with pytest.raises(ValueError, match="depth=True and from_depths=False contradict"):
        RoboHiveEnv(REACH, depth=True, from_depths=False)


def test_get_available_cams():
    assert RoboHiveEnv.get_available_cams(env_name=REACH) == ["left_cam", "right_cam", "top_cam", "Franka_wrist_cam"]


def test_keywords_robohive_would_ignore_raise():
    with pytest.raises(TypeError) as err:
        RoboHiveEnv(REACH, reward_mod="sparse", colour="red")
    message = str(err.value)
    assert "['colour', 'reward_mod']" in message and "Unused kwargs" in message
    assert "'reward_mode'" in message and "'from_pixels'" in message  # RoboHive's and agenthive's accepted ones
    # RoboHive keywords of the id's classes pass: Robot's, MujocoEnv._setup's, the task's _setup's
    env = RoboHiveEnv(REACH, reward_mode="sparse", noise_scale=0.0, target_xyz_range={"high": [0.2, 0.3, 1.2], "low": [0.2, 0.3, 1.2]})
    assert env.rollout(2)["next", "reward"].le(0).all()
    RoboHiveEnv("FK1_MicroOpenRandom-v4", robot_jnt_reset_noise_scale=0.1, categorical_action_encoding=False)


@pytest.mark.parametrize(
    "env_id, kwargs, refused",
    [
        ("FrankaReachRandom_vr3m18-v0", {}, "rgb:left_cam:224x224:r3m18"),
        (REACH, {"visual_keys": ["d:top_cam:64x64:2d"]}, "d:top_cam:64x64:2d"),
    ],
)
def test_visual_keys_it_cannot_honour_are_refused(env_id, kwargs, refused):
    # refused before RoboHive builds the env (which would download the encoder)
    with pytest.raises(ValueError, match=rf"cannot honour \[.*'{refused}'.*depth=True.*R3MTransform"):
        RoboHiveEnv(env_id, **kwargs)
