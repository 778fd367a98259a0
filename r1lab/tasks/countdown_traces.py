"""Cold-start reasoning traces for Countdown that show a real search.

DeepSeek-R1 starts RL from a model fine-tuned on a few thousand long chain-of-thought examples
("cold start"). For Countdown we write those traces by program: each one tries combinations in a
plausible order, shows dead ends with their computed values, backtracks, finds a solution and
verifies it, with every step's arithmetic correct. The traces are kept short and regular because
the smallest demo model is a ~1M-parameter character-level model that has to learn them.

A trace is the assistant response *after* the opening ``<think>`` (the prompt template ends with
it). For numbers 3 5 7 and target 22 it may read::

    7*5=35 35-3=32 no
    7*3=21 21-5=16 no
    5*3=15 15+7=22 yes
    check 5*3+7=22 ok
    </think>
    <answer>5*3+7</answer>

One attempt per line: ``a op b=c`` steps, each combining two numbers of the pool (the inputs
and earlier results) until one value is left, then ``no`` or ``yes``. The last line before
``</think>`` re-evaluates the final expression. Steps keep to non-negative integers (bigger
number first; division only when exact) when the problem allows; problems that need a fraction
or a negative value (rare, e.g. 1 5 5 5 → 24) fall back to exact rationals, written ``(24/5)``.

Ablation flags: ``behaviours=False`` keeps only the successful attempt line (no dead ends, no
check line); ``wrong_answer=True`` ends on a wrong attempt that is nevertheless marked ``yes``
and ``ok`` (the arithmetic of every step stays correct, only the judgement is wrong), as in the
"priming with incorrect solutions" experiment of Gandhi et al. (2025), "Cognitive Behaviors that
Enable Self-Improving Reasoners".

Tool variant (``tools=True``): each attempt line is one ``calculator`` call that checks the
attempt's whole expression (:attr:`Attempt.expr`) against the target, then the verdict, which
copies the tool's::

    <tool>7*5-3=22</tool><result>false: 32</result> no
    <tool>7*3-5=22</tool><result>false: 16</result> no
    <tool>5*3+7=22</tool><result>true</result> yes
    </think>
    <answer>5*3+7</answer>

Why the call names the target: in a first version the call was the bare expression
(``<tool>7*5-3</tool><result>32</result> no``) and the model had to compare the result with the
target itself; the cold-started demo model did not (its ``yes``/``no`` ignored the result: 342 of
its 364 ``yes`` followed a miss, docs/benchmarks.md), so the calculator's exact values could not
make the search pay. There is no ``check`` line: the tool result is the check.
``<result>...</result>`` holds exactly what the calculator returns (``r1lab.tools.calculator``,
called here); the SFT stage masks that span from the loss, as the rollout framework appends it
and the policy never samples it. The attempts, their order, the number of dead ends and the use
of ``rng`` are those of the plain trace of the same seed; only the writing differs. (Duplicates
are dropped by the written line in both variants, so in the rare case where two different step
sequences build the same expression, e.g. ``a*b-c*d``, the tool trace skips the repeat and takes
the next-ranked attempt instead of calling the tool twice on the same input.)
``behaviours=False`` keeps only the successful call line; ``wrong_answer=True`` marks the last
failing attempt ``yes`` against its tool's ``false``.

Direct-answer variant (``answer_only=True``, the ``direct`` template of
``r1lab.models.templates``, whose prompt already ends with a closed reasoning and ``<answer>``):
the trace is the answer alone, ``5*3+7</answer>``, the same final expression as the reasoning
trace of the same seed (:func:`answer_only_trace`), so the two arms of the reasoning-vs-direct
ablation train on the same answers and differ only in the reasoning before them.

With ``tool="countdown"`` the call is the bare expression and the ``countdown`` tool, which is
given the problem, checks it as the reward will (``r1lab.tools.countdown``)::

    <tool>7*5-3</tool><result>false: 32</result> no
    <tool>5*3+7</tool><result>true</result> yes
"""
from __future__ import annotations

import math
import random
from dataclasses import dataclass
from fractions import Fraction
from functools import lru_cache
from typing import Sequence

from datasets import Dataset

from r1lab.rewards.spans import RESULT_CLOSE, RESULT_OPEN, TOOL_CLOSE, TOOL_OPEN
from r1lab.tasks.countdown import Number, apply_op, is_solution, join_expr
from r1lab.tools.calculator import answer
from r1lab.tools.countdown import check as countdown_check

TRACE_TOOLS = ("calculator", "countdown")  # the tools a tool trace can be written for

# The whole phrase vocabulary of a trace.
NO, YES, CHECK, OK = "no", "yes", "check", "ok"


def calculator_text(call: str) -> str:
    """What the ``calculator`` tool returns for ``call`` (``r1lab.tools.calculator.answer``).

    >>> calculator_text("5*3+7"), calculator_text("(5+7)*2/5"), calculator_text("5*3+7=22"), calculator_text("7*5-3=22")
    ('22', '24/5', 'true', 'false: 32')
    """
    return answer(call)


def format_value(v: Number) -> str:
    """Integers as digits; anything else parenthesised so a step stays one token-like chunk.

    >>> format_value(22), format_value(Fraction(24, 5)), format_value(-2)
    ('22', '(24/5)', '(-2)')
    """
    if isinstance(v, int) and v >= 0:
        return str(v)
    return f"({v})"


@dataclass(frozen=True)
class Attempt:
    """One full combination order: the steps taken and the expression they build."""

    steps: tuple[tuple[Number, str, Number, Number], ...]  # (a, op, b, a op b)
    value: Number  # value of the last step
    expr: str  # the same computation as one expression, minimal parentheses

    def line(self, verdict: str) -> str:
        body = " ".join(f"{format_value(a)}{op}{format_value(b)}={format_value(c)}" for a, op, b, c in self.steps)
        return f"{body} {verdict}"

    def tool_line(self, verdict: str, target: int, tool: str = "calculator", numbers: Sequence[int] = ()) -> str:
        """The attempt as one call that checks its whole expression against the target, then the
        verdict: ``calculator`` is asked ``EXPR=TARGET`` (``true`` / ``false: 32``), ``countdown``
        (which knows the problem) just ``EXPR``."""
        if tool == "countdown":
            call, result = self.expr, countdown_check(self.expr, list(numbers), target)
        else:
            call = f"{self.expr}={target}"
            result = calculator_text(call)
        return f"{TOOL_OPEN}{call}{TOOL_CLOSE}{RESULT_OPEN}{result}{RESULT_CLOSE} {verdict}"


def _moves(a: Number, b: Number, integers_only: bool) -> list[tuple[int, str]]:
    """Operations on the pair, as (which operand goes first: 0 = a, 1 = b, op)."""
    if integers_only:  # bigger first, so subtraction stays non-negative; only exact division
        first, (x, y) = (0, (a, b)) if a >= b else (1, (b, a))
        moves = [(first, "+"), (first, "*"), (first, "-")]
        if y != 0 and x % y == 0:
            moves.append((first, "/"))
        return moves
    return [(0, "+"), (0, "*"), (0, "-"), (1, "-"), (0, "/"), (1, "/")]


@lru_cache(maxsize=4096)
def all_attempts(nums: tuple[int, ...], integers_only: bool = True) -> tuple[Attempt, ...]:
    """Every way to combine the sorted multiset ``nums`` pairwise down to one value.

    With ``integers_only`` every intermediate value is a non-negative integer.
    """
    out: list[Attempt] = []

    def rec(pool: tuple[tuple[Number, str, str], ...], steps: tuple) -> None:
        if len(pool) == 1:
            out.append(Attempt(steps, pool[0][0], pool[0][1]))
            return
        for i in range(len(pool)):
            for j in range(i + 1, len(pool)):
                rest = pool[:i] + pool[i + 1 : j] + pool[j + 1 :]
                for first, op in _moves(pool[i][0], pool[j][0], integers_only):
                    (a, ta, oa), (b, tb, ob) = (pool[i], pool[j]) if first == 0 else (pool[j], pool[i])
                    v = apply_op(a, op, b)
                    if v is None or (integers_only and not isinstance(v, int)):
                        continue
                    rec(rest + ((v, join_expr(ta, oa, op, tb, ob), op),), steps + ((a, op, b, v),))

    rec(tuple((n, str(n), "") for n in nums), ())
    return tuple(out)


def _plausibility(attempt: Attempt, target: int, largest: int, rng: random.Random) -> float:
    """Lower = tried earlier. Favour a first step that lands near the target and uses the
    largest number, with noise so the order varies from trace to trace."""
    a, _, b, first = attempt.steps[0]
    score = math.log1p(abs(float(first) - target)) - (0.7 if largest in (a, b) else 0.0)
    return score + rng.gauss(0.0, 1.0)


def make_trace(
    numbers: Sequence[int],
    target: int,
    rng: random.Random,
    max_attempts: int = 4,
    behaviours: bool = True,
    wrong_answer: bool = False,
    tools: bool = False,
    tool: str = "calculator",
) -> str:
    """The assistant response after ``<think>``: ``"...attempts...</think>\\n<answer>EXPR</answer>"``.

    The number of dead ends before the final attempt is uniform in ``[0, max_attempts)`` (fewer
    when the problem has fewer wrong attempts). ``EXPR`` uses every number once and equals
    ``target`` unless ``wrong_answer``. With ``tools`` every attempt is a calculator call and
    there is no check line (module docstring); ``tool``: the tool called, one of
    ``TRACE_TOOLS``. Raises ``ValueError`` when the problem has no solution.
    """
    if tools and tool not in TRACE_TOOLS:
        raise ValueError(f"tool traces are written for {', '.join(TRACE_TOOLS)}, not {tool!r}")
    if max_attempts < 1:
        raise ValueError(f"max_attempts must be >= 1, got {max_attempts}")
    if not 2 <= len(numbers) <= 5:  # the attempt list grows ~60x per extra number
        raise ValueError(f"traces support 2 to 5 numbers, got {len(numbers)}")
    nums = tuple(sorted(int(n) for n in numbers))
    attempts = all_attempts(nums, True)
    if not any(a.value == target for a in attempts):
        attempts = all_attempts(nums, False)  # needs a fraction or a negative on the way
    wins = [a for a in attempts if a.value == target]
    if not wins:
        raise ValueError(f"no expression over {list(numbers)} makes {target}")
    fails = [a for a in attempts if a.value != target]

    largest = max(nums)
    ranked_wins = sorted(wins, key=lambda a: _plausibility(a, target, largest, rng))
    ranked_fails = sorted(fails, key=lambda a: _plausibility(a, target, largest, rng))
    n_dead = rng.randrange(max_attempts) if behaviours else 0

    render = (lambda a, verdict: a.tool_line(verdict, target, tool, nums)) if tools else Attempt.line
    lines: list[str] = []
    for a in ranked_fails:
        if len(lines) >= n_dead + (1 if wrong_answer else 0):
            break
        line = render(a, NO)
        if line not in lines:  # equal numbers (or, with tools, equal expressions) make some attempts read the same
            lines.append(line)
    if wrong_answer and lines:
        final = next(a for a in ranked_fails if render(a, NO) == lines[-1])
        lines[-1] = render(final, YES)
    else:
        final = ranked_wins[0]
        lines.append(render(final, YES))
    if behaviours and not tools:  # with tools the calculator's result is the check
        lines.append(f"{CHECK} {final.expr}={format_value(final.value)} {OK}")
    return "\n".join(lines) + f"\n</think>\n<answer>{final.expr}</answer>"


def answer_only_trace(trace: str) -> str:
    """The direct-answer form of a :func:`make_trace` trace: its final answer and the closing tag,
    what the model writes after the ``direct`` prompt's ``<answer>``.

    >>> answer_only_trace("7*5=35 35-3=32 no\\n5*3=15 15+7=22 yes\\n</think>\\n<answer>5*3+7</answer>")
    '5*3+7</answer>'
    """
    return trace.rsplit("<answer>", 1)[1]


def make_sft_dataset(
    problems: Dataset,
    seed: int,
    max_attempts: int = 4,
    behaviours: bool = True,
    wrong_answer_rate: float = 0.0,
    tools: bool = False,
    tool: str = "calculator",
    answer_only: bool = False,
) -> Dataset:
    """``problems`` plus ``response`` (a :func:`make_trace`) and ``response_correct`` (whether
    its answer solves the problem).

    Deterministic in ``seed``: row ``i`` draws from its own stream, so a trace does not change
    when other rows are added or removed. Exactly ``round(wrong_answer_rate * len(problems))``
    rows, chosen at random, get a wrong final answer. ``tools``: tool-call traces (``tool``:
    calculator or countdown), the same attempts as without (the same random streams).
    ``answer_only``: each response is :func:`answer_only_trace` of the same trace (the ``direct``
    template's cold start: the same answers, no reasoning).
    """
    if not 0.0 <= wrong_answer_rate <= 1.0:
        raise ValueError(f"wrong_answer_rate must be in [0, 1], got {wrong_answer_rate}")
    n = len(problems)
    wrong = set(random.Random(f"r1lab/traces/wrong/{seed}").sample(range(n), round(wrong_answer_rate * n)))
    responses = []
    for i, (numbers, target) in enumerate(zip(problems["numbers"], problems["target"])):
        rng = random.Random(f"r1lab/traces/{seed}/{i}")
        try:
            trace = make_trace(numbers, target, rng, max_attempts, behaviours=behaviours, wrong_answer=i in wrong, tools=tools, tool=tool)
        except ValueError as e:
            raise ValueError(f"cannot write a trace for problem row {i}: {e}") from None
        responses.append(trace)
    correct = [
        is_solution(answer_only_trace(r).removesuffix("</answer>"), numbers, target)
        for r, numbers, target in zip(responses, problems["numbers"], problems["target"])
    ]
    if answer_only:
        responses = [answer_only_trace(r) for r in responses]
    out = problems.remove_columns([c for c in ("response", "response_correct") if c in problems.column_names])
    return out.add_column("response", responses).add_column("response_correct", correct)


__all__ = ["TRACE_TOOLS", "Attempt", "all_attempts", "answer_only_trace", "calculator_text", "format_value", "make_sft_dataset", "make_trace"]
