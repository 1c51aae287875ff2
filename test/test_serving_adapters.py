"""Policy adapters served by real servers: TorchRL checkpoints. (Octo and OpenVLA run from their
own environments with tiny checkpoints: test_policy_octo.py, test_policy_openvla.py.)"""
import numpy as np
import torch
from tensordict.nn import TensorDictModule

from agenthive.serving import PolicyClient
from helpers.servers import PolicyServerProcess


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
