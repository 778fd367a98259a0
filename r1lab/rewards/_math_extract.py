"""Find a completion's final answer: the last ``\\boxed{...}`` (or ``<answer>`` block) after ``</think>``.

Every search runs from the end of the text with C-level ``str.rfind``/``str.find``; the only
Python-level loop is the brace scan of the box itself, and it stops after ``MAX_ANSWER_CHARS``,
so a 100 KB completion or 10,000 unclosed braces cost microseconds.
"""
from __future__ import annotations

MAX_ANSWER_CHARS = 1000  # a longer "answer" is not an answer a person would grade; it scores 0

_BOX_COMMANDS = ("\\boxed", "\\fbox")
_THINK_OPEN, _THINK_CLOSE = "<think>", "</think>"
_ANSWER_OPEN, _ANSWER_CLOSE = "<answer>", "</answer>"
# Where a ``\boxed 5`` argument (no braces) ends.
_BARE_STOP = frozenset(" \t\n$\\")


def after_think(text: str) -> str | None:
    """The part of ``text`` that may hold the answer, or ``None`` if the reasoning never closed.

    Only text after the last ``</think>`` counts. A ``<think>`` without any ``</think>`` means the
    completion was cut off mid-reasoning, so nothing in it is an answer.
    """
    end = text.rfind(_THINK_CLOSE)
    if end >= 0:
        return text[end + len(_THINK_CLOSE):]
    if _THINK_OPEN in text:
        return None
    return text


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
    """Content of the last ``<answer>...</answer>`` block (its last box, if it holds one)."""
    start = text.rfind(_ANSWER_OPEN)
    if start < 0:
        return None
    start += len(_ANSWER_OPEN)
    end = text.find(_ANSWER_CLOSE, start)
    if end < 0 or end - start > MAX_ANSWER_CHARS + 200:
        return None
    content = text[start:end]
    if "\\boxed" in content or "\\fbox" in content:
        return last_boxed(content)
    content = content.strip()
    return content or None


def extract_answer(completion: str, answer_tag: bool = False) -> str | None:
    """The answer string a grader would read in ``completion``, or ``None`` (scores 0)."""
    text = after_think(completion)
    if text is None:
        return None
    answer = last_answer_tag(text) if answer_tag else last_boxed(text)
    if answer is None or len(answer) > MAX_ANSWER_CHARS:
        return None
    return answer
