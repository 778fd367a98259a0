"""``calculator``: exact rational arithmetic, nothing executed.

Input: numbers (integers or decimals such as ``0.1``) with ``+ - * / ( )`` (``×``, ``÷``, ``−``
too), the Countdown answer syntax, so a model trained on Countdown writes what it already
knows; one trailing ``=`` is ignored. An equation ``EXPR = VALUE`` is checked exactly:
``true``, or ``false: 32`` with EXPR's value (a model that compares a result with a target
itself has to copy and compare digits; asked, the calculator does it without error). There is no unary minus (the Countdown syntax has none:
write ``0-3``). The value is exact (``fractions.Fraction``): an integer prints as ``22``,
anything else as the reduced fraction ``24/5`` (never a rounded decimal, so the model can reuse
it in a later call as ``24/5``).

It reuses the Countdown reference evaluator (:func:`r1lab.rewards.countdown.parse_expression`:
linear-time shunting-yard, no ``eval``), which takes integer literals only, so each decimal is
rewritten first as the parenthesised fraction ``(1/10)``. Inputs are capped at
``MAX_INPUT_CHARS``; without ``**`` every intermediate value then has at most about as many
digits as the input has characters, so no call can blow up.
"""
from __future__ import annotations

import re
from fractions import Fraction

from r1lab.rewards.countdown import parse_expression
from r1lab.tools.registry import ToolLimits, ToolResult, error, register_tool

MAX_INPUT_CHARS = 200
USAGE = "the calculator takes + - * / ( ) and numbers, e.g. 5*3+7"

_ALLOWED = re.compile(r"[0-9.+\-*/()×÷−\s]+")
_NUMBER = re.compile(r"\d+(?:\.\d*)?|\.\d+")


def _as_integer_literals(text: str) -> str:
    """Each decimal as ``(n/d)``, each integer without leading zeros (the Countdown literals)."""

    def literal(m: re.Match) -> str:
        value = Fraction(m.group())
        return str(value.numerator) if value.denominator == 1 else f"({value.numerator}/{value.denominator})"

    return _NUMBER.sub(literal, text)


def evaluate(text: str) -> Fraction:
    """The exact value of ``text``; ``ZeroDivisionError`` or ``ValueError`` (not arithmetic)."""
    text = text.strip()
    text = text[:-1] if text.endswith("=") else text
    if not text or len(text) > MAX_INPUT_CHARS or not _ALLOWED.fullmatch(text):
        raise ValueError(USAGE)
    try:
        return parse_expression(_as_integer_literals(text))[0]
    except ValueError as exc:
        if str(exc) == "division by zero":  # the evaluator's own message (tests/tools pin it)
            raise ZeroDivisionError("division by zero") from None
        raise ValueError(USAGE) from None


def format_value(value: Fraction) -> str:
    """``22`` for an integer, ``24/5`` (reduced, sign in front) otherwise."""
    return str(value.numerator) if value.denominator == 1 else f"{value.numerator}/{value.denominator}"


def answer(text: str) -> str:
    """What the calculator shows for ``text``: ``22`` / ``24/5``, or for ``EXPR = VALUE``
    ``true`` / ``false: 32``. Raises like `evaluate`."""
    left, sep, right = text.partition("=")
    if sep and right.strip():
        value = evaluate(left)
        return "true" if value == evaluate(right) else f"false: {format_value(value)}"
    return format_value(evaluate(text))


@register_tool("calculator")
def calculator(text: str, limits: ToolLimits) -> ToolResult:
    """The value of ``text`` as ``22`` or ``24/5`` (an equation: ``true`` / ``false: 32``); an
    error naming the syntax otherwise."""
    if len(text.strip()) > MAX_INPUT_CHARS:
        return error(f"the calculator takes at most {MAX_INPUT_CHARS} characters")
    try:
        return ToolResult(answer(text), "ok")
    except ZeroDivisionError:
        return error("division by zero")
    except ValueError:
        return error(USAGE)
