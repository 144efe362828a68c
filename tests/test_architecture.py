"""The layering of docs/ARCHITECTURE.md: each layer imports only the layers below it,
counting imports inside functions too, so there is no import cycle between layers."""

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "apo"

FOUNDATIONS = {"registry", "section", "nested", "out_of_memory", "run_folder", "lazy"}
LAYERS = {  # layer: the layers it may import (besides itself and the foundations)
    "algorithms": set(),
    "data": set(),
    "models": set(),
    "rewards": set(),
    "rollout": {"data", "models"},
    "evaluation": {"data", "models", "rewards", "rollout"},
    "config": {"algorithms", "data", "models", "rewards", "rollout", "evaluation"},
}
TRAINING = {
    "estimate",
    "agreement",
    "distributed",
    "batching",
    "dynamic_sampling",
    "optim",
    "metrics",
    "tracking",
    "progress",
    "checkpoint",
    "preflight",
    "export",
    "training",
    "trainer",
}


def layer_of(module: str) -> str:
    """``apo.data.dataset`` -> ``data``."""
    return module.split(".")[1] if module.count(".") else module


def apo_imports(path: Path) -> set[str]:
    """The ``apo`` modules a file imports, anywhere in it."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name.startswith("apo.")}
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("apo"):
            found.add(node.module)
    return found


def allowed(layer: str) -> set[str] | None:
    """The layers ``layer`` may import; None: any."""
    if layer in FOUNDATIONS:
        return set()
    if layer in LAYERS:
        return LAYERS[layer] | FOUNDATIONS
    if layer in TRAINING:
        return set(LAYERS) | FOUNDATIONS | TRAINING
    return None  # the entry points: cli, demo, plots, __main__


MODULES = sorted(SRC.rglob("*.py"))


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(SRC)))
def test_each_module_imports_only_lower_layers(path):
    layer = layer_of(".".join(("apo", *path.relative_to(SRC).with_suffix("").parts)))
    permitted = allowed(layer)
    if permitted is None:
        return
    imported = {layer_of(module) for module in apo_imports(path)} - {layer, "apo"}
    assert imported <= permitted, f"{layer} imports {sorted(imported - permitted)}"


def test_the_data_layer_needs_no_model_or_engine():
    imported = {layer_of(m) for p in (SRC / "data").rglob("*.py") for m in apo_imports(p)}
    assert not imported & {"rollout", "models"}


def test_no_import_cycles():
    """Between modules, counting imports inside functions (a package imports its
    ``__init__``)."""
    names = {}
    for path in MODULES:
        parts = ("apo", *path.relative_to(SRC).with_suffix("").parts)
        names[path] = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
    known = set(names.values())

    def resolve(module: str) -> str | None:  # "apo.data.PromptInput" -> "apo.data"
        while module and module not in known:
            module = module.rpartition(".")[0]
        return module or None

    graph = {
        name: {resolve(m) for m in apo_imports(path)} - {None, name} for path, name in names.items()
    }
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(module: str, path: list[str]) -> None:
        state[module] = 1
        for target in graph.get(module, ()):
            if state.get(target) == 1:
                raise AssertionError(" -> ".join([*path, module, target]))
            if target not in state:
                visit(target, [*path, module])
        state[module] = 2

    for module in graph:
        if module not in state:
            visit(module, [])
