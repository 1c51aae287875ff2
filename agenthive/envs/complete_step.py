"""``CompleteStep``: for envs whose ``_step`` already returns everything torchrl would add.

torchrl's ``EnvBase.step`` passes each ``_step`` output through ``_step_proc_data``, which
reshapes rewards to the reward spec and fills in done keys an env left out. agenthive's envs
write every reward and done key with its spec's shape and dtype themselves, so that pass
finds nothing to do, and it costs ~40 us per step here (3-4% of a RoboHive FrankaReach step,
2% of a ManiSkill CPU step: benchmarks/RESULTS.md). Each env's spec tests hold it to that
with ``test/helpers/step_checks.py``'s ``assert_step_output_is_complete``: torchrl's processing must
leave its output unchanged.

With ``run_type_checks=True`` torchrl's pass runs as usual (it also checks dtypes then).
"""
from tensordict import TensorDictBase


class CompleteStep:
    """Mixin placed before ``EnvBase`` (or a subclass) in the bases of an env whose
    ``_step`` returns the complete ``"next"`` TensorDict: every reward and done key, each
    with its spec's shape and dtype."""

    def _step_proc_data(self, next_tensordict: TensorDictBase) -> TensorDictBase:
        if self.run_type_checks:
            return super()._step_proc_data(next_tensordict)
        return next_tensordict
