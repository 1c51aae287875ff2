"""Builds a tiny OpenVLA checkpoint with random weights: a local Hugging Face folder.

Runs in the OpenVLA policy environment (``scripts/policy_envs/openvla.sh``):
``python test/helpers/openvla_tiny_checkpoint.py UPSTREAM_HF_DIR OUT_DIR``. It does what OpenVLA's
own conversion to Hugging Face does (register the Prismatic classes for the auto classes,
``save_pretrained`` the model and the processor, which copies the modeling files beside the
weights) with toy sizes, so ``AutoModelForVision2Seq.from_pretrained(OUT_DIR,
trust_remote_code=True)`` loads it as it loads ``openvla/openvla-7b``:

* vision: the fused DINO+SigLIP layout of OpenVLA (``dinosiglip-vit-so-224px``) with two timm
  ``vit_tiny_patch16_224`` backbones (``timm_model_ids`` etc. override the lookup tables);
* language: a 2-layer, 64-wide LLaMA whose vocabulary (32064) keeps Llama-2's ids, because
  ``predict_action`` appends token 29871 and reads actions from the last 256 ids below 32000;
* tokenizer: word-level, built here, with Llama's ``<s>`` and OpenVLA's ``<PAD>``;
* ``norm_stats`` for two datasets (``bridge_orig``, ``fractal20220817_data``) with OpenVLA's
  fields (q01/q99/mask/...), 7-d actions, in the config; and ``dataset_statistics.json`` for
  ``franka_reach`` (9-d actions: RoboHive's Franka), as OpenVLA's fine-tuning script writes.

About 16M parameters. Prints the folder and the parameter count as JSON.
"""
import json
import shutil
import sys
from pathlib import Path

import numpy as np

WORDS = "in : what action should the robot take to ? out pick place put push open close up the a red blue cube fork pot drawer carrot in on".split()
DATASETS = ("bridge_orig", "fractal20220817_data")  # in the config's norm_stats, 7-d actions
FINETUNED = "franka_reach"  # in dataset_statistics.json, 9-d actions (RoboHive's Franka)


def tokenizer():
    """A Llama-like fast tokenizer (``<s>`` first, then words) with OpenVLA's ``<PAD>`` token."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    tokens = ["<unk>", "<s>", "</s>", *dict.fromkeys(WORDS), "<PAD>"]
    vocab = {token: i for i, token in enumerate(tokens)}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    backend.normalizer = normalizers.Lowercase()
    backend.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Whitespace(), pre_tokenizers.Punctuation()])
    backend.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 1)])
    return PreTrainedTokenizerFast(tokenizer_object=backend, bos_token="<s>", eos_token="</s>", unk_token="<unk>", pad_token="<PAD>", model_input_names=["input_ids", "attention_mask"])


def norm_stats(names, dim, seed):
    """OpenVLA's per-dataset statistics (q01/q99 unnormalize; the gripper is left as predicted)."""
    rng = np.random.default_rng(seed)
    stats = {}
    for name in names:
        q01, q99 = rng.uniform(-1.0, -0.1, dim), rng.uniform(0.1, 1.0, dim)
        q01[-1], q99[-1] = 0.0, 1.0
        action = {"q01": q01, "q99": q99, "mean": (q01 + q99) / 2, "std": (q99 - q01) / 4, "min": q01 - 0.1, "max": q99 + 0.1, "mask": [True] * (dim - 1) + [False]}
        stats[name] = {"action": {key: np.asarray(value).tolist() for key, value in action.items()}, "num_transitions": 1000, "num_trajectories": 10}
    return stats


def import_prismatic(upstream, workdir):
    """OpenVLA's modeling modules, imported as the package they are (they import each other relatively)."""
    import importlib

    package = Path(workdir) / "openvla_hf"
    shutil.copytree(upstream, package, dirs_exist_ok=True)
    sys.path.insert(0, str(workdir))
    return [importlib.import_module(f"openvla_hf.{name}") for name in ("configuration_prismatic", "modeling_prismatic", "processing_prismatic")]


def build(upstream, out_dir, seed=0):
    import tempfile

    import torch

    configuration, modeling, processing = import_prismatic(upstream, tempfile.mkdtemp())
    OpenVLAConfig, OpenVLAForActionPrediction = configuration.OpenVLAConfig, modeling.OpenVLAForActionPrediction
    PrismaticImageProcessor, PrismaticProcessor = processing.PrismaticImageProcessor, processing.PrismaticProcessor

    OpenVLAConfig.register_for_auto_class()
    OpenVLAForActionPrediction.register_for_auto_class("AutoModelForVision2Seq")
    PrismaticImageProcessor.register_for_auto_class("AutoImageProcessor")
    PrismaticProcessor.register_for_auto_class("AutoProcessor")
    text_config = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=4, vocab_size=32064, max_position_embeddings=512, pad_token_id=32000)
    config = OpenVLAConfig(
        vision_backbone_id="dinosiglip-vit-so-224px", llm_backbone_id="llama2-7b-pure", arch_specifier="no-align+fused-gelu-mlp",
        use_fused_vision_backbone=True, image_resize_strategy="resize-naive", text_config=text_config, pad_token_id=32000,
        pad_to_multiple_of=64, norm_stats=norm_stats(DATASETS, 7, seed), n_action_bins=256,
        timm_model_ids=["vit_tiny_patch16_224", "vit_tiny_patch16_224"], timm_override_act_layers=[None, None], image_sizes=[224, 224],
    )
    torch.manual_seed(seed)
    model = OpenVLAForActionPrediction(config)
    image_processor = PrismaticImageProcessor(
        use_fused_vision_backbone=True, image_resize_strategy="resize-naive", input_sizes=[(3, 224, 224)] * 2,
        interpolations=["bicubic", "bicubic"], means=[(0.485, 0.456, 0.406), (0.5, 0.5, 0.5)], stds=[(0.229, 0.224, 0.225), (0.5, 0.5, 0.5)],
    )
    out_dir = Path(out_dir)
    shutil.rmtree(out_dir, ignore_errors=True)
    model.save_pretrained(out_dir)
    PrismaticProcessor(image_processor=image_processor, tokenizer=tokenizer()).save_pretrained(out_dir)
    # what OpenVLA's fine-tuning script writes beside a fine-tuned checkpoint: its dataset's statistics
    (out_dir / "dataset_statistics.json").write_text(json.dumps(norm_stats([FINETUNED], 9, seed + 1)))
    return out_dir, sum(p.numel() for p in model.parameters())


if __name__ == "__main__":
    path, parameters = build(sys.argv[1], sys.argv[2])
    print(json.dumps({"path": str(Path(path).resolve()), "parameters": parameters}))
