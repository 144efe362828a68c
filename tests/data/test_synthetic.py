"""The synthetic task: deterministic, and its images really show what the answers say."""

import json
from collections import Counter

import pytest

from apo.data import DataConfig, PromptDataset
from apo.data.synthetic import (
    CELL,
    COLOURS,
    GRID,
    make_split,
    make_task,
    target_response,
    write_split,
)


def read_scene(image):
    """Recover (colour, shape) per occupied cell from the pixels alone."""
    found = []
    for row in range(GRID):
        for col in range(GRID):
            x0, y0 = col * CELL + 4, row * CELL + 4
            pixels = [
                image.getpixel((x, y)) for y in range(y0, y0 + 21) for x in range(x0, x0 + 21)
            ]
            coloured = [p for p in pixels if p != (255, 255, 255)]
            if not coloured:
                continue
            colour = min(
                COLOURS,
                key=lambda c: sum(
                    (a - b) ** 2
                    for a, b in zip(COLOURS[c], Counter(coloured).most_common(1)[0][0], strict=True)
                ),
            )
            fill = len(coloured) / len(pixels)  # square ~1, circle ~0.8, triangle ~0.5
            shape = "square" if fill > 0.9 else "circle" if fill > 0.65 else "triangle"
            found.append((colour, shape))
    return found


def test_splits_are_deterministic_and_disjoint():
    first, again = make_split("train", 20, seed=3), make_split("train", 20, seed=3)
    assert [r["question"] + r["answer"] + r["reasoning"] for r in first] == [
        r["question"] + r["answer"] + r["reasoning"] for r in again
    ]
    assert list(first[0]["image"].getdata()) == list(again[0]["image"].getdata())
    test = make_split("test", 20, seed=3)
    assert [r["objects"] for r in first] != [r["objects"] for r in test]
    assert {r["task"] for r in make_split("general", 10, seed=3)} == {"colour", "shape"}


@pytest.mark.parametrize("task", ["count", "most", "colour", "shape"])
def test_the_image_shows_what_the_answer_says(task):
    import random

    rng = random.Random(7)
    for difficulty in range(1, 9):
        row = make_task(rng, task, difficulty)
        seen = read_scene(row["image"])
        assert seen == [(colour, shape) for shape, colour, _, _ in row["objects"]]
        colours = Counter(colour for colour, _ in seen)
        if task == "count":
            asked = row["question"].split()[2]
            assert row["answer"] == str(colours[asked])
        elif task == "most":
            winner = "ABCD".index(row["answer"])
            assert colours[list(COLOURS)[winner]] == max(colours.values())
            assert list(colours.values()).count(max(colours.values())) == 1
        elif task == "colour":
            assert row["answer"] == seen[0][0]
        else:
            assert row["answer"] == seen[0][1]


def test_difficulty_is_the_number_of_objects_and_reasoning_grows_with_it():
    rows = make_split("train", 200, seed=0)
    assert all(len(r["objects"]) == r["difficulty"] for r in rows)
    assert {r["difficulty"] for r in rows} == set(range(1, 9))
    short = [len(r["reasoning"]) for r in rows if r["difficulty"] == 1]
    long = [len(r["reasoning"]) for r in rows if r["difficulty"] == 8]
    assert max(short) < min(long)


def test_target_response_is_well_formatted():
    from apo.rewards import accuracy_reward, format_reward

    for row in make_split("train", 10, seed=1):
        response = target_response(row)
        assert format_reward(response) == 1.0
        assert accuracy_reward(response, row["answer"], row.get("choices")) == 1.0


def test_written_split_is_plain_data_the_loader_reads(tmp_path):
    rows = make_split("test", 6, seed=2)
    path = write_split(rows, tmp_path, "test")
    dataset = PromptDataset.load(DataConfig(path=str(path)))
    assert [e.answer for e in dataset.examples] == [r["answer"] for r in rows]
    record = json.loads(path.read_text().splitlines()[1])
    assert record["choices"] == list(COLOURS) and record["image"].endswith(".png")
    assert dataset.examples[0].extra["task"] == rows[0]["task"]
