"""Tasks carry their whole domain: every registered task builds with its analysis, its gold
column and its reward; the math analysis reads answers as the math rewards do."""
from __future__ import annotations

import pytest

from r1lab.config.schema import TaskConfig
from r1lab.tasks.arith import ArithTaskConfig
from r1lab.tasks.countdown import CountdownTaskConfig
from r1lab.tasks.math import MathTaskConfig
from r1lab.data.files import SAMPLES_DIR
from r1lab.rewards import get_reward
from r1lab.tasks import TASKS, TaskAnalysis, build_task, register_task, task_schemas
from r1lab.tasks.base import check_no_old_task_overrides, typed_task
from r1lab.tasks.countdown import CountdownAnalysis
from r1lab.tasks.math import MathAnalysis

GSM8K = str(SAMPLES_DIR / "gsm8k_sample.jsonl")
CONFIGS = {
    "countdown": CountdownTaskConfig(num_train=10, num_test=5, num_test_hard=2),
    "math": MathTaskConfig(train_file=GSM8K, test_file=GSM8K),
    "arith": ArithTaskConfig(num_train=10, num_test=5, lenient_answer=False),
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
    task = build_task(MathTaskConfig(train_file=GSM8K, test_file=GSM8K, answer_tag=answer_tag, lenient_answer=lenient))
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


# --- a task from outside r1lab: one file, one registration ---------------------------------

ECHO_TASK = '''
"""A task in one file: its data, question, correctness reward and analysis."""
import torch
from datasets import Dataset

from r1lab.rewards import register_reward
from r1lab.rewards.spans import answer_spans
from r1lab.tasks import Task, TaskAnalysis, register_task

WORDS = ["cat", "horse", "ox", "zebra", "gnu", "dog"]


@register_reward("echo_exact")
def echo_exact(completions, *, word, **_):
    return torch.tensor([float(s.strip() == w) for s, w in zip(answer_spans(completions), word)])


class EchoAnalysis(TaskAnalysis):
    def answer_keys(self, responses, rows):
        return [s.strip() or None for s in answer_spans(responses)]

    def difficulty(self, rows):
        return ["long" if len(w) > 3 else "short" for w in rows["word"]]


@register_task("echo")
def build(cfg):
    def rows(words):
        return Dataset.from_dict({"id": [f"echo-{w}" for w in words], "word": words})

    return Task(
        name="echo",
        splits={"train": rows(WORDS[:4]), "test": rows(WORDS[4:])},
        correctness_reward="echo_exact",
        reward_columns=("word",),
        question=lambda row: f"Repeat {row['word']}.",
        analysis=EchoAnalysis(),
        gold_column="word",
    )
'''


@pytest.fixture
def echo_plugin(tmp_path, monkeypatch):
    """``my_tasks.echo`` declared as an ``r1lab.plugins`` entry point, as a package would, and loaded."""
    import importlib.metadata
    import sys

    import r1lab.registry as registry
    from r1lab.rewards import REWARDS

    (tmp_path / "my_tasks").mkdir()
    (tmp_path / "my_tasks" / "__init__.py").write_text("")
    (tmp_path / "my_tasks" / "echo.py").write_text(ECHO_TASK)
    monkeypatch.syspath_prepend(str(tmp_path))
    entry = importlib.metadata.EntryPoint(name="echo", value="my_tasks.echo", group=registry.PLUGIN_GROUP)
    monkeypatch.setattr(importlib.metadata, "entry_points", lambda group=None: [entry] if group == registry.PLUGIN_GROUP else [])
    monkeypatch.setattr(registry, "_plugins_loaded", registry._plugins_loaded)  # restored after the test
    assert registry.reload_plugins() == ["echo"]
    yield
    TASKS.unregister("echo")
    if hasattr(REWARDS, "unregister"):  # a Registry
        REWARDS.unregister("echo_exact")
    else:
        REWARDS.pop("echo_exact", None)
    for name in ("my_tasks.echo", "my_tasks"):
        sys.modules.pop(name, None)


def test_a_task_in_one_file_is_usable_by_name(echo_plugin):
    assert "echo" in TASKS and "echo" in TASKS.names()
    task = build_task(TaskConfig(name="echo"))
    assert task.split("train")["word"] == ["cat", "horse", "ox", "zebra"]
    test = task.split("test")[:]
    assert [task.question(row) for row in task.split("test")] == ["Repeat gnu.", "Repeat dog."]
    responses = ["<answer>gnu</answer>", "<think>dog?</think><answer>cat</answer>"]
    assert get_reward(task.correctness_reward)(responses, **task.columns(test)).tolist() == [1.0, 0.0]
    assert task.analysis.answer_keys(responses, test) == ["gnu", "cat"]
    assert task.analysis.difficulty(test) == ["short", "short"]


def test_an_unknown_task_lists_the_valid_ones():
    with pytest.raises(ValueError, match=r"^task.name='nope'; valid: arith, countdown, math$"):
        build_task(TaskConfig(name="nope"))
    with pytest.raises(KeyError, match=r"unknown task 'nope'; valid names: arith, countdown, math"):
        TASKS.get("nope")


def test_a_tasks_settings_are_typed_by_its_schema():
    """A config is retyped by its name's schema (a bare TaskConfig gets the task's defaults); a
    setting the task has not fails naming the valid keys and how to choose the task."""
    assert task_schemas() == {"arith": ArithTaskConfig, "countdown": CountdownTaskConfig, "math": MathTaskConfig}
    typed = typed_task(TaskConfig(name="arith"))
    assert isinstance(typed, ArithTaskConfig) and (typed.num_test, typed.lenient_answer) == (200, True)
    mine = CountdownTaskConfig(num_test=3)
    assert typed_task(mine) is mine
    with pytest.raises(ValueError, match=r"Key 'question_style' not in 'ArithTaskConfig'.*valid keys: name, .*operand_max.*"
                                         r"Choose a task with task=arith"):
        typed_task({"name": "arith", "question_style": "short"})
    with pytest.raises(ValueError, match=r"^task=math needs task.train_file and task.test_file"):
        build_task(MathTaskConfig(train_file=GSM8K))
    with pytest.raises(ValueError, match=r"^task.question_style='long'; valid: short, full$"):
        build_task(CountdownTaskConfig(question_style="long"))


def test_a_schema_must_extend_task_config():
    with pytest.raises(ValueError, match=r"task 'bad': schema 'dict' is not a dataclass subclass of r1lab.config.schema.TaskConfig"):
        register_task("bad", dict)
    assert "bad" not in TASKS


def test_old_task_overrides_name_their_flat_spelling():
    check_no_old_task_overrides(["task.num_train=64", "task=arith", "stages.grpo.lr=1e-6", "task.columns.numbers=nums"])
    with pytest.raises(ValueError, match=r"^task.arith.num_test: .* write task.num_test \(with task=arith\)$"):
        check_no_old_task_overrides(["seed=1", "+task.arith.num_test=20"])
