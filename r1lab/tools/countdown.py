"""``countdown``: checks one attempt at the completion's own Countdown problem, as the reward will.

Input: an answer expression (``7*5-3``; a trailing ``= 22`` is ignored: the check is against
the target). The tool is given the row's ``numbers`` and ``target`` (its context columns,
``r1lab.tools.registry``) and answers with what the reward will say of that expression as the
final answer, and why:

* ``true``: it uses each number once and equals the target (reward 1);
* ``false: 32``: it uses the numbers right and has another value;
* ``false: use 3 5 7 once each``: it does not use exactly the numbers (a digit copied wrong, a
  number twice or left out); the expression is not evaluated, as the reward does not;
* an error naming the syntax for anything that is not a Countdown expression.

Why a checker beside the calculator (docs/benchmarks.md, "Tools in rollouts"): the calculator
checks arithmetic (``7*5-3=22`` → ``false: 32``) and knows nothing of the problem, so it says
``true`` to ``8+8-3=13`` over the numbers 3 5 8. With the tiny demo model 63% of the calls its
tool cold start made did not use the problem's numbers, and 23 of its 37 ``true`` results
followed such a call, which the model then answered. The checker says what the verifier says.

Reuses :func:`r1lab.rewards.countdown.parse_expression` (the reward's exact syntax and
evaluator; no ``eval``) and applies the reward's number rule to its literals; not
``evaluate_answer``, which answers ``None`` alike for bad syntax and wrong numbers, so the model
could not be told which.
"""
from __future__ import annotations

from typing import Any, Mapping

from r1lab.rewards.countdown import parse_expression
from r1lab.tools.calculator import MAX_INPUT_CHARS, format_value
from r1lab.tools.registry import ToolLimits, ToolResult, error, register_tool

USAGE = "the countdown check takes one expression over the numbers with + - * / ( ), e.g. 5*3+7"


def check(text: str, numbers: list[int], target: int) -> str:
    """What the tool shows for ``text`` against the problem (module docstring); raises
    ``ValueError`` (syntax) or ``ZeroDivisionError``.

    >>> check("5*3+7", [3, 5, 7], 22), check("7*5-3", [3, 5, 7], 22), check("5*5-3", [3, 5, 7], 22)
    ('true', 'false: 32', 'false: use 3 5 7 once each')
    """
    text = text.partition("=")[0].strip()  # "7*5-3=22" asks about 7*5-3
    if not text or len(text) > MAX_INPUT_CHARS:
        raise ValueError(USAGE)
    try:
        value, literals = parse_expression(text)
    except ValueError as exc:
        if "division by zero" in str(exc):
            raise ZeroDivisionError("division by zero") from None
        raise ValueError(USAGE) from None
    if sorted(literals) != sorted(int(n) for n in numbers):
        return f"false: use {' '.join(str(n) for n in sorted(numbers))} once each"
    return "true" if value == target else f"false: {format_value(value)}"


@register_tool("countdown", context=("numbers", "target"))
def countdown(text: str, limits: ToolLimits, context: Mapping[str, Any]) -> ToolResult:
    """``true`` / ``false: 32`` / ``false: use 3 5 7 once each`` for one attempt at the row's
    problem; an error naming the syntax otherwise."""
    try:
        return ToolResult(check(text, list(context["numbers"]), int(context["target"])), "ok")
    except ZeroDivisionError:
        return error("division by zero")
    except ValueError:
        return error(USAGE)
