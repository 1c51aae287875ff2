"""agenthive.env_config: the env description saved with checkpoints, and the envs it builds."""
import doctest

import pytest
import torch

import agenthive.env_config
from agenthive.env_config import TEACHER_IMAGE_KEY, VIDEO_KEY, EnvConfig, make_env
from agenthive.envs import RoboHiveEnv


def test_round_trips_through_json_fields_and_refuses_unknown_ones():
    config = EnvConfig(env="FrankaReachFixed-v0", frame_skip=2, env_kwargs={"reward_mode": "sparse"})
    assert EnvConfig.from_dict(config.to_dict()) == config
    with pytest.raises(ValueError, match=r"Unknown env config field\(s\) \['framskip'\]"):
        EnvConfig.from_dict({**config.to_dict(), "framskip": 2})
    with pytest.raises(ValueError, match=r"observation='pixels': expected one of \('state', 'r3m', 'vip'\)"):
        EnvConfig(observation="pixels")


def test_batched_state_env_with_video_frames():
    env = make_env(EnvConfig(), num_envs=2, video_camera="top_cam", video_size=32)
    rollout = env.rollout(3)
    env.close()
    assert rollout["next", "observation"].shape == (2, 3, 21)
    assert rollout["next", VIDEO_KEY].shape == (2, 3, 1, 32, 32, 3) and rollout["next", VIDEO_KEY].dtype == torch.uint8
    assert "pixels" not in rollout["next"].keys()  # a state policy's env keeps only the video copy
    assert rollout["next", "step_count"][:, -1].flatten().tolist() == [3, 3]
    assert rollout["is_init"][:, 0].all() and not rollout["is_init"][:, 1:].any()


@pytest.mark.parametrize("config", [EnvConfig(goal_reward="success"), EnvConfig("PushCube-v1", backend="maniskill", goal_reward="success")],
                         ids=["robohive-batched", "maniskill-parallel"])
def test_teacher_camera_keeps_one_cameras_images_beside_the_state_in_every_sub_env(config):
    env = make_env(config, num_envs=2, teacher_camera="top_cam", teacher_image_size=48)
    assert env.observation_spec[TEACHER_IMAGE_KEY].shape == (2, 48, 48, 3)
    rollout = env.rollout(3, break_when_any_done=False)
    env.close()
    images = rollout["next", TEACHER_IMAGE_KEY]
    assert images.shape == (2, 3, 48, 48, 3) and images.dtype == torch.uint8
    assert images.float().std() > 5, "blank images"
    assert "pixels" not in rollout["next"].keys() and "achieved_goal" in rollout["next"].keys()


def test_teacher_camera_is_refused_with_a_video_camera_or_an_image_encoder():
    with pytest.raises(ValueError, match="teacher_camera='top_cam' with video_camera='top_cam': expected one camera per env"):
        make_env(EnvConfig(), teacher_camera="top_cam", video_camera="top_cam")
    with pytest.raises(ValueError, match="observation='r3m' renders its own cameras for its encoder. Expected observation='state'"):
        make_env(EnvConfig(observation="r3m"), teacher_camera="top_cam")


def test_docstring_examples_run():
    RoboHiveEnv("FrankaReachRandom-v0").close()  # RoboHive prints its banner once per process, outside the example
    result = doctest.testmod(agenthive.env_config)
    assert result.attempted > 0 and result.failed == 0
