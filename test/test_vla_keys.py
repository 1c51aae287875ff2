"""RemotePolicyModule on torchrl's canonical VLA keys: cameras, channels-first images,
per-element instructions (one request per instruction), the chunk written back."""
import threading

import numpy as np
import pytest
import torch
from tensordict import NonTensorData, NonTensorStack, TensorDict

from agenthive.modules import RemotePolicyModule, VLAKeys
from agenthive.serving import PolicyServer
from agenthive.serving.policy import Policy, PolicyMetadata


class ReadsEverything(Policy):
    """Actions that show what it received: the instruction's length, a pixel, the state."""

    metadata = PolicyMetadata(
        name="reads-everything",
        observations={"observation.images.top": ((4, 5, 3), "uint8"), "observation.images.wrist": ((4, 5, 3), "uint8"), "observation.state": ((2,), "float32")},
        action_shape=(4,),
        chunk_length=3,
        takes_instruction=True,
    )

    def __init__(self):
        self.instructions_per_call = []

    def act_batch(self, observations, episodes):
        self.instructions_per_call.append(sorted({episode["instruction"] for episode in episodes}))
        return [
            {"actions": np.tile([len(episode["instruction"]), obs["observation.images.top"][1, 2, 0], obs["observation.images.wrist"][3, 4, 2], obs["observation.state"][0]], (3, 1)).astype(np.float32)}
            for obs, episode in zip(observations, episodes)
        ]

    def act(self, obs, episode):
        return self.act_batch([obs], [episode])[0]


@pytest.fixture
def served():
    policy = ReadsEverything()
    server = PolicyServer(policy, port=0)
    server.bind()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield policy, server.port
    server.stop()
    thread.join()


def vla_td(instruction):
    images = {camera: torch.randint(0, 256, (2, 3, 4, 5), dtype=torch.uint8, generator=torch.Generator().manual_seed(i)) for i, camera in enumerate(("top", "wrist"))}
    return TensorDict({"observation": {"image": images, "state": torch.tensor([[0.5, 0.0], [1.5, 0.0]])}, "language_instruction": instruction}, batch_size=[2])


def test_canonical_keys_feed_the_servers_names_and_the_chunk_is_written(served):
    policy, port = served
    module = RemotePolicyModule("127.0.0.1", port, vla_keys=True)
    assert module.in_keys == [("observation", "image", "top"), ("observation", "image", "wrist"), ("observation", "state"), "language_instruction"]
    assert module.out_keys == ["action", ("vla_action", "chunk")]
    td = module(vla_td(NonTensorData("pick", batch_size=[2])))
    images = td["observation", "image"]
    expected = torch.stack([torch.full((2,), 4.0), images["top"][:, 0, 1, 2].float(), images["wrist"][:, 2, 3, 4].float(), torch.tensor([0.5, 1.5])], -1)
    torch.testing.assert_close(td["action"], expected)  # (C, H, W) images reached the server as (H, W, C)
    assert td["vla_action", "chunk"].shape == (2, 3, 4)
    torch.testing.assert_close(td["vla_action", "chunk"][:, 0], expected)
    assert policy.instructions_per_call == [["pick"]]
    module.close()


def test_per_element_instructions_go_in_one_request_per_instruction(served):
    policy, port = served
    module = RemotePolicyModule("127.0.0.1", port, vla_keys=True, replan_every=1)
    td = module(vla_td(NonTensorStack("pick", "place it")))
    assert td["action"][:, 0].tolist() == [4.0, 8.0]
    assert sorted(policy.instructions_per_call) == [["pick"], ["place it"]]
    module.close()


def test_default_names_and_observations_the_schema_cannot_name():
    metadata = PolicyMetadata("octo", {"image_primary": ((8, 8, 3), "uint8"), "image_wrist": ((8, 8, 3), "uint8"), "proprio": ((2,), "float32")}, (7,))
    assert VLAKeys().names(metadata) == {
        ("observation", "image", "image_primary"): "image_primary", ("observation", "image", "image_wrist"): "image_wrist", ("observation", "state"): "proprio",
    }
    names = VLAKeys(cameras={"base": "image_primary", "hand": "image_wrist"}).names(metadata)
    assert names == {("observation", "image", "base"): "image_primary", ("observation", "image", "hand"): "image_wrist", ("observation", "state"): "proprio"}
    two_states = PolicyMetadata("p", {"image": ((8, 8, 3), "uint8"), "joints": ((7,), "float32"), "gripper": ((1,), "float32")}, (7,))
    with pytest.raises(ValueError, match=r"expects \['gripper', 'joints'\], which VLAKeys does not map .*VLAKeys\(cameras="):
        VLAKeys().names(two_states)
    assert VLAKeys(state="joints").names(PolicyMetadata("p", {"image": ((8, 8, 3), "uint8"), "joints": ((7,), "float32")}, (7,))) == {
        ("observation", "image"): "image", ("observation", "state"): "joints",
    }
