"""Find a completion's final answer: the last ``\\boxed{...}`` (or ``<answer>`` block) after ``</think>``.

Where an answer may be (after the reasoning; none when a ``<think>`` never closed and reached no
``<answer>``) and which ``<answer>`` block counts is the one policy of every task,
``r1lab.rewards.spans``; this module reads math's own markers in that text: the box, and for
``lenient`` the last number.

Every search runs from the end of the text with C-level ``str.rfind``/``str.find``; the only
Python-level loop is the brace scan of the box itself, and it stops after ``MAX_ANSWER_CHARS``,
so a 100 KB completion or 10,000 unclosed braces cost microseconds.
"""
from __future__ import annotations

import re

from r1lab.rewards.spans import after_think, answer_tag_span

MAX_ANSWER_CHARS = 1000  # a longer "answer" is not an answer a person would grade; it scores 0

_BOX_COMMANDS = ("\\boxed", "\\fbox")
# Where a ``\boxed 5`` argument (no braces) ends.
_BARE_STOP = frozenset(" \t\n$\\")


def _braced(text: str, open_pos: int) -> str | None:
    """Content of the balanced group whose ``{`` is at ``open_pos``; ``None`` if unclosed or too long.

    Escaped braces (``\\{``, ``\\}``) are literal characters, as in TeX, so ``\\boxed{\\{1,2\\}}`` works.
    """
    depth = 0
    i = open_pos
    stop = min(len(text), open_pos + MAX_ANSWER_CHARS + 2)
    while i < stop:
        ch = text[i]
        if ch == "\\":
            i += 2
            continue
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
            if depth == 0:
                return text[open_pos + 1:i]
        i += 1
    return None


def _box_argument(text: str, start: int) -> str | None:
    """Argument of a box command whose name ends at ``start``: ``{...}`` or a bare ``\\boxed 5``."""
    i = start
    n = len(text)
    while i < n and text[i] in " \t\n":
        i += 1
    if i >= n:
        return None
    if text[i] == "{":
        return _braced(text, i)
    if i == start:
        return None  # ``\boxedx``: a different command name, not a box
    j = i
    stop = min(n, i + MAX_ANSWER_CHARS)
    while j < stop and text[j] not in _BARE_STOP:
        j += 1
    return text[i:j]


def last_boxed(text: str) -> str | None:
    """Content of the last ``\\boxed{}``/``\\fbox{}`` in ``text``; ``None`` if absent, unclosed or empty."""
    end = len(text)
    while True:
        pos, name = max((text.rfind(cmd, 0, end), cmd) for cmd in _BOX_COMMANDS)
        if pos < 0:
            return None
        after = pos + len(name)
        if after < len(text) and text[after].isalpha():
            end = pos  # e.g. ``\boxedsomething``: keep looking further left
            continue
        content = _box_argument(text, after)
        if content is None or not content.strip():
            return None  # the last box decides: unclosed or empty scores 0
        return content


def last_answer_tag(text: str) -> str | None:
    """Content of the graded ``<answer>...</answer>`` block of ``text`` (its last box, if it holds one).

    ``text`` is already past the reasoning; the block is the one ``r1lab.rewards.spans`` picks."""
    content = answer_tag_span(text)
    if content is None or len(content) > MAX_ANSWER_CHARS + 200:
        return None
    if "\\boxed" in content or "\\fbox" in content:
        return last_boxed(content)
    content = content.strip()
    return content or None


_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?(?:/\d+)?")


def last_number(text: str) -> str | None:
    """The last number literal in ``text`` (``1,234``, ``-7``, ``2.5``, ``3/4``), else ``None``.

    >>> last_number("5 * 6 is 30, so the answer is 30.")
    '30'
    """
    found = _NUMBER.findall(text[-MAX_ANSWER_CHARS:])
    return found[-1].rstrip(",") if found else None


def extract_answer(completion: str, answer_tag: bool = False, lenient: bool = False) -> str | None:
    """The answer string a grader would read in ``completion``, or ``None`` (scores 0).

    ``lenient``: with no box (or answer block), the last number after the reasoning is the answer
    (lm-eval-harness's "flexible extract" for GSM8K), for models that state results in prose.
    """
    text = after_think(completion)
    if text is None:
        return None
    answer = last_answer_tag(text) if answer_tag else last_boxed(text)
    if answer is None and lenient:
        answer = last_number(text)
    if answer is None or len(answer) > MAX_ANSWER_CHARS:
        return None
    return answer
