"""Generated arithmetic word problems: a verifiable text task for real base models.

One-step addition and subtraction stories (``Tom has 12 apples. He buys 5
more. ...``) with whole-number answers, in six templates, and a second problem
type that training never sees (comparisons: ``Which is larger, 34 or 29?``), to
measure what RL on the first does to the second. Rows are in apo's plain data
format (``id``, ``question``, ``answer``); every split is seeded, and
:func:`make_splits` keeps the held-out questions out of the training split by
their text.
"""

from __future__ import annotations

import random
from typing import Any

NAMES = ("Tom", "Sara", "Ben", "Mia", "Leo", "Anna", "Sam", "Lily", "Max", "Emma")
FEMALE = {"Sara", "Mia", "Anna", "Lily", "Emma"}
ADDITION = (
    ("{n} has {a} {x}. {p} buys {b} more. How many {x} does {n} have now?",
     ("apples", "pencils", "marbles", "cards")),
    ("A box holds {a} red {x} and {b} blue {x}. How many {x} are in the box?",
     ("balls", "beads", "blocks", "cups")),
    ("{n} read {a} pages on Monday and {b} pages on Tuesday. How many pages did {n} read "
     "in total?", ("pages",)),
)  # fmt: skip
SUBTRACTION = (
    ("{n} had {a} {x}. {p} gave {b} to a friend. How many {x} does {n} have left?",
     ("stickers", "candies", "coins", "toys")),
    ("There were {a} {x} on a tree. {b} flew away. How many {x} are on the tree now?",
     ("birds", "crows", "parrots")),
    ("A shop had {a} {x} and sold {b}. How many {x} are left?",
     ("cakes", "hats", "books", "lamps")),
)  # fmt: skip

# Worked examples of the few-shot prompt: a short equation, then the answer tag.
SHOTS = (
    ("Tom has 12 apples. He buys 5 more. How many apples does Tom have now?", "12 + 5 = 17", 17),
    ("There were 23 birds on a tree. 9 flew away. How many birds are on the tree now?",
     "23 - 9 = 14", 14),
    ("A box holds 14 red beads and 27 blue beads. How many beads are in the box?",
     "14 + 27 = 41", 41),
)  # fmt: skip
COMPARE_SHOTS = (("Which is larger, 18 or 31?", "31 > 18", 31),)


def story(rng: random.Random, max_number: int) -> dict[str, Any]:
    """One addition or subtraction story; a subtraction's answer is at least 1."""
    subtract = rng.random() < 0.5
    name = rng.choice(NAMES)
    a, b = rng.randint(2, max_number), rng.randint(1, max_number)
    if subtract:
        a, b = max(a, b), min(a, b)
        a += a == b  # never 0 left
    template, things = rng.choice(SUBTRACTION if subtract else ADDITION)
    pronoun = "She" if name in FEMALE else "He"
    question = template.format(n=name, p=pronoun, a=a, b=b, x=rng.choice(things))
    return {"question": question, "answer": str(a - b if subtract else a + b)}


def comparison(rng: random.Random, max_number: int) -> dict[str, Any]:
    """Which of two different numbers is larger (or smaller)."""
    a, b = rng.sample(range(1, max_number + 1), 2)
    larger = rng.random() < 0.5
    word = "larger" if larger else "smaller"
    return {
        "question": f"Which is {word}, {a} or {b}?",
        "answer": str(max(a, b) if larger else min(a, b)),
    }


TASKS = {"stories": story, "comparisons": comparison}


def few_shot_template(task: str = "stories") -> str:
    """The ``question_template`` of a plain prompt: worked examples, then the question,
    ending where the model's answer begins."""
    shots = SHOTS if task == "stories" else COMPARE_SHOTS
    examples = "".join(
        f"Question: {question}\nAnswer: {work}. <answer>{answer}</answer>\n\n"
        for question, work, answer in shots
    )
    return examples + "Question: {question}\nAnswer:"


def make_split(
    task: str,
    size: int,
    seed: int,
    max_number: int,
    exclude: set[str] | frozenset[str] = frozenset(),
) -> list[dict[str, Any]]:
    """``size`` distinct questions of ``task`` (none of ``exclude``, none of the few-shot
    examples), with ids ``{task}-{seed}-{index}``."""
    rng = random.Random(f"{task}-{seed}")
    taken = set(exclude) | {question for question, _, _ in SHOTS + COMPARE_SHOTS}
    rows: list[dict[str, Any]] = []
    for _ in range(1000 * size):  # a bound: a small max_number has few distinct questions
        row = TASKS[task](rng, max_number)
        if row["question"] not in taken:
            taken.add(row["question"])
            rows.append({"id": f"{task}-{seed}-{len(rows)}", **row})
            if len(rows) == size:
                return rows
    raise ValueError(f"only {len(rows)} distinct {task} questions up to {max_number}, not {size}")


def make_splits(
    train: int, test: int, other: int, seed: int = 0, max_number: int = 30
) -> dict[str, list[dict[str, Any]]]:
    """train: stories to train on; test: held-out stories (none in train); other:
    comparisons, a problem type training never sees."""
    held_out = make_split("stories", test, seed + 1, max_number)
    return {
        "train": make_split(
            "stories", train, seed, max_number, frozenset(row["question"] for row in held_out)
        ),
        "test": held_out,
        "other": make_split("comparisons", other, seed + 2, max_number),
    }
