"""Each benchmark's judge on real-looking responses: the verdict its authors' rule
gives (a table per benchmark), and the shared helpers by hand."""

import pytest

from apo.evaluation.benchmarks import Question, get_benchmark
from apo.evaluation.scoring import closest_choice, inline_choices, number_with_precision
from apo.rewards.answer import extract_answer


def verdict(name: str, question: Question, response: str) -> bool:
    return get_benchmark(name).judge(question, extract_answer(response))


def q(answer, **fields) -> Question:
    return Question(id="x", question="?", answer=answer, **fields)


VISTA_CHOICE = q("45", choices=["30", "45", "60", "90"], multiple_choice=True)
VISTA_INT = q("4", answer_type="integer")
VISTA_FLOAT = q("1.5", answer_type="float", precision=1)
VISTA_FLOAT2 = q("0.33", answer_type="float", precision=2)
VISTA_LIST = q("[1, 2, 3]", answer_type="list")
VISTA_TEXT = q("Yes", answer_type="text")

MATHVISTA = [
    (VISTA_CHOICE, "<think>x is half of 90</think><answer>B</answer>", True),
    (VISTA_CHOICE, "<think>...</think><answer>(B) 45</answer>", True),
    (VISTA_CHOICE, "<think>...</think><answer>45</answer>", True),
    (VISTA_CHOICE, "<think>...</think><answer>45 degrees</answer>", True),  # most similar
    (VISTA_CHOICE, "<think>...</think><answer>C</answer>", False),
    (VISTA_CHOICE, "<think>...</think><answer>60°</answer>", False),
    (VISTA_INT, "<think>count</think><answer>4</answer>", True),
    (VISTA_INT, "<answer>4.0</answer>", True),
    (VISTA_INT, "<answer>There are 4 bars.</answer>", False),  # not a bare number
    (VISTA_INT, "<answer>5</answer>", False),
    (VISTA_FLOAT, "<answer>1.5</answer>", True),
    (VISTA_FLOAT, "<answer>1.50</answer>", True),
    (VISTA_FLOAT, "<answer>1.46</answer>", True),  # rounds to 1.5 at precision 1
    (VISTA_FLOAT, "<answer>1.4</answer>", False),
    (VISTA_FLOAT2, "<answer>0.333</answer>", True),
    (VISTA_FLOAT2, "<answer>1/3</answer>", False),  # the official rule wants a decimal
    (VISTA_LIST, "<answer>[1, 2, 3]</answer>", True),
    (VISTA_LIST, "<answer>[1.0, 2, 3]</answer>", True),
    (VISTA_LIST, "<answer>[3, 2, 1]</answer>", False),
    (VISTA_TEXT, "<answer>yes</answer>", True),
]

VERSE_CHOICE = q("B", choices=["30°", "45°", "60°", "90°"], multiple_choice=True)
MATHVERSE = [
    (VERSE_CHOICE, "<think>...</think><answer>B</answer>", True),
    (VERSE_CHOICE, "<think>...</think><answer>B:45°</answer>", True),
    (VERSE_CHOICE, "<think>...</think><answer>45°</answer>", True),
    (VERSE_CHOICE, "<think>...</think><answer>A</answer>", False),
    (q("2\\sqrt{3}"), "<answer>$2\\sqrt{3}$</answer>", True),
    (q("2\\sqrt{3}"), "<answer>\\sqrt{12}</answer>", True),
    (q("2\\sqrt{3}"), "<answer>3.46</answer>", False),
    (q("\\frac{1}{2}"), "<answer>0.5</answer>", True),
    (q("y=2x+1"), "<answer>y = 1 + 2x</answer>", True),
]

K12 = q("B", choices=["1", "2", "3", "4"], multiple_choice=True)
MMK12 = [
    (K12, "<think>...</think><answer>B</answer>", True),
    (K12, "<think>...</think><answer>B. 2</answer>", True),
    (K12, "<think>...</think><answer>2</answer>", True),  # the option's text
    (K12, "<think>...</think><answer>The answer is B</answer>", True),
    (K12, "<think>...</think><answer>D</answer>", False),
]

VISION_CHOICE = q("C", choices=["A", "B", "C", "D", "E"], multiple_choice=True)
MATHVISION = [
    (VISION_CHOICE, "<answer>C</answer>", True),
    (VISION_CHOICE, "<answer>(C)</answer>", True),
    (VISION_CHOICE, "<answer>E</answer>", False),
    (q("\\frac{9}{2}"), "<answer>4.5</answer>", True),
    (q("\\frac{9}{2}"), "<answer>$\\frac{9}{2}$ cm^2</answer>", True),  # value, unit aside
    (q("\\frac{9}{2}"), "<answer>$\\frac{9}{4}$</answer>", False),
    (q("12"), "<answer>12</answer>", True),
]

STAR = q("A", choices=["red", "blue", "green", "white"], multiple_choice=True)
MMSTAR = [
    (STAR, "<think>it is red</think><answer>A</answer>", True),
    (STAR, "<answer>A: red</answer>", True),
    (STAR, "<answer>red</answer>", True),
    (STAR, "A", True),  # no tags: the whole response
    (STAR, "<answer>B</answer>", False),
    (STAR, "<answer>I cannot tell.</answer>", False),  # the official parser would ask an LLM
]

MMMU_CHOICE = q("B", choices=["f", "g", "equal"], multiple_choice=True)
MMMU = [
    (MMMU_CHOICE, "<answer>B</answer>", True),
    (MMMU_CHOICE, "<answer>(B) g</answer>", True),
    (MMMU_CHOICE, "<answer>g</answer>", True),
    (MMMU_CHOICE, "<answer>A</answer>", False),
    (MMMU_CHOICE, "<answer>none</answer>", False),  # the official parser guesses at random
    (q("['0.5', '1/2']"), "<answer>0.5</answer>", True),  # any accepted answer
    (q("['0.5', '1/2']"), "<answer>\\frac{1}{2}</answer>", True),
    (q("['0.5', '1/2']"), "<answer>2</answer>", False),
    (q("4.2"), "<answer>4.20</answer>", True),
]


@pytest.mark.parametrize(
    ("name", "question", "response", "expected"),
    [("mathvista", *case) for case in MATHVISTA]
    + [("mathverse", *case) for case in MATHVERSE]
    + [("mmk12", *case) for case in MMK12]
    + [("mathvision", *case) for case in MATHVISION]
    + [("mmstar", *case) for case in MMSTAR]
    + [("mmmu", *case) for case in MMMU],
)
def test_judge_tables(name, question, response, expected):
    assert verdict(name, question, response) is expected


def test_inline_choices():
    assert inline_choices("Options: A: 2, B: 3, C: 4, D: 5") == ["2", "3", "4", "5"]
    assert inline_choices("Find x.\nChoices:\nA:30\nB:45") == ["30", "45"]
    assert inline_choices("(A) 1 (B) 2 (C) 3") == ["1", "2", "3"]
    assert inline_choices("What is 2 + 2?") is None


def test_closest_choice_and_precision_by_hand():
    assert closest_choice("larger", ["larger than", "equal to", "smaller than"]) == "larger than"
    assert closest_choice("(B)", ["x", "y"]) == "y"
    assert number_with_precision("3.14159", "3.14", "float", 2)
    assert not number_with_precision("3.15", "3.14", "float", 2)
    assert number_with_precision("7", "7", "integer", None)
