"""What agenthive's envs promise torchrl about their step outputs (``agenthive.envs.complete_step``)."""
from torchrl.envs import EnvBase


def assert_step_output_is_complete(env, steps=3):
    """torchrl's completion of ``_step`` outputs (``EnvBase._step_proc_data``) finds nothing to change.

    ``CompleteStep`` envs skip that pass, so every reward and done key must already be there
    with its spec's shape and dtype.
    """
    td = env.reset()
    for _ in range(steps):
        out = env._step(env.rand_action(td))
        completed = EnvBase._step_proc_data(env, out.clone())
        assert set(completed.keys(True, True)) == set(out.keys(True, True)), "torchrl had to add keys"
        assert (completed == out).all(), "torchrl changed values"
        for key in (*env.reward_keys, *env.done_keys):
            spec = env.output_spec["full_reward_spec" if key in env.reward_keys else "full_done_spec", key]
            assert out[key].shape == spec.shape, f"{key}: shape {out[key].shape}, spec {spec.shape}"
            assert out[key].dtype == spec.dtype, f"{key}: dtype {out[key].dtype}, spec {spec.dtype}"
        td = out
