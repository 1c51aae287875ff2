"""OpenVLA served from its own transformers environment, with a tiny random-weight checkpoint
(a local Hugging Face folder with OpenVLA's modeling files) that the adapter loads through
``AutoModelForVision2Seq.from_pretrained(..., trust_remote_code=True)``.

The environment is built by ``scripts/policy_envs/openvla.sh`` and cached outside the
repository (``policy_venvs``); the first run on a machine builds it (minutes)."""
import json

import numpy as np
import pytest
import torch

from agenthive.serving import PolicyClient
from helpers.octo_env import HELPERS
from helpers.openvla_env import OFFLINE, openvla_venv, tiny_checkpoint
from helpers.servers import PolicyServerProcess


@pytest.fixture(scope="module")
def openvla():
    venv = openvla_venv()
    return venv, tiny_checkpoint(venv)


@pytest.fixture
def openvla_server_env(openvla, monkeypatch):
    """Servers started by the test run in the OpenVLA environment with this checkout's agenthive, offline."""
    venv, _ = openvla
    monkeypatch.setenv("PYTHONPATH", venv.env()["PYTHONPATH"])
    for name, value in OFFLINE.items():
        monkeypatch.setenv(name, value)
    return venv


def openvla_reference(venv, checkpoint, tmp_path, *, images, instruction, unnorm_key):
    """OpenVLA's ``predict_action`` called in-process on each image (``openvla_reference.py``)."""
    source, target = tmp_path / "reference-in.npz", tmp_path / "reference-out.npz"
    np.savez(source, images=images, instruction=instruction, unnorm_key=unnorm_key)
    venv.run([str(HELPERS / "openvla_reference.py"), str(checkpoint), str(source), str(target)], env=OFFLINE)
    return np.load(target)["actions"]


def test_the_openvla_environment_has_openvlas_pins(openvla):
    venv, _ = openvla
    code = (
        "import importlib.util, torch, torchvision, transformers, timm, tokenizers\n"
        "print(torch.__version__.split('+')[0], torchvision.__version__.split('+')[0], transformers.__version__, timm.__version__, tokenizers.__version__)\n"
        "print([name for name in ('jax', 'flax', 'tensorflow', 'flash_attn') if importlib.util.find_spec(name)])"
    )
    versions, others = venv.run(["-c", code]).stdout.strip().splitlines()[-2:]
    assert versions == "2.14.1 0.29.1 4.40.1 0.9.10 0.19.1"
    assert others == "[]"


@pytest.mark.parametrize("attention", ["sdpa", "eager"])
def test_served_openvla_gives_predict_actions_output(openvla, openvla_server_env, tmp_path, attention):
    """Both attention implementations give what OpenVLA's own call gives (eager needs the
    adapter's fix: predict_action extends input_ids but not attention_mask)."""
    venv, checkpoint = openvla
    images = np.random.default_rng(0).integers(0, 256, (2, 256, 256, 3), dtype=np.uint8)
    kwargs = json.dumps({"checkpoint_path": str(checkpoint), "unnorm_key": "fractal20220817_data", "attn_implementation": attention, "device": "cpu", "dtype": "float32", "image_size": [256, 256], "num_threads": 1})
    with PolicyServerProcess("openvla", kwargs=kwargs, python=venv.python) as server:
        with PolicyClient("127.0.0.1", server.port, ready_timeout=300, timeout=60) as client:
            meta = client.metadata
            served = [client.act({"image": images[t : t + 1]}, sessions=["a"], instruction="Put the carrot in the pot")["actions"][0, 0] for t in range(2)]
    assert (meta.observations, meta.action_shape, meta.chunk_length, meta.takes_instruction) == ({"image": ((256, 256, 3), "uint8")}, (7,), 1, True)
    assert (meta.info["attn_implementation"], meta.info["unnorm_key"], meta.info["device"]) == (attention, "fractal20220817_data", "cpu")
    expected = openvla_reference(venv, checkpoint, tmp_path, images=images, instruction="Put the carrot in the pot", unnorm_key="fractal20220817_data")
    np.testing.assert_allclose(np.stack(served), expected, rtol=1e-6, atol=1e-6)


def test_the_agents_openvla_command_without_cuda_says_to_use_sdpa_or_eager(openvla, openvla_server_env):
    """The `agents` project's own OpenVLA keywords (flash-attention on cuda:0) on a machine without CUDA."""
    venv, checkpoint = openvla
    kwargs = json.dumps({"checkpoint_path": str(checkpoint), "device": "cuda:0", "attn_implementation": "flash_attention_2", "unnorm_key": "bridge_orig", "checkpoint_step": 40000})
    with PolicyServerProcess("openvla", kwargs=kwargs, python=venv.python) as server:
        with pytest.raises(RuntimeError, match=r"attn_implementation='flash_attention_2' runs on CUDA only and torch sees no CUDA device here: pass attn_implementation='sdpa' .* or 'eager'"):
            PolicyClient("127.0.0.1", server.port, ready_timeout=120)


def test_served_openvla_drives_a_robohive_camera_rollout(openvla, openvla_server_env, tmp_path):
    """A fine-tuned dataset's statistics (dataset_statistics.json, 9-d Franka actions), a camera chosen by the client."""
    from torchrl.envs import SqueezeTransform, TransformedEnv

    from agenthive.envs import RoboHiveEnv
    from agenthive.modules import RemotePolicyModule

    venv, checkpoint = openvla
    kwargs = json.dumps({"checkpoint_path": str(checkpoint), "unnorm_key": "franka_reach", "device": "cpu", "dtype": "float32", "image_size": [128, 128], "num_threads": 1})
    base = RoboHiveEnv("FrankaReachRandom-v0", from_pixels=True, cameras=["top_cam"], image_size=(128, 128), shadows=False)
    env = TransformedEnv(base, SqueezeTransform(-4, in_keys=["pixels"], out_keys=["top_cam"]))
    with PolicyServerProcess("openvla", kwargs=kwargs, python=venv.python) as server:
        policy = RemotePolicyModule(
            "127.0.0.1", server.port, in_keys={"top_cam": "image"}, instruction="reach the red target", timeout=60,
            ready_timeout=300, observation_spec=env.observation_spec, action_spec=env.action_spec,
        )
        env.set_seed(0)
        rollout = env.rollout(3, policy, break_when_any_done=False)
        policy.close()
    assert rollout["action"].shape == (3, 9) and torch.isfinite(rollout["action"]).all()
    expected = openvla_reference(venv, checkpoint, tmp_path, images=rollout["top_cam"].numpy(), instruction="reach the red target", unnorm_key="franka_reach")
    np.testing.assert_allclose(rollout["action"].numpy(), expected, rtol=1e-6, atol=1e-6)
