"""Policy adapters served by real servers: TorchRL checkpoints. (Octo and OpenVLA run from their
own environments with tiny checkpoints: test_policy_octo.py, test_policy_openvla.py.)"""
import numpy as np
import torch
from tensordict.nn import TensorDictModule, TensorDictSequential
from torchrl.data import Bounded
from torchrl.modules import AdditiveGaussianModule

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


def test_a_seeded_torchrl_checkpoint_gives_the_same_noisy_actions_to_the_same_requests(tmp_path):
    linear = TensorDictModule(torch.nn.Linear(4, 3), in_keys=["observation"], out_keys=["action"])
    noise = AdditiveGaussianModule(spec=Bounded(-1, 1, shape=(3,)), sigma_init=0.5, sigma_end=0.5)
    torch.save(TensorDictSequential(linear, noise), tmp_path / "noisy.pt")
    obs = np.random.default_rng(0).normal(size=(5, 4)).astype(np.float32)

    def served(seed):
        kwargs = f'{{"path": "{tmp_path / "noisy.pt"}", "observations": {{"observation": [[4], "float32"]}}, "seed": {seed}}}'
        with PolicyServerProcess("torchrl-checkpoint", kwargs=kwargs) as server, PolicyClient("127.0.0.1", server.port) as client:
            return [client.act({"observation": obs})["actions"] for _ in range(3)]

    first, again, other = served(3), served(3), served(4)
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(first[0], other[0]), "another seed gave the same noise"
    assert not np.array_equal(first[0], first[1]), "the noise did not change between requests"
