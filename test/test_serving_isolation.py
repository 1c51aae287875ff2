"""The torch-free side: a venv with JAX and agenthive[serve] but no torch serves policies
that drive TorchRL rollouts on RoboHive through RemotePolicyModule."""
import pkgutil
import subprocess

import numpy as np
import pytest

from agenthive.modules import RemotePolicyModule
from agenthive.serving import PolicyClient
from agenthive.serving.policies.mlp import MLPPolicy
from helpers.servers import PolicyServerProcess
from helpers.serve_venv import ensure_serve_venv


@pytest.fixture(scope="module")
def serve_python():
    return ensure_serve_venv()


def test_the_serve_venv_has_jax_and_no_torch(serve_python):
    code = (
        "import importlib.util, sys, jax, agenthive, agenthive.serving.cli\n"
        "for name in ('torch', 'torchrl', 'tensordict'):\n"
        "    assert importlib.util.find_spec(name) is None, name + ' is installed'\n"
        "print(jax.__version__)"
    )
    out = subprocess.run([serve_python, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    out = subprocess.run([serve_python, "-c", "import torch"], capture_output=True, text=True)
    assert "No module named 'torch'" in out.stderr


def test_every_serving_module_imports_without_torch(serve_python):
    """Walks ``agenthive.serving`` (not only ``cli``): a module that imports torch at import time fails here."""
    code = (
        "import importlib, pkgutil, sys, agenthive.serving as serving\n"
        "names = [m.name for m in pkgutil.walk_packages(serving.__path__, 'agenthive.serving.')]\n"
        "for name in names:\n"
        "    importlib.import_module(name)\n"
        "heavy = sorted(n for n in ('torch', 'torchrl', 'tensordict') if n in sys.modules)\n"
        "assert not heavy, heavy\n"
        "print(len(names), ' '.join(names))"
    )
    out = subprocess.run([serve_python, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    count, names = out.stdout.split(" ", 1)
    # the walk found the package's modules, down into policies/
    assert int(count) >= 12 and "agenthive.serving.router" in names and "agenthive.serving.policies.jax_mlp" in names, out.stdout


def test_the_env_serving_side_lives_outside_serving():
    import agenthive.serving

    assert not any(m.name.startswith(("env_", "remote")) for m in pkgutil.iter_modules(agenthive.serving.__path__))


def test_jax_policy_from_the_torch_free_venv_drives_a_robohive_rollout(serve_python):
    from agenthive.envs import RoboHiveEnv

    kwargs = '{"obs_dim": 21, "action_dim": 9, "chunk_length": 2, "hidden": [32, 32], "seed": 7}'
    with PolicyServerProcess("jax-mlp", kwargs=kwargs, python=serve_python) as server:
        env = RoboHiveEnv("FrankaReachRandom-v0")
        policy = RemotePolicyModule("127.0.0.1", server.port, in_keys=["observation"], ready_timeout=120, observation_spec=env.observation_spec, action_spec=env.action_spec)
        assert policy.metadata.info["framework"].startswith("jax ")
        rollout = env.rollout(10, policy, break_when_any_done=False)
        chunks = MLPPolicy(21, 9, chunk_length=2, hidden=[32, 32], seed=7).forward(rollout["observation"].numpy())
        for t in range(10):
            np.testing.assert_allclose(rollout["action"][t].numpy(), chunks[t - t % 2, t % 2], rtol=1e-4, atol=1e-5)
        assert rollout["action"].abs().max() <= 1 and rollout["action"].std() > 0


def test_octo_adapter_keeps_a_history_window_per_client(serve_python):
    kwargs = '{"checkpoint": "hf://rail-berkeley/octo-small-1.5", "window": 2, "unnorm_key": "bridge_dataset"}'
    with PolicyServerProcess("helpers.standin_models:OctoPolicyWithStandIn", kwargs=kwargs, python=serve_python) as server:
        with PolicyClient("127.0.0.1", server.port, ready_timeout=120) as client:
            meta = client.metadata
            assert (meta.observations, meta.action_shape, meta.chunk_length, meta.takes_instruction) == ({"image_primary": ((64, 64, 3), "uint8")}, (3,), 4, True)
            image = np.full((1, 64, 64, 3), 51, np.uint8)
            first = client.act({"image_primary": image}, sessions=["a"], reset=[True], instruction="pick up the fork")["actions"][0]
            second = client.act({"image_primary": image * 2}, sessions=["a"], instruction="pick up the fork")["actions"][0]
            other = client.act({"image_primary": image}, sessions=["b"], reset=[True], instruction="wipe")["actions"][0]
        mean, std = np.array([1.0, 2.0, 3.0]), 2.0
        # raw = [newest image mean / 255, valid timesteps in the window, instruction length] + step in chunk
        np.testing.assert_allclose(first, (np.array([0.2, 1, 16]) + np.arange(4)[:, None]) * std + mean, rtol=1e-5)
        np.testing.assert_allclose(second[0], np.array([0.4, 2, 16]) * std + mean, rtol=1e-5)
        np.testing.assert_allclose(other[0], np.array([0.2, 1, 4]) * std + mean, rtol=1e-5)
