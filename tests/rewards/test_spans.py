"""The one answer-span policy (``r1lab.rewards.spans``), the same for every task's verifier.

Issue 18 (b): after a ``<think>`` that never closed, an ``<answer>`` counted for Countdown and not
for math. One rule now: the unclosed reasoning ends at the first ``<answer>`` (Countdown's reading,
which the demo's figures rely on: its small model misspells ``</think>``), and a ``<think>`` that
reaches no ``<answer>`` is a response cut off mid-reasoning, with no answer (R1's reading)."""
from __future__ import annotations

import doctest

import pytest

from r1lab.models.templates import full_response
from r1lab.rewards import get_reward, spans
from r1lab.rewards.math import extract_answer
from r1lab.rewards.spans import after_think, answer_spans, answer_tag_span, last_answer_span

# (response, the answer text the policy reads (None: no answer), its <answer> span)
POLICY = [
    ("<think>plan</think><answer>ANS</answer>", "<answer>ANS</answer>", "ANS"),
    ("<think>plan <answer>ANS</answer>", "<answer>ANS</answer>", "ANS"),  # the <answer> ends the reasoning
    ("<think>plan</thiok>\n<answer>ANS</answer>", "<answer>ANS</answer>", "ANS"),  # a misspelt </think>
    ("<think>plan, so ANS", None, None),  # cut off mid-reasoning: no answer
    ("<think>plan, so ANS</answer>", None, None),
    ("<think>a <answer>X</answer></think> b <answer>ANS</answer>", " b <answer>ANS</answer>", "ANS"),
    ("<think>a</think>b</think><answer>ANS</answer>", "<answer>ANS</answer>", "ANS"),  # the last </think>
    ("<answer>ANS</answer>", "<answer>ANS</answer>", "ANS"),  # no think tag: all of it is answer text
    ("plan</think><answer>ANS</answer>", "<answer>ANS</answer>", "ANS"),
    ("<answer>ANS</answer> <think> more", "<answer>ANS</answer> <think> more", "ANS"),
    ("<think>plan</think><answer>ANS</answer><answer>open", "<answer>ANS</answer><answer>open", "ANS"),
    ("<think>plan</think><answer>X</answer> no: <answer>ANS</answer>", "<answer>X</answer> no: <answer>ANS</answer>", "ANS"),
    ("<think>plan</think><answer>open", "<answer>open", None),
    ("<think>plan</think>", "", None),
]


@pytest.mark.parametrize("response, text, span", POLICY)
def test_policy(response, text, span):
    assert after_think(response) == text
    assert last_answer_span(response) == span
    assert answer_spans([response]) == [span or ""]
    if text is not None:
        assert answer_tag_span(text) == span


@pytest.mark.parametrize("response, text, span", POLICY)
def test_countdown_and_math_read_the_same_answer(response, text, span):
    """Countdown, ``math_answer_tag`` and the boxed ``math`` reward find an answer in the same place."""
    found = span == "ANS"
    countdown = get_reward("countdown")([response.replace("ANS", "1 + 2")], numbers=[[1, 2]], target=[3]).item()
    math_tag = get_reward("math_answer_tag")([response.replace("ANS", "3")], answer=["3"]).item()
    boxed = get_reward("math")([response.replace("ANS", "\\boxed{3}")], answer=["3"]).item()
    assert countdown == math_tag == float(found)
    assert boxed == float(text is not None and "ANS" in text)  # a box anywhere in the answer text
    assert (extract_answer(response.replace("ANS", "3"), answer_tag=True) == "3") == found


def test_an_answer_after_an_unclosed_think_counts_for_every_task():
    """Issue 18 (b): the same responses, the same verdicts for Countdown and math."""
    responses = ["<think>1+2=3 <answer>ANS</answer>", "<think>1+2=3</thiok>\n<answer>ANS</answer>",
                 "<think>1+2=3</think><answer>ANS</answer>", "<think>1+2=3 so ANS"]
    expected = [1.0, 1.0, 1.0, 0.0]
    countdown = get_reward("countdown")([r.replace("ANS", "1 + 2") for r in responses], numbers=[[1, 2]] * 4, target=[3] * 4)
    math_tag = get_reward("math_answer_tag")([r.replace("ANS", "3") for r in responses], answer=["3"] * 4)
    boxed = get_reward("math")([r.replace("ANS", "\\boxed{3}") for r in responses], answer=["3"] * 4)
    lenient = get_reward("math_lenient")([r.replace("ANS", "3") for r in responses], answer=["3"] * 4)
    assert countdown.tolist() == math_tag.tolist() == boxed.tolist() == lenient.tolist() == expected


def test_the_policy_reads_the_full_response():
    """With a template whose prompt opens ``<think>`` the model's text is scored as ``<think>`` +
    text: a box written without closing the reasoning or opening an answer is inside the
    reasoning. Without such a template the same text has no ``<think>`` and its box counts."""
    reward = get_reward("math")
    texts = ["1+2=3, so \\boxed{3}", "1+2=3 </think> so \\boxed{3}", "1+2=3 <answer>\\boxed{3}</answer>"]
    assert reward([full_response("r1_zero_short", t) for t in texts], answer=["3"] * 3).tolist() == [0.0, 1.0, 1.0]
    assert reward([full_response("none", t) for t in texts], answer=["3"] * 3).tolist() == [1.0, 1.0, 1.0]


def test_doctests():
    assert doctest.testmod(spans).failed == 0
