"""The math task: word-problem files (GSM8K, MATH) normalised to one row layout, graded by the
math verifier (``r1lab.rewards.math``), the analysis of its answers, and its settings
(:class:`MathTaskConfig`; ``task=math``).
``r1lab.tasks.arith`` generates rows of the same layout and reuses the rest of this module.

Normalised row::

    {"id": "gsm8k_sample-0", "question": "...", "answer": "72", "level": None}

Layouts are recognised by their columns:

* **GSM8K** (``question``, ``answer``): the answer text ends in ``#### <n>``; the answer is
  ``<n>`` with thousands separators removed (``1,250`` → ``1250``).
* **MATH** (``problem``, ``solution``, optional ``level``/``type``): the answer is the content
  of the last ``\\boxed{...}`` (or ``\\fbox{...}``) in the solution, braces balanced, so
  ``\\boxed{\\frac{1}{2}}`` gives ``\\frac{1}{2}``.
* **Normalised** (``question``, ``answer`` with no ``####`` in any answer): taken as is.

An ``id`` column is kept (as text) when present; otherwise ids are ``<file stem>-<row>``
(``<dataset name>_<split>-<row>`` for a dataset folder or hub id, e.g. ``gsm8k_train-0``).

A dataset folder or hub id is read by :func:`r1lab.data.files.load_source`; its ``columns``
mapping renames the dataset's columns to one of the layouts above first, so ``openai/gsm8k``
(``question``/``answer``) and MATH datasets (``problem``/``solution``) need none, and e.g.
``{"question": "prompt", "answer": "final"}`` reads a dataset whose answers are bare.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Optional

from datasets import Dataset, Features, Value

from r1lab.config.schema import TaskConfig
from r1lab.data.files import is_file_source, load_source
from r1lab.rewards.math import extract_answer, normalize
from r1lab.tasks.base import Perturbation, Task, TaskAnalysis, files_over, register_task
from r1lab.tasks.perturb import before_last_sentence, distractor, row_rng, with_column

FEATURES = Features(
    {"id": Value("string"), "question": Value("string"), "answer": Value("string"), "level": Value("string")}
)

LAYOUTS = {
    "gsm8k": ("question", "answer"),
    "math": ("problem", "solution"),
}

_GSM8K_ANSWER = re.compile(r"####\s*(.+?)\s*$", re.DOTALL)
_THOUSANDS = re.compile(r"(?<=\d),(?=\d{3}(?!\d))")


def gsm8k_answer(text: str) -> str | None:
    """The final answer of a GSM8K solution, or ``None`` when it has no ``####`` line.

    >>> gsm8k_answer("She pays 2 * 625 = 1,250 dollars.\\n#### 1,250")
    '1250'
    """
    m = _GSM8K_ANSWER.search(text)
    if m is None:
        return None
    return _THOUSANDS.sub("", m.group(1).strip())


def last_boxed(text: str) -> str | None:
    """Content of the last ``\\boxed{...}`` or ``\\fbox{...}`` with balanced braces, else ``None``.

    >>> last_boxed(r"so $x = \\boxed{\\frac{1}{2}}$ and not \\boxed{3")
    '\\\\frac{1}{2}'
    """
    best = None
    for m in re.finditer(r"\\(?:boxed|fbox)\s*\{", text):
        depth, start = 1, m.end()
        for j in range(start, len(text)):
            if text[j] == "{":
                depth += 1
            elif text[j] == "}":
                depth -= 1
                if depth == 0:
                    best = text[start:j].strip()
                    break
    return best


def detect_layout(columns: list[str]) -> str | None:
    """``"gsm8k"`` or ``"math"`` when ``columns`` hold that layout's columns, else ``None``."""
    for name, needed in LAYOUTS.items():
        if all(c in columns for c in needed):
            return name
    return None


def load_math_file(
    path: str | os.PathLike,
    field: str = "task.train_file",
    *,
    split: str = "train",
    subset: Optional[str] = None,
    columns: Optional[Mapping[str, str]] = None,
    option_fields: Optional[Mapping[str, str]] = None,
) -> Dataset:
    """Load a GSM8K-, MATH- or already-normalised file, dataset folder or hub id as rows
    ``id, question, answer, level``; ``split``/``subset``/``columns`` are ``load_source``'s."""
    path = os.fspath(path)
    ds = load_source(path, field, split=split, subset=subset, columns=columns, option_fields=option_fields)
    source = f"{field} '{path}'"
    is_file = is_file_source(path)
    layout = detect_layout(ds.column_names)
    if layout is None:
        columns_field = (option_fields or {}).get("columns", "the columns mapping")
        raise ValueError(
            f"{source} has columns {', '.join(ds.column_names)}, which match no math layout; expected "
            "'question' and 'answer' (GSM8K: answer ends in '#### n'), or 'problem' and 'solution' "
            "(MATH: answer in \\boxed{...})"
            + ("" if is_file else f"; map the dataset's columns to one of them with {columns_field}")
        )
    if is_file:
        stem = os.path.splitext(os.path.basename(path))[0]
    else:  # a dataset: train and test rows must not share ids
        stem = f"{os.path.basename(os.path.normpath(path))}_{split}"
    q_col, a_col = LAYOUTS[layout]
    ids = ds["id"] if "id" in ds.column_names else [None] * len(ds)
    levels = ds["level"] if "level" in ds.column_names else [None] * len(ds)
    texts = ds[a_col]
    if layout == "gsm8k":
        marked = [isinstance(t, str) and "####" in t for t in texts]
        normalised = not any(marked)
    cols: dict[str, list] = {name: [] for name in FEATURES}
    for i, (question, text) in enumerate(zip(ds[q_col], texts)):
        if not isinstance(question, str) or not isinstance(text, str):
            raise ValueError(f"row {i} of {source}: '{q_col}' and '{a_col}' must be text")
        if layout == "math":
            answer = last_boxed(text)
            if answer is None:
                raise ValueError(f"row {i} of {source}: 'solution' has no \\boxed{{...}} answer")
        elif normalised:
            answer = text.strip()
        else:
            answer = gsm8k_answer(text)
            if answer is None:
                raise ValueError(
                    f"row {i} of {source}: 'answer' does not end in '#### <answer>' like the other rows (GSM8K layout)"
                )
        cols["id"].append(str(ids[i]) if ids[i] is not None else f"{stem}-{i}")
        cols["question"].append(question)
        cols["answer"].append(answer)
        cols["level"].append(None if levels[i] is None else str(levels[i]))
    return Dataset.from_dict(cols, features=FEATURES)


class MathAnalysis(TaskAnalysis):
    """Math (and arith): the answer key is the normalised final answer, read exactly as the
    task's math reward reads it (``\\boxed{}``, ``<answer>`` with ``answer_tag``, the last number
    with ``lenient``); no distance; the difficulty is the ``level`` column ("unknown" when absent).
    """

    def __init__(self, answer_tag: bool = False, lenient: bool = False):
        self.answer_tag, self.lenient = answer_tag, lenient

    def answer_keys(self, responses, rows):
        keys: list[str | None] = []
        for r in responses:
            raw = extract_answer(r, answer_tag=self.answer_tag, lenient=self.lenient)
            keys.append(None if raw is None or not raw.strip() else (normalize(raw) or raw.strip()))
        return keys

    def difficulty(self, rows):
        levels = rows.get("level") or [None] * len(next(iter(rows.values()), []))
        return ["unknown" if lv in (None, "") else str(lv) for lv in levels]


@dataclass
class MathLayoutConfig(TaskConfig):
    """The settings of a task of math-layout rows (math, arith): how an answer is read."""

    answer_tag: bool = False  # read the answer from <answer> instead of \boxed{}
    lenient_answer: bool = False  # with no \boxed{}, the last number after the reasoning is the answer (lm-eval's flexible extract)

    def check(self) -> None:
        if self.answer_tag and self.lenient_answer:
            raise ValueError("task.answer_tag and task.lenient_answer are exclusive: choose one way to read answers")


@dataclass
class MathTaskConfig(MathLayoutConfig):
    """``task=math``: GSM8K or MATH rows from ``task.train_file`` and ``task.test_file``."""

    name: str = "math"

    def check(self) -> None:
        super().check()
        if not self.train_file or not self.test_file:
            raise ValueError(
                "task=math needs task.train_file and task.test_file (GSM8K or MATH layout jsonl/parquet, "
                "a dataset folder or a hub id such as openai/gsm8k with task.subset=main)"
            )


def math_layout_task(name: str, splits: dict[str, Dataset], cfg: MathLayoutConfig, question: Callable[[dict[str, Any]], str]) -> Task:
    """A task of math-layout rows (``id, question, answer, level``), graded by the math verifier:
    ``splits`` with the task's files read over them, the answer read one way by the reward and
    the analysis (the last ``\\boxed{}``; ``<answer>`` with ``task.answer_tag``; the last number
    as a fallback with ``task.lenient_answer``)."""
    reward = "math_answer_tag" if cfg.answer_tag else "math_lenient" if cfg.lenient_answer else "math"
    return Task(
        name=name,
        splits=files_over(splits, cfg, load_math_file),
        correctness_reward=reward,
        reward_columns=("answer",),
        question=question,
        load_file=load_math_file,
        answer_opener="<answer>" if cfg.answer_tag else "\\boxed{",
        analysis=MathAnalysis(answer_tag=cfg.answer_tag, lenient=cfg.lenient_answer),
    )


# ----------------------------------------------------------------------------------------------
# Perturbations (robustness evaluation): word problems whose answers cannot be recomputed, so
# only changes that leave the answer as it is (no number of a word problem is changed)
# ----------------------------------------------------------------------------------------------

# first names of people in GSM8K-style problems, in two groups so that a renamed person keeps the
# pronouns the problem gives them; ``names`` swaps those it finds for others of the same group
NAME_GROUPS = (
    ("James", "John", "Tom", "Mark", "David", "Michael", "Peter", "Paul", "Jack", "Sam", "Albert", "Omar", "Hugo", "Ken"),
    ("Mary", "Sarah", "Lisa", "Anna", "Emma", "Jane", "Maria", "Susan", "Kate", "Carla", "Janet", "Betty", "Julie", "Nina"),
)
NAMES = tuple(n for group in NAME_GROUPS for n in group)
_NAME = re.compile(r"\b(" + "|".join(NAMES) + r")\b")
# word -> synonym that keeps the sentence grammatical and the problem the same (``wording``)
SYNONYMS = {"buys": "purchases", "bought": "purchased", "buy": "purchase", "gets": "receives", "got": "received",
            "starts": "begins", "started": "began", "large": "big", "quickly": "fast"}
_SYNONYM = re.compile(r"\b(" + "|".join(SYNONYMS) + r")\b")
FRAMINGS = ("Here is a problem to solve.", "Read the following problem carefully.", "Solve this problem.")


def renamed(rows: Dataset, seed: int) -> Dataset:
    """Each name of :data:`NAMES` in a question swapped for another of its group that the
    question does not use (one mapping per row, so a name stays one person); answers unchanged."""
    out = []
    for i, q in enumerate(rows["question"]):
        used = set(_NAME.findall(q))
        rng, mapping = row_rng(seed, i), {}
        for group in NAME_GROUPS:
            mine = sorted(n for n in group if n in used)
            spare = [n for n in group if n not in used]
            if mine and len(spare) >= len(mine):
                mapping.update(zip(mine, rng.sample(spare, len(mine))))
        out.append(_NAME.sub(lambda m: mapping.get(m.group(1), m.group(1)), q))
    return with_column(rows, "question", out)


def perturbations() -> dict[str, Perturbation]:
    """The math perturbations, each leaving every gold answer as it is:

    * ``names``: the people renamed (:func:`renamed`);
    * ``distractor``: a sentence that bears on nothing before the question's last sentence;
    * ``wording``: a framing sentence first and a few words swapped for synonyms (:data:`SYNONYMS`)."""

    def with_distractor(rows: Dataset, seed: int) -> Dataset:
        return with_column(rows, "question", [before_last_sentence(q, distractor(seed, i)) for i, q in enumerate(rows["question"])])

    def reworded(rows: Dataset, seed: int) -> Dataset:
        swap = lambda m: SYNONYMS[m.group(1)]  # noqa: E731
        texts = [f"{row_rng(seed, i).choice(FRAMINGS)} {_SYNONYM.sub(swap, q)}" for i, q in enumerate(rows["question"])]
        return with_column(rows, "question", texts)

    return {"names": renamed, "distractor": with_distractor, "wording": reworded}


@register_task("math", MathTaskConfig)
def build(cfg: MathTaskConfig) -> Task:
    """GSM8K or MATH rows from ``task.train_file`` and ``task.test_file`` (both required)."""
    suffix = " Put the final answer in \\boxed{}." if not cfg.answer_tag else ""
    task = math_layout_task("math", {}, cfg, lambda row: row["question"] + suffix)
    task.perturbations = perturbations()
    return task


__all__ = [
    "FEATURES",
    "LAYOUTS",
    "MathAnalysis",
    "MathLayoutConfig",
    "MathTaskConfig",
    "detect_layout",
    "gsm8k_answer",
    "last_boxed",
    "load_math_file",
    "math_layout_task",
]
