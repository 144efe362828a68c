"""The format reward: one well-formed think block followed by one answer block."""

from __future__ import annotations

import re

TAGS = ("<think>", "</think>", "<answer>", "</answer>")
_LAYOUT = re.compile(r"<think>(.*?)</think>\s*<answer>(.*?)</answer>", re.DOTALL)


def is_well_formatted(response: str) -> bool:
    """True when the response holds exactly one each of ``<think>``, ``</think>``,
    ``<answer>``, ``</answer>``, both blocks have non-blank content, and the answer
    block follows the think block with only whitespace between. Text before and
    after is allowed, as in the official pattern."""
    if any(response.count(tag) != 1 for tag in TAGS):
        return False
    match = _LAYOUT.search(response)
    return bool(match and match.group(1).strip() and match.group(2).strip())


def format_reward(response: str, answer: str = "", **_: object) -> float:
    """1.0 for a well-formatted response, else 0.0 (scaled by the component weight,
    0.5 by default, to give the official 0.5 format bonus)."""
    return 1.0 if is_well_formatted(response) else 0.0
