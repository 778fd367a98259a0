"""A task: its splits, how a row becomes a question, and which reward decides correctness."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from datasets import Dataset

from r1lab.config.schema import TaskConfig


@dataclass
class Task:
    name: str
    splits: dict[str, Dataset]  # train, test (held out), and task-specific extras such as test_hard
    correctness_reward: str  # registered reward that says whether an answer is right
    reward_columns: tuple[str, ...]  # dataset columns the rewards read
    question: Callable[[dict[str, Any]], str]  # row -> question text

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


def _countdown(cfg: TaskConfig) -> Task:
    from r1lab.data.countdown import make_splits, question_text
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
    if cfg.train_file:
        splits["train"] = load_countdown_file(cfg.train_file, **source_options(cfg, "train"))
    if cfg.test_file:
        splits["test"] = load_countdown_file(cfg.test_file, **source_options(cfg, "test"))
    style = cfg.question_style
    return Task(
        name="countdown",
        splits=splits,
        correctness_reward="countdown",
        reward_columns=("numbers", "target"),
        question=lambda row: question_text(row["numbers"], row["target"], style=style),
    )


def _math(cfg: TaskConfig) -> Task:
    from r1lab.data.math_data import load_math_file

    if not cfg.train_file or not cfg.test_file:
        raise ValueError(
            "task.name=math needs task.train_file and task.test_file (GSM8K or MATH layout jsonl/parquet, "
            "a dataset folder or a hub id such as openai/gsm8k with task.subset=main)"
        )
    splits = {
        "train": load_math_file(cfg.train_file, **source_options(cfg, "train")),
        "test": load_math_file(cfg.test_file, **source_options(cfg, "test")),
    }
    suffix = " Put the final answer in \\boxed{}." if not cfg.answer_tag else ""
    return Task(
        name="math",
        splits=splits,
        correctness_reward="math_answer_tag" if cfg.answer_tag else "math",
        reward_columns=("answer",),
        question=lambda row: row["question"] + suffix,
    )


TASKS: dict[str, Callable[[TaskConfig], Task]] = {"countdown": _countdown, "math": _math}


def build_task(cfg: TaskConfig) -> Task:
    if cfg.name not in TASKS:
        raise ValueError(f"task.name={cfg.name!r}; valid: {', '.join(TASKS)}")
    return TASKS[cfg.name](cfg)
