"""Where the answer is in a response."""

from __future__ import annotations

_OPEN, _CLOSE = "<answer>", "</answer>"


def extract_answer(response: str) -> str:
    """The text of the answer, as the official code takes it.

    The first complete ``<answer>...</answer>`` block; lacking one, the text after
    the last ``<answer>``; lacking that, the whole response. Stripped.

    By string search, linear in the response's length: the official pattern
    ``<answer>(.*?)</answer>`` reads the rest of the response again from every
    ``<answer>`` when none is closed.
    """
    start = response.find(_OPEN)
    if start < 0:
        return response.strip()
    start += len(_OPEN)
    end = response.find(_CLOSE, start)
    if end >= 0:  # the first <answer> is the start of the first complete block, if any
        return response[start:end].strip()
    return response.rsplit(_OPEN, 1)[1].strip()
