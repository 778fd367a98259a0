"""The arithmetic task: generated problems, disjoint splits, right gold answers, lenient grading."""
from __future__ import annotations

import pytest

from r1lab.tasks.arith import ArithTaskConfig, make_splits
from r1lab.tasks import build_task
from r1lab.rewards.math import math_reward


def test_splits_are_disjoint_and_answers_are_right():
    splits = make_splits(num_train=10_000, num_test=200, operand_max=30, second_max=12, seed=0)
    assert len(splits["test"]) == 200 and len(splits["train"]) == 3 * 30 * 12 - 200
    assert not set(splits["test"]["question"]) & set(splits["train"]["question"])
    for row in splits["test"]:
        a, op, b = row["question"].removeprefix("What is ").split("?")[0].split()
        assert int(row["answer"]) == eval(f"{int(a)} {op} {int(b)}")  # trusted text we generated
        assert row["level"] == op
    assert make_splits(10_000, 200, seed=0)["test"]["question"] == splits["test"]["question"]
    assert make_splits(10_000, 200, seed=1)["test"]["question"] != splits["test"]["question"]


def test_too_many_test_problems_names_the_field():
    with pytest.raises(ValueError, match="task.num_test"):
        make_splits(num_train=1, num_test=36, operand_max=3, second_max=4)


def test_task_reads_the_last_number_when_there_is_no_box():
    task = build_task(ArithTaskConfig(lenient_answer=True, num_test=20))
    assert task.correctness_reward == "math_lenient" and task.answer_opener == "\\boxed{"
    completions = [
        "5 * 6 = 30, so the answer is 30.",  # prose: the last number
        "5 * 6 is 30. I am sure.",
        "It is 31, no: \\boxed{30}. Check: 30 / 6 = 5.",  # a box wins over later numbers
        "<think>5 * 6 = 30",  # reasoning never closed: no answer
        "The answer is 11.",
        "No number here.",
    ]
    assert math_reward(completions, ["30"] * 6, lenient=True).tolist() == [1.0, 1.0, 1.0, 0.0, 0.0, 0.0]
    assert math_reward(completions[:2], ["30"] * 2).tolist() == [0.0, 0.0]  # the strict verifier needs a box


def test_answer_tag_and_lenient_are_exclusive():
    with pytest.raises(ValueError, match="task.answer_tag and task.lenient_answer"):
        build_task(ArithTaskConfig(lenient_answer=True, answer_tag=True))
