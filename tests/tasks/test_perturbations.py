"""Task perturbations (robustness): every perturbed row keeps a right gold answer, checked by the
task's own verifier, and the perturbation changes what it says it changes."""
import re

import pytest
from datasets import Dataset

from r1lab.tasks.arith import ArithTaskConfig
from r1lab.tasks.countdown import CountdownTaskConfig
from r1lab.tasks.math import MathTaskConfig
from r1lab.data import SAMPLES_DIR
from r1lab.rewards import get_reward
from r1lab.tasks import build_task
from r1lab.tasks.countdown import is_solution, problem_key
from r1lab.tasks.perturb import before_last_sentence, distractor


def countdown_task(style="short"):
    cfg = CountdownTaskConfig(question_style=style)
    cfg.num_train, cfg.num_test, cfg.num_test_hard = 20, 30, 0
    return build_task(cfg)


def arith_task():
    cfg = ArithTaskConfig(lenient_answer=False)
    cfg.num_train, cfg.num_test = 20, 40
    return build_task(cfg)


def math_task():
    sample = str(SAMPLES_DIR / "gsm8k_sample.jsonl")
    return build_task(MathTaskConfig(train_file=sample, test_file=sample))


def gold_rewards(task, rows: Dataset, completion) -> list[float]:
    """The task's correctness reward of a completion built from each row's gold."""
    completions = [completion(r) for r in rows]
    return get_reward(task.correctness_reward)(completions, **task.columns(rows[:])).tolist()


@pytest.mark.parametrize("style", ["short", "full"])
def test_countdown_perturbed_rows_stay_solvable(style):
    task = countdown_task(style)
    plain = task.split("test")
    assert set(task.perturbations) == {"reorder", "distractor", "wording"}
    for name in task.perturbations:
        rows = task.perturb(name, plain, seed=3)
        assert len(rows) == len(plain) and rows["id"] == plain["id"] and rows["target"] == plain["target"]
        for a, b in zip(plain, rows):
            assert problem_key(a["numbers"], a["target"]) == problem_key(b["numbers"], b["target"])  # the same problem
            assert is_solution(b["solution"], b["numbers"], b["target"])
            shown = [int(x) for x in re.findall(r"\d+", task.question(b))]
            assert b["target"] in shown and all(n in shown for n in b["numbers"])
        assert gold_rewards(task, rows, lambda r: f"<think>ok</think><answer>{r['solution']}</answer>") == [1.0] * len(rows)
        assert task.perturb(name, plain, seed=3)[:] == rows[:]  # seeded


def test_countdown_each_perturbation_changes_its_part():
    task = countdown_task()
    plain = task.split("test")
    reordered = task.perturb("reorder", plain, 0)
    for a, b in zip(plain["numbers"], reordered["numbers"]):
        assert sorted(a) == sorted(b) and (a != b or len(set(a)) == 1)
    assert "question" not in reordered.column_names  # the text follows the new order
    assert task.question(reordered[0]) == f"Use {' '.join(map(str, reordered[0]['numbers']))} to make {plain[0]['target']}."
    distracted = task.perturb("distractor", plain, 0)
    reworded = task.perturb("wording", plain, 0)
    for i in range(len(plain)):
        assert task.question(distracted[i]).endswith(task.question(plain[i]))
        assert task.question(distracted[i]) != task.question(plain[i])
        assert not task.question(reworded[i]).startswith("Use ")
    with pytest.raises(KeyError, match="no perturbation 'nope'; valid: reorder, distractor, wording"):
        task.perturb("nope", plain, 0)


def test_arith_perturbed_answers_are_recomputed():
    task = arith_task()
    plain = task.split("test")
    assert set(task.perturbations) == {"reorder", "renumber", "distractor", "wording"}
    for name in task.perturbations:
        rows = task.perturb(name, plain, seed=1)
        assert gold_rewards(task, rows, lambda r: f"so \\boxed{{{r['answer']}}}") == [1.0] * len(rows)
        for r in rows:  # the gold is the value of the problem the question states
            m = re.search(r"(\d+) (\+|-|\*|plus|minus|times) (\d+)", r["question"])
            a, op, b = int(m.group(1)), m.group(2), int(m.group(3))
            want = {"+": a + b, "plus": a + b, "-": a - b, "minus": a - b, "*": a * b, "times": a * b}[op]
            assert r["answer"] == str(want), (name, r)
            assert r["question"].endswith("Put the final answer in \\boxed{}.")
    renumbered = task.perturb("renumber", plain, 1)
    assert all(a != b for a, b in zip(plain["question"], renumbered["question"]))
    reordered = task.perturb("reorder", plain, 1)
    for p, r in zip(plain, reordered):
        a, b = map(int, re.findall(r"\d+", p["question"]))
        assert (p["question"] != r["question"]) == (p["level"] in "+*" and a != b)  # a - b is not swapped
        assert p["answer"] == r["answer"]


def test_arith_keeps_rows_it_cannot_read():
    task = arith_task()
    rows = Dataset.from_dict({"id": ["x"], "question": ["Add up two and three."], "answer": ["5"], "level": ["+"]})
    assert task.perturb("renumber", rows, 0)[:] == rows[:]
    assert task.perturb("distractor", rows, 0)["question"][0].endswith("Add up two and three.")


def test_math_perturbations_keep_the_answers():
    task = math_task()
    plain = task.split("test")
    assert set(task.perturbations) == {"names", "distractor", "wording"}
    for name in task.perturbations:
        rows = task.perturb(name, plain, seed=0)
        assert rows["answer"] == plain["answer"]
        assert gold_rewards(task, rows, lambda r: f"\\boxed{{{r['answer']}}}") == [1.0] * len(rows)
        # no number of a word problem changes (the distractor's own aside)
        for i, (a, b) in enumerate(zip(plain["question"], rows["question"])):
            if name == "distractor":
                assert distractor(0, i) in b
                b = b.replace(distractor(0, i) + " ", "")
                assert b == a
            assert re.findall(r"\d+", b) == re.findall(r"\d+", a)
    renamed = task.perturb("names", Dataset.from_dict(
        {"id": ["a"], "question": ["Tom gives Mary 3 pens. Tom keeps 2. How many has Tom?"], "answer": ["2"], "level": [None]}), 5)
    q = renamed["question"][0]
    he, she = q.split()[0], q.split()[2]
    assert he not in ("Tom", "Mary") and she not in ("Tom", "Mary") and q.count(he) == 3  # one person, one new name
    assert q == f"{he} gives {she} 3 pens. {he} keeps 2. How many has {he}?"


def test_before_last_sentence():
    assert before_last_sentence("One. Two? ", "X.") == "One. X. Two? "
    assert before_last_sentence("Only one?", "X.") == "X. Only one?"
