"""Task-specific pieces of the analysis: answer keys for majority voting, a continuous distance
to the right answer, and a difficulty label per problem.

Every task has one :class:`TaskAnalysis` with the same three methods, so the evaluation code
never branches on the task's name.

Countdown:

* **answer key** (maj@k votes on it): the exact value of the answer expression (``"22"``,
  ``"7/2"``), when it parses and uses each given number exactly once. Different expressions with
  the same value vote together (``3*5+7`` and ``7+5*3``); expressions that break the rules vote
  by their whitespace-free text, so repeating the same invalid answer can win the vote (and
  scores 0). No answer abstains.
* **answer distance**: ``min(|value - target|, cap)`` of the answer expression; an answer that
  does not parse, or does not use each given number exactly once, counts as ``cap`` (so writing
  the target itself is not "close"). A continuous signal beside exact match for weak models.
* **difficulty**: how many solution paths the search of a trace has
  (``r1lab.data.traces.all_attempts``: pairwise combination orders over non-negative integers
  that reach the target): ``hard`` with at most one (none: only a fraction or a negative
  intermediate reaches it), ``medium`` with 2 or 3, ``easy`` with 4 or more. Problems with more
  than 4 numbers are labelled by their count of numbers (``5 numbers``): too many orders to
  enumerate cheaply. On the default 3-number test split this gives about 52% hard, 37% medium,
  11% easy.

Math: the answer key is the normalised final answer (``\\boxed{}`` or ``<answer>``, the same
extraction and normalisation as the verifier); no distance; the difficulty is the ``level``
column (``"unknown"`` when absent).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from r1lab.rewards._spans import answer_spans

DISTANCE_CAP = 100.0  # countdown: distances are capped here; unusable answers count as this


class TaskAnalysis:
    def answer_keys(self, responses: Sequence[str], rows: dict[str, list]) -> list[str | None]:
        """One normalised answer per response (``None``: no answer); rows align with responses."""
        raise NotImplementedError

    def distances(self, responses: Sequence[str], rows: dict[str, list]) -> np.ndarray | None:
        """``[N]`` distance of each answer to the right one, or ``None`` when the task has none."""
        return None

    def difficulty(self, rows: dict[str, list]) -> list[str]:
        """One difficulty label per problem."""
        raise NotImplementedError


def _countdown_value(span: str, numbers: Sequence[int]):
    """The exact value of an answer that uses each number once, else ``None``."""
    from r1lab.data.countdown import parse_expression

    text = span.strip()
    if "=" in text:  # the verifier allows a trailing "= target"
        text = text.split("=", 1)[0]
    try:
        value, used = parse_expression(text)
    except ValueError:
        return None
    return value if sorted(used) == sorted(int(n) for n in numbers) else None


class CountdownAnalysis(TaskAnalysis):
    easy_paths = 4
    medium_paths = 2

    def answer_keys(self, responses, rows):
        keys: list[str | None] = []
        for span, numbers in zip(answer_spans(responses), rows["numbers"]):
            if not span.strip():
                keys.append(None)
                continue
            value = _countdown_value(span, numbers)
            keys.append(str(value) if value is not None else "invalid:" + "".join(span.split()))
        return keys

    def distances(self, responses, rows):
        out = np.full(len(responses), DISTANCE_CAP)
        for i, (span, numbers, target) in enumerate(zip(answer_spans(responses), rows["numbers"], rows["target"])):
            value = _countdown_value(span, numbers) if span.strip() else None
            if value is not None:
                out[i] = min(abs(float(value) - float(target)), DISTANCE_CAP)
        return out

    def difficulty(self, rows):
        from r1lab.data.traces import all_attempts

        labels = []
        for numbers, target in zip(rows["numbers"], rows["target"]):
            if len(numbers) > 4:
                labels.append(f"{len(numbers)} numbers")
                continue
            paths = sum(a.value == target for a in all_attempts(tuple(sorted(int(n) for n in numbers)), True))
            labels.append("easy" if paths >= self.easy_paths else "medium" if paths >= self.medium_paths else "hard")
        return labels


class MathAnalysis(TaskAnalysis):
    def __init__(self, answer_tag: bool = False):
        self.answer_tag = answer_tag

    def answer_keys(self, responses, rows):
        from r1lab.rewards._math_extract import extract_answer
        from r1lab.rewards._math_normalize import normalize

        keys: list[str | None] = []
        for r in responses:
            raw = extract_answer(r, answer_tag=self.answer_tag)
            keys.append(None if raw is None or not raw.strip() else (normalize(raw) or raw.strip()))
        return keys

    def difficulty(self, rows):
        levels = rows.get("level") or [None] * len(next(iter(rows.values()), []))
        return ["unknown" if lv in (None, "") else str(lv) for lv in levels]


def task_analysis(task) -> TaskAnalysis:
    """The analysis of a :class:`r1lab.data.task.Task` (by its correctness reward)."""
    analyses = {
        "countdown": CountdownAnalysis(),
        "math": MathAnalysis(answer_tag=False),
        "math_answer_tag": MathAnalysis(answer_tag=True),
    }
    if task.correctness_reward not in analyses:
        raise KeyError(f"no eval analysis for reward {task.correctness_reward!r}; known: {', '.join(analyses)}")
    return analyses[task.correctness_reward]
