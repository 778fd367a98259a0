"""What the tasks' perturbations share (robustness evaluation, ``Task.perturbations``).

A perturbation ``fn(rows, seed) -> rows`` returns the same problems changed on the surface only --
numbers shown in another order, a sentence that does not bear on the answer, other words -- with
a right gold answer in every row (each task's tests run its verifier on the perturbed golds). It
is applied to a split's plain rows and keeps their order and ids, so problem ``i`` of a perturbed
set is problem ``i`` of the plain one. Each row draws from its own generator, seeded by
``(seed, row index)``: the same seed gives the same rows whatever else ran before.
"""
from __future__ import annotations

import random
import re
from typing import Sequence

from datasets import Dataset

# Sentences that state nothing a problem needs; some hold numbers, as GSM-NoOp's distractors do
# (Mirzadeh et al., 2024: irrelevant clauses with numbers cost models the most accuracy).
DISTRACTORS = (
    "The weather was sunny that day.",
    "A nearby park has 14 benches and a small pond.",
    "The town library closes at 6 pm on Sundays.",
    "A neighbour's cat is 3 years old.",
    "The puzzle was first printed in a newspaper 25 years ago.",
    "Most people find this kind of question easy.",
    "There are 7 days in a week.",
    "The room where the question was written has 2 windows.",
)

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=\S)")


def row_rng(seed: int, index: int) -> random.Random:
    """The generator of row ``index`` under ``seed`` (independent of every other draw)."""
    return random.Random(seed * 1_000_003 + index)


def distractor(seed: int, index: int) -> str:
    """Row ``index``'s distractor sentence (one of :data:`DISTRACTORS`)."""
    return row_rng(seed, index).choice(DISTRACTORS)


def before_last_sentence(text: str, sentence: str) -> str:
    """``text`` with ``sentence`` inserted before its last sentence (where the question usually is);
    before all of it when it is one sentence.

    >>> before_last_sentence("Ann has 3 pens. How many pens has she?", "It rains.")
    'Ann has 3 pens. It rains. How many pens has she?'
    """
    cuts = [m.end() for m in _SENTENCE_END.finditer(text.rstrip())]
    if not cuts:
        return f"{sentence} {text}"
    return f"{text[:cuts[-1]]}{sentence} {text[cuts[-1]:]}"


def with_column(rows: Dataset, name: str, values: Sequence) -> Dataset:
    """``rows`` with column ``name`` set to ``values`` (added when absent), other columns kept."""
    if len(values) != len(rows):
        raise ValueError(f"{len(values)} values for column {name!r} of {len(rows)} rows")
    if name in rows.column_names:
        return Dataset.from_dict({**rows.to_dict(), name: list(values)}, features=rows.features)
    return rows.add_column(name, list(values))
