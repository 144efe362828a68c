"""Where the answer is in a response."""

from __future__ import annotations

import re

_COMPLETE_BLOCK = re.compile(r"<answer>(.*?)</answer>", re.DOTALL)


def extract_answer(response: str) -> str:
    """The text of the answer, as the official code takes it.

    The first complete ``<answer>...</answer>`` block; lacking one, the text after
    the last ``<answer>``; lacking that, the whole response. Stripped.
    """
    match = _COMPLETE_BLOCK.search(response)
    if match:
        return match.group(1).strip()
    if "<answer>" in response:
        return response.rsplit("<answer>", 1)[1].strip()
    return response.strip()
