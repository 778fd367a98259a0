"""Tasks carry their whole domain: every registered task builds with its analysis, its gold
column and its reward; the math analysis reads answers as the math rewards do."""
from __future__ import annotations

import pytest

from r1lab.config.schema import ArithTaskConfig, CountdownTaskConfig, TaskConfig
from r1lab.data.countdown import CountdownAnalysis
from r1lab.data.files import SAMPLES_DIR
from r1lab.data.task import TASKS, MathAnalysis, TaskAnalysis, build_task
from r1lab.rewards import get_reward

GSM8K = str(SAMPLES_DIR / "gsm8k_sample.jsonl")
CONFIGS = {
    "countdown": TaskConfig(name="countdown", countdown=CountdownTaskConfig(num_train=10, num_test=5, num_test_hard=2)),
    "math": TaskConfig(name="math", train_file=GSM8K, test_file=GSM8K),
    "arith": TaskConfig(name="arith", arith=ArithTaskConfig(num_train=10, num_test=5)),
}


def test_every_registered_task_carries_what_evaluation_needs():
    assert set(CONFIGS) == set(TASKS)  # a new task gets a row here
    for name, cfg in CONFIGS.items():
        task = build_task(cfg)
        assert task.name == name and get_reward(task.correctness_reward)
        assert isinstance(task.analysis, TaskAnalysis) and type(task.analysis) is not TaskAnalysis
        assert task.gold_column in task.split("test").column_names
        test = task.split("test")[:]
        assert len(task.analysis.difficulty(test)) == len(test["id"])
    assert isinstance(build_task(CONFIGS["countdown"]).analysis, CountdownAnalysis)
    assert build_task(CONFIGS["countdown"]).gold_column == "solution"


@pytest.mark.parametrize("answer_tag, lenient, reward", [(False, False, "math"), (True, False, "math_answer_tag"),
                                                         (False, True, "math_lenient")])
def test_math_analysis_reads_answers_as_the_tasks_reward(answer_tag, lenient, reward):
    task = build_task(TaskConfig(name="math", train_file=GSM8K, test_file=GSM8K, answer_tag=answer_tag, lenient_answer=lenient))
    assert task.correctness_reward == reward
    responses = ["so \\boxed{72}", "<answer>72</answer>", "it is 72.", "<think>\\boxed{72} <answer>72</answer>"]
    keys = task.analysis.answer_keys(responses, {"answer": ["72"] * 4})
    scores = get_reward(reward)(responses, answer=["72"] * 4).tolist()
    assert [k == "72" for k in keys] == [s == 1.0 for s in scores]


def test_math_keys_normalise_boxed_answers():
    m = MathAnalysis()
    keys = m.answer_keys(["so \\boxed{\\frac{1}{2}}", "\\boxed{ 72 }", "no box"], {"answer": ["1/2", "72", "3"]})
    assert keys[2] is None and keys[1] == "72"
    assert keys[0] is not None
    assert m.difficulty({"answer": ["1", "2"], "level": ["Level 1", None]}) == ["Level 1", "unknown"]
    assert m.distances(["x"], {"answer": ["1"]}) is None


def test_a_task_without_an_analysis_fails_loudly():
    with pytest.raises(NotImplementedError, match="give the Task an analysis"):
        TaskAnalysis().answer_keys(["x"], {})
