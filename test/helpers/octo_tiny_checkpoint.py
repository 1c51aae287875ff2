"""Builds tiny Octo checkpoints with random weights, saved by Octo's own ``save_pretrained``.

Runs in the Octo policy environment (``scripts/policy_envs/octo.sh``), not in the project's
venv: ``python test/helpers/octo_tiny_checkpoint.py OUT_DIR``. No Octo weights can be downloaded
here, so the tests load these through ``OctoModel.load_pretrained``, as a user's checkpoint
would be loaded. The models follow Octo 1.5's layout (``scripts/configs/octo_pretrain_config.py``:
an image tokenizer per camera, a T5 language encoder, a readout token, a chunking action
head) at toy size: one transformer layer 32 wide, an L1 action head (deterministic, as in
Octo's finetuning example), about 0.1M parameters.

The language encoder and tokenizer are a tiny ``T5Config`` and a word-level tokenizer
trained here, saved in ``OUT_DIR/tiny-t5`` (Octo picks its encoder-only T5 when the name
contains "t5"); the checkpoints store that absolute path, so it must exist when they load.

Checkpoints written under OUT_DIR (their layout is in ``CHECKPOINTS``):
    bridge/   image_primary 64x64, action dim 7, horizon 4, window 2, statistics of two
              datasets (``bridge_dataset``, ``fractal``): pick one with ``unnorm_key``
    reach/    image_primary 64x64, action dim 9 (RoboHive's Franka), horizon 4, window 2,
              one dataset's statistics at the top level (``unnorm_key: []``)
    two_cams/ image_primary and image_wrist 64x64 + 9-d proprio, action dim 7, horizon 4,
              window 2, statistics of one dataset (``bridge_dataset``)
"""
import json
import sys
from pathlib import Path

import numpy as np

WORDS = "pick place put push open close reach the a up down to in on of red blue green cube fork pot drawer block target left right".split()
CHECKPOINTS = {
    "bridge": dict(images=("image_primary",), proprio=0, action_dim=7, datasets=("bridge_dataset", "fractal"), top_level=False),
    "reach": dict(images=("image_primary",), proprio=0, action_dim=9, datasets=("franka_reach",), top_level=True),
    "two_cams": dict(images=("image_primary", "image_wrist"), proprio=9, action_dim=7, datasets=("bridge_dataset",), top_level=False),
}
IMAGE_SIZE, HORIZON, WINDOW, TEXT_LENGTH = (64, 64), 4, 2, 16


def make_language_dir(path):
    """A tiny T5 config and a word-level tokenizer, loadable with ``from_pretrained(path)``."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast, T5Config

    vocab = {token: i for i, token in enumerate(["<pad>", "</s>", "<unk>", *WORDS])}
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", vocab["</s>"])])
    fast = PreTrainedTokenizerFast(tokenizer_object=tokenizer, pad_token="<pad>", eos_token="</s>", unk_token="<unk>", model_input_names=["input_ids", "attention_mask"])  # as T5's tokenizer
    fast.save_pretrained(path)
    config = T5Config(vocab_size=len(vocab), d_model=32, d_kv=8, d_ff=64, num_layers=1, num_heads=4, pad_token_id=0, eos_token_id=1, decoder_start_token_id=0)
    config.save_pretrained(path)


def model_config(layout, language_dir):
    from octo.data.utils.text_processing import HFTokenizer
    from octo.model.components.action_heads import L1ActionHead
    from octo.model.components.tokenizers import ImageTokenizer, LanguageTokenizer, LowdimObsTokenizer
    from octo.model.components.vit_encoders import SmallStem16
    from octo.utils.spec import ModuleSpec

    stem = ModuleSpec.create(SmallStem16, features=(32, 32, 32, 32), num_features=32)
    tokenizers = {key.removeprefix("image_"): ModuleSpec.create(ImageTokenizer, obs_stack_keys=[key], task_stack_keys=[key], encoder=stem) for key in layout["images"]}
    if layout["proprio"]:
        tokenizers["proprio"] = ModuleSpec.create(LowdimObsTokenizer, n_bins=256, bin_type="normal", low=-2.0, high=2.0, obs_keys=["proprio"])
    model = dict(
        observation_tokenizers=tokenizers,
        task_tokenizers={"language": ModuleSpec.create(LanguageTokenizer, encoder=str(language_dir), finetune_encoder=False)},
        heads={"action": ModuleSpec.create(L1ActionHead, action_horizon=HORIZON, action_dim=layout["action_dim"], readout_key="readout_action")},
        readouts={"action": 1},
        token_embedding_size=32,
        transformer_kwargs=dict(num_layers=1, mlp_dim=64, num_attention_heads=2, dropout_rate=0.0, attention_dropout_rate=0.0, add_position_embedding=False),
        max_horizon=10,
        repeat_task_tokens=True,
        use_correct_attention=True,
    )
    text_kwargs = {"max_length": TEXT_LENGTH, "padding": "max_length", "truncation": True, "return_tensors": "np"}
    text_processor = ModuleSpec.create(HFTokenizer, tokenizer_name=str(language_dir), encode_with_model=False, tokenizer_kwargs=text_kwargs)
    return {"model": model, "text_processor": text_processor, "window_size": WINDOW}


def example_batch(layout, text_processor):
    images = {key: np.zeros((1, WINDOW, *IMAGE_SIZE, 3), np.uint8) for key in layout["images"]}
    observation = {**images, "timestep_pad_mask": np.ones((1, WINDOW), bool), "timestep": np.zeros((1, WINDOW), np.int32)}
    observation["pad_mask_dict"] = {key: np.ones((1, WINDOW), bool) for key in images}
    if layout["proprio"]:
        observation["proprio"] = np.zeros((1, WINDOW, layout["proprio"]), np.float32)
        observation["pad_mask_dict"]["proprio"] = np.ones((1, WINDOW), bool)
    task = {key: np.zeros((1, *IMAGE_SIZE, 3), np.uint8) for key in layout["images"]}
    task["language_instruction"] = text_processor.encode(["pick up the fork"])
    task["pad_mask_dict"] = {key: np.ones(1, bool) for key in task}
    return {"observation": observation, "task": task, "action": np.zeros((1, WINDOW, HORIZON, layout["action_dim"]), np.float32)}


def statistics(layout, seed):
    """Per-dataset action (and proprio) statistics, as Octo's data pipeline writes them."""
    rng = np.random.default_rng(seed)
    dim = layout["action_dim"]
    mask = np.ones(dim, bool)
    mask[-1] = False  # Octo leaves the gripper dimension unnormalized
    per_dataset = {}
    for name in layout["datasets"]:
        entry = {"action": {"mean": rng.normal(0, 0.1, dim), "std": rng.uniform(0.05, 0.5, dim), "mask": mask}}
        entry["action"].update(min=entry["action"]["mean"] - 1, max=entry["action"]["mean"] + 1, p01=entry["action"]["mean"] - 0.9, p99=entry["action"]["mean"] + 0.9)
        if layout["proprio"]:
            entry["proprio"] = {"mean": rng.normal(0, 0.3, layout["proprio"]), "std": rng.uniform(0.1, 1.0, layout["proprio"])}
        entry["num_transitions"], entry["num_trajectories"] = np.array(1000), np.array(10)
        per_dataset[name] = entry
    return per_dataset[layout["datasets"][0]] if layout["top_level"] else per_dataset


def build(out_dir, name, language_dir, seed=0):
    """Initializes checkpoint ``name`` of ``CHECKPOINTS`` with random weights and saves it at step 0."""
    import jax
    from octo.model.octo_model import OctoModel
    from octo.utils.spec import ModuleSpec

    layout = CHECKPOINTS[name]
    config = model_config(layout, language_dir)
    text_processor = ModuleSpec.instantiate(config["text_processor"])()
    model = OctoModel.from_config(config, example_batch(layout, text_processor), text_processor, rng=jax.random.PRNGKey(seed), dataset_statistics=statistics(layout, seed))
    path = Path(out_dir) / name
    model.save_pretrained(step=0, checkpoint_path=str(path))
    return path, sum(x.size for x in jax.tree_util.tree_leaves(model.params))


def main(out_dir):
    out_dir = Path(out_dir).resolve()
    language_dir = out_dir / "tiny-t5"
    make_language_dir(language_dir)
    built = {}
    for seed, name in enumerate(CHECKPOINTS):
        path, parameters = build(out_dir, name, language_dir, seed)
        built[name] = {"path": str(path), "parameters": int(parameters)}
    print(json.dumps(built))


if __name__ == "__main__":
    main(sys.argv[1])
