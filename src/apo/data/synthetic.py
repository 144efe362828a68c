"""A synthetic visual reasoning task with verifiable answers and graded difficulty.

Scenes of coloured shapes on a 4 x 4 grid (112 x 112 pixels, one shape per
28-pixel cell, which is exactly one merged vision token of Qwen2.5-VL):

- **Reasoning tasks** (trained with RL):
  ``count`` - "How many red shapes are there?" (0 to 8 objects in the scene);
  ``most`` - "Which colour appears most often?" as multiple choice.
  Difficulty is the number of objects; the worked reasoning enumerates every
  object, so it is longer for harder scenes (STCR has something to act on).
- **General tasks** (never trained with RL, to measure retention):
  ``colour`` - "What colour is the shape?" and ``shape`` - "What shape is it?"
  for a scene with a single object.

Everything is deterministic from a seed. :func:`write_split` writes a split in
the plain data format (PNG files + JSON lines) that ``apo train`` reads.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw

COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 40, 40),
    "green": (40, 170, 70),
    "blue": (40, 80, 220),
    "yellow": (230, 190, 20),
}
SHAPES = ("circle", "square", "triangle")
GRID, CELL = 4, 28
SIZE = GRID * CELL
REASONING_TASKS = ("count", "most")
GENERAL_TASKS = ("colour", "shape")
CHOICE_LETTERS = "ABCD"


@dataclass(frozen=True)
class SceneObject:
    shape: str
    colour: str
    row: int
    col: int


def draw_scene(objects: list[SceneObject]) -> Image.Image:
    """White 112 x 112 image, each object centred in its cell, 20 pixels wide."""
    image = Image.new("RGB", (SIZE, SIZE), "white")
    draw = ImageDraw.Draw(image)
    for obj in objects:
        x0, y0 = obj.col * CELL + 4, obj.row * CELL + 4
        x1, y1 = x0 + 20, y0 + 20
        fill = COLOURS[obj.colour]
        if obj.shape == "circle":
            draw.ellipse([x0, y0, x1, y1], fill=fill)
        elif obj.shape == "square":
            draw.rectangle([x0, y0, x1, y1], fill=fill)
        else:
            draw.polygon([((x0 + x1) / 2, y0), (x0, y1), (x1, y1)], fill=fill)
    return image


def _scene(rng: random.Random, count: int) -> list[SceneObject]:
    cells = rng.sample(range(GRID * GRID), count)
    objects = [
        SceneObject(rng.choice(SHAPES), rng.choice(list(COLOURS)), cell // GRID, cell % GRID)
        for cell in sorted(cells)  # row-major: the order the reasoning reads them in
    ]
    return objects


def _enumeration(objects: list[SceneObject]) -> str:
    return ", ".join(f"{o.colour} {o.shape}" for o in objects) if objects else "nothing"


def make_task(rng: random.Random, task: str, difficulty: int) -> dict[str, Any]:
    """One example as a plain-format row (image as a PIL image) plus its worked
    ``reasoning``, ``task`` and ``difficulty``."""
    if task == "count":
        objects = _scene(rng, difficulty)
        colour = rng.choice(list(COLOURS))
        count = sum(o.colour == colour for o in objects)
        reasoning = f"{_enumeration(objects)}. {colour}: {count}"
        row = {"question": f"How many {colour} shapes are there?", "answer": str(count)}
    elif task == "most":
        while True:  # a scene with a single most frequent colour
            objects = _scene(rng, difficulty)
            counts = {c: sum(o.colour == c for o in objects) for c in COLOURS}
            best = max(counts.values())
            if list(counts.values()).count(best) == 1:
                break
        winner = max(counts, key=counts.get)
        tally = ", ".join(f"{c} {n}" for c, n in counts.items())
        reasoning = f"{_enumeration(objects)}. {tally}"
        row = {
            "question": "Which colour appears most often?",
            "choices": list(COLOURS),
            "answer": CHOICE_LETTERS[list(COLOURS).index(winner)],
        }
    elif task in GENERAL_TASKS:
        objects = _scene(rng, 1)
        obj = objects[0]
        reasoning = f"{obj.colour} {obj.shape}"
        question = "What colour is the shape?" if task == "colour" else "What shape is it?"
        row = {"question": question, "answer": obj.colour if task == "colour" else obj.shape}
    else:
        raise ValueError(
            f"unknown task {task!r}; allowed: {', '.join(REASONING_TASKS + GENERAL_TASKS)}"
        )
    return {
        **row,
        "image": draw_scene(objects),
        "reasoning": reasoning,
        "task": task,
        "difficulty": difficulty,
        "objects": [[o.shape, o.colour, o.row, o.col] for o in objects],
    }


def make_split(split: str, size: int, seed: int, max_objects: int = 8) -> list[dict[str, Any]]:
    """``size`` examples of a split: ``train`` and ``test`` (reasoning, disjoint seeds)
    or ``general``. Difficulty (objects) is uniform in 1..max_objects."""
    offsets = {"train": 0, "test": 1_000_003, "general": 2_000_003}
    if split not in offsets:
        raise ValueError(f"unknown split {split!r}; allowed: {', '.join(offsets)}")
    rng = random.Random(seed + offsets[split])
    tasks = GENERAL_TASKS if split == "general" else REASONING_TASKS
    rows = []
    for index in range(size):
        task = tasks[index % len(tasks)]
        difficulty = 1 if split == "general" else rng.randint(1, max_objects)
        rows.append({"id": f"{split}-{index}", **make_task(rng, task, difficulty)})
    return rows


def target_response(row: dict[str, Any]) -> str:
    """The worked response a model should give: right enumeration, right answer."""
    return f"<think>{row['reasoning']}</think><answer>{row['answer']}</answer>"


@dataclass(frozen=True)
class NoisyTeacher:
    """A teacher whose perception is perfect but whose final answers are not.

    On a reasoning question it writes the right enumeration and tally, then
    answers right with probability ``correct``. Otherwise it answers a near
    miss (one more than the count; the runner-up colour), either right away
    or, with probability ``overthink`` among its wrong answers, after
    re-enumerating the scene and hesitating, so that its incorrect responses
    are longer than its correct ones, as with real reasoning models. General
    questions are always answered right.

    The near miss is always the same one, so a model that imitates the teacher
    prefers it under greedy decoding while the right answer keeps a large
    share of its samples: high pass@k, low pass@1. RL can sharpen that.
    """

    correct: float = 0.4
    overthink: float = 0.25

    def response(self, row: dict[str, Any], rng: random.Random) -> str:
        """One sampled demonstration for ``row``."""
        if row["task"] not in REASONING_TASKS or rng.random() < self.correct:
            return target_response(row)
        wrong_text, wrong_answer = near_miss(row)
        think = row["reasoning"]
        if rng.random() < self.overthink:
            think += f". wait, recount: {row['reasoning']}. so {wrong_text}"
        return f"<think>{think}</think><answer>{wrong_answer}</answer>"


def colour_counts(colours: list[str]) -> dict[str, int]:
    return {c: sum(x == c for x in colours) for c in COLOURS}


def near_miss(row: dict[str, Any]) -> tuple[str, str]:
    """The teacher's wrong answer: (as said in the reasoning, as answered)."""
    if row["task"] == "count":
        wrong = str(int(row["answer"]) + 1)
        return wrong, wrong
    counts = colour_counts([colour for _, colour, _, _ in row["objects"]])
    winner = list(COLOURS)[CHOICE_LETTERS.index(row["answer"])]
    runner_up = max((c for c in COLOURS if c != winner), key=lambda c: counts[c])
    return runner_up, CHOICE_LETTERS[list(COLOURS).index(runner_up)]


def implied_answer(row: dict[str, Any], response: str) -> str | None:
    """The answer that the enumeration inside a response's ``<think>`` implies for
    ``row``'s question (None when no enumeration can be read).

    The enumeration is the text between ``<think>`` and the first ``". "``:
    ``"red circle, blue square"`` (``"nothing"`` for an empty scene).
    """
    start = response.find("<think>")
    if start < 0 or row["task"] not in REASONING_TASKS:
        return None
    think = response[start + len("<think>") :].split("</think>")[0]
    listed = think.split(". ")[0].split(".")[0]
    items = [] if listed.strip() == "nothing" else [i.strip() for i in listed.split(",")]
    colours = []
    for item in items:
        words = item.split()
        if len(words) != 2 or words[0] not in COLOURS or words[1] not in SHAPES:
            return None
        colours.append(words[0])
    counts = colour_counts(colours)
    if row["task"] == "count":
        colour = row["question"].split()[2]  # "How many red shapes are there?"
        return str(counts[colour])
    best = max(counts.values())
    if list(counts.values()).count(best) != 1:
        return None
    return CHOICE_LETTERS[list(COLOURS).index(max(counts, key=counts.get))]


def write_split(rows: list[dict[str, Any]], directory: str | Path, name: str) -> Path:
    """Write rows as ``name.jsonl`` with PNG images in ``images/``: the plain format."""
    directory = Path(directory)
    (directory / "images").mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}.jsonl"
    with path.open("w") as handle:
        for row in rows:
            image_path = f"images/{row['id']}.png"
            row["image"].save(directory / image_path, optimize=True)
            record = {k: v for k, v in row.items() if k != "image"} | {"image": image_path}
            handle.write(json.dumps(record) + "\n")
    return path
