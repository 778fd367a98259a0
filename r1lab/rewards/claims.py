"""Process validity: the arithmetic claims ``EXPR = VALUE`` a completion's reasoning makes, each
judged exactly.

A model can reach a right answer through false steps (``check 5*4+3=19 ok``: 5*4+3 is 23), and
outcome rewards never see them. This module finds every arithmetic claim in the reasoning
(the text before the last ``</think>``: :func:`r1lab.rewards.behaviours.reasoning_text`) and
says whether it is true, so the evaluation can report process validity beside accuracy and the
rejection-sampling filter can refuse reasoning that states falsehoods.

What a claim is:

* Text the model did not write, or did not mean as a statement, is masked first: every
  ``<tool>...</tool>`` span (a claim inside a tool call is a request, not a statement) and every
  ``<result>...</result>`` span (the tool's words). An unclosed ``<tool>`` or ``<result>`` masks
  to the end of the text. Masking keeps positions: the masked characters are replaced, not
  removed, so a claim's ``start``/``end`` index the reasoning text itself (and so the completion,
  of which the reasoning is a prefix).
* Each ``=`` (not part of ``==``, ``<=``, ``>=``, ``!=``, ``=>``) may end an ``EXPR``: the run of
  arithmetic characters just before it, on the same line (digits, decimals, ``+ - * / ( )``,
  ``× ÷ −``, spaces and tabs), at most ``MAX_EXPR_CHARS`` long. EXPR is the longest token suffix
  of that run that parses (the Countdown reference syntax, decimals allowed) and holds at least
  one operator, so ``35 35-3=32`` claims ``35-3=32``. A suffix is not taken where it would be an
  operand of something longer: right after an operator (``-2+5=3`` is not the claim ``2+5=3``;
  the reference syntax has no unary minus, so it is no claim at all) or glued to the token before
  it, ``(`` aside (``.5*2``, ``2(3+4)``); a run glued to a letter or comma before it loses its
  first token (``x2+3``, ``1,000+5``), and so does a run cut at ``MAX_EXPR_CHARS``.
* ``VALUE`` is the number right after the ``=`` (spaces allowed): an integer, a decimal, ``a/b``,
  ``-2``, or one of those in parentheses (``(24/5)``, ``(-2)``). When the number goes on into an
  expression (``2*3 = 3+3 = 6``: ``3`` is followed by ``+``) the ``=`` states no value and is no
  claim; the next ``=`` may be (``3+3 = 6``). An ``=`` followed by no number is no claim.
* A claim is *true* when EXPR's exact value (``fractions.Fraction``, the Countdown reference
  evaluator of :mod:`r1lab.rewards.countdown`, nothing executed) equals VALUE. An EXPR that
  divides by zero is a false claim.

These are surface patterns, like :mod:`r1lab.rewards.behaviours`: they judge what the text
states where it looks like arithmetic. Tested on labelled examples in
``tests/rewards/test_claims.py``. It registers nothing: the ``process_validity`` reward
(:mod:`r1lab.rewards.process`), the evaluation (``process`` in eval.json), the behaviour counts
(``false_verification``) and the rejection-sampling filter ``true_claims`` use it.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from fractions import Fraction
from typing import Sequence

import numpy as np

from r1lab.rewards.behaviours import reasoning_text
from r1lab.rewards.spans import RESULT_CLOSE, RESULT_OPEN, TOOL_CLOSE, TOOL_OPEN
from r1lab.rewards.countdown import _compile, _run

MAX_EXPR_CHARS = 120  # longest run of arithmetic characters looked at before an '='

_MASKED = re.compile(
    "|".join(f"{re.escape(a)}.*?(?:{re.escape(b)}|\\Z)" for a, b in ((TOOL_OPEN, TOOL_CLOSE), (RESULT_OPEN, RESULT_CLOSE))),
    re.DOTALL,
)
_FILLER = "\x00"  # replaces masked characters: not arithmetic, not a newline
_EQUALS = re.compile(r"(?<![<>!=])=(?![=>])")
_ARITH = frozenset("0123456789.+-*/()×÷− \t")
_OPS = frozenset("+-*/×÷−")
_TOKEN = re.compile(r"\d+(?:\.\d+)?|[^ \t]")
_NUMBER = r"[-−]?\d+(?:\.\d+|/\d+)?"
_VALUE = re.compile(rf"[ \t]*(\([ \t]*{_NUMBER}[ \t]*\)|{_NUMBER})")
_AFTER_VALUE = re.compile(r"[ \t]*[+\-*/×÷−^][ \t]*[\d(]")  # the number goes on into an expression
_SIGNS = str.maketrans({"−": "-", "×": "*", "÷": "/"})


@dataclass(frozen=True)
class Claim:
    """One ``EXPR = VALUE`` of a reasoning text.

    ``expr`` and ``value`` are the text as written (``"5 * 4 + 3"``, ``"(24/5)"``); ``true``
    whether EXPR's exact value is VALUE; ``start``/``end`` the span from EXPR's first character to
    VALUE's last (exclusive) in the reasoning text."""

    expr: str
    value: str
    true: bool
    start: int
    end: int


def mask_tool_text(text: str) -> str:
    """``text`` with every ``<tool>...</tool>`` and ``<result>...</result>`` span (tags included;
    an unclosed one to the end) replaced by as many NUL characters: same length, same positions.

    >>> mask_tool_text("a<tool>1</tool>b") == "a" + "\\x00" * len("<tool>1</tool>") + "b"
    True
    """
    if TOOL_OPEN not in text and RESULT_OPEN not in text:
        return text
    return _MASKED.sub(lambda m: _FILLER * len(m.group()), text)


def _literal_text(tok: str) -> str:
    """A literal in the reference syntax: decimals as exact fractions, no leading zeros."""
    if "." in tok:
        whole, frac = tok.split(".")
        return f"( {int(whole + frac)} / {10 ** len(frac)} )"
    return str(int(tok))


def _expression_value(tokens: list[str]) -> tuple[bool, Fraction | None]:
    """(parses, value) of a token list; value None when it divides by zero."""
    text = " ".join(_literal_text(t) if t[0].isdigit() else t.translate(_SIGNS) for t in tokens)
    try:
        rpn, _, rhs = _compile(text)
    except ValueError:
        return False, None
    if rhs is not None:  # cannot happen ('=' is never in a run), kept for safety
        return False, None
    try:
        return True, _run(rpn)
    except ValueError:  # division by zero
        return True, None


def _number_value(text: str) -> Fraction:
    return Fraction(text.strip("() \t").replace(" ", "").replace("\t", "").translate(_SIGNS))


def _claim_at(text: str, eq: int) -> Claim | None:
    """The claim whose ``=`` is at ``text[eq]``, or None."""
    value = _VALUE.match(text, eq + 1)
    if value is None or _AFTER_VALUE.match(text, value.end()):
        return None
    lo = eq
    while lo > 0 and eq - lo < MAX_EXPR_CHARS and text[lo - 1] in _ARITH:
        lo -= 1
    run = text[lo:eq]
    tokens = list(_TOKEN.finditer(run))
    if not tokens:
        return None
    first = 0
    glued = lo > 0 and tokens[0].start() == 0 and (text[lo - 1].isalnum() or text[lo - 1] in ",_")
    if glued or (lo > 0 and text[lo - 1] in _ARITH):  # glued to a word or number, or cut at the cap
        first = 1
    words = [t.group() for t in tokens]
    for i in range(first, len(words)):
        # not an operand of something longer: after an operator, or glued to a token ("(" aside)
        if i > 0 and (words[i - 1] in _OPS or (tokens[i - 1].end() == tokens[i].start() and words[i - 1] != "(")):
            continue
        if not any(w in _OPS for w in words[i:]):
            return None
        parses, got = _expression_value(words[i:])
        if not parses:
            continue
        try:
            want = _number_value(value.group(1))
        except (ValueError, ZeroDivisionError):  # "=3/0": no value stated
            return None
        return Claim(
            expr=run[tokens[i].start() : tokens[-1].end()],
            value=value.group(1),
            true=got is not None and got == want,
            start=lo + tokens[i].start(),
            end=value.end(),
        )
    return None


def claims_in_reasoning(reasoning: str) -> list[Claim]:
    """:func:`find_claims` of a text that is already reasoning (no ``</think>`` cut)."""
    if "=" not in reasoning:
        return []
    masked = mask_tool_text(reasoning)
    out = []
    for m in _EQUALS.finditer(masked):
        claim = _claim_at(masked, m.start())  # masked text never enters a claim: positions and text are the reasoning's
        if claim is not None:
            out.append(claim)
    return out


def find_claims(text: str) -> list[Claim]:
    """Every arithmetic claim in the reasoning of one completion, in order (module docstring).

    >>> [(c.expr, c.value, c.true) for c in find_claims("7*5=35 35-3=32 no\\ncheck 5*4+3=19 ok\\n</think>1+1=3")]
    [('7*5', '35', True), ('35-3', '32', True), ('5*4+3', '19', False)]
    """
    return claims_in_reasoning(reasoning_text(text))


def claim_counts(texts: Sequence[str]) -> dict[str, np.ndarray]:
    """``claims`` and ``true_claims``: ``[N]`` int64 counts over ``texts`` (completions)."""
    claims = np.zeros(len(texts), dtype=np.int64)
    true = np.zeros(len(texts), dtype=np.int64)
    for i, text in enumerate(texts):
        found = find_claims(text)
        claims[i] = len(found)
        true[i] = sum(c.true for c in found)
    return {"claims": claims, "true_claims": true}


def has_false_claim(text: str) -> bool:
    """Does the reasoning of ``text`` (a completion) state at least one false claim?"""
    return any(not c.true for c in find_claims(text))


def process_figures(counts: dict[str, np.ndarray], correct: np.ndarray) -> dict[str, float]:
    """:func:`process_summary` from :func:`claim_counts`' arrays (any shape, same as ``correct``)."""
    claims = np.asarray(counts["claims"]).reshape(-1)
    true = np.asarray(counts["true_claims"]).reshape(-1)
    ok = np.asarray(correct).reshape(-1) > 0
    if claims.shape != ok.shape:
        raise ValueError(f"{claims.size} claim counts but {ok.size} correctness values")
    n, total = claims.size, int(claims.sum())
    false = claims > true  # [N] at least one false claim
    return {
        "num_claims": float(total),
        "claims_per_completion": float(total / n) if n else 0.0,
        "true_claim_share": float(true.sum() / total) if total else 1.0,
        "correct_with_false_claim": float(false[ok].mean()) if ok.any() else 0.0,
        "false_claim_completions": float(false.mean()) if n else 0.0,
    }


def process_summary(texts: Sequence[str], correct: np.ndarray) -> dict[str, float]:
    """Process validity of N completions (``texts``) with their ``[N]`` 0/1 ``correct``.

    * ``num_claims``: claims over all texts; ``claims_per_completion``: their mean per text;
    * ``true_claim_share``: true claims / all claims, **1.0 when there is no claim** (no claim is
      false; read it with ``num_claims``, which is then 0);
    * ``correct_with_false_claim``: share of the correct completions whose reasoning holds at least
      one false claim (right for the wrong reasons), 0.0 when none is correct;
    * ``false_claim_completions``: share of all completions with at least one false claim (0.0
      without completions).

    Every value is a finite float (eval.json is strict JSON).

    >>> process_summary(["5*4+3=23 ok</think>", "check 5*4+3=19 ok</think>", "no claims"], [1, 1, 0])
    {'num_claims': 2.0, 'claims_per_completion': 0.6666666666666666, 'true_claim_share': 0.5, \
'correct_with_false_claim': 0.5, 'false_claim_completions': 0.3333333333333333}
    """
    return process_figures(claim_counts(texts), np.asarray(correct))
