"""The package's shape: who may import whom, MUJOCO_GL chosen before torchrl, functions that fit on a screen."""
import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
_HEAVY = ("torch", "torchrl", "tensordict", "mujoco", "robohive", "mani_skill")


def _imports(tree):
    """Top-level imported module names of a module, in order (``from x import y`` gives ``x``)."""
    for node in tree.body:
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            yield node.module


def _all_imports(tree):
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            yield node.module


def _entry_points():
    """Files run as programs (test modules run under conftest.py, which imports agenthive first)."""
    for folder in ("scripts", "examples", "benchmarks", "test"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            if folder != "test" or '__name__ == "__main__"' in path.read_text():
                yield path


def test_entry_points_import_agenthive_before_torchrl():
    """agenthive/__init__.py picks MUJOCO_GL; a script that imports torchrl (hence mujoco) first would get another backend."""
    late = []
    for path in _entry_points():
        names = list(_imports(ast.parse(path.read_text())))
        first_heavy = next((i for i, n in enumerate(names) if n.split(".")[0] in _HEAVY), None)
        first_ours = next((i for i, n in enumerate(names) if n.split(".")[0] == "agenthive"), None)
        if first_heavy is not None and (first_ours is None or first_ours > first_heavy):
            late.append(f"{path.relative_to(ROOT)} imports {names[first_heavy]} before agenthive")
    assert not late, late


def test_serving_imports_nothing_above_it():
    """serving is the torch-free floor: it imports only itself and agenthive.config_args (torch-free) from agenthive."""
    wrong = []
    for path in sorted((ROOT / "agenthive" / "serving").rglob("*.py")):
        for name in _all_imports(ast.parse(path.read_text())):
            if name.startswith("agenthive") and not name.startswith(("agenthive.serving", "agenthive.config_args")) and name != "agenthive":
                wrong.append(f"{path.relative_to(ROOT)} imports {name}")
    assert not wrong, wrong


# docs/architecture.md's floors: a module imports from its own floor and those below
FLOORS = {
    "agenthive": 0, "agenthive.config_args": 0, "agenthive.lazy_exports": 0,
    "agenthive.serving": 1,
    "agenthive.envs": 2, "agenthive.modules": 2, "agenthive.vision": 2, "agenthive.distributed": 2, "agenthive.legacy_collectors": 2,
    "agenthive.env_config": 3, "agenthive.goals": 3,
    "agenthive.remote_env": 4, "agenthive.checkpoint": 4,
    "agenthive.training": 5, "agenthive.evaluation": 5,
    "agenthive.__main__": 6,
}


def _unit(module: str) -> str:
    return ".".join(module.split(".")[:2])


def test_every_package_module_has_a_floor_and_imports_only_downward():
    upward = []
    for path in sorted((ROOT / "agenthive").rglob("*.py")):
        module = ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
        unit = _unit(module) if module != "agenthive" else "agenthive"
        assert unit in FLOORS, f"{module} is on no floor of docs/architecture.md"
        for name in _all_imports(ast.parse(path.read_text())):
            if name.startswith("agenthive.") and FLOORS[_unit(name)] > FLOORS[unit]:
                upward.append(f"{module} (floor {FLOORS[unit]}) imports {name} (floor {FLOORS[_unit(name)]})")
    assert not upward, upward


def test_only_agenthive_init_sets_mujoco_gl():
    setters = [p.relative_to(ROOT) for p in sorted((ROOT / "agenthive").rglob("*.py")) if 'setdefault("MUJOCO_GL"' in p.read_text()]
    assert setters == [Path("agenthive/__init__.py")]


def _body_lines(node) -> int:
    """Lines of a function, its docstring left out."""
    lines = node.end_lineno - node.lineno + 1
    first = node.body[0]
    if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and isinstance(first.value.value, str):
        lines -= first.end_lineno - first.lineno + 1
    return lines


def test_no_function_is_longer_than_80_lines():
    long = []
    for folder in ("agenthive", "scripts"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and _body_lines(node) > 80:
                    long.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name}: {_body_lines(node)} lines")
    assert not long, long
