import agenthive  # noqa: F401  (before torchrl: importing agenthive picks MUJOCO_GL)
