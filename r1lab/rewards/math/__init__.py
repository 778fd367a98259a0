"""Math verifier: 1.0 when a completion's final answer equals the gold answer, else 0.0.

Public API (the evaluation's answer keys use the same steps as the reward):

* ``extract_answer(completion, answer_tag=False, lenient=False)``: the answer string a grader
  reads, or ``None``; ``last_boxed``, ``last_number``: its markers;
* ``normalize(answer)``: the normal form of an answer string (equal strings: equal answers);
* ``answers_equal(pred, gold)``, ``grade_answers(preds, golds)``: compare extracted answers;
* ``math_reward(completions, answers, ...)``; the registered rewards ``math``,
  ``math_answer_tag`` and ``math_lenient``; ``clear_caches()``.

The package's ``_``-modules are its private parts: ``_extract``, ``_normalize``, ``_parse``,
``_compare``, ``_fallback``, ``_symbolic`` (below).

Grading policy (what a careful human grader does; ``tests/rewards/test_math.py`` holds the graded
cases that pin it down):

* **Where the answer is.** Only text after the last ``</think>`` counts; a ``<think>`` that never
  closes ends at the first ``<answer>``, and without one the completion was cut off: 0. This is
  the policy of every task (``r1lab.rewards.spans``, which also picks the ``<answer>`` block).
  The answer is the content of the *last*
  ``\\boxed{...}`` (balanced braces; ``\\boxed 5`` and ``\\fbox{}`` too), or with
  ``answer_tag=True`` of the last ``<answer>...</answer>`` block (its last box if it holds one).
  No box, an empty box or an unclosed last box scores 0: we never fall back to "any number in
  the text" — except under the separate ``math_lenient`` reward (``task.lenient_answer=true``),
  which reads the last number after the reasoning when there is no box. Gold answers may be
  GSM8K-style plain numbers (``1,234``) or MATH-style LaTeX.
* **Numbers are values.** Integers with thousands separators (``1,234``, ``1{,}234``, ``1\\,234``),
  decimals, fractions (``\\frac``, ``\\dfrac``, ``\\tfrac``, ``a/b``, ``\\frac12``), mixed numbers
  (``2\\frac12`` is 5/2), scientific notation (``1.5e3``, ``1.5\\times10^3``), ``100.``, signs and
  unsimplified arithmetic (``2+3`` for 5) compare as exact rationals: ``0.5`` equals ``\\frac12``,
  ``0.33`` does not equal ``\\frac13`` (decimals are exact, not rounded).
* **What a grader ignores:** ``\\left``/``\\right``, spacing commands, math delimiters, ``\\$``,
  degrees (``90^\\circ``), units (``5\\text{ cm}``, ``10 dollars``), ``x =`` in front of a value
  (``x = 5`` is ``5``; also ``x \\in [1, 2]``), ``\\text{}`` around words, and the percent sign:
  ``50\\%`` equals ``50``, but ``0.5`` does not equal ``50\\%``.
* **Expressions** (``\\sqrt``, ``\\pi``, variables) are equal when they are the same value or the
  same function: ``2\\sqrt2`` and ``\\sqrt8``, ``(x+1)^2`` and ``x^2+2x+1``.
* **Several answers.** Comma lists (``1, 2``; ``1 or 2``), sets ``\\{...\\}``, unions of
  intervals and ``a \\pm b`` are unordered; tuples, intervals, vectors and matrices are ordered and
  their bracket types matter (``(1, 2]`` is not ``[1, 2]``; a bare list is not a tuple).
* **Text** answers compare ignoring case and surrounding ``\\text{}`` (``\\text{Monday}`` =
  ``monday``, ``(B)`` = ``b``).
* **Scores 0 because it cannot be decided quickly:** power towers (``9^{9^{9^9}}``), literals over
  400 digits, answers over 1,000 characters, ``\\def`` and other macro definitions, nesting over 40
  levels, sums/integrals/limits that would need evaluating, and anything the symbolic check does
  not finish within ``timeout_s``.

How: the box is found from the end of the text with ``str.rfind``; answers are normalised as
strings (``_normalize``) and parsed by a small whitelisted parser (``_parse``), with
the gold side cached; equal normal forms score 1 at once, and numbers, fractions, percentages,
tuples, sets and polynomial-like expressions are decided by exact rational arithmetic
(``_compare``). Only what is left (irrational values that agree numerically, or LaTeX the
parser does not read) goes to sympy/math-verify in worker processes with a hard per-item timeout
(``_fallback``); equal pairs within and across calls are checked once.
"""
from __future__ import annotations

from functools import lru_cache
from typing import Sequence

import numpy as np
import torch

from r1lab.rewards.math._compare import compare, fast_expr_equal, undecided
from r1lab.rewards.math._extract import MAX_ANSWER_CHARS, extract_answer, last_boxed, last_number
from r1lab.rewards.math._fallback import get_pool, safe_for_symbolic
from r1lab.rewards.math._normalize import normalize
from r1lab.rewards.math._parse import parse_answer
from r1lab.rewards.registry import register_reward

__all__ = [
    "ITEM_TIMEOUT_S",
    "MAX_ANSWER_CHARS",
    "answers_equal",
    "clear_caches",
    "extract_answer",
    "grade_answers",
    "last_boxed",
    "last_number",
    "math_reward",
    "normalize",
]

ITEM_TIMEOUT_S = 2.0  # per symbolic check; a check that runs longer scores 0
BATCH_TIMEOUT_S = 30.0  # all symbolic checks of one call together (plus worker start-up)
_SYMBOLIC_CACHE_MAX = 100_000

_symbolic_cache: dict[tuple[str, str], bool] = {}


@lru_cache(maxsize=1 << 16)
def _normal(answer: str) -> str | None:
    return normalize(answer)


@lru_cache(maxsize=1 << 16)
def _gold_normal(gold: str) -> str | None:
    # A gold answer may be a whole MATH solution; its box is the answer.
    if "\\boxed" in gold or "\\fbox" in gold:
        boxed = last_boxed(gold)
        gold = boxed if boxed is not None else gold
    return normalize(gold.strip())


@lru_cache(maxsize=1 << 16)
def _parsed(norm: str) -> tuple:
    return parse_answer(norm)


@lru_cache(maxsize=1 << 16)
def _fast_verdict(pred_norm: str, gold_norm: str) -> bool | None:
    return compare(_parsed(pred_norm), _parsed(gold_norm), fast_expr_equal, undecided)


def clear_caches() -> None:
    """Forget every cached parse and verdict (benchmarks time cold caches)."""
    for fn in (_normal, _gold_normal, _parsed, _fast_verdict):
        fn.cache_clear()
    _symbolic_cache.clear()


def grade_answers(
    preds: Sequence[str | None], golds: Sequence[str], timeout_s: float = ITEM_TIMEOUT_S
) -> np.ndarray:
    """Scores (float32, 0/1) of extracted answers ``preds`` (``None``: no answer) against ``golds``."""
    if len(preds) != len(golds):
        raise ValueError(f"{len(preds)} answers but {len(golds)} gold answers")
    scores = np.zeros(len(preds), dtype=np.float32)
    pending: dict[tuple[str, str], list[int]] = {}
    raw_of: dict[tuple[str, str], tuple[str, str]] = {}
    for i, (pred, gold) in enumerate(zip(preds, golds)):
        if pred is None:
            continue
        gold = gold if isinstance(gold, str) else str(gold)
        pred_norm, gold_norm = _normal(pred), _gold_normal(gold)
        if pred_norm is None or gold_norm is None or not pred_norm:
            continue
        if pred_norm == gold_norm:
            scores[i] = 1.0
            continue
        verdict = _fast_verdict(pred_norm, gold_norm)
        if verdict is None:
            key = (pred_norm, gold_norm)
            cached = _symbolic_cache.get(key)
            if cached is not None:
                verdict = cached
            elif safe_for_symbolic(pred_norm) and safe_for_symbolic(gold_norm):
                pending.setdefault(key, []).append(i)
                raw_of[key] = (pred_norm, gold_norm)
        if verdict:
            scores[i] = 1.0
    if pending:
        keys = list(pending)
        tasks = [("equal", raw_of[k]) for k in keys]
        results = get_pool().run(tasks, item_timeout=timeout_s, batch_timeout=BATCH_TIMEOUT_S)
        if len(_symbolic_cache) > _SYMBOLIC_CACHE_MAX:
            _symbolic_cache.clear()
        for key, result in zip(keys, results):
            if result is None:
                continue  # timed out or failed: 0, and not cached (it may succeed next time)
            _symbolic_cache[key] = bool(result)
            if result:
                scores[pending[key]] = 1.0
    return scores


def math_reward(
    completions: list[str],
    answers: list[str],
    answer_tag: bool = False,
    *,
    lenient: bool = False,
    timeout_s: float = ITEM_TIMEOUT_S,
) -> torch.Tensor:
    """1.0 where the completion's final answer equals the gold answer, else 0.0. Shape ``[N]``.

    >>> math_reward(["... so the answer is \\\\boxed{\\\\frac{1}{2}}."], ["0.5"]).tolist()
    [1.0]
    >>> math_reward(["<answer>42</answer>"], ["42"], answer_tag=True).tolist()
    [1.0]
    """
    preds = [extract_answer(c, answer_tag, lenient) for c in completions]
    return torch.from_numpy(grade_answers(preds, answers, timeout_s))  # [N] float32


def answers_equal(pred: str, gold: str, timeout_s: float = ITEM_TIMEOUT_S) -> bool:
    """Whether the answer string ``pred`` (already extracted) equals ``gold`` under this policy."""
    return bool(grade_answers([pred], [gold], timeout_s)[0])


@register_reward("math")
def math(completions: list[str], *, answer: list[str], **_) -> torch.Tensor:
    """``math_reward`` on the dataset column ``answer``, reading the last ``\\boxed{}``."""
    return math_reward(completions, answer)


@register_reward("math_answer_tag")
def math_answer_tag(completions: list[str], *, answer: list[str], **_) -> torch.Tensor:
    """``math_reward`` on the dataset column ``answer``, reading the last ``<answer>`` block."""
    return math_reward(completions, answer, answer_tag=True)


@register_reward("math_lenient")
def math_lenient(completions: list[str], *, answer: list[str], **_) -> torch.Tensor:
    """``math_reward`` on ``answer``, reading the last ``\\boxed{}``, else the last number after the
    reasoning (for models that state the result in a sentence, e.g. SmolLM2-135M on ``arith``)."""
    return math_reward(completions, answer, lenient=True)
