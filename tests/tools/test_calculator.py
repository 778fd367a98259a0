"""calculator: exact answers over integers and decimals, and a refusal naming the syntax for
anything that is not arithmetic (nothing is ever executed)."""
from __future__ import annotations

from fractions import Fraction

import pytest

from r1lab.tools import ToolLimits, dispatch
from r1lab.tools.calculator import MAX_INPUT_CHARS, USAGE, calculator, evaluate

LIMITS = ToolLimits()


@pytest.mark.parametrize("text, shown", [
    ("5*3+7", "22"),
    ("(6-2)*25", "100"),
    ("1/3+1/6", "1/2"),  # exact, reduced
    ("0.1+0.2", "3/10"),  # decimals are exact too
    ("24/5", "24/5"),  # a non-integer prints as the reduced fraction
    ("48/10", "24/5"),
    ("2.5*2", "5"),
    ("1/0.5", "2"),  # a decimal is one operand: 1/(1/2)
    ("2-5", "-3"),  # negative results (no unary minus in the input)
    ("6 × 4 ÷ 5 − 1", "19/5"),  # the Countdown signs
    (" 100 - 4 * 25 ", "0"),
    ("5*3+7 =", "22"),  # one trailing '=' is ignored
    ("5*3+7=22", "true"),  # an equation is checked exactly
    ("5*3+7=21", "false: 22"),
    ("1/3+1/6 = 0.5", "true"),
    ("7*5-3=22", "false: 32"),
    ("9/4=2", "false: 9/4"),
    ("007+1", "8"),
    ("99999999*99999999*99999999", str(99999999**3)),
])
def test_exact_values(text, shown):
    assert calculator(text, LIMITS).text == shown
    assert calculator(text, LIMITS).status == "ok"


def test_evaluate_is_a_fraction():
    assert evaluate("1/3+1/6") == Fraction(1, 2)


@pytest.mark.parametrize("text", ["7/0", "1/(3-3)", "1/0.0", "5/(0.1-0.1)"])
def test_division_by_zero(text):
    assert calculator(text, LIMITS).text == "error: division by zero"
    assert calculator(text, LIMITS).status == "error"


@pytest.mark.parametrize("text", [
    "__import__('os')", "2**10", "abs(3)", "x+1", "", "   ", "1;2", "-3", "1.2.3", "(1+2", "1+",
    "3x4", "5*3+7=2=2", "1e5", "print(1)", "1 == 1", "2^3", "=22",
])
def test_refuses_anything_but_arithmetic(text):
    result = calculator(text, LIMITS)
    assert result.status == "error"
    assert result.text == f"error: {USAGE}"
    assert "+ - * / ( ) and numbers" in result.text


def test_input_length_is_bounded():
    result = calculator("1+" * MAX_INPUT_CHARS + "1", LIMITS)
    assert result.status == "error" and str(MAX_INPUT_CHARS) in result.text
    assert calculator("+".join(["1"] * 100), LIMITS).text == "100"  # 199 characters: fine


def test_through_dispatch():
    assert dispatch("5*3+7", ["calculator"], LIMITS) == ("calculator", calculator("22", LIMITS))
    name, result = dispatch("calculator: 1/3 + 1/6", ["calculator", "python"], LIMITS)
    assert (name, result.text, result.status) == ("calculator", "1/2", "ok")
