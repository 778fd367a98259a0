"""The ``process_validity`` reward on hand-written completions, with exact values."""
from __future__ import annotations

from fractions import Fraction

import pytest
import torch

from r1lab.rewards import build_reward, combine_rewards, get_reward, make_params
from r1lab.rewards.process import ProcessParams, answer_value, process_scores

ANSWER = "</think>\n<answer>5*3+7</answer>"
# (full response as rewards see it, default score, all_true score, score without the anchor)
CASES = [
    ("<think>5*3=15 15+7=22 yes\ncheck 5*3+7=22 ok" + ANSWER, 1.0, 1.0, 1.0),
    ("<think>7*5=35 35-3=31 no\n5*3=15 15+7=22 yes" + ANSWER, 0.75, 0.0, 0.75),  # one false step of four
    ("<think>check 5*4+3=19 ok\n5*3=15 15+7=22 yes" + ANSWER, 2 / 3, 0.0, 2 / 3),
    ("<think>no arithmetic here" + ANSWER, 0.0, 0.0, 0.0),  # no claim: 0, not 1
    ("<think>1+1=2 2+2=4" + ANSWER, 0.0, 0.0, 1.0),  # true but irrelevant: the answer (22) is no claim's value
    ("<think>5*3=15 15+7=21" + ANSWER, 0.0, 0.0, 0.5),  # no true claim of value 22: 15+7=21 is false
    ("<think>5*3+7=21 15+7=22" + ANSWER, 0.5, 0.0, 0.5),  # anchored by the true 15+7=22
    ("<think>6*7=42</think><answer>42</answer>", 1.0, 1.0, 1.0),  # a math answer: a plain number
    ("<think>6*7=42 42/8=5.25</think><answer>5.25</answer>", 1.0, 1.0, 1.0),  # a decimal answer
    ("<think>24/5=(24/5)</think><answer>24/5</answer>", 1.0, 1.0, 1.0),  # a fraction value
    ("<think>5*3=15 15+7=22</think>", 0.0, 0.0, 1.0),  # no answer: nothing to anchor
    ("<think>5*3=15 15+7=22</think><answer>the sum</answer>", 0.0, 0.0, 1.0),  # an answer without a value
    ("<think>5*3=15 15+7=22 yes", 0.0, 0.0, 1.0),  # cut off mid-reasoning: no answer
    ("<think>2+2=4</think>\n<answer>1+1=2</answer>", 0.0, 0.0, 1.0),  # claims in the answer are not reasoning
    ("<think>answer directly</think>\n<answer>5*3+7</answer>", 0.0, 0.0, 0.0),  # the direct template
    ("", 0.0, 0.0, 0.0),
]


@pytest.mark.parametrize("text,default,all_true,unanchored", CASES)
def test_process_validity_cases(text, default, all_true, unanchored):
    assert process_scores([text], ProcessParams()).item() == pytest.approx(default)
    assert process_scores([text], ProcessParams(all_true=True)).item() == pytest.approx(all_true)
    assert process_scores([text], ProcessParams(require_answer=False)).item() == pytest.approx(unanchored)


def test_registered_batched_and_float32():
    texts = [c[0] for c in CASES]
    out = get_reward("process_validity")(texts, numbers=[[3, 5, 7]] * len(texts), target=[22] * len(texts))
    assert out.dtype == torch.float32 and out.shape == (len(texts),)
    assert out.tolist() == pytest.approx([c[1] for c in CASES])


def test_parameters_through_reward_params():
    fn = build_reward("process_validity", {"all_true": True})
    assert fn([CASES[1][0], CASES[0][0]]).tolist() == [0.0, 1.0]
    with pytest.raises(ValueError, match="unknown parameter 'cap'.*valid: require_answer, all_true"):
        make_params("process_validity", {"cap": 3})
    with pytest.raises(ValueError, match="all_true must be true or false"):
        make_params("process_validity", {"all_true": "yes"})


def test_many_true_claims_dilute_but_never_exceed_one():
    # nine trivially true claims beside one false step: 0.9 (the dilution all_true removes)
    text = "<think>" + " ".join(["1+1=2"] * 8) + " 5*3=15 15+7=23 15+7=22" + ANSWER
    assert process_scores([text], ProcessParams()).item() == pytest.approx(10 / 11)
    assert process_scores([text], ProcessParams(all_true=True)).item() == 0.0
    many = "<think>" + " ".join(["1+1=2"] * 50) + " 15+7=22" + ANSWER
    assert process_scores([many], ProcessParams()).item() == 1.0


def test_mixed_with_the_outcome_reward():
    texts = ["<think>7*5=35 35-3=31 no\n5*3=15 15+7=22 yes" + ANSWER,  # right answer, one false step
             "<think>1+1=2</think>\n<answer>1+1</answer>"]  # the process-only hack: wrong answer, 1.0 process
    out = combine_rewards({"countdown": 1.0, "process_validity": 0.5}, texts, {"numbers": [[3, 5, 7]] * 2, "target": [22] * 2})
    assert out.components["countdown"].tolist() == [1.0, 0.0]
    assert out.components["process_validity"].tolist() == [0.75, 1.0]
    assert out.total.tolist() == pytest.approx([1.375, 0.5])


def test_answer_value():
    assert answer_value("<answer>(6 - 2) × 25</answer>") == 100
    assert answer_value("<answer>-3</answer>") == -3
    assert answer_value("<answer>3/0</answer>") is None
    assert answer_value("<answer>1+1=3</answer>") is None  # a false trailing "= N" has no value
    assert answer_value("<answer>1+1=2</answer>") == Fraction(2)
