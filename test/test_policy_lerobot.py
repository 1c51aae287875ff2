"""LeRobot ACT and Diffusion Policy served from their own environment, against torchrl's
in-process ``LeRobotPolicyWrapper`` on the same observations and in the same rollout.

The LeRobot environment (``scripts/policy_envs/lerobot.sh``) is built once per machine and
cached (``policy_venvs``); the checkpoints are tiny random-weight ones built in it with
LeRobot's own save functions (``lerobot_checkpoints.py``). The served side is
``python -m agenthive start-server lerobot`` in that environment; the client side is this
process, which has no LeRobot.
"""
import time

import numpy as np
import pytest

from agenthive.modules import RemotePolicyModule
from agenthive.serving import PolicyClient
from helpers.policy_venvs import ROOT, ensure_venv
from helpers.servers import PolicyServerProcess
from helpers.vla_rollout import make_env, rollout_arrays, vla_rollout

HELPERS = ROOT / "test" / "helpers"
CHECK = "import lerobot.policies.factory, lerobot.policies.act.modeling_act, lerobot.policies.diffusion.modeling_diffusion, torchrl.modules.vla, agenthive.serving.server"
CAMERAS, SIZE = ("top", "wrist"), 96
KINDS = ["act", "diffusion"]


@pytest.fixture(scope="module")
def lerobot_venv():
    venv = ensure_venv("lerobot", check=CHECK)
    # servers started from here import this checkout's agenthive, and never reach for the hub
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PYTHONPATH", venv.env()["PYTHONPATH"])
        patch.setenv("HF_HUB_OFFLINE", "1")
        yield venv


@pytest.fixture(scope="module")
def checkpoints(lerobot_venv, tmp_path_factory):
    out = tmp_path_factory.mktemp("lerobot")
    lerobot_venv.run([str(HELPERS / "lerobot_checkpoints.py"), str(out), "--cameras", ",".join(CAMERAS), "--size", str(SIZE)])
    return {kind: out / kind for kind in KINDS}


def serve(venv, path):
    server = PolicyServerProcess("lerobot", kwargs=f'{{"policy_path": "{path}"}}', python=venv.python)
    server.start_timeout = 300.0
    return server


def observations(steps, batch, seed=0):
    rng = np.random.default_rng(seed)
    obs = {f"observation.images.{camera}": rng.integers(0, 256, (steps, batch, SIZE, SIZE, 3), dtype=np.uint8) for camera in CAMERAS}
    obs["observation.state"] = rng.normal(size=(steps, batch, 8)).astype(np.float32)
    return obs


@pytest.mark.parametrize("kind", KINDS)
def test_served_chunks_equal_torchrl_lerobot_wrapper_on_the_same_observations(lerobot_venv, checkpoints, kind, tmp_path):
    obs = observations(steps=3, batch=2)
    with serve(lerobot_venv, checkpoints[kind]) as server, PolicyClient("127.0.0.1", server.port, timeout=120, ready_timeout=300) as client:
        assert client.metadata.info["type"] == kind and client.metadata.action_shape == (7,)
        assert client.metadata.observations["observation.images.top"] == ((SIZE, SIZE, 3), "uint8")
        served = np.stack([
            client.act({name: value[t] for name, value in obs.items()}, sessions=["a", "b"], reset=[t == 0] * 2)["actions"]
            for t in range(3)
        ])
    np.savez(tmp_path / "obs.npz", **obs)
    lerobot_venv.run([str(HELPERS / "lerobot_reference.py"), "chunks", str(checkpoints[kind]), str(tmp_path / "obs.npz"), str(tmp_path / "ref.npz")])
    with np.load(tmp_path / "ref.npz", allow_pickle=False) as ref:
        in_process = ref["chunks"]
    assert served.shape == in_process.shape == (3, 2, client.metadata.chunk_length, 7)
    assert np.abs(served).max() > 0.1  # unnormalized actions, not zeros
    np.testing.assert_allclose(served, in_process, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("kind", KINDS)
def test_a_vla_rollout_is_the_same_with_the_wrapper_in_process_and_remote_policy_module(lerobot_venv, checkpoints, kind, tmp_path):
    steps, replan = 12, 2
    with serve(lerobot_venv, checkpoints[kind]) as server:
        policy = RemotePolicyModule("127.0.0.1", server.port, vla_keys=True, replan_every=1, timeout=120, ready_timeout=300)
        served = rollout_arrays(vla_rollout(policy, make_env(cameras=CAMERAS, size=SIZE), steps, chunk=policy.metadata.chunk_length, replan=replan))
        policy.close()
    lerobot_venv.run([
        str(HELPERS / "lerobot_reference.py"), "rollout", str(checkpoints[kind]), str(tmp_path / "ref.npz"),
        "--steps", str(steps), "--replan", str(replan), "--cameras", ",".join(CAMERAS), "--size", str(SIZE),
    ])
    with np.load(tmp_path / "ref.npz", allow_pickle=False) as ref:
        for key, value in served.items():
            np.testing.assert_allclose(value, ref[key], rtol=1e-4, atol=1e-5, err_msg=key)
    assert np.abs(np.diff(served["action"], axis=1)).max() > 0  # the actions change along the rollout


def test_a_hub_id_without_network_is_served_as_a_load_failure(lerobot_venv):
    with pytest.MonkeyPatch.context() as patch:
        patch.delenv("HF_HUB_OFFLINE")
        server = PolicyServerProcess("lerobot", kwargs='{"checkpoint_path": "lerobot/act_aloha_sim_transfer_cube_human"}', python=lerobot_venv.python)
        with server:
            start = time.monotonic()
            with pytest.raises(RuntimeError, match="failed to initialize: OSError: policy_path .lerobot/act_aloha_sim_transfer_cube_human. is no local directory, and fetching it from the Hugging Face Hub failed"):
                PolicyClient("127.0.0.1", server.port, timeout=5.0, ready_timeout=120.0)
            assert time.monotonic() - start < 120.0


def test_the_lerobot_environment_keeps_the_local_torch(lerobot_venv):
    out = lerobot_venv.run(["-c", "import torch, lerobot, torchrl; print(torch.__version__, lerobot.__version__, torchrl.__version__)"])
    torch_version, lerobot_version, torchrl_version = out.stdout.split()
    assert torch_version.startswith("2.14.1") and lerobot_version == "0.4.4" and torchrl_version == "0.14.1"
