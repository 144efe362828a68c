"""Reward functions by name: built-ins, or user code as ``file.py:function`` / ``module:function``.

A reward function takes one response and returns a float::

    def my_reward(response: str, answer: str, **info) -> float: ...

``info`` holds the row's ``question``, ``choices``, ``id`` and any extra field.
Custom reward files are executed as Python code: use only files you trust.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
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
        try:
            spec.loader.exec_module(module)
        except Exception as error:
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
