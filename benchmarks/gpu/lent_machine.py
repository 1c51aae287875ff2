"""A Python environment here that imports only what the lent GPU machine will have.

That machine has its image's packages (``IMAGE_PACKAGES``, from the device tool's list of
2026-11-17) plus the wheels a call carries (``prepare.CALLS``). The CPU dry run runs in a
virtual environment that sees exactly those distributions of this machine's ``.venv`` (the
image's packages with everything they require, the carried ones without their
requirements), so a check that imports something no call carries fails here, not in a lease.
"""
from __future__ import annotations

import importlib.metadata as metadata
import os
import re
import venv
from pathlib import Path

IMAGE_PACKAGES = """
absl-py accelerate aiofiles aiohappyeyeballs aiohttp aiosignal annotated-doc anyio attrs botorch build certifi
charset-normalizer chex click cloudpickle cmake colorama contourpy coverage cuda-bindings cuda-core
cuda-pathfinder cuda-toolkit cupy-cuda13x cycler cython diffrax e3nn einops equinox etils execnet filelock
flatbuffers flax fonttools formulaic frozenlist fsspec gpytorch grpcio h11 h5py hf-xet httpcore httpx
huggingface-hub humanize hypothesis idna imageio iniconfig interface-meta jax jax-cuda13-pjrt jax-cuda13-plugin
jaxlib jaxtyping jinja2 joblib kiwisolver lazy-loader lightning lightning-utilities linear-operator lineax
llvmlite lxml markdown markdown-it-py markupsafe matplotlib mdurl meson ml-dtypes mpi4py mpmath msgpack
multidict multipledispatch mypy-extensions nanobind narwhals networkx ninja numba numba-cuda numpy numpyro
nvidia-ml-py onnx onnx-ir onnxruntime onnxscript opencv-python-headless optax opt-einsum opt-einsum-fx
optimistix orbax-checkpoint packaging pandas pathspec patsy peft pillow pip pluggy portalocker
prometheus-client propcache protobuf psutil pyarrow pybind11 py-cpuinfo pygments pyparsing pyproject-hooks
pyre-extensions pytest pytest-benchmark pytest-cov pytest-mock pytest-timeout pytest-xdist python-dateutil
pytorch-lightning pyyaml regex requests rich sacrebleu safetensors scikit-build-core scikit-image
scikit-learn scipy seaborn sentencepiece sentence-transformers setuptools shellingham simplejson six
sortedcontainers statsmodels sympy tabulate tensorboard tensorboard-data-server tensorstore threadpoolctl
tifffile tiktoken timm tokenizers toolz torch torchaudio torchdiffeq torch-geometric torchmetrics torchvision
tqdm transformers treescope triton typer typing-extensions typing-inspect urllib3 uvloop wadler-lindig
werkzeug wheel wrapt xarray xxhash yarl zipp
""".split()
# the same module under another distribution name here (opencv-python-headless there)
SAME_AS = {"opencv-python-headless": "opencv-python"}


def normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _requirements(dist: metadata.Distribution) -> list[str]:
    names = []
    for requirement in dist.requires or []:
        if "extra ==" in requirement:
            continue
        names.append(normal(re.split(r"[ ;<>=!~\[(]", requirement, maxsplit=1)[0]))
    return names


def visible_distributions(carried: list[str]) -> dict[str, metadata.Distribution]:
    """This environment's distributions the lent machine would have: image closure + carried."""
    installed = {normal(d.metadata["Name"]): d for d in metadata.distributions()}
    todo = [SAME_AS.get(n, n) for n in IMAGE_PACKAGES]
    visible = {}
    while todo:
        name = todo.pop()
        if name in visible or name not in installed:
            continue
        visible[name] = installed[name]
        todo.extend(_requirements(installed[name]))
    visible.update({normal(n): installed[normal(n)] for n in carried if normal(n) in installed})
    return visible


def build(target: Path, carried: list[str]) -> Path:
    """A venv at ``target`` seeing only :func:`visible_distributions`; returns its python."""
    site = target / "visible"
    site.mkdir(parents=True)
    for dist in visible_distributions(carried).values():
        root = Path(dist.locate_file(""))
        tops = {str(f).split("/")[0] for f in dist.files or [] if not str(f).startswith("..")}
        for top in tops:
            source, link = root / top, site / top
            if source.exists() and not os.path.lexists(link) and top != "__pycache__":
                link.symlink_to(source)
    venv.create(target / "venv", with_pip=False, symlinks=True)
    [packages] = (target / "venv" / "lib").glob("python*/site-packages")
    (packages / "lent_machine.pth").write_text(f"{site}\n")
    return target / "venv" / "bin" / "python"
