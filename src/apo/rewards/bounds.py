"""Bounds on what math_verify may be given, so that judging an answer never hangs.

math_verify reads LaTeX into sympy and compares with ``simplify``, ``evalf`` and
``solve``. On a few short adversarial answers that work is unbounded:
``10^{10^{10}}`` asks for a number of ten billion digits, ``(10^{10})!`` and
``\\binom{10^8}{5 \\cdot 10^7}`` for worse, ``x^{16}-x-1=0`` for the roots of a
polynomial sympy cannot solve, ``\\int e^{x^2}\\sin(x^3)dx`` for an integral
without closed form, and a few dozen nested braces or unbraced powers keep
the LaTeX parser itself busy for a minute and more. The reward worker pool kills such a worker after
``rewards.timeout_seconds``, but a direct call (a user's own trainer, a TRL
reward function) would hang for ever.

Every answer is checked twice, each check cheap and free of evaluation:

1. :func:`text_over_bounds`, on the text, before anything is parsed: its
   length, how deep it nests (brackets, and function names and scripts
   without braces, which the parser explores like brackets), and the few
   LaTeX commands the parser evaluates as it reads them;
2. :func:`expression_over_bounds`, on the parsed expression (still
   unevaluated), before math_verify compares it: the size of every number an
   exact evaluation could reach, the terms of every expanded power, the
   multiples inside sines and cosines, the degree of every equation in each
   symbol, and no sum, product, integral, limit or derivative left to work out.

An answer over a bound is judged by text and number comparison only (see
:mod:`apo.rewards.accuracy`). Normal answers are far inside every bound. Each
limit below was set from timings of math_verify 0.9 / sympy 1.14 on a loaded
2-core machine, and each comment says why. Inside them, most answers take 10
to 50 ms; the slowest found took 0.8 s (a structure the LaTeX parser meets for
the first time in a process, such as nested subscripts).
"""

from __future__ import annotations

import functools
import math
import re
from dataclasses import dataclass
from typing import Any

# The LaTeX parser (an ANTLR grammar run in Python) takes 3 to 8 ms per
# character of the worst answers (a tuple of powers, nested subscripts): 0.3 to
# 0.8 s at 100 characters, about 1 s at 150 to 300. Final answers are shorter:
# "\left[k\pi-\frac{\pi}{3}, k\pi+\frac{\pi}{6}\right]" has 52 characters.
MAX_CHARS = 100

# A plain sentence (no "\", "$" or "[") is read by math_verify's regular
# expressions, not by the parser, at about 0.2 ms per character.
MAX_SENTENCE_CHARS = 1000

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
# 4000-digit one over a second, and 10^{10^{10}} never finishes.
MAX_DIGITS = 1000

# Terms of an expanded product or power: (x+1)^{50} has 51 and takes 0.2 s to
# compare, (x+y+z)^{20} has 231 and takes 0.3 s, (x+1)^{1000} takes 6 s.
MAX_TERMS = 100

# A trigonometric function of a large multiple of a symbol: simplify rewrites
# cos(n x) as a polynomial of degree n in cos x. cos(1000 z)^2 takes 0.1 s,
# cos(10^4 z)^2 0.7 s, cos(123456 z)^2 never finishes. Each term of the
# argument that holds a symbol may have this many digits: 1000x, \frac{\pi}{4}x
# and \omega t are inside, 10^4 x is not.
MAX_TRIG_TERM_DIGITS = 3

# An equation or inequality is solved by math_verify for its symbols, in an
# order that varies between processes (a set of symbols), so the highest power
# of any one symbol counts. sympy solves y = x^3 - 3x in 0.2 s and
# x^3+y^3+z^3+w^3-xyz=1 in 0.6 s; b = cos(y)^{24} takes 3 s, x^5-x-1=0 0.6 s,
# x^{10}-x-1=0 1.2 s, x^4+y^4+x^3y=1 over 8 s. Answers are lines and conics.
MAX_RELATION_DEGREE = 3

# Solving through a function (sin, log, an exponent) costs more than through a
# power: a symbol inside one counts this many times (ln(y)^3 + ln(y) = a takes
# 1.5 s; y = 2\sin(2x + \frac{\pi}{6}) and y = \sin^2 x stay inside).
_FUNCTION_DEGREE = 1.5

# Powers are estimated with exponents up to this many digits; above, every
# measure is infinite (and 10.0**digits would overflow a float).
_EXPONENT_DIGITS_CAP = 20.0


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


class _OverBounds(Exception):
    """Raised inside the walk at the first node over a bound; the message says why."""


def expression_over_bounds(expression: Any) -> str | None:
    """Why a parsed, unevaluated sympy expression is too costly to compare, or None.

    Only reads the expression tree: nothing is evaluated, so this is as cheap on
    ``10^{10^{10}}`` as on ``2``.
    """
    try:
        _size(expression)
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
        return _Size(math.log10(max(abs(expression.p), expression.q)), {}, 1.0)
    if expression.is_Float:
        return _Size(_float_digits(expression), {}, 1.0)
    if expression.is_Symbol:
        return _Size(0.0, {expression: 1.0}, 1.0)
    if expression.is_Number or not expression.args:  # pi, E, I, infinity, ...
        return _Size(1.0, {}, 1.0)

    if expression.is_Pow:
        return _check(_power(_size(expression.base), _size(expression.exp)))
    if isinstance(expression, sympy.exp):  # e^a
        return _check(_power(_Size(1.0, {}, 1.0), _size(expression.args[0])))
    children = [_size(child) for child in expression.args]
    if expression.is_Mul:
        size = _Size(
            sum(c.digits for c in children),
            _merge([c.degrees for c in children], add=True),
            math.prod(c.terms for c in children),
        )
    elif isinstance(expression, _factorial_like()):
        # n! < n^n, binomial(n, k) < 2^n, Gamma(n) = (n-1)!: n * digits(n) digits at most.
        n = children[0].digits
        size = _Size(_up_to(n) * max(n, 1.0), _inside_function(children), 1.0)
    elif isinstance(expression, _trigonometric()):
        # cos(x) = (e^{ix} + e^{-ix}) / 2: its powers expand like a binomial's.
        size = _Size(children[0].digits, _inside_function(children), 2.0 * children[0].terms)
        for term in sympy.Add.make_args(expression.args[0]):
            digits = _size(term).digits
            if term.free_symbols and digits > MAX_TRIG_TERM_DIGITS:
                raise _OverBounds(
                    f"a {type(expression).__name__} of a {digits:.2g}-digit multiple of a symbol, "
                    f"over {MAX_TRIG_TERM_DIGITS}"
                )
    else:  # sums, functions, sets, tuples, intervals, relations, ...
        size = _collection(children)
        if expression.is_Function:
            size = _Size(size.digits, _inside_function(children), size.terms)
    if expression.is_Relational and size.degrees:
        symbol, degree = max(size.degrees.items(), key=lambda item: item[1])
        if degree > MAX_RELATION_DEGREE:
            raise _OverBounds(
                f"an equation of degree {degree:g} in {symbol}, over {MAX_RELATION_DEGREE}"
            )
    return _check(size)


@functools.cache
def _factorial_like() -> tuple[type, ...]:
    """sympy's factorial, binomial and Gamma classes (imported late, like all of sympy)."""
    import sympy
    from sympy.functions.combinatorial.factorials import CombinatorialFunction

    return (CombinatorialFunction, sympy.gamma)


@functools.cache
def _trigonometric() -> type:
    from sympy.functions.elementary.trigonometric import TrigonometricFunction

    return TrigonometricFunction


def _power(base: _Size, exponent: _Size) -> _Size:
    """b^e, with |e| at most 10^digits(e): b^n has n times the digits and degrees of b,
    and a base of t terms expands to C(n + t - 1, t - 1) terms."""
    n = _up_to(exponent.digits)
    if base.terms <= 1:
        terms = 1.0
    elif n >= MAX_TERMS or base.terms > MAX_TERMS:
        terms = math.inf  # C(n + t - 1, t - 1) >= n + 1 and >= t
    else:
        t = int(base.terms)
        terms = float(math.comb(round(n) + t - 1, t - 1))
    digits = base.digits * n if base.digits > 0 else 0.0  # powers of 0, 1, -1 and symbols
    return _Size(
        max(digits, exponent.digits),
        _merge([{s: d * n for s, d in base.degrees.items()}, _inside_function([exponent])]),
        max(terms, exponent.terms),
    )


def _collection(children: list[_Size]) -> _Size:
    """A sum, or a function or collection of its children: no more than their sum."""
    return _Size(
        sum(c.digits for c in children),
        _merge([c.degrees for c in children]),
        sum(c.terms for c in children) or 1.0,
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
    if size.digits > MAX_DIGITS:
        raise _OverBounds(f"a number of up to {size.digits:.3g} digits, over {MAX_DIGITS}")
    if size.terms > MAX_TERMS:
        raise _OverBounds(f"up to {size.terms:.3g} terms once expanded, over {MAX_TERMS}")
    return size


def _up_to(digits: float) -> float:
    """The largest absolute value of a number of this many digits."""
    return 10.0**digits if digits < _EXPONENT_DIGITS_CAP else math.inf


def _float_digits(number: Any) -> float:
    """Digits of a float read exactly: its binary exponent, large or small, and mantissa."""
    _, mantissa, exponent, bit_count = number._mpf_
    if not mantissa:
        return 0.0  # zero, or an infinity / NaN, which sympy handles at once
    return max(abs(exponent + bit_count), bit_count) * math.log10(2)
