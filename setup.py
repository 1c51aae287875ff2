"""agenthive: robot simulators and remote foundation-model policies as TorchRL citizens.

Extras let each environment install only what it needs:

* core (no extra): the torch-free wire protocol and policy server (numpy, pyzmq, msgpack).
  ``pip install agenthive[serve]`` is the same set, named for policy hosts (JAX, transformers)
  that must not receive torch.
* ``torchrl``: torch, torchrl, tensordict and the training/collection tools.
* ``robohive``: RoboHive's simulator stack. RoboHive itself is installed with
  ``pip install --no-deps robohive==0.7.0`` (its ``h5py==3.7.0`` pin does not build on
  Python 3.11); its real dependencies are listed here. ``scripts/install.sh`` does both.
* ``maniskill``, ``vision``, ``openpi`` (websockets, for openpi interop), ``ray``, ``dev``, ``all``
  (everything but ``ray``, which only multi-host collection over a Ray cluster needs;
  ``scripts/install.sh`` installs it too, so that the tests run the Ray backend).
"""
from setuptools import find_packages, setup

SERVE = ["numpy", "pyzmq>=25", "msgpack>=1.0"]
TORCHRL = ["torch>=2.5", "torchrl==0.14.1", "tensordict>=0.14,<0.15", "tqdm", "imageio", "imageio-ffmpeg", "matplotlib"]
ROBOHIVE = TORCHRL + [
    # robohive==0.7.0 itself goes in with --no-deps; these are its real run-time dependencies.
    "numpy<2",  # RoboHive's kitchen envs call np.product, removed in numpy 2
    "mujoco==3.1.3",
    "gymnasium==0.29.1",
    "dm-control==1.0.16",
    "absl-py",
    "click",
    "termcolor",
    "sk-video",
    "flatten-dict",
    "h5py>=3.9",
    "pink-noise-rl",
    "gitpython",
]
MANISKILL = TORCHRL + [
    "mani_skill==3.0.1",
    "sapien==3.0.3",
    "gymnasium==0.29.1",  # mani_skill asks for >=0.29.1, but its time-limit wrapper is written for 0.29.1
    "numpy<2",
    "opencv-python<4.12",  # the last releases that install beside numpy<2 without a downgrade step
]
VISION = ["torchvision"]
OPENPI = ["websockets>=11"]  # serve to / query openpi's websocket clients and servers
DEV = ["pytest", "hypothesis", "openpi-client", *OPENPI]

setup(
    name="agenthive",
    version="0.1.0",
    description="Robot simulators and remote foundation-model policies as first-class TorchRL citizens",
    long_description=open("README.md").read(),
    long_description_content_type="text/markdown",
    license="MIT",
    python_requires=">=3.10",
    packages=find_packages(include=["agenthive", "agenthive.*"]),
    install_requires=SERVE,
    extras_require={
        "serve": SERVE,
        "torchrl": TORCHRL,
        "robohive": ROBOHIVE,
        "maniskill": MANISKILL,
        "vision": VISION,
        "openpi": OPENPI,
        "ray": ["ray==2.60.0"],  # torchrl's RayCollector (collect.py/train.py --backend ray); heavy, so not in `all`
        "tensorboard": ["tensorboard"],  # train.py --logger tensorboard
        "wandb": ["wandb"],  # train.py --logger wandb
        "dev": DEV,
        "all": sorted(set(ROBOHIVE + MANISKILL + VISION + DEV)),
    },
    entry_points={"console_scripts": ["agenthive=agenthive.__main__:main"]},
)
