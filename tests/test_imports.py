"""Reading settings costs milliseconds: the config and the command line import no torch
or transformers, and the packages load their heavy names lazily (:mod:`apo.lazy`)."""

import ast
import importlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

import apo

SRC = Path(apo.__file__).resolve().parent
LAZY_PACKAGES = ["apo.algorithms", "apo.data", "apo.models", "apo.rewards", "apo.rollout"]
HEAVY = ("torch", "transformers")


def heavy_modules_after(code: str, heavy: tuple[str, ...] = HEAVY) -> list[str]:
    """The ``heavy`` libraries a fresh Python process has imported after running ``code``."""
    report = f"import sys; print(sorted(m for m in {heavy!r} if m in sys.modules))"
    source = str(SRC.parent)
    path = os.pathsep.join(filter(None, [source, os.environ.get("PYTHONPATH")]))
    result = subprocess.run(
        [sys.executable, "-c", f"{code}\n{report}"],
        env=os.environ | {"PYTHONPATH": path},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return ast.literal_eval(result.stdout.splitlines()[-1])


def test_importing_the_config_imports_no_torch_or_transformers():
    assert heavy_modules_after("import apo.config") == []


def test_reading_a_config_and_its_reference_imports_no_torch_or_transformers():
    code = (
        "from apo.config import load_config, reference_yaml\n"
        "reference_yaml()\n"
        "load_config(None, ['model.name_or_path=tiny', 'data.path=rows.jsonl', "
        "'algorithm.advantage=rloo', 'rollout.engine=transformers'])"
    )
    assert heavy_modules_after(code) == []


def test_parsing_the_command_line_imports_no_torch_or_transformers():
    code = "from apo.cli import build_parser\nbuild_parser().parse_args(['train', 'run.yaml'])"
    assert heavy_modules_after(code) == []


def test_the_command_lines_help_imports_no_model_or_image_library():
    """``apo --help`` builds every command's parser: none reads a benchmark module
    (pyarrow, PIL) or a model library to describe itself."""
    code = (
        "import contextlib, io\nfrom apo.cli import main\n"
        "with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):\n"
        "    main(['--help'])"
    )
    assert heavy_modules_after(code, (*HEAVY, "pyarrow", "PIL")) == []


@pytest.mark.parametrize("name", LAZY_PACKAGES)
def test_every_exported_name_of_a_package_resolves(name):
    package = importlib.import_module(name)
    for export in package.__all__:
        assert getattr(package, export) is not None, f"{name}.{export}"
    assert set(package.__all__) <= set(dir(package))


@pytest.mark.parametrize("name", LAZY_PACKAGES)
def test_type_checkers_see_the_names_a_package_exports(name):
    """The ``TYPE_CHECKING`` imports of ``__init__`` name exactly ``__all__``."""
    tree = ast.parse((SRC / name.split(".")[1] / "__init__.py").read_text())
    seen = {
        alias.asname or alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.If) and ast.unparse(node.test) == "TYPE_CHECKING"
        for statement in node.body
        if isinstance(statement, ast.ImportFrom)
        for alias in statement.names
    }
    assert seen == set(importlib.import_module(name).__all__)


def test_an_unknown_name_of_a_lazy_package_is_an_attribute_error():
    import apo.models

    with pytest.raises(AttributeError, match=r"module 'apo\.models' has no attribute 'nothing'"):
        apo.models.nothing  # noqa: B018


def test_the_built_in_algorithm_names_are_those_the_registries_hold():
    from apo.algorithms import (
        ADVANTAGE_ESTIMATORS,
        DADS_SCHEDULES,
        KL_ESTIMATORS,
        LOSS_AGGREGATIONS,
        names,
    )

    assert sorted(names.BUILTIN_ADVANTAGES) == ADVANTAGE_ESTIMATORS.names()
    assert sorted(names.BUILTIN_DADS_SCHEDULES) == DADS_SCHEDULES.names()
    assert sorted(names.BUILTIN_KL_ESTIMATORS) == KL_ESTIMATORS.names()
    assert sorted(names.BUILTIN_AGGREGATIONS) == LOSS_AGGREGATIONS.names()
    assert set(names.GROUP_RELATIVE) <= set(names.BUILTIN_ADVANTAGES)


def test_an_algorithm_a_user_registers_is_a_valid_config_value(monkeypatch):
    from apo.algorithms import ADVANTAGE_ESTIMATORS, AlgorithmConfig

    monkeypatch.setitem(ADVANTAGE_ESTIMATORS._entries, "mine", lambda grouped, **_: grouped)
    assert AlgorithmConfig(advantage="mine").advantage == "mine"


def test_the_built_in_engines_are_registered_by_their_modules():
    from apo.rollout.base import ENGINE_MODULES, ENGINES

    for name, module in ENGINE_MODULES.items():
        importlib.import_module(module)
        assert name in ENGINES


def test_the_benchmark_names_of_the_config_are_the_benchmarks():
    from apo.evaluation.benchmarks import BENCHMARKS
    from apo.evaluation.config import BENCHMARK_NAMES

    assert tuple(BENCHMARKS) == BENCHMARK_NAMES
