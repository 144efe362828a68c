"""Bounds on what math_verify may be given, so that judging an answer never hangs.

math_verify reads LaTeX into sympy and compares with ``simplify``, ``evalf`` and
``solve``. On a few short adversarial answers that work is unbounded:
``10^{10^{10}}`` asks for a number of ten billion digits, ``(10^{10})!`` and
``\\binom{10^8}{5 \\cdot 10^7}`` for worse, and so does ``2^{99}\\ln 3``, which
simplify rewrites as ``\\ln(3^{2^{99}})``; ``\\frac{x-1}{x^{300}-1}`` asks for a
quotient of 300 terms, ``\\sin(10^{7}e)`` for a polynomial of degree 10^7,
``x^{16}-x-1=0`` for the roots of a polynomial sympy cannot solve,
``\\int e^{x^2}\\sin(x^3)dx`` for an integral without closed form, and a few
dozen nested braces or unbraced powers keep the LaTeX parser itself busy for a
minute and more. The reward worker pool kills such a worker after
``rewards.timeout_seconds``, but a direct call (a user's own trainer, a TRL
reward function) would hang for ever.

Every answer is checked twice, each check cheap and free of evaluation:

1. :func:`text_over_bounds`, on the text, before anything is parsed: its
   length, how deep it nests (brackets, and function names and scripts
   without braces, which the parser explores like brackets), and the few
   LaTeX commands the parser evaluates as it reads them;
2. :func:`expression_over_bounds`, on the parsed expression (still
   unevaluated), before math_verify compares it: the size of every number an
   exact evaluation could reach (a logarithm's exact coefficient counts as the
   power its argument is raised to), the terms of every expanded power, the
   coefficients of every polynomial and the degree of every quotient by one,
   the multiples inside sines and cosines, the degree of every equation in each
   symbol, and no sum, product, integral, limit or derivative left to work out;
   and :func:`pair_over_bounds` on the answer and the ground truth together,
   whose difference math_verify simplifies.

Two more guards come first: :data:`MAX_ANSWER_CHARS` caps the text that the
accuracy reward's own regular expressions read (each of them linear in the
text's length), and an answer with a power of e is parsed first with e read as
3 (:func:`exponential_twin`), since the parser evaluates powers of e as it
builds them.

An answer over a bound is judged by text and number comparison only (see
:mod:`apo.rewards.accuracy`). Normal answers are far inside every bound. Each
limit below was set from timings of math_verify 0.9 / sympy 1.14 on a loaded
2-core machine, and each comment says why. Inside them, most answers take 10
to 50 ms; the slowest found take 0.5 to 1.5 s of CPU, once per process: the
structures the LaTeX parser meets for the first time (nested subscripts), in
the answer and in the ground truth.
"""

from __future__ import annotations

import functools
import math
import re
from dataclasses import dataclass, replace
from typing import Any

# The LaTeX parser (an ANTLR grammar run in Python) takes 3 to 8 ms per
# character of the worst answers (a tuple of powers, nested subscripts): 0.3 to
# 0.8 s at 100 characters, about 1 s at 150 to 300. Final answers are shorter:
# "\left[k\pi-\frac{\pi}{3}, k\pi+\frac{\pi}{6}\right]" has 52 characters.
MAX_CHARS = 100

# A plain sentence (no "\", "$" or "[") is read by math_verify's regular
# expressions, not by the parser, at about 0.2 ms per character.
MAX_SENTENCE_CHARS = 1000

# Longer answers, ground truths and option texts are compared as exact text only.
# Up to it, the accuracy reward's own regular expressions (all linear) read a
# text in milliseconds. A response without an <answer> block is judged whole,
# and one of 2,000 tokens has some 8,000 characters.
MAX_ANSWER_CHARS = 20_000

# The parser backtracks on nesting, and exponentially: 8 nested braces take
# 0.5 s, 12 take 2 s, 40 never finish. A function name or a script without
# braces nests like a bracket ("\sin\sin x", "x^y_z"): 14 of them in a row take
# over 10 s, and "\log\log\frac{" four times over, 73 characters, over 30 s.
# Answers nest 3 deep at most (\left(\frac{\sqrt{3}}{2}, 1\right)).
MAX_NESTING = 4

# The parser evaluates these as it reads them (binomials, Gamma, gcd and lcm,
# matrix builders, a root index), so their arguments would be computed before
# any check of the expression could run. Rare in final answers; read as text,
# but for a small number or a letter: \binom{5}{2}, \sqrt[3]{x}, \sqrt[n]{x}.
_SMALL = r"\s*(?:\d{1,3}|[A-Za-z])\s*"
_EVALUATED_WHILE_PARSED = re.compile(
    rf"\\[dt]?binom(?!\s*{{{_SMALL}}}\s*{{{_SMALL}}})"
    r"|\\(?:choose|Gamma|gcd|lcm|det|operatorname)(?![A-Za-z])"
    r"|\\gamma\s*[({]"  # Gamma as a function; \gamma alone is a symbol
    rf"|\\sqrt\s*\[(?!{_SMALL}\])"
)

# What nests, for MAX_NESTING: brackets; function names, which take an argument
# without brackets; scripts without braces; and what ends such an argument.
_NESTING_TOKENS = re.compile(
    r"(?P<open>[([{])|(?P<close>[)\]}])"
    r"|(?P<implicit>\\(?:arc)?(?:sin|cos|tan|cot|sec|csc)h?(?![A-Za-z])"
    r"|\\(?:log|ln|lg|exp|lim|sum|prod|int|max|min)(?![A-Za-z])"
    r"|[\^_](?!\s*\{))"
    r"|(?P<separator>[+\-=,;<>])"
)

# The largest number an exact evaluation may reach, in decimal digits (a
# symbol read as 1, which sympy never replaces by a number; pi and e as 10, which
# it evaluates). 2^{2023}, a typical large answer, has 609 digits; the sine of a
# 1000-digit number takes 0.1 s (it needs that many digits of pi), of a
# 4000-digit one over a second, and 10^{10^{10}} never finishes. A logarithm
# reaches a number too: simplify's logcombine rewrites c \ln a as \ln(a^c) for an
# exact c (and exp(c \ln a) is a^c at once), so 2^{99}\ln 3, a 12-character
# answer, asks for 3^{2^{99}}, with memory growing by 45 MB/s until it runs out;
# the argument's digits times the coefficient count here (1000\ln 2: 301).
MAX_DIGITS = 1000

# Terms of an expanded product or power: (x+1)^{50} has 51 and takes 0.2 s to
# compare, (x+y+z)^{20} has 231 and takes 0.3 s, (x+1)^{1000} takes 6 s.
MAX_TERMS = 100

# A trigonometric function of a large multiple of a symbol: simplify rewrites
# cos(n x) as a polynomial of degree n in cos x (and cosh). cos(1000 z)^2 takes
# 0.1 s, cos(10^4 z)^2 0.7 s, cos(123456 z)^2 never finishes; so for a multiple of
# a constant other than pi: sin(10^5 e) takes 0.7 s, sin(10^7 e) never finishes.
# Each such term of the argument may have this many digits: 1000x,
# \frac{\pi}{4}x, \omega t and 100e are inside, 10^4 x is not (a number, or
# 10^{30}\pi, always is).
MAX_TRIG_TERM_DIGITS = 3

# sympy divides polynomials stored densely: a coefficient for each power of each
# symbol, up to its degree. A high power alone costs nothing, but compared with
# a ground truth that divides, such as \frac{1}{x-1}, x^{10^5} takes 0.3 s,
# x^{10^6} 4 s and x^{10^9} runs out of memory. The product over the symbols of
# (degree + 1) may be this much: x^{9999}, x^{99}y^{99}, x^{21}y^{21}z^{21}.
MAX_POLYNOMIAL_COEFFICIENTS = 10_000

# simplify cancels a quotient by a polynomial, and (x^n - 1)/(x - 1) has n
# terms, which it then factors term by term: (x-1)/(x^{30}-1) takes 0.3 s to
# compare, of degree 50 0.6 s, of degree 100 2.6 s, of degree 300 over 10 s. An
# expression that divides by a sum holding a symbol may have this total degree
# (all symbols together). Answers divide by x+1 or x^2-1, rarely by more than a
# cubic.
MAX_QUOTIENT_DEGREE = 30

# An equation or inequality is solved by math_verify for its symbols, in an
# order that varies between processes (a set of symbols), so the highest power
# of any one symbol counts. sympy solves y = x^3 - 3x in 0.2 s and
# x^3+y^3+z^3+w^3-xyz=1 in 0.6 s; b = cos(y)^{24} takes 3 s, x^5-x-1=0 0.6 s,
# x^{10}-x-1=0 1.2 s, x^4+y^4+x^3y=1 over 8 s. Answers are lines and conics.
MAX_RELATION_DEGREE = 3

# The logarithm of a negative number is complex (ln(-2) = ln 2 + i pi), and of
# cos(3) too; with trigonometric functions about, simplify factors over the
# Gaussian rationals, for each such logarithm: \ln(\cos 3)+\ln(\log_{3}\pi)
# takes 0.5 s, with \ln(\sin 2) and \ln(\log_{5}e) more 1.7 s, and
# \ln(-2)\ln(-3)+\ln(-5)\ln(-7)+\sin(1)\cos(2) 1.3 s. An answer has one at most.
MAX_COMPLEX_LOGS = 1

# Solving through a function (sin, log, an exponent) costs more than through a
# power: a symbol inside one counts this many times (ln(y)^3 + ln(y) = a takes
# 1.5 s; y = 2\sin(2x + \frac{\pi}{6}) and y = \sin^2 x stay inside).
_FUNCTION_DEGREE = 1.5

# Powers are estimated with exponents up to this many digits; above, every
# measure is infinite (and 10.0**digits would overflow a float).
_EXPONENT_DIGITS_CAP = 20.0


# e^{...} is the one power the parser builds evaluated, as sympy's exp: exp(c \ln a)
# becomes a^c at once, and the sign of any other argument is evaluated
# numerically (e^{(\pi^{10^5})!} took 9 s to parse, e^{\sin e^{e^{20}}} for ever),
# before any check of the expression can run. Such an answer is first parsed
# with 3 for e (3^{...} is a power the parser leaves unevaluated, and larger),
# unless each exponent of e is plain: letters, digits, + - * / and brackets,
# \frac, \pi, \cdot (e^{-x}, e^{2x+1}, e^{i\pi}, e^{-\frac{t}{2}}), which exp
# takes at once.
_COMMAND_OR_E_POWER = re.compile(r"\\[A-Za-z]+|e(?=\s*\^)")
_PLAIN_EXPONENT = re.compile(
    r"(?:[A-Za-z0-9\s+\-*/(){}]|\\(?:frac|dfrac|tfrac|pi|cdot|times|left|right)(?![A-Za-z]))*"
)


def exponential_twin(text: str) -> str | None:
    r"""``text`` with each power of e (``e^{x}``, ``2e ^x``) written as a power of 3
    (``3^{x}``, ``2\cdot 3 ^x``), whose parse the expression bounds can check
    first; None when it needs none: no power of e, or only plain exponents."""
    if "^" not in text:
        return None
    powers = [m for m in _COMMAND_OR_E_POWER.finditer(text) if m.group(0) == "e"]
    if all(_PLAIN_EXPONENT.fullmatch(_exponent(text, m.end())) for m in powers):
        return None

    def three(match: re.Match) -> str:
        if match.group(0) != "e":
            return match.group(0)  # a command, such as \le or \angle, stays
        after_number = match.start() > 0 and text[match.start() - 1] in "0123456789."
        return "\\cdot 3" if after_number else "3"

    return _COMMAND_OR_E_POWER.sub(three, text)


def _exponent(text: str, start: int) -> str:
    """The exponent after the "^" that follows ``start``: a braced group's content,
    or one character or command."""
    rest = text[start:].lstrip()[1:].lstrip()  # past the "^"
    if not rest.startswith("{"):
        command = re.match(r"\\[A-Za-z]+", rest)
        return command.group(0) if command else rest[:1]
    depth = 0
    for index, character in enumerate(rest):
        depth += {"{": 1, "}": -1}.get(character, 0)
        if depth == 0:
            return rest[1:index]
    return rest  # unbalanced: not plain


def text_over_bounds(text: str, sentence: bool = False) -> str | None:
    """Why ``text`` is too costly to parse (over a bound above), or None when it is not.

    ``sentence``: the text is a plain sentence, read by regular expressions only.
    """
    limit = MAX_SENTENCE_CHARS if sentence else MAX_CHARS
    if len(text) > limit:
        return f"{len(text)} characters, over {limit}"
    nesting = _nesting(text)
    if nesting > MAX_NESTING:
        return f"nested {nesting} deep, over {MAX_NESTING}"
    match = _EVALUATED_WHILE_PARSED.search(text)
    if match:
        return f"{match.group(0).strip()!r}, which the parser evaluates"
    return None


def _nesting(text: str) -> int:
    """How deep the parser must nest: open brackets, plus the function names and
    scripts without braces in each bracket that no separator (+ - = , ; < >) ended."""
    implicit = [0]  # per open bracket, from the outermost (the whole text)
    deepest = 0
    for token in _NESTING_TOKENS.finditer(text):
        if token.group("open"):
            implicit.append(0)
        elif token.group("close"):
            if len(implicit) > 1:  # an unbalanced closer is the parser's problem, not ours
                implicit.pop()
        elif token.group("separator"):
            implicit[-1] = 0
        else:
            implicit[-1] += 1
        deepest = max(deepest, len(implicit) - 1 + sum(implicit))
    return deepest


@dataclass(frozen=True)
class _Size:
    """What evaluating an expression exactly could cost (see MAX_DIGITS)."""

    digits: float  # decimal digits of the largest numerator or denominator reached
    degrees: dict[Any, float]  # the highest power of each symbol
    terms: float  # terms once every product and power is expanded
    exact: float = 0.0  # digits of the largest exact number (no float, no symbol)
    logs: float = 0.0  # digits of logarithms' arguments, raised to exact coefficients
    denominator: float = 0.0  # digits of the exact numbers it is divided by
    divisor_logs: float = 0.0  # digits of the arguments of the logarithms it is divided by
    divides: bool = False  # holds a quotient by a sum with a symbol (MAX_QUOTIENT_DEGREE)
    complex_logs: int = 0  # logarithms of numbers that may be negative (MAX_COMPLEX_LOGS)


class _OverBounds(Exception):
    """Raised inside the walk at the first node over a bound; the message says why."""


def expression_over_bounds(expression: Any) -> str | None:
    """Why a parsed, unevaluated sympy expression is too costly to compare, or None.

    Only reads the expression tree: nothing is evaluated, so this is as cheap on
    ``10^{10^{10}}`` as on ``2``.
    """
    try:
        _check(_size(expression))  # a leaf too: e^{e^{e^{3.5}}} is parsed as one Float
    except _OverBounds as reason:
        return str(reason)
    except RecursionError:
        return "an expression nested too deep"
    return None


def pair_over_bounds(first: Any, second: Any) -> str | None:
    r"""Why comparing two parsed expressions, each inside the bounds, is too costly.

    math_verify simplifies their difference, over one denominator, as it would one
    sum (see _collection): \log_{2}3 = \ln 3 / \ln 2 against 10^{25} asks for
    2^{10^{25}}.
    """
    try:
        _check(_collection([_size(first), _size(second)]))
    except _OverBounds as reason:
        return str(reason)
    except RecursionError:
        return "an expression nested too deep"
    return None


def _size(expression: Any) -> _Size:
    """The size of ``expression``, raising _OverBounds at the first node over a bound."""
    import sympy  # loaded already by math_verify, which parsed the expression

    if isinstance(expression, sympy.MatrixBase) and not isinstance(expression, sympy.Basic):
        return _check(_collection([_size(entry) for entry in expression]))
    if not isinstance(expression, sympy.Basic):
        return _Size(0.0, {}, 1.0)  # the answer's string, which math_verify also keeps
    if isinstance(expression, (sympy.Sum, sympy.Product, sympy.Integral, sympy.Limit)) or (
        expression.is_Derivative
    ):
        # Working these out is open-ended (an integral without closed form runs
        # for minutes); a final answer gives the value, not the question.
        raise _OverBounds(f"an unevaluated {type(expression).__name__}")
    if expression.is_Rational:
        digits = math.log10(max(abs(expression.p), expression.q))
        return _Size(digits, {}, 1.0, exact=digits, denominator=math.log10(expression.q))
    if expression.is_Float:  # sympy computes with it as a float: never an exact power
        return _Size(_float_digits(expression), {}, 1.0)
    if expression.is_Symbol:
        return _Size(0.0, {expression: 1.0}, 1.0)
    if expression.is_Number or not expression.args:  # pi, E, I, infinity, ...
        return _Size(1.0, {}, 1.0, exact=1.0)

    if expression.is_Pow:
        inverse = expression.exp.could_extract_minus_sign()  # read from the tree
        size = _power(_size(expression.base), _size(expression.exp), inverse)
        if inverse and expression.base.is_Add and expression.base.free_symbols:
            size = replace(size, divides=True)  # a quotient by a polynomial
        return _check(size)
    if isinstance(expression, sympy.exp):  # e^a
        e = _Size(1.0, {}, 1.0, exact=1.0)
        return _check(_power(e, _size(expression.args[0]), inverse=False))
    children = [_size(child) for child in expression.args]
    if expression.is_Mul:
        size = replace(
            _collection(children, product=True),
            degrees=_merge([c.degrees for c in children], add=True),
            terms=math.prod(c.terms for c in children),
        )
    elif isinstance(expression, sympy.log):
        # ln(a) for a = p/q is at most 2.31 digits(a) (ln 10 = 2.303); a base b
        # divides by ln(b), which is at least 1/b (exactly 1 for e). As a
        # coefficient the logarithm is that small; its argument, and its base,
        # a coefficient raises to a power (see _collection).
        argument, bases = children[0], zip(children[1:], expression.args[1:], strict=True)
        base = [part for part, b in bases if b is not sympy.E]
        value = math.log10(1.0 + 2.31 * argument.digits) + sum(b.digits for b in base)
        size = _Size(
            value,
            _inside_function(children),
            sum(c.terms for c in children),
            exact=value,
            logs=sum(c.logs for c in children) + argument.exact,
            divisor_logs=sum(b.exact for b in base),
            divides=any(c.divides for c in children),
            complex_logs=sum(c.complex_logs for c in children)
            + _may_be_negative(expression.args[0]),
        )
    elif isinstance(expression, _factorial_like()):
        # n! < n^n, binomial(n, k) < 2^n, Gamma(n) = (n-1)!: n * digits(n) digits at most.
        n = children[0].digits
        digits = _up_to(n) * max(n, 1.0)
        size = replace(
            _collection(children),
            digits=digits,
            degrees=_inside_function(children),
            terms=1.0,
            exact=digits,
        )
        argument = expression.args[0]
        if not argument.free_symbols and not _integer_expression(argument):
            # Whether it is an integer, sympy decides by rounding it, to ever more
            # digits: (|\cos^{2}(e)|)! against \log(x) takes 0.7 s every time.
            raise _OverBounds(f"a {type(expression).__name__} of a number not an integer")
    elif isinstance(expression, _trigonometric()):
        # cos(x) = (e^{ix} + e^{-ix}) / 2: its powers expand like a binomial's.
        size = replace(
            _collection(children),
            degrees=_inside_function(children),
            terms=2.0 * children[0].terms,
        )
        for term in sympy.Add.make_args(expression.args[0]):
            digits = _size(term).digits
            if digits > MAX_TRIG_TERM_DIGITS and not _reduced_exactly(term):
                raise _OverBounds(
                    f"a {type(expression).__name__} of a {digits:.2g}-digit multiple of a "
                    f"symbol or constant, over {MAX_TRIG_TERM_DIGITS}"
                )
    else:  # sums, functions, sets, tuples, intervals, relations, ...
        size = _collection(children)
        if expression.is_Function:
            size = replace(size, degrees=_inside_function(children))
        if isinstance(expression, _complex_parts()) and _complex_root(expression.args[0]):
            # Its modulus is a sum of cosines of fractions of pi, which simplify
            # factors over number fields: |i^{1/7}|+|i^{1/9}|+|i^{1/11}|+|i^{1/13}| 3 s.
            raise _OverBounds(f"the {type(expression).__name__} of a root of a complex number")
    if expression.is_Function and not isinstance(expression, sympy.log):
        # Its arguments are put over their own denominators, inside it.
        size = replace(size, denominator=0.0, divisor_logs=0.0)
    if expression.is_Relational and size.degrees:
        symbol, degree = max(size.degrees.items(), key=lambda item: item[1])
        if degree > MAX_RELATION_DEGREE:
            raise _OverBounds(
                f"an equation of degree {degree:g} in {symbol}, over {MAX_RELATION_DEGREE}"
            )
    return _check(size)


def _integer_expression(expression: Any) -> bool:
    r"""Whether ``expression`` is made of integers by sums, products, powers with
    non-negative integer exponents and factorials: 7, 2^{10}, 3 \cdot 5!, read from
    the tree (sympy's own test may evaluate it)."""
    import sympy

    if expression.is_Integer:
        return True
    if expression.is_Pow:
        exponent = expression.exp
        return bool(exponent.is_Integer and exponent >= 0) and _integer_expression(expression.base)
    if expression.is_Add or expression.is_Mul or isinstance(expression, sympy.factorial):
        return all(_integer_expression(argument) for argument in expression.args)
    return False


@functools.cache
def _complex_parts() -> tuple[type, ...]:
    """sympy's absolute value, argument, real and imaginary part classes."""
    import sympy

    return (sympy.Abs, sympy.arg, sympy.re, sympy.im)


def _complex_root(expression: Any) -> bool:
    r"""Whether ``expression`` holds a power, not to an integer, of something with i
    in it (sympy's I, or math_verify's symbol i, not real): \sqrt{i}, (1+i)^{1/3}."""
    import sympy

    return any(
        not power.exp.is_Integer
        and (power.base.has(sympy.I) or any(s.is_real is False for s in power.base.free_symbols))
        for power in expression.atoms(sympy.Pow)
    )


def _may_be_negative(argument: Any) -> bool:
    """Whether a logarithm's ``argument`` is a number that may be negative, or complex:
    a negative number, or one with a trigonometric function or i in it."""
    import sympy

    if argument.free_symbols:
        return False
    if argument.is_Number:
        return bool(argument.is_negative)
    return argument.has(sympy.I, *_trigonometric())


def _reduced_exactly(term: Any) -> bool:
    """Whether sympy takes a sine of ``term`` at once: a number, or a rational multiple
    of pi. A multiple of a symbol, or of any other constant (e, sqrt(2)), it
    rewrites as a polynomial of that degree: sin(10^7 e) never finishes."""
    import sympy

    if term.free_symbols:
        return False
    return bool(term.is_Rational or term.is_Float or (term / sympy.pi).is_Rational)


@functools.cache
def _factorial_like() -> tuple[type, ...]:
    """sympy's factorial, binomial and Gamma classes (imported late, like all of sympy)."""
    import sympy
    from sympy.functions.combinatorial.factorials import CombinatorialFunction

    return (CombinatorialFunction, sympy.gamma)


@functools.cache
def _trigonometric() -> tuple[type, ...]:
    """sympy's trigonometric and hyperbolic function classes (sinh(10^7 e) hangs too)."""
    from sympy.functions.elementary.hyperbolic import HyperbolicFunction
    from sympy.functions.elementary.trigonometric import TrigonometricFunction

    return (TrigonometricFunction, HyperbolicFunction)


def _power(base: _Size, exponent: _Size, inverse: bool) -> _Size:
    r"""b^e, with |e| at most 10^digits(e): b^n has n times the digits and degrees of b,
    and a base of t terms expands to C(n + t - 1, t - 1) terms. A base holding
    logarithms, (c \ln a)^n, expands to c^n (\ln a)^n, which logcombine turns into
    \ln(a^{c^n}): their arguments are raised to the n-th power of the whole base.
    ``inverse``: the exponent is negative, so b^e divides by the base."""
    n = _up_to(exponent.digits)
    if base.terms <= 1:
        terms = 1.0
    elif n >= MAX_TERMS or base.terms > MAX_TERMS:
        terms = math.inf  # C(n + t - 1, t - 1) >= n + 1 and >= t
    else:
        t = int(base.terms)
        terms = float(math.comb(round(n) + t - 1, t - 1))
    digits = _times(base.digits, n)  # powers of 0, 1, -1 and symbols stay 0
    exact = _times(base.exact, n)
    logs = exponent.logs + _raised(base.logs, exact)
    if inverse:  # what divided the base multiplies the power, and the other way round
        denominator = _times(max(base.exact, base.denominator), n)
        divisor_logs = logs + base.divisor_logs
    else:
        denominator, divisor_logs = _times(base.denominator, n), base.divisor_logs
    return _Size(
        max(digits, exponent.digits),
        _merge([{s: d * n for s, d in base.degrees.items()}, _inside_function([exponent])]),
        max(terms, exponent.terms),
        exact=max(exact, exponent.exact),
        logs=logs,
        denominator=denominator,
        divisor_logs=divisor_logs,
        divides=base.divides or exponent.divides,
        complex_logs=base.complex_logs + exponent.complex_logs,
    )


def _collection(children: list[_Size], product: bool = False) -> _Size:
    r"""A sum, function or collection of its children, or their ``product``: no more
    than their product, in digits.

    logcombine rewrites c \ln a as \ln(a^c) for an exact c, and a sum of logarithms
    as the logarithm of a product. So in a product, each factor's logarithms are
    raised to the other factors' exact numbers (at most); in a sum, put over one
    denominator, each term's logarithms to the others' exact denominators, and the
    logarithms each term is divided by to the others' exact numbers:
    \frac{1}{2^{99}} + \ln 3 is (1 + 2^{99} \ln 3) / 2^{99}.
    """
    exact = sum(c.exact for c in children)
    denominator = sum(c.denominator for c in children)
    if product:
        logs = sum(_raised(c.logs, exact - c.exact) for c in children)
    else:
        logs = sum(
            _raised(c.logs, denominator - c.denominator) + _raised(c.divisor_logs, exact - c.exact)
            for c in children
        )
    return _Size(
        sum(c.digits for c in children),
        _merge([c.degrees for c in children]),
        sum(c.terms for c in children) or 1.0,
        exact=exact,
        logs=logs,
        denominator=denominator,
        divisor_logs=sum(c.divisor_logs for c in children),
        divides=any(c.divides for c in children),
        complex_logs=sum(c.complex_logs for c in children),
    )


def _inside_function(arguments: list[_Size]) -> dict[Any, float]:
    """The degrees of the symbols in a function's arguments (or an exponent), weighted."""
    return {s: d * _FUNCTION_DEGREE for s, d in _merge([a.degrees for a in arguments]).items()}


def _merge(degrees: list[dict[Any, float]], add: bool = False) -> dict[Any, float]:
    """Each symbol's degree in a product (``add``) or in a sum or collection (the highest)."""
    merged: dict[Any, float] = {}
    for item in degrees:
        for symbol, degree in item.items():
            merged[symbol] = (
                merged.get(symbol, 0.0) + degree if add else max(merged.get(symbol, 0.0), degree)
            )
    return merged


def _check(size: _Size) -> _Size:
    """``size``, or _OverBounds when it is over a bound. Written ``not x <= bound``
    so that a NaN, which no comparison finds over, is over too."""
    if not size.digits <= MAX_DIGITS:
        raise _OverBounds(f"a number of up to {size.digits:.3g} digits, over {MAX_DIGITS}")
    if not size.logs <= MAX_DIGITS:
        raise _OverBounds(
            f"a logarithm whose coefficient raises its argument to up to {size.logs:.3g} "
            f"digits, over {MAX_DIGITS}"
        )
    if not size.terms <= MAX_TERMS:
        raise _OverBounds(f"up to {size.terms:.3g} terms once expanded, over {MAX_TERMS}")
    coefficients = math.prod(degree + 1.0 for degree in size.degrees.values())
    if not coefficients <= MAX_POLYNOMIAL_COEFFICIENTS:
        raise _OverBounds(
            f"a polynomial of up to {coefficients:.3g} coefficients, over "
            f"{MAX_POLYNOMIAL_COEFFICIENTS}"
        )
    if not size.complex_logs <= MAX_COMPLEX_LOGS:
        raise _OverBounds(
            f"logarithms of {size.complex_logs} numbers that may be negative, "
            f"over {MAX_COMPLEX_LOGS}"
        )
    degree = sum(size.degrees.values())
    if size.divides and not degree <= MAX_QUOTIENT_DEGREE:
        raise _OverBounds(
            f"a quotient by a polynomial, of total degree {degree:.3g}, over {MAX_QUOTIENT_DEGREE}"
        )
    return size


def _raised(digits: float, exponent_digits: float) -> float:
    """The digits of a number of ``digits`` digits raised to a power of that many."""
    return _times(digits, _up_to(exponent_digits))


def _times(digits: float, n: float) -> float:
    """``digits`` times ``n``, with 0 times infinity 0 (a power of 1 stays 1)."""
    return digits * n if digits > 0 else 0.0


def _up_to(digits: float) -> float:
    """The largest absolute value of a number of this many digits."""
    return 10.0**digits if digits < _EXPONENT_DIGITS_CAP else math.inf


def _float_digits(number: Any) -> float:
    """Digits of a float read exactly: its binary exponent, large or small, and mantissa."""
    _, mantissa, exponent, bit_count = number._mpf_
    if not mantissa:
        return 0.0  # zero, or an infinity / NaN, which sympy handles at once
    bits = max(abs(exponent + bit_count), bit_count)
    return bits * math.log10(2) if bits < 2**1000 else math.inf  # float() would overflow
