"""Where a response's answer is: the one answer-span policy of every task and verifier.

A *response* is the model's whole output as the rewards see it, including the ``<think>`` that a
template's prompt opened (``r1lab.models.templates.full_response``): with ``r1_zero`` the model
writes ``reasoning</think><answer>...</answer>`` and the verifiers read
``<think>reasoning</think><answer>...</answer>``. The Countdown and math verifiers, and the
evaluation's answer keys and distances, all read it by these rules:

1. **The reasoning is never graded** (``after_think``). With a ``</think>``, only the text after
   the **last** ``</think>`` counts. A ``<think>`` that never closes ends where the response's
   first ``<answer>`` opens: the model ended its reasoning by answering (small models misspell
   the closing tag: ``</thiok>``, ``</think`` and a newline, measured on the demo's model), so the
   text from that ``<answer>`` on counts. A ``<think>`` that never closes and reaches no
   ``<answer>`` means the response was cut off mid-reasoning, as DeepSeek-R1 reads it: **no
   answer**, whatever it holds (``<think>so \\boxed{5}`` scores 0). A response with neither
   think tag is all answer text (templates without ``<think>``: ``chat``, ``none``).
2. **The answer tag** (``answer_tag_span``): in that text, the answer is the content of the
   **last complete** ``<answer>...</answer>``: the last ``</answer>`` and the last ``<answer>``
   before it. No closing tag, or no opening tag before it, means no answer. A trailing unclosed
   ``<answer>`` after a complete pair does not hide the pair (``<answer>A</answer><answer>B``
   answers ``A``). Countdown and ``math_answer_tag`` read the answer here.
3. A task that marks its answer otherwise looks for its marker in the text of rule 1 only: math's
   last ``\\boxed{}``, ``math_lenient``'s last number (``r1lab.rewards.math``).

Only C-level ``str.rfind``/``str.find`` searches are used, so a long reasoning trace is not
scanned past its tail (except a response without ``</think>``, which is scanned at memchr speed
once or twice). Each response is touched once.

Example::

    >>> last_answer_span("<think>try <answer>1</answer></think> so <answer> 2+3 </answer>")
    ' 2+3 '
    >>> last_answer_span("<think>2+3=5</thiok> <answer>2+3</answer>")  # rule 1: the <answer> ends it
    '2+3'
    >>> after_think("<think>cut off, so \\boxed{5}") is None  # rule 1: no answer
    True
    >>> answer_spans(["<answer>7</answer>", "no tags", "<answer>open"])
    ['7', '', '']
"""
from __future__ import annotations

from typing import Optional, Sequence

THINK_OPEN = "<think>"
THINK_CLOSE = "</think>"
ANSWER_OPEN = "<answer>"
ANSWER_CLOSE = "</answer>"


def after_think(response: str) -> Optional[str]:
    """The text that may hold the answer (rule 1), or ``None`` when a ``<think>`` never closed and
    no ``<answer>`` ended it (the response was cut off mid-reasoning)."""
    end = response.rfind(THINK_CLOSE)
    if end >= 0:
        return response[end + len(THINK_CLOSE):]
    if THINK_OPEN not in response:
        return response
    start = response.find(ANSWER_OPEN)
    return None if start < 0 else response[start:]


def answer_tag_span(text: str) -> Optional[str]:
    """The raw content of the last complete ``<answer>...</answer>`` of ``text`` (rule 2), or ``None``.

    ``text`` is already past the reasoning (``after_think``)."""
    end = text.rfind(ANSWER_CLOSE)
    if end < 0:
        return None
    open_ = text.rfind(ANSWER_OPEN, 0, end)
    if open_ < 0:
        return None
    return text[open_ + len(ANSWER_OPEN) : end]


def last_answer_span(response: str) -> Optional[str]:
    """The raw (unstripped) content of the graded ``<answer>`` of one response, or ``None``."""
    text = after_think(response)
    return None if text is None else answer_tag_span(text)


def answer_spans(responses: Sequence[str]) -> list[str]:
    """``last_answer_span`` for a batch, with ``""`` where there is no answer.

    This is the hot loop of the Countdown verifier: it is written out (no function call per
    item, no slice of the reasoning) and is the only per-response Python work it does.
    """
    out: list[str] = []
    append = out.append
    for c in responses:
        # rfind(...) + 1 is 0 when absent and one past the '<' when present; neither answer tag
        # can start inside "</think>", so searching from there is searching after the tag.
        start = c.rfind("</think>") + 1
        if start == 0 and "<think>" in c:
            start = c.find("<answer>")  # an unclosed reasoning ends at the first <answer>
            if start < 0:
                append("")  # cut off mid-reasoning: no answer
                continue
        end = c.rfind("</answer>", start)
        if end < 0:
            append("")
            continue
        open_ = c.rfind("<answer>", start, end)
        append(c[open_ + 8 : end] if open_ >= 0 else "")
    return out


# --- tool calls (multi-turn rollouts, r1lab.rollout.tool_calls) ----------------------------------
# The model writes TOOL_OPEN input TOOL_CLOSE; the framework appends RESULT_OPEN output RESULT_CLOSE
# (tokens the policy did not sample). Every reader of a completion (loss masks, claims, traces)
# takes the tags from here.
TOOL_OPEN, TOOL_CLOSE = "<tool>", "</tool>"
RESULT_OPEN, RESULT_CLOSE = "<result>", "</result>"


def result_spans(text: str) -> list[tuple[int, int]]:
    """``[start, end)`` character spans of every complete ``<result>...</result>``, tags included.

    A ``<result>`` that never closes is not a span (the framework always appends the whole
    ``<result>OUTPUT</result>``, so an unclosed one was written by the model).

    >>> result_spans("<tool>2*3</tool><result>6</result> no")
    [(16, 34)]
    """
    spans, start = [], text.find(RESULT_OPEN)
    while start >= 0:
        end = text.find(RESULT_CLOSE, start + len(RESULT_OPEN))
        if end < 0:
            break
        spans.append((start, end + len(RESULT_CLOSE)))
        start = text.find(RESULT_OPEN, end + len(RESULT_CLOSE))
    return spans
