"""ManiSkillEnv on real ManiSkill 3.0.1 tasks (SAPIEN on Vulkan: Mesa's lavapipe on CPU
machines, see scripts/install.sh). The CPU backend simulates one env per process, so the
batched ``num_envs=N`` path with N > 1 needs a CUDA GPU; its test skips without one."""
from __future__ import annotations

import doctest
import os
import subprocess
import sys
import textwrap
from functools import partial

import pytest
import torch
from torchrl._utils import seed_generator
from torchrl.envs import ParallelEnv
from torchrl.envs.utils import check_env_specs
from torchrl.record import CSVLogger, PixelRenderTransform, VideoRecorder

from agenthive.envs import maniskill
from agenthive.envs.maniskill import ManiSkillEnv, _has_maniskill
from helpers.step_checks import assert_step_output_is_complete

pytestmark = pytest.mark.skipif(not _has_maniskill, reason="mani_skill is not installed (pip install 'agenthive[maniskill]')")

# Every ManiSkill 3.0.1 task that builds with no asset download (state observations), as
# measured on a machine with an empty ~/.maniskill. DrawSVG-v1 is left out: it needs the
# svgpathtools package, not an asset.
OFFLINE_TASKS = [
    "DrawTriangle-v1", "Empty-v1", "FMBAssembly1Easy-v1", "LiftPegUpright-v1",
    "MS-AntRun-v1", "MS-AntWalk-v1", "MS-CartpoleBalance-v1", "MS-CartpoleSwingUp-v1",
    "MS-HopperHop-v1", "MS-HopperStand-v1", "MS-HumanoidRun-v1", "MS-HumanoidStand-v1",
    "MS-HumanoidWalk-v1", "PegInsertionSide-v1", "PickCube-v1", "PickCubeSO100-v1",
    "PlaceSphere-v1", "PlugCharger-v1", "PokeCube-v1", "PullCube-v1", "PullCubeTool-v1",
    "PushCube-v1", "PushT-v1", "RollBall-v1", "RotateSingleObjectInHandLevel0-v1",
    "RotateSingleObjectInHandLevel1-v1", "RotateValveLevel0-v1", "RotateValveLevel1-v1",
    "RotateValveLevel2-v1", "RotateValveLevel3-v1", "RotateValveLevel4-v1",
    "SO100GraspCube-v1", "StackCube-v1", "StackPyramid-v1", "TableTopFreeDraw-v1",
    "TriFingerRotateCubeLevel0-v1", "TriFingerRotateCubeLevel1-v1",
    "TriFingerRotateCubeLevel2-v1", "TriFingerRotateCubeLevel3-v1",
    "TriFingerRotateCubeLevel4-v1", "TwoRobotPickCube-v1", "TwoRobotStackCube-v1",
    "UnitreeG1PlaceAppleInBowl-v1", "UnitreeG1Stand-v1", "UnitreeG1TransportBox-v1",
]
PICK = "PickCube-v1"


def replay(actions):
    """A policy that plays back a fixed sequence of actions."""
    it = iter(actions)

    def policy(td):
        td["action"] = next(it)
        return td

    return policy


@pytest.fixture(scope="module")
def pick():
    env = ManiSkillEnv(PICK, max_episode_steps=10)
    yield env
    env.close()


@pytest.mark.parametrize("task", OFFLINE_TASKS)
def test_check_env_specs_offline_task(task):
    env = ManiSkillEnv(task)
    check_env_specs(env)
    assert_step_output_is_complete(env)
    env.close()


def test_state_rollout_keys_dtypes_and_time_limit(pick):
    actions = torch.rand(25, 8) * 2 - 1
    rollout = pick.rollout(25, replay(actions), break_when_any_done=False)
    assert rollout["observation"].shape == (25, 42)
    torch.testing.assert_close(rollout["action"], actions)
    for key in ("done", "terminated", "truncated", "success", "fail"):
        assert rollout["next", key].dtype == torch.bool and rollout["next", key].shape == (25, 1)
    assert rollout["next", "reward"].dtype == torch.float32
    # max_episode_steps=10: truncated at steps 10 and 20, each followed by a fresh episode
    # whose first observation has the robot at rest (qvel, entries 9:18, all zero)
    assert rollout["next", "truncated"].squeeze(-1).nonzero().flatten().tolist() == [9, 19]
    assert rollout["observation"][10, 9:18].abs().max() == 0
    assert rollout["observation"][9, 9:18].abs().max() > 0
    assert not torch.equal(rollout["next", "observation"][9], rollout["observation"][10])


def test_sparse_reward_is_float():
    env = ManiSkillEnv(PICK, reward_mode="sparse")
    check_env_specs(env)
    rollout = env.rollout(5)
    assert rollout["next", "reward"].dtype == torch.float32
    assert set(rollout["next", "reward"].unique().tolist()) <= {0.0, 1.0}
    env.close()


def test_seeding_reproduces_rollouts_across_episodes(pick):
    actions = torch.rand(30, 8) * 2 - 1  # three episodes of 10 steps
    other = ManiSkillEnv(PICK, max_episode_steps=10)
    torch.manual_seed(123)  # the env must not depend on (or disturb) torch's global RNG
    pick.set_seed(7)
    first = pick.rollout(30, replay(actions), break_when_any_done=False)
    torch.manual_seed(456)
    other.set_seed(7)
    second = other.rollout(30, replay(actions), break_when_any_done=False)
    torch.testing.assert_close(first["observation"], second["observation"], rtol=0, atol=0)
    torch.testing.assert_close(first["next", "reward"], second["next", "reward"], rtol=0, atol=0)
    # later episodes start somewhere else (goal position: entries 26:29)
    assert not torch.equal(first["observation"][0, 26:29], first["observation"][10, 26:29])
    other.set_seed(8)
    assert not torch.equal(other.reset()["observation"], first["observation"][0])
    other.close()


def test_set_seed_chain_matches_parallel_env():
    env = ManiSkillEnv(PICK, num_envs=1)
    assert env.set_seed(3) == seed_generator(3)
    assert env.set_seed(3, static_seed=True) == 3
    env.close()


def test_rgb_pixels_uint8_and_not_constant():
    env = ManiSkillEnv(PICK, obs_mode="rgb", sensor_configs={"width": 64, "height": 64})
    check_env_specs(env)
    assert_step_output_is_complete(env, steps=1)
    rollout = env.rollout(3)
    pixels = rollout["next", "pixels"]
    assert env.camera_names == ["base_camera"]
    assert pixels.dtype == torch.uint8 and pixels.shape == (3, 1, 64, 64, 3)
    assert pixels.float().std() > 10  # a rendered scene, not a blank frame
    assert ("agent", "qpos") in rollout.keys(True) and "observation" not in rollout
    assert rollout["camera_params", "intrinsic_cv"].shape == (3, 1, 3, 3)
    env.close()


def test_rgbd_stacks_cameras_and_keeps_depth_apart():
    env = ManiSkillEnv("StackCube-v1", obs_mode="rgb+depth+state", sensor_configs={"width": 32, "height": 32})
    check_env_specs(env)
    td = env.reset()
    assert env.camera_names == ["base_camera", "hand_camera"]
    assert td["pixels"].shape == (2, 32, 32, 3) and td["pixels"].dtype == torch.uint8
    assert td["depth"].shape == (2, 32, 32, 1) and td["depth"].dtype == torch.int16
    assert td["depth"].max() > 0  # millimetres to the scene
    assert td["observation"].ndim == 1  # "+state": the flat state next to the images
    assert td["camera_params", "extrinsic_cv"].shape == (2, 3, 4)
    env.close()


def test_state_dict_and_pointcloud_modes():
    env = ManiSkillEnv(PICK, obs_mode="state_dict")
    check_env_specs(env)
    td = env.reset()
    assert td["agent", "qpos"].shape == (9,) and td["extra", "goal_pos"].shape == (3,)
    env.close()
    env = ManiSkillEnv(PICK, obs_mode="pointcloud", sensor_configs={"width": 32, "height": 32})
    check_env_specs(env)
    td = env.reset()
    assert td["pointcloud", "xyzw"].shape == (32 * 32, 4) and td["pointcloud", "rgb"].dtype == torch.uint8
    env.close()


def test_parallel_env_of_single_envs_matches_batched_specs_and_resets_partially():
    penv = ParallelEnv(2, partial(ManiSkillEnv, PICK, obs_mode="state_dict", instruction=True))
    try:
        batched = ManiSkillEnv(PICK, num_envs=1, obs_mode="state_dict", instruction=True)
        for name in ("observation_spec", "full_action_spec", "full_done_spec", "full_reward_spec"):
            assert getattr(penv, name) == getattr(batched, name).expand(2), name
        batched.close()
        check_env_specs(penv)

        assert penv.set_seed(0) == seed_generator(seed_generator(0))
        start = penv.reset()
        assert start["instruction"] == ["pick up the red cube and move it to the goal position"] * 2
        td = start
        for _ in range(5):
            td = penv.step(td.set("action", torch.ones(2, 8)))["next"]
        moved = td["agent", "qpos"].clone()
        assert (moved - start["agent", "qpos"]).abs().max() > 0.01
        td["_reset"] = torch.tensor([[True], [False]])
        td = penv.reset(td)
        # sub-env 0 is back at rest, sub-env 1 kept its state
        assert td["agent", "qvel"][0].abs().max() == 0
        torch.testing.assert_close(td["agent", "qpos"][1], moved[1])
        stepped = penv.step(td.set("action", torch.zeros(2, 8)))["next"]
        assert (stepped["agent", "qpos"][1] - moved[1]).abs().max() < 0.05
        assert (stepped["agent", "qpos"][1] - start["agent", "qpos"][1]).abs().max() > 0.01
    finally:
        penv.close()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="num_envs > 1 needs sim_backend='physx_cuda' and a CUDA GPU")
def test_gpu_batched_partial_reset_resets_only_masked_sub_envs():
    env = ManiSkillEnv(PICK, num_envs=4, obs_mode="state_dict")
    assert env.device.type == "cuda" and env.batch_size == (4,)
    check_env_specs(env)
    assert_step_output_is_complete(env)
    td = env.reset()
    start = td["agent", "qpos"].clone()
    for _ in range(5):
        td = env.step(td.set("action", torch.ones(4, 8, device=env.device)))["next"]
    moved = td["agent", "qpos"].clone()
    assert (moved - start).abs().max() > 0.1
    td["_reset"] = torch.tensor([[True], [False], [True], [False]], device=env.device)
    td = env.reset(td)
    simulated = env.maniskill_env.unwrapped.agent.robot.get_qpos()  # the simulator's own state
    assert simulated.device.type == "cuda" and td["agent", "qpos"].device.type == "cuda"
    torch.testing.assert_close(td["agent", "qpos"], simulated)
    torch.testing.assert_close(simulated[[1, 3]], moved[[1, 3]])
    assert (simulated[[0, 2]] - start[[0, 2]]).abs().max() < 0.1  # back to a fresh (noisy) start pose
    assert td["agent", "qvel"][[0, 2]].abs().max() == 0 and td["agent", "qvel"][[1, 3]].abs().max() > 0
    env.close()


def test_render_rgb_array_feeds_video_recorder(tmp_path):
    env = ManiSkillEnv(PICK, render_mode="rgb_array")
    frame = env.render()
    assert frame.dtype == torch.uint8 and frame.ndim == 3 and frame.shape[-1] == 3
    logger = CSVLogger("maniskill", log_dir=str(tmp_path))
    recorder = VideoRecorder(logger, tag="pick", in_keys=["render"], skip=1)
    env = env.append_transform(PixelRenderTransform(out_keys=["render"])).append_transform(recorder)
    env.rollout(4)
    recorder.dump()
    [video_file] = list(tmp_path.rglob("*.pt"))
    video = torch.load(video_file)
    assert video.dtype == torch.uint8 and video.shape[:3] == (1, 5, 3)  # reset + 4 steps, CHW
    assert video.float().std() > 10
    env.close()


def test_instruction_key_is_opt_in():
    env = ManiSkillEnv(PICK)
    assert env.instruction == "pick up the red cube and move it to the goal position"
    assert "instruction" not in env.reset()
    env.close()
    env = ManiSkillEnv(PICK, instruction="grab the red block")
    check_env_specs(env)
    assert env.rollout(2)["next", "instruction"] == ["grab the red block"] * 2
    env.close()


def test_missing_assets_raise_instead_of_prompting(tmp_path):
    # An empty MS_ASSET_DIR and a stdin that stays open: a y/n prompt would hang to the timeout.
    script = textwrap.dedent(
        """
        from agenthive.envs import ManiSkillEnv
        for task in ["PickSingleYCB-v1", "UnitreeH1Stand-v1", "ReplicaCAD_SceneManipulation-v1"]:
            try:
                ManiSkillEnv(task)
            except FileNotFoundError as error:
                print("RAISED", task, "download_asset" in str(error) and task in str(error))
        """
    )
    log = tmp_path / "log.txt"
    env = dict(os.environ, MS_ASSET_DIR=str(tmp_path / "empty"))
    env.pop("MS_SKIP_ASSET_DOWNLOAD_PROMPT", None)
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, "-c", script], stdin=subprocess.PIPE, stdout=out, stderr=subprocess.STDOUT, env=env)
        try:
            assert proc.wait(timeout=180) == 0, log.read_text()[-3000:]
        finally:
            proc.kill()
            proc.stdin.close()
    lines = [line for line in log.read_text().splitlines() if line.startswith("RAISED")]
    assert lines == [
        "RAISED PickSingleYCB-v1 True",
        "RAISED UnitreeH1Stand-v1 True",
        "RAISED ReplicaCAD_SceneManipulation-v1 True",
    ], log.read_text()[-3000:]


def test_construction_errors_name_the_problem():
    with pytest.raises(ValueError, match="one env per process.*ParallelEnv"):
        ManiSkillEnv(PICK, num_envs=2, sim_backend="physx_cpu")
    with pytest.raises(ValueError, match="sim_backend must be one of"):
        ManiSkillEnv(PICK, sim_backend="warp")
    with pytest.raises(ValueError, match="Unknown ManiSkill task 'PickCube-v9'"):
        ManiSkillEnv("PickCube-v9")
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match=r"num_envs=4 with sim_backend='auto' picks physx_cuda \(physx_cpu simulates "
                                               r"one env per process\).*physx_cuda' needs a CUDA GPU.*ParallelEnv"):
            ManiSkillEnv(PICK, num_envs=4)
        with pytest.raises(RuntimeError, match=r"^sim_backend='physx_cuda' needs a CUDA GPU"):
            ManiSkillEnv(PICK, num_envs=4, sim_backend="physx_cuda")


def test_without_maniskill_the_package_imports_and_the_env_says_what_to_install():
    script = textwrap.dedent(
        """
        import sys
        sys.modules["mani_skill"] = None  # as if it were not installed
        from agenthive.envs import ManiSkillEnv
        assert ManiSkillEnv.available_envs == []
        try:
            ManiSkillEnv("PickCube-v1")
        except ImportError as error:
            print("IMPORT ERROR:", error)
        """
    )
    result = subprocess.run([sys.executable, "-c", script], check=False, capture_output=True, text=True, timeout=120)
    assert "IMPORT ERROR: ManiSkillEnv needs ManiSkill: pip install 'agenthive[maniskill]'" in result.stdout, result.stderr


def test_vulkan_points_at_lavapipe_only_when_nothing_is_chosen(monkeypatch):
    monkeypatch.setenv("VK_ICD_FILENAMES", "/opt/my_icd.json")
    maniskill._point_vulkan_at_lavapipe()
    assert os.environ["VK_ICD_FILENAMES"] == "/opt/my_icd.json"
    monkeypatch.delenv("VK_ICD_FILENAMES")
    monkeypatch.delenv("VK_DRIVER_FILES", raising=False)
    maniskill._point_vulkan_at_lavapipe()
    if torch.cuda.is_available() or not os.path.exists(maniskill.LAVAPIPE_ICD):
        assert "VK_ICD_FILENAMES" not in os.environ
    else:
        assert os.environ["VK_ICD_FILENAMES"] == maniskill.LAVAPIPE_ICD


def test_docstring_examples_run():
    result = doctest.testmod(maniskill, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0
