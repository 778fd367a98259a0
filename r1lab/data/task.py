"""Tasks: what a run trains and evaluates on, each the one home of its domain.

A :class:`Task` carries everything the rest of r1lab needs to know about its domain, so stages,
rollouts and evaluation never branch on a task's name: its splits and file loader, how a row
becomes a question, the reward that decides correctness (with it, the answer extraction policy)
and the dataset columns it reads, the evaluation's analysis of answers (:class:`TaskAnalysis`:
maj@k answer keys, answer distance, difficulty), the column holding a gold answer text and the
text that opens an answer. Where an answer is in a response is one policy for every task
(``r1lab.rewards.spans``).

The pieces live in one module per task: ``r1lab.data.countdown`` (generator, splits, question
text, ``CountdownAnalysis``), ``r1lab.data.math_data`` (GSM8K/MATH files; the math analysis is
:class:`MathAnalysis` here) and ``r1lab.data.arith``. Adding a task = one module + one builder
registered in :data:`TASKS`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np
from datasets import Dataset

from r1lab.config.schema import TaskConfig
from r1lab.rewards.math import extract_answer, normalize

DISTANCE_CAP = 100.0  # answer distances are capped here; an unusable answer counts as the cap


class TaskAnalysis:
    """The task-specific part of the evaluation's analysis (one per task; eval calls these three).

    ``responses`` are full responses as the rewards see them (``full_response``: the template's
    ``<think>`` included), read with the one answer-span policy (``r1lab.rewards.spans``);
    ``rows`` hold the dataset columns aligned with them.
    """

    distance_cap = DISTANCE_CAP

    def answer_keys(self, responses: Sequence[str], rows: dict[str, list]) -> list[str | None]:
        """One normalised answer per response, the key maj@k votes on (``None``: abstains)."""
        raise NotImplementedError(f"{type(self).__name__} has no answer keys: give the Task an analysis")

    def distances(self, responses: Sequence[str], rows: dict[str, list]) -> np.ndarray | None:
        """``[N]`` distance of each answer to the right one (at most ``distance_cap``), or
        ``None`` when the task has none."""
        return None

    def difficulty(self, rows: dict[str, list]) -> list[str]:
        """One difficulty label per problem."""
        raise NotImplementedError(f"{type(self).__name__} has no difficulty labels: give the Task an analysis")


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
class Task:
    name: str
    splits: dict[str, Dataset]  # train, test (held out), and task-specific extras such as test_hard
    correctness_reward: str  # registered reward that says whether an answer is right
    reward_columns: tuple[str, ...]  # dataset columns the rewards read
    question: Callable[[dict[str, Any]], str]  # row -> question text
    load_file: Callable[..., Dataset] | None = None  # (path, field=, split=, subset=, columns=) -> rows of this task's layout
    answer_opener: str = "<answer>"  # the text that opens a final answer (the perplexity bridge appends it)
    analysis: TaskAnalysis = field(default_factory=TaskAnalysis)  # answer keys, distances, difficulty (eval)
    gold_column: str = "answer"  # the column holding a gold answer text (the perplexity bridge scores it)

    def split(self, name: str) -> Dataset:
        if name not in self.splits:
            raise KeyError(f"task {self.name!r} has no split {name!r}; splits: {', '.join(self.splits)}")
        return self.splits[name]

    def columns(self, rows: dict[str, list]) -> dict[str, list]:
        """The reward columns of a batch of rows (a ``Dataset`` slice)."""
        return {c: rows[c] for c in self.reward_columns}


def source_options(cfg: TaskConfig, which: str) -> dict[str, Any]:
    """Load options of ``task.<which>_file`` (which: train | test) for ``r1lab.data.files.load_source``."""
    return {
        "field": f"task.{which}_file",
        "split": getattr(cfg, f"{which}_split"),
        "subset": cfg.subset,
        "columns": cfg.columns,
        "option_fields": {"split": f"task.{which}_split", "subset": "task.subset", "columns": "task.columns"},
    }


def files_over(splits: dict[str, Dataset], cfg: TaskConfig, load_file: Callable[..., Dataset]) -> dict[str, Dataset]:
    """``splits`` with ``task.train_file`` / ``task.test_file``, where set, read in their place."""
    for which in ("train", "test"):
        path = getattr(cfg, f"{which}_file")
        if path:
            splits[which] = load_file(path, **source_options(cfg, which))
    return splits


def _countdown(cfg: TaskConfig) -> Task:
    from r1lab.data.countdown import CountdownAnalysis, make_splits, question_text
    from r1lab.data.files import load_countdown_file

    c = cfg.countdown
    splits = make_splits(
        num_train=c.num_train,
        num_test=c.num_test,
        num_test_hard=c.num_test_hard,
        num_numbers=c.num_numbers,
        hard_num_numbers=c.hard_num_numbers,
        number_range=(c.number_min, c.number_max),
        target_range=(c.target_min, c.target_max),
        seed=c.seed,
    )
    splits = files_over(splits, cfg, load_countdown_file)
    style = cfg.question_style
    return Task(
        name="countdown",
        splits=splits,
        correctness_reward="countdown",
        reward_columns=("numbers", "target"),
        question=lambda row: question_text(row["numbers"], row["target"], style=style),
        load_file=load_countdown_file,
        analysis=CountdownAnalysis(),
        gold_column="solution",
    )


def _math(cfg: TaskConfig) -> Task:
    if not cfg.train_file or not cfg.test_file:
        raise ValueError(
            "task.name=math needs task.train_file and task.test_file (GSM8K or MATH layout jsonl/parquet, "
            "a dataset folder or a hub id such as openai/gsm8k with task.subset=main)"
        )
    suffix = " Put the final answer in \\boxed{}." if not cfg.answer_tag else ""
    return _math_layout_task("math", {}, cfg, lambda row: row["question"] + suffix)


def _arith(cfg: TaskConfig) -> Task:
    from r1lab.data.arith import make_splits

    a = cfg.arith
    splits = make_splits(a.num_train, a.num_test, a.operand_max, a.second_max, a.seed)
    return _math_layout_task("arith", splits, cfg, lambda row: row["question"])


def _math_layout_task(name: str, splits: dict[str, Dataset], cfg: TaskConfig, question: Callable[[dict[str, Any]], str]) -> Task:
    """A task of math-layout rows (``id, question, answer, level``), graded by the math verifier:
    ``splits`` with the task's files read over them, the answer read one way by the reward and
    the analysis (the last ``\\boxed{}``; ``<answer>`` with ``task.answer_tag``; the last number
    as a fallback with ``task.lenient_answer``)."""
    from r1lab.data.math_data import load_math_file

    if cfg.answer_tag and cfg.lenient_answer:
        raise ValueError("task.answer_tag and task.lenient_answer are exclusive: choose one way to read answers")
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


# The one registration of each task: name -> builder (task.name in the config).
TASKS: dict[str, Callable[[TaskConfig], Task]] = {"countdown": _countdown, "math": _math, "arith": _arith}


def build_task(cfg: TaskConfig) -> Task:
    if cfg.name not in TASKS:
        raise ValueError(f"task.name={cfg.name!r}; valid: {', '.join(TASKS)}")
    return TASKS[cfg.name](cfg)
