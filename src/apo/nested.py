"""Nested mappings (configs, settings records): merged, and compared key by key."""

from __future__ import annotations

from typing import Any


def merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    """``base`` with ``update`` over it, nested mappings merged key by key."""
    merged = dict(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def config_changes(old: dict[str, Any], new: dict[str, Any]) -> list[tuple[str, Any, Any]]:
    """``(dotted.key, old value, new value)`` for every setting that differs."""
    changes = []
    for key in sorted(old.keys() | new.keys()):
        before, after = old.get(key), new.get(key)
        if isinstance(before, dict) and isinstance(after, dict):
            changes += [(f"{key}.{k}", b, a) for k, b, a in config_changes(before, after)]
        elif before != after:
            changes.append((key, before, after))
    return changes
