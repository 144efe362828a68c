import pytest

from apo.rewards import extract_answer, format_reward, is_well_formatted


@pytest.mark.parametrize(
    ("response", "answer"),
    [
        ("<think>2+2</think><answer>4</answer>", "4"),
        ("<answer> 4 </answer> and later <answer>5</answer>", "4"),  # the first complete block
        ("<think>hmm</think><answer>4", "4"),  # unfinished: text after the last <answer>
        ("<answer>1</answer><answer>2", "1"),
        ("I think it is 7.", "I think it is 7."),  # no tag: the whole response
        ("<answer>\n\\frac{1}{2}\n</answer>", "\\frac{1}{2}"),
        ("", ""),
    ],
)
def test_extract_answer(response, answer):
    assert extract_answer(response) == answer


@pytest.mark.parametrize(
    ("response", "ok"),
    [
        ("<think>count: 1, 2, 3</think><answer>3</answer>", True),
        ("<think>a</think>\n\n <answer>3</answer>", True),  # whitespace between blocks
        ("Sure! <think>a</think><answer>3</answer> Done.", True),  # text around is tolerated
        ("<think>a</think>so<answer>3</answer>", False),  # text between blocks
        ("<answer>3</answer><think>a</think>", False),  # wrong order
        ("<think> </think><answer>3</answer>", False),  # empty think
        ("<think>a</think><answer>  </answer>", False),  # empty answer
        ("<think>a</think><think>b</think><answer>3</answer>", False),  # two think blocks
        ("<think>a</think><answer>3</answer></answer>", False),  # extra closing tag
        ("<think>a<answer>3</answer></think>", False),  # nested
        ("<think>a</think><answer>3", False),  # unfinished
        ("3", False),
        ("", False),
    ],
)
def test_format(response, ok):
    assert is_well_formatted(response) is ok
    assert format_reward(response, "3") == (1.0 if ok else 0.0)
