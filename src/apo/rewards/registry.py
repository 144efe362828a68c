"""Reward functions by name: built-ins, or user code as ``file.py:function`` / ``module:function``.

A reward function takes one response and returns a float::

    def my_reward(response: str, answer: str, **info) -> float: ...

``info`` holds the row's ``question``, ``choices``, ``id`` and any extra field.
Custom reward files are executed as Python code: use only files you trust.

From Python a function may be given itself: :func:`reward_reference` turns it
into the string that names it, because rewards run in worker processes that
import them by name, and the run's ``config.yaml`` must stay loadable by a
resumed run.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import inspect
import sys
from collections.abc import Callable
from pathlib import Path

from apo.registry import Registry
from apo.rewards.accuracy import accuracy_reward
from apo.rewards.format import format_reward

RewardFunction = Callable[..., float]
REWARDS: Registry[RewardFunction] = Registry("reward")
REWARDS.register("accuracy")(accuracy_reward)
REWARDS.register("format")(format_reward)


def reward_name(reference: str) -> str:
    """Short name of a reward: the built-in name, or the function part of a reference."""
    return reference.rsplit(":", 1)[-1] if ":" in reference else reference


def resolve_reward(reference: str) -> RewardFunction:
    """The function a reference names; ValueError saying what failed otherwise."""
    if ":" not in reference:
        return REWARDS.get(reference)
    target, function_name = reference.rsplit(":", 1)
    if target.endswith(".py"):
        path = Path(target).expanduser().resolve()
        if not path.is_file():
            raise ValueError(f"reward {reference!r}: no such file {path}")
        module_name = f"apo_user_reward_{hashlib.sha1(str(path).encode()).hexdigest()[:12]}"
        spec = importlib.util.spec_from_file_location(module_name, path)
        module = importlib.util.module_from_spec(spec)
        # Registered like any import, so that the file's top level may build a config
        # with its own functions (reward_reference looks them up in sys.modules).
        sys.modules[module_name] = module
        try:
            spec.loader.exec_module(module)
        except Exception as error:
            del sys.modules[module_name]
            raise ValueError(f"reward {reference!r}: importing {path} failed: {error!r}") from None
    else:
        try:
            module = importlib.import_module(target)
        except Exception as error:
            raise ValueError(
                f"reward {reference!r}: cannot import module {target!r}: {error!r}"
            ) from None
    function = getattr(module, function_name, None)
    if not callable(function):
        raise ValueError(f"reward {reference!r}: {target} has no function {function_name!r}")
    return function


def reward_reference(function: Callable) -> str:
    """The name workers import ``function`` by: its built-in name,
    ``package.module:function``, or ``/abs/path/script.py:function`` for a function
    of the script run as ``__main__``. TypeError, naming the function, for what
    workers cannot import (lambdas, nested functions, methods, other callables)."""
    for name in REWARDS:
        if REWARDS.get(name) is function:
            return name
    label = getattr(function, "__qualname__", None) or repr(function)
    fix = "define it with `def` at the top level of a module or script"
    if inspect.ismethod(function):
        raise TypeError(f"reward function {label} is a bound method: {fix}")
    if not inspect.isfunction(function):
        raise TypeError(f"reward {function!r} is not a plain function: {fix}")
    if function.__name__ == "<lambda>":
        raise TypeError(f"reward function {label} is a lambda: {fix}")
    if function.__qualname__ != function.__name__:  # nested in a function or a class
        raise TypeError(f"reward function {label} is not at the top level of its module: {fix}")
    module = sys.modules.get(function.__module__)
    if function.__module__ == "__main__" and getattr(module, "__file__", None) is None:
        raise TypeError(
            f"reward function {label} is defined in an interactive session, which reward "
            "workers cannot import: put it in a .py file"
        )
    if getattr(module, function.__name__, None) is not function:
        raise TypeError(
            f"reward function {label} is not {function.__module__}.{function.__name__} "
            f"(redefined or renamed?): {fix}"
        )
    if function.__module__ != "__main__":
        return f"{function.__module__}:{function.__name__}"
    spec = getattr(module, "__spec__", None)
    if spec is not None and spec.name != "__main__":  # python -m package.script
        return f"{spec.name}:{function.__name__}"
    return f"{Path(module.__file__).resolve()}:{function.__name__}"
