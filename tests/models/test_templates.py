"""Prompt templates: the ``direct`` template's prompt, response and how rewards read it."""
from __future__ import annotations

import pytest

from r1lab.models.templates import (DIRECT_OPENED, TEMPLATES, answer_only, full_response, opened_response,
                                    opens_think, render_prompt)
from r1lab.rewards.countdown import countdown_reward
from r1lab.rewards.format import format_reward
from r1lab.rewards.spans import last_answer_span


def test_direct_prompt_closes_the_reasoning_and_opens_the_answer():
    assert "direct" in TEMPLATES and answer_only("direct") and not opens_think("direct")
    assert render_prompt("direct", "3 5 7 -> 22") == "User: 3 5 7 -> 22\nAssistant: <think>answer directly</think>\n<answer>"
    assert render_prompt("direct", "q").endswith(DIRECT_OPENED)


@pytest.mark.parametrize("template,opened", [("r1_zero", "<think>"), ("r1_zero_short", "<think>"), ("direct", DIRECT_OPENED),
                                             ("chat", ""), ("none", "")])
def test_full_response_prepends_what_the_prompt_opened(template, opened):
    assert opened_response(template) == opened
    assert full_response(template, "x</answer>") == opened + "x</answer>"
    assert answer_only(template) == (template == "direct")


# (what a model writes after the direct prompt, strict format, countdown reward for 3 5 7 -> 22)
DIRECT_CASES = [
    ("5*3+7</answer>", 1.0, 1.0),
    (" 5*3+7 </answer>", 1.0, 1.0),
    ("5*3+6</answer>", 1.0, 0.0),  # well formed, wrong
    ("5*3+7", 0.0, 0.0),  # never closed: no answer
    ("</answer>", 0.0, 0.0),  # blank answer
    ("5*3=15</think><answer>5*3+7</answer>", 0.0, 1.0),  # reasoning after all: the last </think> ends it, not the strict format
]


@pytest.mark.parametrize("written,fmt,correct", DIRECT_CASES)
def test_direct_responses_through_the_format_and_countdown_rewards(written, fmt, correct):
    full = full_response("direct", written)
    assert format_reward([full]).tolist() == [fmt]
    assert countdown_reward([full], [[3, 5, 7]], [22]).tolist() == [correct]


def test_direct_answer_span():
    assert last_answer_span(full_response("direct", "5*3+7</answer>")) == "5*3+7"
