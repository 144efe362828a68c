"""Lazy package exports (PEP 562): a package's names load with their module, on first use.

A package ``__init__`` lists what it exports and where each name lives::

    __getattr__, __dir__ = lazy_exports(__name__, {"apo.models.loading": ["load_model"]})

``from apo.models import load_model`` then imports ``apo.models.loading`` (and
torch) at that moment, while ``from apo.models import ModelConfig`` loads only
the light config module: reading settings never pays for the heavy libraries.
The ``__init__`` keeps ``__all__``, and imports the same names under
``TYPE_CHECKING`` for type checkers and IDEs.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Iterable, Mapping
from typing import Any


def lazy_exports(
    package: str, exports: Mapping[str, Iterable[str]]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``__getattr__`` and ``__dir__`` for ``package``, whose names ``exports`` lists by
    the module that defines them."""
    module_of = {name: module for module, names in exports.items() for name in names}

    def __getattr__(name: str) -> Any:
        if name not in module_of:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module_of[name]), name)
        setattr(sys.modules[package], name, value)  # later lookups skip this function
        return value

    def __dir__() -> list[str]:
        return sorted(set(vars(sys.modules[package])) | set(module_of))

    return __getattr__, __dir__
