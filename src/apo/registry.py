"""A tiny name -> function registry, so a new variant is one decorated function.

Used for advantage estimators, DADS weight schedules, KL estimators and loss
aggregations (:mod:`apo.algorithms`), rewards (``REWARDS``) and rollout engines
(``ENGINES``, whose entries are engine classes), in the style of verl's
``core_algos``. A registry keeps accepting an entry's former name
(:meth:`Registry.alias`). The built-in names are also listed in light modules
(``algorithms/names.py``, ``rollout/base.py``'s ``ENGINE_MODULES``), so a config
is checked without importing the functions (and torch).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

F = TypeVar("F", bound=Callable)


class Registry(Generic[F]):
    """Functions registered under unique names; ``kind`` names them in errors."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, F] = {}
        self._aliases: dict[str, str] = {}

    def register(self, name: str) -> Callable[[F], F]:
        """Decorator: ``@REGISTRY.register("name")`` adds the function under ``name``."""

        def decorator(fn: F) -> F:
            if name in self._entries:
                raise ValueError(f"{self.kind} {name!r} is already registered")
            self._entries[name] = fn
            return fn

        return decorator

    def alias(self, old: str, new: str) -> None:
        """Keep accepting ``old`` (a former name) for the entry now called ``new``."""
        if new not in self._entries or old in self._entries:
            raise ValueError(f"cannot alias {self.kind} {old!r} to {new!r}")
        self._aliases[old] = new

    def canonical(self, name: str) -> str:
        """The current name of ``name`` (itself unless it is a former name)."""
        return self._aliases.get(name, name)

    def get(self, name: str) -> F:
        """The function registered as ``name``; a ValueError lists the allowed names."""
        try:
            return self._entries[self.canonical(name)]
        except KeyError:
            raise ValueError(
                f"unknown {self.kind} {name!r}; allowed: {', '.join(self.names())}"
            ) from None

    def names(self) -> list[str]:
        """The registered names, sorted (former names left out)."""
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries or name in self._aliases

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())
