"""No answer makes the accuracy reward hang: adversarial LaTeX is judged in well
under a second, in this process, with no worker to kill it.

Every call here runs in the test process itself. Should a bound ever stop
holding, the watchdog ends the process with a traceback after five minutes, so a
regression fails loudly instead of stalling the suite (a hang inside sympy's
integer arithmetic is C code, which no signal interrupts).
"""

import contextlib
import faulthandler
import gc
import time

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from apo.rewards import (
    GroundTruthError,
    accuracy_reward,
    answers_match,
    extract_answer,
    format_reward,
)
from apo.rewards.accuracy import parse_number, warm_up
from apo.rewards.bounds import (
    MAX_ANSWER_CHARS,
    MAX_CHARS,
    MAX_NESTING,
    expression_over_bounds,
    pair_over_bounds,
    text_over_bounds,
)

# Seconds one call may take, of this process's CPU time. The slowest answers
# inside the bounds take 0.3 to 0.8 s (a structure the LaTeX parser meets for the
# first time in a process); before the bounds, the answers below took from
# seconds to for ever. CPU time, because this suite shares two cores with other
# work, which stretches wall-clock time two to four times; a slow answer is slow
# in either, and the wall-clock time of a call may be at most WALL_BUDGET.
BUDGET = 1.0
WALL_BUDGET = 4 * BUDGET


@pytest.fixture(autouse=True)
def watchdog():
    warm_up()  # importing sympy is not an answer's cost
    faulthandler.dump_traceback_later(300, exit=True)
    yield
    faulthandler.cancel_dump_traceback_later()


def in_time(function, *arguments) -> None:
    """Call ``function(*arguments)`` directly and assert it returned within the budget.

    The garbage collector waits outside: its pauses (0.2 s and more, once the
    fuzzing has filled sympy's caches) collect earlier examples, not this one.
    """
    gc.disable()
    wall, cpu = time.perf_counter(), time.process_time()
    try:
        with contextlib.suppress(GroundTruthError):  # a nasty ground truth may be unreadable
            function(*arguments)
    finally:
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        gc.enable()
    shown = ", ".join(repr(a[:60]) if isinstance(a, str) else repr(a) for a in arguments)
    assert cpu < BUDGET and wall < WALL_BUDGET, (
        f"{function.__name__}({shown}) took {cpu:.2f}s of CPU, {wall:.2f}s in all"
    )


def judged_in_time(prediction: str, truth: str) -> None:
    """Judge directly and as a response, each call within the budget."""
    in_time(answers_match, prediction, truth)
    in_time(accuracy_reward, f"<think>t</think><answer>{prediction}</answer>", truth)


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
    # a power times a logarithm: logcombine rewrites c ln a as ln(a^c)
    ("2^{99}\\ln 3", "3"),
    ("2^{99}\\log 3", "3"),
    ("2^{30}\\ln 2", "3"),
    ("10^{12}\\ln 2", "3"),
    ("1000000\\ln 2", "3"),
    ("2^{99}\\log_{2}3", "3"),
    ("2^{99}(\\ln 3+\\ln 2)", "3"),
    ("2^{99}(\\ln 3+1)", "3"),
    ("\\frac{\\ln 3}{2^{-99}}", "3"),
    ("\\frac{1}{2^{99}}+\\ln 3", "3"),  # over one denominator: 1 + 2^{99} ln 3
    ("\\lfloor 2^{99}\\ln 3\\rfloor", "3"),
    ("\\ln(\\ln(3)2^{99})", "3"),
    ("2^{99}\\ln 4", "2^{99}\\ln 3"),
    ("10^{25}", "\\log_{2}3"),  # the ground truth's ln 2 times the answer: 2^{10^{25}}
    ("25!", "\\log(x)"),
    ("1000000", "\\log(x)"),
    # powers of e, which the parser evaluates as it builds them
    ("e^{((1000000.5)!)!}", "3"),
    ("e^{(10.5)!!!}", "3"),
    ("e^{(\\pi^{10^{5}})!}", "3"),
    ("e^{\\sin e^{e^{20}}}", "3"),
    ("e^{100000000\\ln 3}", "3"),
    ("e^{e^{e^{3.5}}}", "3"),  # parsed as one Float of 10^14 digits, rounded when compared
    ("e^{e^{e^{10.5}}}", "3"),  # a Float too large for its digits to be counted in a float
    # quotients by polynomials, cancelled into one term per power
    ("\\frac{x-1}{x^{100}-1}", "3"),
    ("\\frac{x-1}{x^{300}-1}", "3"),
    ("\\frac{x^{3000}-1}{x-1}", "3"),
    ("x^{1000000}", "\\frac{1}{x-1}"),  # divided densely, with the ground truth's x-1
    ("x^{1000000000}-1", "\\frac{x}{x^{2}-1}"),
    # sines of large multiples of constants, and other slow simplifications
    ("\\sin(e\\cdot 10^{7})", "3"),
    ("\\cos(10^{7}\\sqrt{2})", "3"),
    ("\\sinh(e\\cdot 10^{7})", "3"),
    ("\\cosh(10^{7}\\sqrt{2})", "3"),
    ("(|\\cos^{2}(e)|)!", "\\log(x)"),  # is it an integer? rounded to ever more digits
    ("|i^{\\frac{1}{7}}|+|i^{\\frac{1}{9}}|+|i^{\\frac{1}{11}}|+|i^{\\frac{1}{13}}|", "3"),
    # logarithms of negative numbers, with trigonometric functions: simplify
    # factors over the Gaussian rationals
    ("\\ln(\\log_{3}(\\pi))+\\log(\\cos(3))+\\ln(\\log_{5}(e))+\\log(\\sin(2))", "\\sqrt{8}"),
    ("\\ln(-2)\\ln(-3)+\\ln(-5)\\ln(-7)+\\sin(1)\\cos(2)", "\\sqrt{8}"),
    # long runs of one character, read by a cubic regular expression
    ("$" * 2000 + "x", "3"),
]


@pytest.mark.parametrize(("prediction", "truth"), KNOWN_HANGS)
def test_known_hanging_answers_are_judged_at_once(prediction, truth):
    judged_in_time(prediction, truth)
    judged_in_time(truth, prediction)  # as a ground truth too
    assert answers_match(prediction, truth) is False


def test_an_answer_over_the_bounds_still_matches_its_exact_text():
    assert answers_match("10^{10^{10}}", "10^{10^{10}}") is True
    assert answers_match("(10^{10})!", "10^{10^{10}}") is False
    assert answers_match("2^{99}\\ln 3", "2^{99}\\ln 3") is True
    assert answers_match("$2^{99}\\ln 3$", "2^{99}\\ln 3") is True  # normalised text
    assert answers_match("2^{99}\\ln 4", "2^{99}\\ln 3") is False


def test_numbers_past_the_float_range_are_not_all_equal():
    # Each would read as infinity, and equal every other; compared exactly instead.
    assert parse_number("1e999") is None
    assert parse_number("9" * 400) is None
    assert answers_match("1e999", "1e400") is False
    assert answers_match("9" * 400, "9" * 399 + "8") is False
    assert answers_match("9" * 400, "9" * 400) is True
    assert answers_match("1e999", "1e999") is True
    assert answers_match("1.7e308", "1.70000001e308") is True  # floats, within 1e-6


def test_an_answer_over_the_length_cap_is_compared_as_exact_text():
    long_answer = "the answer is B. " * (MAX_ANSWER_CHARS // 10)
    assert answers_match(long_answer, "B") is False  # no parser reads it
    assert answers_match(long_answer, long_answer.strip()) is True
    assert answers_match("B", long_answer) is False
    shorter = "the answer is B. " * 100  # a whole response without an <answer> block
    assert answers_match(shorter, "B") is True


def test_a_logarithm_against_a_number_is_still_compared():
    assert answers_match("0.693147", "\\ln 2") is True  # a float raises nothing
    assert answers_match("1.584963", "\\log_{2}3") is True
    assert answers_match("3", "\\log_{2}8") is True
    assert answers_match("1000 \\ln 2", "\\ln(2^{1000})") is True  # 301 digits, inside
    assert answers_match("9", "e^{2\\ln 3}") is True


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
    "3\\ln 2",
    "\\frac{1}{2}\\ln 3",
    "2\\log_{3}5",
    "\\ln 2 + 1",
    "(\\ln 2)^{2}",
    "1000\\ln 2",
    "x^{2}\\ln x",
    "e^{2\\ln 3}",
    "e^{-0.5x^{2}}",
    "\\frac{x+1}{x^{2}-1}",
    "\\frac{1}{x^{3}+1}",
    "\\frac{x^{2}-y^{2}}{x+y}",
    "x^{2023}",
    "\\sin(100e)",
    "\\cosh(2x)",
    "|3+4i|",
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
    assert "logarithm" in reason("2^{99}\\ln 3")
    assert "logarithm" in reason("(2^{50}\\ln 3)^{2}")
    assert "quotient" in reason("\\frac{x-1}{x^{40}-1}")
    assert "coefficients" in reason("x^{100000}")
    assert "multiple of a symbol or constant" in reason("\\sin(10^{7}e)")
    assert "not an integer" in reason("(\\cos(e))!")
    assert "root of a complex number" in reason("|\\sqrt{i}|")
    assert "may be negative" in reason("\\ln(-2)+\\ln(\\cos 3)")
    assert "logarithm" in pair_reason("\\log_{2}3", "10^{25}")
    assert pair_reason("\\ln 2", "0.693147") is None


def pair_reason(first: str, second: str) -> str | None:
    from math_verify import parse

    return pair_over_bounds(*(parse(f"${x}$", parsing_timeout=None)[0] for x in (first, second)))


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
    # No explain phase: to explain a failure, hypothesis traces every later call
    # (sys.settrace), which makes each three times slower than the one it reports.
    phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.shrink],
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
@pytest.mark.slow
def test_short_expressions_are_judged_within_the_budget(prediction, truth):
    judged_in_time(prediction, truth)


# --- long runs of one character, which backtracking regular expressions read in
# quadratic or cubic time: 2,000 "$" and a letter took 11 s, 10,000 spaces in an
# answer block 0.9 s, 10,000 "<answer>" 0.1 s (and growing with the square).

RISKY_CHARACTERS = [
    *"{}()[] \t\n0123456789\\$^_!,.-+=%|:;<>/aeAZ°",
    *["<answer>", "</answer>", "<think>", "answer ", "\\frac{", "\\ln "],
]


def direct_calls(text: str) -> list:
    """Each direct call of the rewards on ``text``, as an answer, a ground truth,
    an option and a whole response."""
    response = f"<think>{text}</think><answer>{text}</answer>{text}"
    return [
        (answers_match, text, "3"),
        (answers_match, "B", text),
        (answers_match, text, "B", ["1", text, "2"]),
        (accuracy_reward, response, "3"),
        (accuracy_reward, text + response, "B"),
        (format_reward, response),
        (extract_answer, text + response),
    ]


@pytest.mark.parametrize("unit", RISKY_CHARACTERS)
def test_long_runs_of_one_character_are_read_in_time(unit):
    run = unit * (30_000 // len(unit))
    for text in (run, run + "x", "x" + run, "$" + run + "$", run[: MAX_ANSWER_CHARS - 1] + "x"):
        for function, *arguments in direct_calls(text):
            in_time(function, *arguments)


# --- fuzz: LaTeX-shaped answers with logarithms, powers, quotients and runs

small_numbers = st.one_of(st.integers(0, 1000).map(str), st.sampled_from(["0.5", "1.05", "2.5"]))
symbols = st.sampled_from(["x", "y", "n", "e", "\\pi"])
exponents = st.one_of(small_numbers, numbers, power_towers(), symbols)
log_arguments = st.one_of(small_numbers, symbols, numbers, power_towers())


@st.composite
def logarithms(draw):
    argument = draw(log_arguments)
    base = draw(st.one_of(small_numbers, symbols))
    form = draw(
        st.sampled_from(
            ["\\ln {}", "\\ln({})", "\\log {}", "\\log({})", "\\log_{{BASE}}{}", "\\lg {}"]
        )
    )
    log = form.format(argument).replace("BASE", base)
    power = draw(st.sampled_from(["", "^{2}", "^{EXP}"])).replace("EXP", draw(exponents))
    return f"({log}){power}" if power else log


@st.composite
def terms(draw):
    coefficient = draw(
        st.one_of(
            st.just(""),
            exponents,
            exponents.map("2^{{{}}}".format),
            exponents.map("e^{{{}}}".format),
            st.tuples(exponents, exponents).map("\\frac{{{0[0]}}}{{{0[1]}}}".format),
        )
    )
    factor = draw(
        st.one_of(
            logarithms(),
            st.tuples(exponents, logarithms()).map("e^{{{0[0]}{0[1]}}}".format),
            st.tuples(small_numbers, logarithms()).map("{0[0]}^{{{0[1]}}}".format),
            exponents.map("\\sqrt{{{}}}".format),
            exponents.map("({})!".format),
            st.tuples(symbols, exponents).map("{0[0]}^{{{0[1]}}}".format),
            st.tuples(symbols, exponents).map("\\frac{{{0[0]}-1}}{{{0[0]}^{{{0[1]}}}-1}}".format),
        )
    )
    product = draw(st.sampled_from(["{}{}", "{} \\cdot {}", "{}({}+1)"]))
    wrapper = draw(st.sampled_from(["{}", "({})^{{2}}", "\\lfloor {} \\rfloor", "\\sin({})"]))
    return wrapper.format(product.format(coefficient, factor))


@st.composite
def runs(draw):
    unit = draw(st.sampled_from(RISKY_CHARACTERS))
    length = draw(st.integers(1, 25_000))
    before = draw(st.sampled_from(["", "x", "\\ln ", "$", "answer is "]))
    after = draw(st.sampled_from(["", "x", "1", "$", "}"]))
    return before + unit * (length // len(unit)) + after


latex_answers = st.one_of(
    terms(),
    st.lists(terms(), min_size=2, max_size=4).map("+".join),
    st.tuples(terms(), terms()).map("{0[0]}={0[1]}".format),
    runs(),
)


@settings(FUZZ, max_examples=60)
@given(prediction=latex_answers, truth=st.one_of(st.sampled_from(TRUTHS), latex_answers))
def test_latex_shaped_answers_are_judged_within_the_budget(prediction, truth):
    judged_in_time(prediction, truth)


@pytest.mark.slow
def test_the_fuzz_script_reports_the_slowest_inputs_it_finds():
    """scripts/fuzz_rewards.py, briefly: it makes calls, lists the slowest with their
    times and verdicts, and exits 0 when none was over the budget."""
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).parents[2] / "scripts" / "fuzz_rewards.py"
    command = [sys.executable, str(script), "--seconds", "3", "--top", "3", "--budget", "10"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    header, title, *slowest = done.stdout.splitlines()
    assert "calls in 3 s (seed 0); 0 over 10 s of CPU, hung or raised" in header
    assert title.startswith("slowest 3:")
    assert len(slowest) == 3
    for line in slowest:
        cpu, wall, call = line.split(maxsplit=2)
        assert float(cpu) >= 0 and float(wall) >= 0
        assert call.startswith(("answers_match(", "accuracy_reward(")) and " -> " in call
