import agenthive.envs  # noqa: F401  (picks MUJOCO_GL before anything imports mujoco)
