import re

import pytest

from apo.data.prompts import check_question_template
from apo.data.word_problems import (
    COMPARE_SHOTS,
    SHOTS,
    few_shot_template,
    make_split,
    make_splits,
)

SUBTRACTING = ("gave", "flew away", "sold")


def expected_story_answer(question: str) -> int:
    a, b = map(int, re.findall(r"\d+", question))
    return a - b if any(word in question for word in SUBTRACTING) else a + b


def test_every_story_answer_is_its_sum_or_difference_and_positive():
    rows = make_split("stories", 500, seed=3, max_number=30)
    for row in rows:
        assert int(row["answer"]) == expected_story_answer(row["question"]) >= 1, row
    assert any(w in r["question"] for r in rows for w in SUBTRACTING)  # both operations
    assert not all(any(w in r["question"] for w in SUBTRACTING) for r in rows)


def test_every_comparison_names_the_larger_or_smaller_number():
    for row in make_split("comparisons", 300, seed=1, max_number=30):
        a, b = map(int, re.findall(r"\d+", row["question"]))
        pick = max if "larger" in row["question"] else min
        assert a != b and int(row["answer"]) == pick(a, b)


def test_the_held_out_split_shares_no_question_with_training_or_the_examples():
    splits = make_splits(train=800, test=300, other=100, seed=0)
    train = {row["question"] for row in splits["train"]}
    test = {row["question"] for row in splits["test"]}
    shots = {question for question, _, _ in SHOTS + COMPARE_SHOTS}
    assert len(train) == 800 and len(test) == 300  # distinct within each split
    assert not train & test and not (train | test) & shots
    ids = [row["id"] for split in splits.values() for row in split]
    assert len(set(ids)) == len(ids)


def test_splits_are_the_same_for_a_seed_and_differ_between_seeds():
    assert make_splits(50, 20, 10, seed=4) == make_splits(50, 20, 10, seed=4)
    assert make_splits(50, 20, 10, seed=4)["test"] != make_splits(50, 20, 10, seed=5)["test"]


def test_too_few_distinct_questions_is_an_error():
    with pytest.raises(ValueError, match=r"only \d+ distinct comparisons"):
        make_split("comparisons", 50, seed=0, max_number=3)


@pytest.mark.parametrize("task", ["stories", "comparisons"])
def test_the_few_shot_prompt_works_the_examples_right_and_ends_where_the_answer_begins(task):
    template = few_shot_template(task)
    check_question_template(template)
    assert template.endswith("Question: {question}\nAnswer:")
    for question, work, answer in SHOTS if task == "stories" else COMPARE_SHOTS:
        assert f"Question: {question}\nAnswer: {work}. <answer>{answer}</answer>" in template
        if task == "stories":
            assert expected_story_answer(question) == answer
            a, operation, b = work.split(" = ")[0].split()
            assert (int(a) + int(b) if operation == "+" else int(a) - int(b)) == answer
