"""Stand-ins for model weights that cannot be downloaded here, with the real call signatures.

``OctoModelStandIn`` has ``OctoModel``'s attributes and methods (``example_batch``,
``dataset_statistics``, ``config``, ``create_tasks``, ``sample_actions``); the OpenVLA
stand-ins have ``AutoProcessor`` / ``AutoModelForVision2Seq``'s (``__call__(text, image)``,
``.to(device, dtype=)``, ``norm_stats``, ``get_action_dim``, ``predict_action``). Their
outputs are simple functions of their inputs so the tests can check the adapters'
pre- and post-processing. The adapters run unchanged except for the loading method.
"""
import numpy as np

from agenthive.serving.policies.octo import OctoPolicy
from agenthive.serving.policies.openvla import OpenVLAPolicy


class OctoModelStandIn:
    """actions[b, h] = (raw + h) * std + mean, raw = [mean of the newest image / 255, valid timesteps, len(task text)]."""

    def __init__(self, horizon=4, window=2):
        self.example_batch = {"observation": {"image_primary": np.zeros((1, window, 64, 64, 3), np.uint8), "timestep_pad_mask": np.ones((1, window), bool)}}
        self.dataset_statistics = {
            "bridge_dataset": {"action": {"mean": np.array([1.0, 2.0, 3.0]), "std": np.array([2.0, 2.0, 2.0])}},
            "fractal": {"action": {"mean": np.zeros(3), "std": np.ones(3)}},
        }
        self.config = {"model": {"heads": {"action": {"kwargs": {"action_horizon": horizon}}}}}

    def create_tasks(self, texts):
        return {"language_instruction": np.array([len(t) for t in texts])}

    def sample_actions(self, observations, tasks, unnormalization_statistics=None, rng=None, **kwargs):
        images, mask = observations["image_primary"], observations["timestep_pad_mask"]
        raw = np.stack([images[:, -1].mean(axis=(1, 2, 3)) / 255, mask.sum(1), tasks["language_instruction"]], 1)
        horizon = self.config["model"]["heads"]["action"]["kwargs"]["action_horizon"]
        chunk = raw[:, None, :] + np.arange(horizon)[None, :, None]
        return chunk * unnormalization_statistics["std"] + unnormalization_statistics["mean"]


class OctoPolicyWithStandIn(OctoPolicy):
    def _load_model(self):
        return OctoModelStandIn(window=self.window)


class _BatchFeatureStandIn(dict):
    def to(self, device, dtype=None):
        return _BatchFeatureStandIn({k: v.to(device, dtype=dtype) if v.is_floating_point() else v.to(device) for k, v in self.items()})


class OpenVLAProcessorStandIn:
    def __call__(self, text, images):
        import torch

        pixels = torch.from_numpy(np.asarray(images.resize((224, 224)), dtype=np.float32) / 255).permute(2, 0, 1)[None]
        return _BatchFeatureStandIn(input_ids=torch.tensor([list(text.encode())]), pixel_values=pixels)


class OpenVLAModelStandIn:
    """predict_action -> [len(prompt), mean pixel, pixel dtype is bfloat16, *norm mean]."""

    norm_stats = {"bridge_orig": {"action": {"mean": [0.5] * 4}}, "fractal": {"action": {"mean": [0.0] * 4}}}

    def get_action_dim(self, unnorm_key):
        return 3 + len(self.norm_stats[unnorm_key]["action"]["mean"])

    def predict_action(self, input_ids, pixel_values, unnorm_key=None, do_sample=True):
        import torch

        assert not do_sample
        head = [input_ids.shape[1], pixel_values.float().mean().item(), float(pixel_values.dtype == torch.bfloat16)]
        return np.array(head + self.norm_stats[unnorm_key]["action"]["mean"])


class OpenVLAPolicyWithStandIn(OpenVLAPolicy):
    def _load(self):
        return OpenVLAProcessorStandIn(), OpenVLAModelStandIn()
