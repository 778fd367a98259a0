"""``process_validity``: a process reward from the reasoning's arithmetic claims.

Outcome rewards (``countdown``, ``math``) see only the answer; a model can reach it through false
steps (``check 5*4+3=19 ok``). This reward scores the steps: the claims ``EXPR = VALUE`` of the
reasoning (the text before the last ``</think>``), each judged exactly by
:mod:`r1lab.rewards.claims`, the parser behind eval.json's ``process`` figures. Per completion:

* **no claim: 0.0.** Writing no arithmetic is not rewarded (else the cheapest policy would be
  to reason in words, or not at all; the direct-answer template scores 0 here by design).
* **anchored** (``require_answer``, default on): the graded answer (``r1lab.rewards.spans``: the
  last complete ``<answer>`` after the reasoning) must have an exact value (a number, ``a/b``, or
  an expression in the Countdown syntax: ``5*3+7`` is 22) equal to the VALUE of at least one
  *true* claim: the reasoning must arrive at the answer it gives. Without an anchor, the score
  is 0.0. This is the guard against the obvious hack, a reasoning of true but irrelevant claims
  (``1+1=2 2+2=4``) before any answer at all.
* otherwise: **the share of true claims**, ``true / claims`` in [0, 1] (``all_true``: 1.0 when
  every claim is true, else 0.0).

Why a share, and what still games it: the share is bounded, so stating more true claims cannot
raise the score past 1 (no cap on the count is needed); but true claims do *dilute* false ones
(one false claim among nine true ones scores 0.9). ``all_true: true`` removes that, at the cost
of a sparser signal. Neither closes the hack left to a process-only arm: a trivially true
reasoning anchored to a wrong answer (``1+1=2</think><answer>1+1</answer>`` scores 1.0 on any
problem), which is why the reward is meant beside the outcome reward (``countdown: 1.0,
process_validity: 0.5``); recipes/ablation_process_reward.yaml measures both.

Cost: the claim parser is per-completion Python (regexes, exact fractions), bounded by
``claims.MAX_EXPR_CHARS`` per ``=``; the scores are combined as tensors.

>>> process_validity(["5*3=15 15+7=22 yes</think><answer>5*3+7</answer>",
...                   "7*5=35 35-3=31 no\\n5*3=15 15+7=22 yes</think><answer>5*3+7</answer>",
...                   "1+1=2</think><answer>9</answer>", "no arithmetic</think><answer>5*3+7</answer>"]).tolist()
[1.0, 0.75, 0.0, 0.0]
"""
from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from typing import Sequence

import torch

from r1lab.rewards.claims import find_claims
from r1lab.rewards.countdown import parse_expression
from r1lab.rewards.registry import RewardFn, register_reward
from r1lab.rewards.spans import last_answer_span


@dataclass
class ProcessParams:
    """The ``process_validity`` reward's parameters (``reward_params.process_validity``)."""

    require_answer: bool = True  # the answer's value must be the VALUE of a true claim, else 0.0 (the anti-hack anchor)
    all_true: bool = False  # 1.0 only when every claim is true (no dilution of a false claim by true ones), else the share

    def __post_init__(self) -> None:
        for name in ("require_answer", "all_true"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be true or false, got {getattr(self, name)!r}")


def answer_value(response: str) -> Fraction | None:
    """The exact value of the graded answer of ``response``: a number (``42``, ``-3``, ``2.5``,
    ``24/5``) or an expression in the Countdown syntax; None without an answer or a value.

    >>> answer_value("<think>x</think><answer> 5*3+7 </answer>"), answer_value("<answer>2.5</answer>"), answer_value("<answer>x</answer>")
    (Fraction(22, 1), Fraction(5, 2), None)
    """
    span = last_answer_span(response)
    if span is None or not span.strip():
        return None
    text = span.strip()
    try:
        return Fraction(text.replace(" ", ""))  # decimals and negatives, which the Countdown syntax lacks
    except (ValueError, ZeroDivisionError):
        pass
    try:
        return parse_expression(text)[0]
    except ValueError:  # no expression, division by zero, or a false trailing "= N"
        return None


def claim_scores(completions: Sequence[str], require_answer: bool = True) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(claims, true_claims, anchored)``, each ``[N]``: the claim counts of each completion's
    reasoning, and whether its answer's value is the VALUE of one of its true claims (all True
    when not ``require_answer``)."""
    n = len(completions)
    claims = torch.zeros(n, dtype=torch.float32)  # [N]
    true = torch.zeros(n, dtype=torch.float32)  # [N]
    anchored = torch.ones(n, dtype=torch.bool)  # [N]
    for i, text in enumerate(completions):
        found = find_claims(text)
        claims[i] = len(found)
        true[i] = sum(c.true for c in found)
        if require_answer and found:
            value = answer_value(text)
            # the claim's VALUE text parses (claims checked it); `true` means EXPR has that value
            anchored[i] = value is not None and any(c.true and _claim_value(c.value) == value for c in found)
    return claims, true, anchored


def _claim_value(text: str) -> Fraction:
    return Fraction(text.strip("() \t").replace(" ", "").replace("\t", "").replace("−", "-"))


def process_scores(completions: Sequence[str], params: ProcessParams) -> torch.Tensor:
    """``[N]`` float32: the ``process_validity`` score of each completion (module docstring)."""
    claims, true, anchored = claim_scores(completions, params.require_answer)
    share = true / claims.clamp(min=1.0)  # [N]; 0 where there is no claim
    if params.all_true:
        share = ((claims > 0) & (true == claims)).to(torch.float32)
    return torch.where(anchored & (claims > 0), share, torch.zeros_like(share))


@register_reward("process_validity", params=ProcessParams)
def make_process_validity(params: ProcessParams) -> RewardFn:
    """The reward with ``params``; it reads no dataset column (claims are judged on their own)."""

    def reward(completions: Sequence[str], **_) -> torch.Tensor:  # [N]
        return process_scores(completions, params)

    return reward


def process_validity(completions: Sequence[str], **_) -> torch.Tensor:
    """``[N]``: the reward with its default parameters (anchored share of true claims)."""
    return process_scores(completions, ProcessParams())
