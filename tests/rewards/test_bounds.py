"""No answer makes the accuracy reward hang: adversarial LaTeX is judged in well
under a second, in this process, with no worker to kill it.

Every call here runs in the test process itself. Should a bound ever stop
holding, the watchdog ends the process with a traceback after five minutes, so a
regression fails loudly instead of stalling the suite (a hang inside sympy's
integer arithmetic is C code, which no signal interrupts).
"""

import contextlib
import faulthandler
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from apo.rewards import GroundTruthError, accuracy_reward, answers_match
from apo.rewards.accuracy import warm_up
from apo.rewards.bounds import (
    MAX_CHARS,
    MAX_NESTING,
    expression_over_bounds,
    text_over_bounds,
)

# Seconds one call may take. The slowest answer inside the bounds took 0.4 s on
# the loaded 2-core machine (a novel structure for the LaTeX parser); before the
# bounds, the answers below took from seconds to for ever.
BUDGET = 1.0


@pytest.fixture(autouse=True)
def watchdog():
    warm_up()  # importing sympy is not an answer's cost
    faulthandler.dump_traceback_later(300, exit=True)
    yield
    faulthandler.cancel_dump_traceback_later()


def judged_in_time(prediction: str, truth: str) -> None:
    """Judge directly and as a response, each call within the budget."""
    for call in (
        lambda: answers_match(prediction, truth),
        lambda: accuracy_reward(f"<think>t</think><answer>{prediction}</answer>", truth),
    ):
        start = time.perf_counter()
        with contextlib.suppress(GroundTruthError):  # a nasty ground truth may be unreadable
            call()
        seconds = time.perf_counter() - start
        assert seconds < BUDGET, f"{prediction[:80]!r} vs {truth[:80]!r} took {seconds:.2f}s"


# (answer, ground truth) pairs that took math_verify 0.9 / sympy 1.14 from four
# seconds to for ever before the bounds (the first word says where).
KNOWN_HANGS = [
    ("10^{10^{10}}", "3"),  # a ten-billion-digit integer
    ("9^{9^{9}}", "3"),
    ("2^{2^{2^{2^{2^{2}}}}}", "3"),
    ("There are 9^9^9 people", "3"),
    ("2^{-10^{10}}", "3"),
    ("e^{10^{10^{10}}}", "3"),
    ("\\lfloor 10^{10^{10}} \\rfloor", "3"),
    ("\\sin(e^{e^{100}})", "3"),  # reduced modulo pi to 10^43 digits
    ("(10^{10})!", "3"),
    ("(100!)!", "3"),
    ("10000000000!", "3"),
    ("\\prod_{k=1}^{10^{7}} k", "3"),
    ("\\sum_{k=1}^{1000} k^k", "3"),
    ("\\int e^{x^2}\\sin(x^3) dx", "3"),  # no closed form
    ("\\dbinom{100000000}{50000000}", "3"),  # computed while parsing
    ("\\Gamma(100000000)", "3"),
    ("\\gcd(10^{10^{10}}, 3)", "3"),
    ("\\sqrt[10^{10^{10}}]{2}", "3"),
    ("\\operatorname{eye}(100000)", "3"),
    ("(x+1)^{100000}", "(x+1)^2"),  # expanded
    ("\\cos^{1000}(x)", "3"),
    ("\\cos^{2} 123456\\cdot z", "3"),
    ("x^{16}-x-1=0", "x=1"),  # solved
    ("x^{4}+y^{4}+x^{3}y-3x-2y-1=0", "y^{4}+x^{4}+y^{3}x-3y-2x-1=0"),
    ("b=\\cos(y)^{24}", "y=2x+1"),
    ("\\frac{1}{" * 25 + "2" + "}" * 25, "3"),  # the LaTeX parser backtracks
    ("{" * 40 + "1" + "}" * 40, "3"),
    ("(" * 40 + "1" + ")" * 40, "3"),
    ("x^" * 75 + "2", "3"),
    ("x^x_" * 7 + "1", "3"),
    ("\\sin " * 14 + "x", "3"),
    ("\\log\\log\\frac{" * 4 + "1" + "}{2}" * 4, "3"),
]


@pytest.mark.parametrize(("prediction", "truth"), KNOWN_HANGS)
def test_known_hanging_answers_are_judged_at_once(prediction, truth):
    judged_in_time(prediction, truth)
    judged_in_time(truth, prediction)  # as a ground truth too
    assert answers_match(prediction, truth) is False


def test_an_answer_over_the_bounds_still_matches_its_exact_text():
    assert answers_match("10^{10^{10}}", "10^{10^{10}}") is True
    assert answers_match("(10^{10})!", "10^{10^{10}}") is False


NORMAL_ANSWERS = [
    "\\left(\\frac{\\sqrt{3}}{2}, \\frac{1}{2}\\right)",
    "\\left[k\\pi-\\frac{\\pi}{3}, k\\pi+\\frac{\\pi}{6}\\right]",
    "\\frac{1}{\\sqrt{2\\pi}}e^{-\\frac{(x-\\mu)^{2}}{2\\sigma^{2}}}",
    "y=2\\sin\\left(2x+\\frac{\\pi}{6}\\right)",
    "y=\\log_{\\frac{1}{2}}(x^{2}-2x)",
    "\\frac{x^{2}}{a^{2}}+\\frac{y^{2}}{b^{2}}=1",
    "y=x^{3}-3x",
    "4\\sin A\\sin B\\sin C",
    "x_1^2+x_2^2",
    "a_{n}=2^{n-1}",
    "2^{2023}",
    "(x+1)^{10}",
    "\\cos^{2}x-\\sin^{2}x",
    "\\sqrt[3]{2}",
    "(-\\infty, -2) \\cup (3, +\\infty)",
    "\\{1, 2, 3\\}",
    "6.02 \\times 10^{23}",
    "10!",
    "\\frac{\\binom{3}{1}}{\\binom{5}{2}}",
]


@pytest.mark.parametrize("answer", NORMAL_ANSWERS)
def test_normal_answers_are_inside_the_bounds(answer):
    from math_verify import parse

    assert text_over_bounds(answer) is None
    for item in parse(f"${answer}$", parsing_timeout=None):
        assert expression_over_bounds(item) is None
    assert answers_match(answer, answer.replace(" ", "") + " ")  # compared by math_verify


def reason(latex: str) -> str | None:
    from math_verify import parse

    return expression_over_bounds(parse(f"${latex}$", parsing_timeout=None)[0])


def test_each_bound_says_why():
    assert "characters" in text_over_bounds("1+" * MAX_CHARS)
    assert "nested" in text_over_bounds("(" * (MAX_NESTING + 1) + ")" * (MAX_NESTING + 1))
    assert "nested" in text_over_bounds("\\sin\\sin\\sin\\sin\\sin x")
    assert "evaluates" in text_over_bounds("\\binom{10^{10}}{2}")
    assert "digits" in reason("10^{10^{10}}")
    assert "digits" in reason("(10^{10})!")
    assert "terms" in reason("(x+y+z)^{30}")
    assert "degree" in reason("x^{5}+x+1=0")
    assert "multiple of a symbol" in reason("\\sin(10^{5}x)")
    assert "Integral" in reason("\\int_0^1 x dx")


def test_a_long_plain_sentence_is_still_read_for_its_number():
    sentence = "After counting everyone in the picture, including the two children, " * 3
    assert len(sentence) > MAX_CHARS
    assert answers_match(sentence + "there are 14 people.", "14")


# --- fuzz: nasty LaTeX from the families that hang, each judged within the budget

numbers = st.one_of(
    st.integers(0, 12).map(str),
    st.integers(10**6, 10**15).map(str),
    st.integers(1, 3000).map(lambda n: "9" * n),  # up to thousands of digits
)
atoms = st.one_of(numbers, st.sampled_from(["x", "y", "e", "\\pi", "k", "n"]))


@st.composite
def power_towers(draw):
    levels = draw(st.lists(atoms, min_size=2, max_size=8))
    style = draw(st.sampled_from(["braced", "bare", "python"]))
    if style == "braced":
        text = levels[-1]
        for level in reversed(levels[:-1]):
            text = f"{level}^{{{text}}}"
        return text
    return ("^" if style == "bare" else "**").join(levels)


@st.composite
def nested_fractions(draw):
    depth = draw(st.integers(1, 60))
    top = draw(atoms)
    inner = draw(st.sampled_from(["", "1+", "x-"]))
    return f"\\frac{{{top}}}{{{inner}" * depth + draw(atoms) + "}" * depth


@st.composite
def factorials(draw):
    argument = draw(st.one_of(numbers, power_towers(), st.just("(100!)")))
    argument = argument if argument.isdigit() else f"({argument})"
    form = draw(st.sampled_from(["{}!", "{}!!", "{}!!!", "\\Gamma({})", "\\binom{{{}}}{{3}}"]))
    return form.format(argument)


@st.composite
def long_sums(draw):
    term = st.one_of(atoms, power_towers(), st.builds("{}x^{{{}}}".format, numbers, numbers))
    terms = draw(st.lists(term, min_size=2, max_size=400))
    return draw(st.sampled_from(["+", "-", "\\cdot ", ",", "="])).join(terms)[:4000]


LATEX_PIECES = [*"{}()[]^_!0123456789x+-=,.$ ", "\\frac", "\\sqrt", "\\left(", "\\right)", "\\sin"]
unbalanced = st.lists(st.sampled_from(LATEX_PIECES), max_size=600).map("".join)


@st.composite
def big_operators(draw):
    limit = draw(st.one_of(numbers, power_towers()))
    body = draw(st.one_of(atoms, power_towers(), st.just("e^{x^2}\\sin(x^3)")))
    form = draw(
        st.sampled_from(
            [
                "\\sum_{k=1}^{LIMIT} BODY",
                "\\prod_{k=1}^{LIMIT} BODY",
                "\\int_0^{LIMIT} BODY dx",
                "\\lim_{x\\to LIMIT} BODY",
                "\\sin(LIMIT)",
                "\\cos^{LIMIT}(x)",
                "\\cos(LIMIT x)^{2}",
                "\\log_{2}(LIMIT)",
                "\\sqrt[LIMIT]{2}",
                "\\gcd(LIMIT, 3)",
                "x^{LIMIT}+x+1=0",
                "(BODY+y+z)^{LIMIT}",
                "\\begin{pmatrix}1&BODY\\\\LIMIT&4\\end{pmatrix}^{LIMIT}",
            ]
        )
    )
    return form.replace("LIMIT", limit).replace("BODY", body)


nasty = st.one_of(
    power_towers(), nested_fractions(), factorials(), long_sums(), unbalanced, big_operators()
)


@st.composite
def mixtures(draw):
    parts = draw(st.lists(nasty, min_size=1, max_size=5))
    text = draw(st.sampled_from([" ", "+", "\\cdot", "="])).join(parts)
    wrapper = draw(st.sampled_from(["{}", "${}$", "\\boxed{{{}}}", "The answer is {}."]))
    return wrapper.format(text)[:5000]


TRUTHS = ["3", "\\frac{1}{2}", "x^2+1", "[1,3)", "y=2x+1", "x=5", "\\sqrt{8}", "B", "12"]
FUZZ = settings(
    max_examples=120,
    deadline=None,  # the budget is asserted per call, not per example
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.function_scoped_fixture,  # the watchdog: once per test is enough
    ],
)


@FUZZ
@given(prediction=mixtures(), truth=st.one_of(st.sampled_from(TRUTHS), mixtures()))
def test_nasty_answers_are_judged_within_the_budget(prediction, truth):
    judged_in_time(prediction, truth)


# --- fuzz: random short expressions, which pass the text bounds and reach sympy

short_atoms = st.sampled_from(["x", "y", "a", "n", "e", "\\pi", "i", "0.5", "2", "7", "12", "1000"])


def combined(parts):
    two = st.tuples(parts, parts)
    return st.one_of(
        two.map("{0[0]}+{0[1]}".format),
        two.map("{0[0]}\\cdot {0[1]}".format),
        two.map("{0[0]}{0[1]}".format),
        two.map("{0[0]}^{{{0[1]}}}".format),
        two.map("({0[0]})^{{{0[1]}}}".format),
        two.map("\\frac{{{0[0]}}}{{{0[1]}}}".format),
        two.map("{0[0]}={0[1]}".format),
        two.map("{0[0]}<{0[1]}".format),
        two.map("\\left({0[0]}, {0[1]}\\right)".format),
        two.map("\\cos^{{{0[0]}}}({0[1]})".format),
        two.map("\\sin({0[0]}{0[1]})".format),
        parts.map("\\sqrt{{{}}}".format),
        parts.map("\\log({})".format),
        parts.map("({})!".format),
        parts.map("|{}|".format),
        parts.map("e^{{{}}}".format),
        parts.map("x_{{{}}}".format),
    )


short_expressions = st.recursive(short_atoms, combined, max_leaves=25).filter(
    lambda text: text_over_bounds(text) is None
)


@FUZZ
@given(
    prediction=short_expressions,
    truth=st.one_of(st.sampled_from(TRUTHS), short_expressions),
)
def test_short_expressions_are_judged_within_the_budget(prediction, truth):
    judged_in_time(prediction, truth)
