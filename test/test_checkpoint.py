"""The checkpoint format: what train.py writes is what eval and resume read."""
import doctest

import pytest
import torch

import agenthive.checkpoint
import agenthive.config_args
import agenthive.lazy_exports
from agenthive.checkpoint import checkpoint_dir, list_checkpoints, load_policy, read_args, read_env_config, read_state, write_checkpoint
from agenthive.env_config import EnvConfig


def test_written_checkpoint_reads_back(tmp_path):
    policy = torch.nn.Linear(3, 2)
    config = EnvConfig(env="FrankaReachFixed-v0", frame_skip=2)
    path = write_checkpoint(tmp_path, 1200, policy=policy, state={"wall_s": 3.5, "history": {"train": [], "eval": []}},
                            args={"algo": "sac", "seed": 4}, env_config=config)
    assert path == checkpoint_dir(tmp_path, 1200) and path.name == "step_000001200"
    assert list_checkpoints(tmp_path) == {1200: path}
    assert read_args(path) == {"algo": "sac", "seed": 4}
    assert read_env_config(path) == config
    state = read_state(path)
    assert state["frames"] == 1200 and state["wall_s"] == 3.5
    loaded = load_policy(path)
    x = torch.randn(5, 3)
    torch.testing.assert_close(loaded(x), policy(x))
    assert not any(p.name.endswith(".tmp") for p in (tmp_path / "checkpoints").iterdir())


def test_unfinished_and_foreign_directories_are_not_checkpoints(tmp_path):
    (tmp_path / "checkpoints" / "step_000000100.tmp").mkdir(parents=True)
    (tmp_path / "checkpoints" / "notes").mkdir()
    assert list_checkpoints(tmp_path) == {}
    with pytest.raises(FileNotFoundError, match="is not a train.py checkpoint: it has no config.json"):
        read_env_config(tmp_path / "checkpoints" / "notes")
    with pytest.raises(RuntimeError, match="does not load as a torch.save'd policy module"):
        load_policy(tmp_path / "checkpoints" / "notes")


@pytest.mark.parametrize("module", [agenthive.checkpoint, agenthive.config_args, agenthive.lazy_exports])
def test_docstring_examples_run(module):
    result = doctest.testmod(module)
    assert result.attempted > 0 and result.failed == 0
