"""Arithmetic, a task a 135M instruct model can start on: ``What is 17 * 6?``.

Why it exists: SmolLM2-135M-Instruct solves no 3-number Countdown problem and never writes a
``\\boxed{}`` answer, so under strict verifiers every GRPO reward is 0 and there is nothing to
learn from. On one-operation arithmetic with a first operand up to 30 and a second up to 12 it
is right in some samples and not others (measured: 13% of samples right on single-digit sums,
21% on single-digit products, 4% on 2-digit sums; the model often states the result in a
sentence), so group-relative advantages have signal from the first step.

Rows are the math task's normalised layout (``id, question, answer, level``), so the math
verifier grades them and the math task's analysis reads them (``r1lab.tasks.math``); ``level`` is the operation (``+``, ``-``, ``*``), which evaluation uses as
the difficulty label. Problems are every ``a op b`` with ``1 <= a <= operand_max`` and
``1 <= b <= second_max``, shuffled by ``seed``: the first ``num_test`` are the held-out split,
the rest (up to ``num_train``) the training split, so the two never share a problem.
"""
from __future__ import annotations

import random
import re
from dataclasses import dataclass

from datasets import Dataset

from r1lab.tasks.base import Perturbation, Task, register_task
from r1lab.tasks.math import FEATURES, MathLayoutConfig, math_layout_task
from r1lab.tasks.perturb import distractor, row_rng, with_column

OPERATIONS = {"+": lambda a, b: a + b, "-": lambda a, b: a - b, "*": lambda a, b: a * b}


def question_text(a: int, op: str, b: int) -> str:
    """>>> question_text(17, '*', 6)
    'What is 17 * 6? Put the final answer in \\\\boxed{}.'
    """
    return f"What is {a} {op} {b}? Put the final answer in \\boxed{{}}."


def make_splits(num_train: int, num_test: int, operand_max: int = 30, second_max: int = 12, seed: int = 0) -> dict[str, Dataset]:
    """``{"train", "test"}`` of disjoint problems (see the module docstring)."""
    problems = [(a, op, b) for op in OPERATIONS for a in range(1, operand_max + 1) for b in range(1, second_max + 1)]
    if num_test >= len(problems):
        raise ValueError(
            f"task.num_test={num_test} leaves no training problems: there are only {len(problems)} "
            f"with operand_max={operand_max}, second_max={second_max}; raise them or lower num_test"
        )
    random.Random(seed).shuffle(problems)
    test, train = problems[:num_test], problems[num_test:num_test + num_train]

    def rows(split: str, items: list[tuple[int, str, int]]) -> Dataset:
        cols: dict[str, list] = {name: [] for name in FEATURES}
        for i, (a, op, b) in enumerate(items):
            cols["id"].append(f"arith_{split}-{i}")
            cols["question"].append(question_text(a, op, b))
            cols["answer"].append(str(OPERATIONS[op](a, b)))
            cols["level"].append(op)
        return Dataset.from_dict(cols, features=FEATURES)

    return {"train": rows("train", train), "test": rows("test", test)}


# ----------------------------------------------------------------------------------------------
# Perturbations (robustness evaluation)
# ----------------------------------------------------------------------------------------------

PROBLEM = re.compile(r"What is (\d+) ([-+*]) (\d+)\?")  # the generated question (question_text)
COMMUTATIVE = ("+", "*")
OPERATION_WORDS = {"+": "plus", "-": "minus", "*": "times"}
REWORDINGS = ("Calculate {a} {word} {b}.", "Work out {a} {op} {b}.", "Find the value of {a} {op} {b}.")


def _rewrite(rows: Dataset, seed: int, fn) -> Dataset:
    """``rows`` with ``fn(rng, a, op, b) -> (question problem text, answer)`` applied to each
    generated question's ``What is a op b?``; rows of other text (a user's file) are kept."""
    questions, answers = list(rows["question"]), list(rows["answer"])
    for i, q in enumerate(questions):
        m = PROBLEM.search(q)
        if m is None:
            continue
        text, answer = fn(row_rng(seed, i), int(m.group(1)), m.group(2), int(m.group(3)))
        questions[i], answers[i] = q[:m.start()] + text + q[m.end():], str(answer)
    return with_column(with_column(rows, "question", questions), "answer", answers)


def perturbations(operand_max: int, second_max: int) -> dict[str, Perturbation]:
    """The arith perturbations (operands drawn as ``make_splits`` draws them):

    * ``reorder``: the operands of ``+`` and ``*`` swapped (``a - b`` kept: not commutative);
    * ``renumber``: new operands (``1..operand_max``, ``1..second_max``), other than the row's,
      same operation, the answer recomputed;
    * ``distractor``: a sentence that bears on nothing before the question;
    * ``wording``: ``What is a op b?`` in other words (``Calculate 17 times 6.``).

    Rows whose question is not a generated one are kept as they are, except by ``distractor``."""

    def reorder(rows: Dataset, seed: int) -> Dataset:
        return _rewrite(rows, seed, lambda rng, a, op, b: (f"What is {b} {op} {a}?", OPERATIONS[op](b, a))
                        if op in COMMUTATIVE else (f"What is {a} {op} {b}?", OPERATIONS[op](a, b)))

    def renumber(rows: Dataset, seed: int) -> Dataset:
        def new(rng: random.Random, a: int, op: str, b: int) -> tuple[str, int]:
            x, y = a, b
            while (x, y) == (a, b) and operand_max * second_max > 1:
                x, y = rng.randint(1, operand_max), rng.randint(1, second_max)
            return f"What is {x} {op} {y}?", OPERATIONS[op](x, y)
        return _rewrite(rows, seed, new)

    def with_distractor(rows: Dataset, seed: int) -> Dataset:
        return with_column(rows, "question", [f"{distractor(seed, i)} {q}" for i, q in enumerate(rows["question"])])

    def reworded(rows: Dataset, seed: int) -> Dataset:
        return _rewrite(rows, seed, lambda rng, a, op, b: (
            rng.choice(REWORDINGS).format(a=a, op=op, b=b, word=OPERATION_WORDS[op]), OPERATIONS[op](a, b)))

    return {"reorder": reorder, "renumber": renumber, "distractor": with_distractor, "wording": reworded}


@dataclass
class ArithTaskConfig(MathLayoutConfig):
    """``task=arith``: every ``a op b`` with ``1 <= a <= operand_max``, ``1 <= b <= second_max``,
    ``op`` in ``+ - *``, split by ``seed``. Answers: the last ``\\boxed{}``, else (``lenient_answer``)
    the last number after the reasoning, since a small instruct model often states the result in
    a sentence."""

    name: str = "arith"
    lenient_answer: bool = True
    num_train: int = 100_000  # capped by how many problems are left after the test split
    num_test: int = 200
    operand_max: int = 30
    second_max: int = 12
    seed: int = 0


@register_task("arith", ArithTaskConfig)
def build(cfg: ArithTaskConfig) -> Task:
    """Generated splits, ``task.train_file``/``test_file`` read over them."""
    splits = make_splits(cfg.num_train, cfg.num_test, cfg.operand_max, cfg.second_max, cfg.seed)
    task = math_layout_task("arith", splits, cfg, lambda row: row["question"])
    task.perturbations = perturbations(cfg.operand_max, cfg.second_max)
    return task
