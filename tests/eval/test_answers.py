import numpy as np
import pytest

from r1lab.eval.answers import DISTANCE_CAP, CountdownAnalysis, MathAnalysis


def rows(n, numbers=(3, 5, 7), target=22):
    return {"numbers": [list(numbers)] * n, "target": [target] * n}


def test_countdown_answer_keys_vote_on_value():
    responses = [
        "<think>x</think><answer>5*3+7</answer>",
        "<think>x</think><answer> 7 + 5*3 </answer>",  # same value, other expression: same key
        "<think>x</think><answer>5*3+7=22</answer>",  # trailing "= target" allowed
        "<think>x</think><answer>7*3</answer>",  # does not use 5: keyed by its text
        "<think>x</think>no answer",
        "<think>x</think><answer>   </answer>",
        "<think>x</think><answer>(7-5)/3</answer>",
    ]
    keys = CountdownAnalysis().answer_keys(responses, rows(len(responses)))
    assert keys == ["22", "22", "22", "invalid:7*3", None, None, "2/3"]


def test_countdown_distance_is_capped_and_unusable_answers_cost_the_cap():
    responses = [
        "<answer>5*3+7</answer>",  # 22: distance 0
        "<answer>7*5-3</answer>",  # 32: distance 10
        "<answer>(7-5)/3</answer>",  # 2/3: distance 21.333
        "<answer>22</answer>",  # the target itself, but not using the numbers: cap
        "<answer>7*5*3</answer>",  # 105: 83
        "garbage",
    ]
    d = CountdownAnalysis().distances(responses, rows(len(responses)))
    assert d.tolist() == pytest.approx([0.0, 10.0, 22 - 2 / 3, DISTANCE_CAP, 83.0, DISTANCE_CAP])
    big = CountdownAnalysis().distances(["<answer>9*9*9</answer>"], rows(1, (9, 9, 9), 1))
    assert big.tolist() == [DISTANCE_CAP]


def test_countdown_difficulty_counts_solution_paths():
    a = CountdownAnalysis()
    # 1 2 3 -> 6: many orders reach it (1+2+3, 1*2*3, ...): easy; 3 5 7 -> 22 has one (5*3+7)
    labels = a.difficulty({"numbers": [[1, 2, 3], [3, 5, 7], [1, 2, 3, 4, 5]], "target": [6, 22, 15]})
    assert labels == ["easy", "hard", "5 numbers"]


def test_math_keys_normalise_boxed_answers():
    m = MathAnalysis()
    keys = m.answer_keys(["so \\boxed{\\frac{1}{2}}", "\\boxed{ 72 }", "no box"], {"answer": ["1/2", "72", "3"]})
    assert keys[2] is None and keys[1] == "72"
    assert keys[0] is not None
    assert m.difficulty({"answer": ["1", "2"], "level": ["Level 1", None]}) == ["Level 1", "unknown"]
    assert m.distances(["x"], {"answer": ["1"]}) is None
