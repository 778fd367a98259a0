"""The ``countdown`` tool: one attempt judged against the row's own problem, as the reward will."""
from __future__ import annotations

import pytest

from r1lab.rewards import combine_rewards
from r1lab.tools import ToolLimits, ToolResult, dispatch

LIMITS = ToolLimits()
PROBLEM = {"numbers": [3, 5, 7], "target": 22}


@pytest.mark.parametrize(
    "call, shown",
    [
        ("5*3+7", "true"),
        (" (5*3) + 7 ", "true"),
        ("5*3+7=22", "true"),  # a stated value is ignored: the check is against the target
        ("7*5-3", "false: 32"),
        ("7*5-3=22", "false: 32"),
        ("(7+3)/5", "false: 2"),
        ("5*5-3", "false: use 3 5 7 once each"),  # 5 twice, 7 left out
        ("5*3+7+1", "false: use 3 5 7 once each"),  # a number not in the problem
        ("5*3", "false: use 3 5 7 once each"),  # 7 unused
        ("7/3+5", "false: 22/3"),  # right numbers, exact fraction
    ],
)
def test_the_checker_says_what_the_reward_says(call, shown):
    assert dispatch(call, ["countdown"], LIMITS, PROBLEM) == ("countdown", ToolResult(shown, "ok"))
    reward = combine_rewards({"countdown": 1.0}, [f"<think></think>\n<answer>{call.split('=')[0]}</answer>"],
                             {"numbers": [PROBLEM["numbers"]], "target": [PROBLEM["target"]]}).total
    assert float(reward[0]) == (1.0 if shown == "true" else 0.0)


@pytest.mark.parametrize("call", ["", "hello", "5**3", "import os", "5*3+7; 1"])
def test_anything_but_an_expression_is_an_error_naming_the_syntax(call):
    name, result = dispatch(call, ["countdown"], LIMITS, PROBLEM)
    assert result.status == "error" and "the countdown check takes one expression" in result.text


def test_division_by_zero_and_a_missing_problem_are_errors():
    assert dispatch("7/(5-5)+3", ["countdown"], LIMITS, PROBLEM)[1] == ToolResult("error: division by zero", "error")
    _, result = dispatch("5*3+7", ["countdown"], LIMITS)  # no context: never a crash, an error the model sees
    assert result == ToolResult("error: tool 'countdown' needs the problem's numbers, target; this rollout gave none", "error")


def test_it_routes_by_name_beside_the_calculator():
    assert dispatch("countdown: 7*5-3", ["calculator", "countdown"], LIMITS, PROBLEM)[1].text == "false: 32"
    assert dispatch("calculator: 7*5-3", ["calculator", "countdown"], LIMITS, PROBLEM)[1].text == "32"
