"""The synthetic task: deterministic, and its images really show what the answers say."""

import json
from collections import Counter

import pytest

from apo.data import DataConfig, PromptDataset
from apo.data.synthetic import (
    CELL,
    CHOICE_LETTERS,
    COLOURS,
    GRID,
    NoisyTeacher,
    implied_answer,
    make_split,
    make_task,
    near_miss,
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


def test_the_enumeration_of_a_worked_answer_implies_its_answer():
    for row in make_split("train", 200, seed=4):
        assert implied_answer(row, target_response(row)) == row["answer"]


def test_implied_answer_reads_the_models_own_enumeration_not_the_scene():
    row = {"task": "count", "question": "How many red shapes are there?", "answer": "1"}
    response = "<think>red circle, red square, blue star. red: 2</think><answer>2</answer>"
    assert implied_answer(row, response) is None  # "star" is no shape of the task
    response = "<think>red circle, red square, blue circle. red: 2</think><answer>1</answer>"
    assert implied_answer(row, response) == "2"
    assert implied_answer(row, "<think>nothing. red: 0</think><answer>0</answer>") == "0"
    most = {"task": "most", "question": "Which colour appears most often?", "answer": "A"}
    assert implied_answer(most, "<think>blue square, blue circle, red circle. x") == "C"
    assert implied_answer(most, "<think>blue square, red circle. x") is None  # a tie
    assert implied_answer(most, "no think block") is None


def test_near_miss_is_one_more_or_the_runner_up_colour():
    rows = make_split("train", 100, seed=5)
    for row in rows:
        said, answered = near_miss(row)
        if row["task"] == "count":
            assert said == answered == str(int(row["answer"]) + 1)
        else:
            counts = Counter(colour for _, colour, _, _ in row["objects"])
            winner = list(COLOURS)[CHOICE_LETTERS.index(row["answer"])]
            assert (
                answered != row["answer"] and said == list(COLOURS)[CHOICE_LETTERS.index(answered)]
            )
            assert counts[said] == max(counts[c] for c in COLOURS if c != winner)


def test_noisy_teacher_sees_right_answers_wrong_and_overthinks_when_wrong():
    import random

    from apo.rewards import accuracy_reward, format_reward

    teacher = NoisyTeacher(correct=0.4, overthink=0.25)
    rng = random.Random(0)
    right, overthought, n = 0, 0, 0
    lengths = {True: [], False: []}
    for row in make_split("train", 400, seed=6) * 5:
        response = teacher.response(row, rng)
        assert format_reward(response) == 1.0
        assert implied_answer(row, response) == row["answer"]  # the enumeration is always right
        correct = accuracy_reward(response, row["answer"], row.get("choices")) == 1.0
        if not correct:
            assert accuracy_reward(response, near_miss(row)[1], row.get("choices")) == 1.0
        right += correct
        overthought += "recount" in response
        lengths[correct].append(len(response))
        n += 1
    assert abs(right / n - 0.4) < 0.03
    assert abs(overthought / n - 0.6 * 0.25) < 0.03
    assert sum(lengths[False]) / len(lengths[False]) > sum(lengths[True]) / len(lengths[True])
    for row in make_split("general", 20, seed=6):
        assert teacher.response(row, rng) == target_response(row)  # never wrong on general


def test_written_split_is_plain_data_the_loader_reads(tmp_path):
    rows = make_split("test", 6, seed=2)
    path = write_split(rows, tmp_path, "test")
    dataset = PromptDataset.load(DataConfig(path=str(path)))
    assert [e.answer for e in dataset.examples] == [r["answer"] for r in rows]
    record = json.loads(path.read_text().splitlines()[1])
    assert record["choices"] == list(COLOURS) and record["image"].endswith(".png")
    assert dataset.examples[0].extra["task"] == rows[0]["task"]
