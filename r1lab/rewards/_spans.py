"""Answer-span extraction shared by the rule-based rewards.

The rule, used by every verifier that reads an ``<answer>`` tag:

1. If the completion contains ``</think>``, only the text after the **last** ``</think>`` counts
   (whatever the model wrote inside its reasoning is never graded).
2. In that text the answer is the content of the **last complete** ``<answer>...</answer>``:
   the last ``</answer>`` and the last ``<answer>`` before it. No closing tag, or no opening
   tag before it, means no answer. A trailing unclosed ``<answer>`` after a complete pair does
   not hide the complete pair (``<answer>A</answer><answer>B`` answers ``A``).

Only C-level ``str.rfind`` searches from the end are used, so a long reasoning trace is not
scanned past its tail (except a completion without ``</think>``, which ``rfind`` scans once at
memchr speed). Each completion is touched once.

Example::

    >>> last_answer_span("<think>try <answer>1</answer></think> so <answer> 2+3 </answer>")
    ' 2+3 '
    >>> answer_spans(["<answer>7</answer>", "no tags", "<answer>open"])
    ['7', '', '']
"""
from __future__ import annotations

from typing import Optional, Sequence

THINK_CLOSE = "</think>"
ANSWER_OPEN = "<answer>"
ANSWER_CLOSE = "</answer>"


def last_answer_span(completion: str) -> Optional[str]:
    """The raw (unstripped) content of the graded answer of one completion, or ``None``."""
    # rfind(...) + 1 is 0 when absent and one past the '<' when present; neither answer tag can
    # start inside "</think>", so searching from there is the same as searching after the tag.
    start = completion.rfind(THINK_CLOSE) + 1
    end = completion.rfind(ANSWER_CLOSE, start)
    if end < 0:
        return None
    open_ = completion.rfind(ANSWER_OPEN, start, end)
    if open_ < 0:
        return None
    return completion[open_ + len(ANSWER_OPEN) : end]


def answer_spans(completions: Sequence[str]) -> list[str]:
    """``last_answer_span`` for a batch, with ``""`` where there is no answer.

    This is the hot loop of the verifiers: it is written out (no function call per item) and
    is the only per-completion Python work the Countdown verifier does.
    """
    out: list[str] = []
    append = out.append
    for c in completions:
        start = c.rfind("</think>") + 1
        end = c.rfind("</answer>", start)
        if end < 0:
            append("")
            continue
        open_ = c.rfind("<answer>", start, end)
        append(c[open_ + 8 : end] if open_ >= 0 else "")
    return out
