"""Format rewards: does a completion follow DeepSeek-R1's ``<think>…</think><answer>…</answer>``?

The GRPO stage scores the full response *including* the ``<think>`` that the prompt template
opened (it prepends it), so a well-formed completion reads ``<think>X</think><answer>Y</answer>``.

* ``format`` (strict): the whole completion, leading/trailing whitespace allowed, is exactly
  ``<think>X</think>`` + optional whitespace + ``<answer>Y</answer>``, where X and Y contain
  something other than whitespace and no think/answer tag (so each tag appears exactly once).
* ``format_lenient``: somewhere there is a ``<think>``, a later ``</think>``, then a later
  ``<answer>`` whose content up to the next ``</answer>`` is not blank. Text around is allowed.

Both are C-level string searches per completion (no regex backtracking on long outputs).

>>> format_reward(["<think>plan</think>\\n<answer>42</answer>", "<answer>42</answer>"]).tolist()
[1.0, 0.0]
>>> format_reward(["ok <think>plan</think> so <answer>42</answer> done"], strict=False).tolist()
[1.0]
"""
from __future__ import annotations

from typing import Sequence

import torch

from r1lab.rewards.registry import register_reward

_TAGS = ("<think>", "</think>", "<answer>", "</answer>")


def _strict_ok(text: str) -> bool:
    s = text.strip()
    if not (s.startswith("<think>") and s.endswith("</answer>")):
        return False
    if any(s.count(tag) != 1 for tag in _TAGS):
        return False
    think_end = s.find("</think>")
    answer_start = s.find("<answer>")
    if answer_start < think_end or s[think_end + 8 : answer_start].strip():
        return False
    return bool(s[7:think_end].strip()) and bool(s[answer_start + 8 : -9].strip())


def _lenient_ok(text: str) -> bool:
    think = text.find("<think>")
    if think < 0:
        return False
    think_end = text.find("</think>", think + 7)
    if think_end < 0:
        return False
    answer = text.find("<answer>", think_end + 8)
    if answer < 0:
        return False
    answer_end = text.find("</answer>", answer + 8)
    return answer_end >= 0 and bool(text[answer + 8 : answer_end].strip())


def format_reward(completions: Sequence[str], strict: bool = True) -> torch.Tensor:
    """``[N]`` float32: 1.0 where the completion has R1's think-then-answer format, else 0.0."""
    check = _strict_ok if strict else _lenient_ok
    return torch.tensor([check(c) for c in completions], dtype=torch.float32)


@register_reward("format")
def format_strict(completions: Sequence[str], **_) -> torch.Tensor:
    """Registry entry for the strict format reward; ignores dataset columns."""
    return format_reward(completions, strict=True)


@register_reward("format_lenient")
def format_lenient(completions: Sequence[str], **_) -> torch.Tensor:
    """Registry entry for the lenient format reward; ignores dataset columns."""
    return format_reward(completions, strict=False)
