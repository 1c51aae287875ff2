"""agenthive.vision: R3M/VIP weights from local files, never silently random, batched after ParallelEnv."""
import doctest

import pytest
import torch
from tensordict import TensorDict
from torchrl.envs import EnvCreator, ParallelEnv, TransformedEnv
from torchvision import models

import agenthive.vision
from agenthive.envs import RoboHiveEnv
from agenthive.vision import WEIGHTS_DIR_ENV, R3MTransform, VIPTransform


@pytest.fixture(autouse=True)
def no_weights_anywhere(tmp_path, monkeypatch):
    """No $AGENTHIVE_WEIGHTS_DIR and an empty torch hub cache, whatever this machine has."""
    monkeypatch.delenv(WEIGHTS_DIR_ENV, raising=False)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))


def published_checkpoint(path, key, convnet) -> dict:
    """Writes ``convnet`` in the published R3M/VIP format: {key: {"module.convnet.*": ..., other heads}}."""
    state = {f"module.convnet.{name}": value for name, value in convnet.state_dict().items()}
    state["module.lang_rew.0.weight"] = torch.randn(4, 4)  # the real files hold more than the ResNet
    torch.save({key: state}, path)
    return {name: value.clone() for name, value in convnet.state_dict().items()}


def r3m18_checkpoint(path):
    convnet = models.resnet18()
    convnet.fc = torch.nn.Identity()
    return published_checkpoint(path, "r3m", convnet)


def convnet_of(transform):
    return next(t for t in transform.transforms if hasattr(t, "convnet")).convnet


def assert_loaded(transform, expected):
    loaded = convnet_of(transform).state_dict()
    assert loaded.keys() == expected.keys()
    assert all(torch.equal(loaded[name], expected[name]) for name in expected)


def test_r3m_loads_from_a_file_a_directory_or_the_environment_variable(tmp_path, monkeypatch):
    expected = r3m18_checkpoint(tmp_path / "r3m_18.pt")
    assert_loaded(R3MTransform("resnet18", weights=tmp_path / "r3m_18.pt"), expected)
    assert_loaded(R3MTransform("resnet18", weights=tmp_path), expected)
    monkeypatch.setenv(WEIGHTS_DIR_ENV, str(tmp_path))
    transform = R3MTransform("resnet18")
    assert_loaded(transform, expected)
    assert transform.weights_path == tmp_path / "r3m_18.pt"


def test_r3m_finds_torchrl_download_cache(tmp_path):
    cache = tmp_path / "torch_home" / "hub" / "checkpoints"
    cache.mkdir(parents=True)
    expected = r3m18_checkpoint(cache / "r3m_18.pt")
    assert_loaded(R3MTransform("resnet18"), expected)


def test_vip_loads_the_published_format(tmp_path):
    convnet = models.resnet50()
    convnet.fc = torch.nn.Linear(2048, 1024)  # VIP's head
    expected = published_checkpoint(tmp_path / "model.pt", "vip", convnet)  # the name torchrl downloads it under
    transform = VIPTransform(weights=tmp_path, size=64)
    assert_loaded(transform, expected)
    out = transform(TensorDict({"pixels": torch.zeros(2, 1, 64, 64, 3, dtype=torch.uint8)}, [2]))
    assert out["vip_vec"].shape == (2, 1, 1024)


def test_missing_weights_raise_and_say_where_to_put_them(tmp_path):
    with pytest.raises(FileNotFoundError) as caught:
        R3MTransform("resnet50")
    message = str(caught.value)
    for expected in ("r3m_50.pt", "https://pytorch.s3.amazonaws.com/models/rl/r3m/r3m_50.pt", WEIGHTS_DIR_ENV,
                     "pretrained=False", str(tmp_path / "torch_home" / "hub" / "checkpoints")):
        assert expected in message
    with pytest.raises(FileNotFoundError, match=f"{tmp_path / 'nowhere' / 'vip_50.pt'}.*models/rl/vip/model.pt"):
        VIPTransform(weights=tmp_path / "nowhere")


def test_a_file_in_another_format_is_refused(tmp_path):
    torch.save({"state_dict": {}}, tmp_path / "r3m_18.pt")
    with pytest.raises(ValueError, match=r"not a R3M checkpoint: expected a dict with key 'r3m', found \['state_dict'\]"):
        R3MTransform("resnet18", weights=tmp_path)
    torch.save({"r3m": {"convnet.conv1.weight": torch.zeros(1)}}, tmp_path / "r3m_18.pt")
    with pytest.raises(ValueError, match="no module.convnet"):
        R3MTransform("resnet18", weights=tmp_path)


def test_random_encoder_only_when_asked():
    transform = R3MTransform("resnet18", pretrained=False, size=32)
    assert transform.weights_path is None
    assert transform(TensorDict({"pixels": torch.zeros(1, 32, 32, 3, dtype=torch.uint8)}))["r3m_vec"].shape == (1, 512)
    with pytest.raises(ValueError, match=r"R3M has no 'resnet101' model: expected one of \['resnet18', 'resnet34', 'resnet50'\]"):
        R3MTransform("resnet101")


def test_after_parallel_env_one_forward_call_embeds_all_envs_and_cameras(tmp_path):
    r3m18_checkpoint(tmp_path / "r3m_18.pt")
    create = EnvCreator(lambda: RoboHiveEnv("FrankaReachRandom_v2d-v0", cameras=["top_cam", "left_cam"], image_size=(64, 64), shadows=False))
    r3m = R3MTransform("resnet18", weights=tmp_path, size=64, tensor_pixels_keys=["raw_pixels"])
    batches = []
    convnet_of(r3m).register_forward_hook(lambda module, inputs, output: batches.append(inputs[0].shape[0]))
    env = TransformedEnv(ParallelEnv(2, create), r3m)
    rollout = env.rollout(3)
    env.close()
    assert batches == [4] * 4  # reset + 3 steps, each one call on 2 envs x 2 cameras
    assert rollout["next", "r3m_vec"].shape == (2, 3, 2, 512)
    # each embedding is the loaded ResNet (in eval mode: frozen batch-norm statistics) applied
    # to that image alone, normalised as R3M expects
    image = rollout["next", "raw_pixels"][1, 2, 0].permute(2, 0, 1).float() / 255
    mean, std = torch.tensor([0.485, 0.456, 0.406]).view(3, 1, 1), torch.tensor([0.229, 0.224, 0.225]).view(3, 1, 1)
    with torch.no_grad():
        expected = convnet_of(r3m)(((image - mean) / std)[None])[0]
    torch.testing.assert_close(rollout["next", "r3m_vec"][1, 2, 0], expected, rtol=1e-4, atol=1e-4)


def test_docstring_examples_run():
    result = doctest.testmod(agenthive.vision)
    assert result.attempted > 0 and result.failed == 0
