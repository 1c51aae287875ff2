"""Policy adapters served by real servers: OpenVLA (stand-in weights) and TorchRL checkpoints.
(Octo runs from the JAX venv in test_serving_isolation.py.)"""
import numpy as np
import pytest
import torch
from tensordict.nn import TensorDictModule

from agenthive.serving import PolicyClient
from helpers.servers import PolicyServerProcess

pytest.importorskip("PIL", reason="OpenVLA's adapter needs pillow")


def test_openvla_adapter_formats_prompt_image_and_unnormalization():
    kwargs = '{"checkpoint": "openvla/openvla-7b", "unnorm_key": "bridge_orig", "device": "cpu", "attn_implementation": "sdpa", "image_size": [128, 160]}'
    with PolicyServerProcess("helpers.standin_models:OpenVLAPolicyWithStandIn", kwargs=kwargs) as server:
        with PolicyClient("127.0.0.1", server.port) as client:
            meta = client.metadata
            assert (meta.observations, meta.action_shape, meta.chunk_length, meta.takes_instruction) == ({"image": ((128, 160, 3), "uint8")}, (7,), 1, True)
            assert meta.info["unnorm_key"] == "bridge_orig"
            image = np.full((1, 128, 160, 3), 255, np.uint8)
            action = client.act({"image": image}, instruction="Put the Carrot in the pot")["actions"][0, 0]
    prompt = "In: What action should the robot take to put the carrot in the pot?\nOut:"
    np.testing.assert_allclose(action, [len(prompt), 1.0, 1.0, 0.5, 0.5, 0.5, 0.5], rtol=1e-2)


def test_openvla_adapter_names_the_unnorm_keys_it_knows():
    kwargs = '{"checkpoint": "openvla/openvla-7b", "device": "cpu"}'
    with PolicyServerProcess("helpers.standin_models:OpenVLAPolicyWithStandIn", kwargs=kwargs) as server:
        with pytest.raises(RuntimeError, match=r"unnorm_key=None: expected one of \['bridge_orig', 'fractal'\]"):
            PolicyClient("127.0.0.1", server.port)


def test_torchrl_checkpoint_policy_serves_a_saved_tensordict_module(tmp_path):
    torch.manual_seed(0)
    module = TensorDictModule(torch.nn.Sequential(torch.nn.Linear(21, 16), torch.nn.Tanh(), torch.nn.Linear(16, 9)), in_keys=[("obs", "state")], out_keys=["action"])
    torch.save(module, tmp_path / "policy.pt")
    kwargs = f'{{"path": "{tmp_path / "policy.pt"}", "observations": {{"obs.state": [[21], "float32"]}}, "num_threads": 1}}'
    with PolicyServerProcess("torchrl-checkpoint", kwargs=kwargs) as server:
        with PolicyClient("127.0.0.1", server.port) as client:
            assert (client.metadata.action_shape, client.metadata.chunk_length) == ((9,), 1)
            obs = torch.randn(4, 21)
            actions = client.act({"obs.state": obs.numpy()})["actions"]
    with torch.no_grad():
        np.testing.assert_allclose(actions[:, 0], module.module(obs).numpy(), rtol=1e-5, atol=1e-6)
