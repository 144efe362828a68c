"""Rewards that vary on the untrained tiny model's random text, so that groups
have right and wrong answers and advantages are not all zero."""


def many_es(response: str, answer: str, **info) -> float:
    """'Correct' when the response holds at least 3 letters e."""
    return 1.0 if response.count("e") >= 3 else 0.0


def short(response: str, answer: str, **info) -> float:
    """'Correct' when the response is short (needs responses that end early)."""
    return 1.0 if len(response) < 40 else 0.0


def broken(response: str, answer: str, **info) -> float:
    """A reward with a bug: it fails on every response."""
    raise KeyError("expected_field")
