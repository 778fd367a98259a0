"""Countdown verifier: adversarial labelled cases for every rule, plus a random cross-check
against a slow ``fractions.Fraction`` reference written here."""
from __future__ import annotations

import random
import re
from fractions import Fraction

import pytest
import torch

from r1lab.rewards import get_reward
from r1lab.rewards.countdown import countdown_reward, score_expression_exact


def A(expr: str) -> str:
    return f"<answer>{expr}</answer>"


N3 = [2, 6, 25]  # target 100 via (6 - 2) * 25
T3 = 100
BIG = [999_999_999] * 4

# (completion, numbers, target, expected)
CASES: list[tuple[str, list[int], int, int]] = [
    # --- correct answers, plain -----------------------------------------------------------------
    (A("(6 - 2) * 25"), N3, T3, 1),
    (A("(6-2)*25"), N3, T3, 1),
    (A("25*(6-2)"), N3, T3, 1),
    (A("  (6 - 2) * 25  "), N3, T3, 1),
    (A("\n(6 - 2)\t*\n25\n"), N3, T3, 1),
    (A("((6 - 2)) * ((25))"), N3, T3, 1),
    (A("((6 - 2) * 25)"), N3, T3, 1),
    (A("1 + 2 + 3"), [3, 2, 1], 6, 1),
    (A("10 - 2 - 3"), [10, 2, 3], 5, 1),  # left associative
    (A("10 - (2 - 3)"), [10, 2, 3], 11, 1),
    (A("10 - 2 - 3"), [10, 2, 3], 11, 0),
    (A("100 / 5 / 2"), [100, 5, 2], 10, 1),
    (A("100 / (5 / 2)"), [100, 5, 2], 40, 1),
    (A("2 + 3 * 4"), [2, 3, 4], 14, 1),  # precedence
    (A("2 + 3 * 4"), [2, 3, 4], 20, 0),
    (A("(2 + 3) * 4"), [2, 3, 4], 20, 1),
    (A("2 * 3 + 4 * 5"), [2, 3, 4, 5], 26, 1),
    (A("2 * 3 - 4 / 2"), [2, 3, 4, 2], 4, 1),
    (A("7"), [7], 7, 1),
    (A("(7)"), [7], 7, 1),
    (A("0 * 5 + 3"), [0, 5, 3], 3, 1),
    (A("5 - 5"), [5, 5], 0, 1),
    (A("3 - 5"), [3, 5], -2, 1),  # negative results are fine; only unary signs are banned
    (A("1 + 2 + 3 + 4 + 5 + 6"), [1, 2, 3, 4, 5, 6], 21, 1),
    (A("(((1 + 2) * 3) - 4) * 5 / 5"), [1, 2, 3, 4, 5, 5], 5, 1),
    (A("100 * 99 * 98 * 97 * 96 / 95"), [100, 99, 98, 97, 96, 95], 0, 0),
    # --- exact rational arithmetic ------------------------------------------------------------------
    (A("(8 / 3) * 3"), [8, 3, 3], 8, 1),
    (A("8 / 3 * 3"), [8, 3, 3], 8, 1),
    (A("1 / 3 + 1 / 3 + 1 / 3"), [1, 3, 1, 3, 1, 3], 1, 1),
    (A("1 / 3 + 1 / 3"), [1, 3, 1, 3], 1, 0),
    (A("7 / 2"), [7, 2], 3, 0),  # no integer division
    (A("7 / 2"), [7, 2], 4, 0),
    (A("(7 / 2) * 2"), [7, 2, 2], 7, 1),
    (A("1 / 3 * 3"), [1, 3, 3], 1, 1),
    (A("(1 / 7 + 6 / 7) * 9"), [1, 7, 6, 7, 9], 9, 1),
    (A("10 / 4 * 2"), [10, 4, 2], 5, 1),
    (A("1 - 1 / 1000000"), [1, 1, 1000000], 1, 0),  # float-tolerance verifiers say 1
    # --- division by zero -------------------------------------------------------------------------
    (A("8 / (3 - 3)"), [8, 3, 3], 8, 0),
    (A("5 / 0"), [5, 0], 0, 0),
    (A("0 / 5"), [0, 5], 0, 1),
    (A("5 / (2 - 2) * 0"), [5, 2, 2, 0], 0, 0),
    (A("(1 - 1) / (2 - 2)"), [1, 1, 2, 2], 0, 0),
    (A("0 * (5 / 0)"), [0, 5, 0], 0, 0),
    # --- answer extraction: last complete answer, think stripping, tags -------------------------------
    (A("1 + 2") + A("1 * 2"), [1, 2], 3, 0),
    (A("1 * 2") + A("1 + 2"), [1, 2], 3, 1),
    (A("1 + 2") + " so " + A("1 * 2") + " done", [1, 2], 2, 1),
    (A("1 + 2") + "<answer>1 * 2", [1, 2], 3, 1),  # trailing unclosed answer: last complete one
    ("<answer>1 + 2", [1, 2], 3, 0),
    ("1 + 2</answer>", [1, 2], 3, 0),
    ("<answer>1 + 2</answr>", [1, 2], 3, 0),
    ("<Answer>1 + 2</Answer>", [1, 2], 3, 0),
    ("1 + 2", [1, 2], 3, 0),
    ("", [1, 2], 3, 0),
    (A(""), [1, 2], 3, 0),
    (A("   "), [1, 2], 3, 0),
    (A("\n\n"), [1, 2], 3, 0),
    ("<think>" + A("1 + 2") + "</think>", [1, 2], 3, 0),  # answer only inside reasoning
    ("<think>" + A("1 + 2") + "</think> I am done", [1, 2], 3, 0),
    ("<think>" + A("1 + 2") + "</think>" + A("1 * 2"), [1, 2], 3, 0),
    ("<think>" + A("1 * 2") + "</think>" + A("1 + 2"), [1, 2], 3, 1),
    ("<think>hmm</think>\n" + A("1 + 2"), [1, 2], 3, 1),
    ("<think>a</think>b</think>" + A("1 + 2"), [1, 2], 3, 1),  # after the last </think>
    (A("1 + 2") + "</think>", [1, 2], 3, 0),
    ("<answer>1 + </think>2</answer>", [1, 2], 3, 0),
    ("<think>x</think><answer>1 + 2</answer></answer>", [1, 2], 3, 0),
    ("<answer><answer>1 + 2</answer>", [1, 2], 3, 1),
    ("<answer>1 <answer> + 2</answer>", [1, 2], 3, 0),
    ("The answer is <answer> 1+2 </answer>.", [1, 2], 3, 1),
    ("<think>" + "x" * 500 + "</think>" + "<answer>1+2</answer>", [1, 2], 3, 1),
    ("<think>no closing think " + A("1 + 2"), [1, 2], 3, 1),  # no </think>: the <answer> ends the reasoning
    ("<think>1+2=3\n</thiok>\n" + A("1 + 2"), [1, 2], 3, 1),  # a misspelt </think> (the demo's model)
    (A("1 + 2") + " <think> more", [1, 2], 3, 1),  # the reasoning never closed: from the first <answer>
    ("no think tags " + A("1 + 2"), [1, 2], 3, 1),  # neither tag: the whole text counts
    # --- trailing "= N" ---------------------------------------------------------------------------
    (A("(6 - 2) * 25 = 100"), N3, T3, 1),
    (A("(6 - 2) * 25=100"), N3, T3, 1),
    (A("(6 - 2) * 25 = 100 "), N3, T3, 1),
    (A("(6 - 2) * 25 = 101"), N3, T3, 0),
    (A("(6 - 2) * 25 = 0100"), N3, T3, 0),
    (A("(6 - 2) * 25 ="), N3, T3, 0),
    (A("= 100"), N3, T3, 0),
    (A("100 = (6 - 2) * 25"), N3, T3, 0),
    (A("(6 - 2) * 25 = 100 = 100"), N3, T3, 0),
    (A("(6 - 2) * 25 == 100"), N3, T3, 0),
    (A("(6 - 2) * 25 = 4 * 25"), N3, T3, 0),
    (A("(6 - 2) * 25 = (100)"), N3, T3, 0),
    (A("(6 - 2 = 4) * 25"), N3, T3, 0),
    (A("6 * 2 * 25 = 100"), N3, T3, 0),  # claimed target, wrong value
    (A("(6 - 2) * 25 = -100"), N3, T3, 0),
    (A("(6 - 2 * 25 = 100"), N3, T3, 0),
    # --- unicode signs --------------------------------------------------------------------------
    (A("(6 − 2) × 25"), N3, T3, 1),
    (A("(6 − 2)×25"), N3, T3, 1),
    (A("100 ÷ (6 − 2) − 25"), [100, 6, 2, 25], 0, 1),
    (A("100 ÷ 4"), [100, 4], 25, 1),
    (A("(6 – 2) × 25"), N3, T3, 0),  # en dash is not a minus sign
    (A("(6 - 2) · 25"), N3, T3, 0),
    (A("(6 - 2) ✕ 25"), N3, T3, 0),
    (A("（6 - 2） * 25"), N3, T3, 0),  # full-width parentheses
    (A("(６ - 2) * 25"), N3, T3, 0),  # full-width digit
    (A("(6 - 2) * 25\u00a0"), N3, T3, 0),  # no-break space is not ASCII whitespace
    (A("(6 - 2) * 25 = １００"), N3, T3, 0),
    (A("(6 - 2) × 25 = 100"), N3, T3, 1),
    # --- forbidden constructs -------------------------------------------------------------------
    (A("(6 - 2) ** 25"), N3, T3, 0),
    (A("2 ** 6 + 25"), [2, 6, 25], 89, 0),
    (A("6 ^ 2 + 25"), [6, 2, 25], 61, 0),
    (A("(6 - 2) * 25.0"), N3, T3, 0),
    (A("(6 - 2) * 25."), N3, T3, 0),
    (A("(6.0 - 2) * 25"), N3, T3, 0),
    (A("(6 - 2) * 25 % 101"), [6, 2, 25, 101], 100, 0),
    (A("-2 + 6 * 25 - 48"), [2, 6, 25, 48], 100, 0),
    (A("(-2 + 6) * 25"), N3, T3, 0),
    (A("+(6 - 2) * 25"), N3, T3, 0),
    (A("(6 - +2) * 25"), N3, T3, 0),
    (A("6 - -2"), [6, 2], 8, 0),
    (A("6 * -2"), [6, 2], -12, 0),
    (A("(6 - 2)25"), N3, T3, 0),  # implicit multiplication
    (A("25(6 - 2)"), N3, T3, 0),
    (A("(25)(6 - 2)"), N3, T3, 0),
    (A("(6 - 2)(25)"), N3, T3, 0),
    (A("2(3)"), [2, 3], 6, 0),
    (A("(2)(3)"), [2, 3], 6, 0),
    (A("2 3"), [2, 3], 23, 0),
    (A("(6 - 2) * 25 ()"), N3, T3, 0),
    (A("() + (6 - 2) * 25"), N3, T3, 0),
    (A("(6 - 2) * () 25"), N3, T3, 0),
    (A("x = (6 - 2) * 25"), N3, T3, 0),
    (A("(6 - 2) * 25 apples"), N3, T3, 0),
    (A("four * 25"), N3, T3, 0),
    (A("abs(6 - 2) * 25"), N3, T3, 0),
    (A("(6 - 2) * 25;"), N3, T3, 0),
    (A("(6 - 2) * 25,"), N3, T3, 0),
    (A("[6 - 2] * 25"), N3, T3, 0),
    (A("{6 - 2} * 25"), N3, T3, 0),
    (A("(6 - 2) * 25 # comment"), N3, T3, 0),
    (A("(6 - 2) // 1 * 25"), [6, 2, 1, 25], 100, 0),
    (A("(6 - 2) * 25 +"), N3, T3, 0),
    (A("* (6 - 2) * 25"), N3, T3, 0),
    (A("(6 - 2 * 25"), N3, T3, 0),  # unbalanced
    (A("6 - 2) * 25"), N3, T3, 0),
    (A("(6 - 2)) * (25"), N3, T3, 0),
    (A(")6 - 2( * 25"), N3, T3, 0),
    (A("(6 - 2) * 25)"), N3, T3, 0),
    (A("(6 - 2) * (25"), N3, T3, 0),
    (A("(6 - 2) * 0x19"), N3, T3, 0),
    (A("(6 - 2) * 2_5"), N3, T3, 0),
    (A("(6 - 2) * 25e0"), N3, T3, 0),
    (A("(6 - 2) * 025"), [6, 2, 25], 100, 0),  # leading zero
    (A("(06 - 2) * 25"), N3, T3, 0),
    (A("(6 - 2) * 25 * 1j"), N3, T3, 0),
    (A("\\( (6 - 2) \\times 25 \\)"), N3, T3, 0),
    (A("$(6 - 2) * 25$"), N3, T3, 0),
    (A("`(6 - 2) * 25`"), N3, T3, 0),
    (A("(6 - 2) * 25\x00"), N3, T3, 0),
    (A("(6 - 2)\x00* 25"), N3, T3, 0),
    # --- multiset of numbers --------------------------------------------------------------------
    (A("(6 - 2) * 25 + 0"), N3, T3, 0),  # extra literal
    (A("4 * 25"), N3, T3, 0),  # missing number
    (A("(6 - 2) * 25 * 1"), N3, T3, 0),
    (A("(6 - 2) * 25"), [2, 6, 25, 1], T3, 0),  # a number unused
    (A("(6 - 2) * 25"), [2, 6, 26], T3, 0),
    (A("(6 - 6) * 25 + 100"), [6, 25, 100], 100, 0),  # 6 used twice
    # a number used twice with the literal count right: 2 is given once, 3 is left unused (the rule:
    # the literals' multiset equals the given numbers', so every number is used, exactly once)
    (A("2 * 2 * 25"), [2, 3, 25], 100, 0),
    (A("2 * 25 * 2"), [3, 25, 2], 100, 0),
    (A("2 * 2 * 25 = 100"), [2, 3, 25], 100, 0),
    (A("(6 - 2) * 25"), [2, 2, 6, 25], T3, 0),
    (A("2 * 2 * 25"), [2, 2, 25], 100, 1),  # duplicates given, duplicates used
    (A("2 * 25 * 2"), [2, 25, 2], 100, 1),
    (A("2 * 2 * 25"), [2, 25], 100, 0),
    (A("25 * 4"), [2, 5, 4], 100, 0),  # digit concatenation of 2 and 5
    (A("2 5 * 4"), [2, 5, 4], 100, 0),
    (A("62 - 2"), [6, 2, 2], 60, 0),
    (A("6 - 2"), [62, 2], 4, 0),
    (A("100"), [100], 100, 1),
    (A("100"), [10, 0], 100, 0),
    (A("(6 - 2) * 25"), [], T3, 0),
    # --- big numbers: beyond int64 intermediates, exact slow path --------------------------------
    (A("999999999 * 999999999 * 999999999 * 999999999"), BIG, 999_999_999**4, 1),
    (A("999999999 * 999999999 * 999999999 * 999999999"), BIG, 999_999_999**4 + 1, 0),
    (A("999999999 * 999999999 * 999999999 * 999999999"), BIG, (999_999_999**4) % 2**64, 0),
    (A("999999999 * 999999999 * 999999999 * 999999999"), BIG, (999_999_999**4) % 2**63, 0),
    (A("999999999 * 999999999 * 999999999 / 999999999"), BIG, 999_999_999**2, 1),
    (A("999999999 * 999999999 * 999999999 - 999999999"), BIG, 999_999_999**3 - 999_999_999, 1),
    (A("(999999999 * 999999999 * 999999999 - 999999999 * 999999999 * 999999999)"), [999_999_999] * 6, 0, 1),
    (A("4294967296 * 4294967296 / 4294967296"), [2**32] * 3, 2**32, 1),
    (A("4294967296 * 4294967296 - 1"), [2**32, 2**32, 1], 2**64 - 1, 1),
    (A("4294967296 * 4294967296 - 1"), [2**32, 2**32, 1], -1, 0),  # int64 wrap would say -1
    (A("3037000500 * 3037000500"), [3037000500] * 2, 3037000500**2, 1),
    (A("12345678901234567890 + 1"), [12345678901234567890, 1], 12345678901234567891, 1),
    (A("123456789012345678901234567890 - 123456789012345678901234567890"), [123456789012345678901234567890] * 2, 0, 1),
    (A("9223372036854775807 + 1"), [9223372036854775807, 1], 9223372036854775808, 1),
    (A("9223372036854775807 + 1"), [9223372036854775807, 1], -9223372036854775808, 0),
    (A("1 / 999999999 / 999999999 / 999999999 * 999999999 * 999999999 * 999999999"),
     [1] + [999_999_999] * 6, 1, 1),
    (A("1" * 1500 + " - " + "1" * 1500), [int("1" * 1500)] * 2, 0, 0),  # literal too long to verify
    # --- hostile input: nothing executed, nothing hangs -----------------------------------------------
    (A("9**9**9**9"), [9, 9, 9, 9], 0, 0),
    (A("9 ** 9 ** 9 ** 9"), [9, 9, 9, 9], 1, 0),
    (A("__import__('os').system('touch /tmp/r1lab_pwned')"), [1], 0, 0),
    (A("__import__(\"os\").system(\"echo hi\") or 1"), [1], 1, 0),
    (A("exec('1')"), [1], 1, 0),
    (A("(lambda: 1)()"), [1], 1, 0),
    (A("1 if True else 2"), [1, 2], 1, 0),
    (A("[1][0] + 2"), [1, 0, 2], 3, 0),
    (A("'1' + '2'"), [1, 2], 12, 0),
    (A("1e9999"), [1], 0, 0),
]


def _deep(depth: int, inner: str = "1 + 2", extra_close: int = 0) -> str:
    return "(" * depth + inner + ")" * (depth + extra_close)


PATHOLOGICAL: list[tuple[str, list[int], int, int]] = [
    (A(_deep(1000)), [1, 2], 3, 1),  # Python's parser refuses this depth
    (A(_deep(1000)), [1, 2], 4, 0),
    (A(_deep(1000) + " * " + _deep(999, "3")), [1, 2, 3], 9, 1),
    (A(_deep(10_000)), [1, 2], 3, 1),
    (A(_deep(10_000, extra_close=1)), [1, 2], 3, 0),
    (A(_deep(10_000, extra_close=-1)), [1, 2], 3, 0),
    (A("(" * 10_000), [1, 2], 3, 0),
    (A(")" * 10_000), [1, 2], 3, 0),
    (A("()" * 10_000), [1, 2], 3, 0),
    ("<think>" + "x" * 100_000 + "</think>" + A("1 + 2"), [1, 2], 3, 1),  # 100 KB completion
    ("<think>" + "1 + 2 " * 20_000 + "</think>" + A("1 * 2"), [1, 2], 3, 0),
    (A("1 + " * 25_000 + "1"), [1] * 25_001, 25_001, 1),  # 100 KB answer, many numbers
    (A("1 + " * 25_000 + "1"), [1, 1], 2, 0),
    (A("9" * 100_000), [1], 1, 0),  # a 100 KB literal
    (A("9" * 100_000), [int("9" * 1000)], 1, 0),
    ("<answer>" * 10_000 + "1 + 2" + "</answer>" * 10_000, [1, 2], 3, 0),
    ("</think>" * 10_000 + A("1 + 2"), [1, 2], 3, 1),
    (A("9" + "**9" * 10_000), [9] * 10_001, 9, 0),
]


ALL_CASES = CASES + PATHOLOGICAL


def test_case_count():
    assert len(ALL_CASES) >= 150


@pytest.mark.parametrize("i", range(len(ALL_CASES)))
def test_case(i):
    completion, numbers, target, expected = ALL_CASES[i]
    got = countdown_reward([completion], [numbers], [target])
    assert got.dtype == torch.float32 and got.shape == (1,)
    assert got.item() == expected, (completion[:200], numbers, target)


def test_all_cases_in_one_batch():
    """Same answers when every case shares one batch (rows must not leak into each other)."""
    completions, numbers, targets, expected = zip(*ALL_CASES)
    got = countdown_reward(list(completions), list(numbers), list(targets))
    assert got.tolist() == [float(e) for e in expected]
    # Reversed order moves every row's neighbours.
    got = countdown_reward(list(completions[::-1]), list(numbers[::-1]), list(targets[::-1]))
    assert got.tolist() == [float(e) for e in expected[::-1]]


def test_nothing_is_executed(tmp_path):
    marker = tmp_path / "pwned"
    completion = A(f"__import__('os').system('touch {marker}')")
    assert countdown_reward([completion], [[1]], [0]).item() == 0
    assert not marker.exists()


def test_empty_batch():
    assert countdown_reward([], [], []).shape == (0,)


def test_mismatched_lengths_raise():
    with pytest.raises(ValueError):
        countdown_reward(["<answer>1</answer>"], [[1], [2]], [1])


def test_registered_wrapper_takes_dataset_columns():
    fn = get_reward("countdown")
    got = fn([A("(6 - 2) * 25"), A("6 * 2 * 25")], numbers=[N3, N3], target=[T3, T3], answer=["x", "y"])
    assert got.tolist() == [1.0, 0.0]


def test_numpy_and_tuple_columns():
    import numpy as np

    got = countdown_reward([A("(6 - 2) * 25")] * 2, [np.array(N3), tuple(N3)], np.array([T3, T3]))
    assert got.tolist() == [1.0, 1.0]


# ---------------------------------------------------------------------------------------------
# Random cross-check against an independent reference.

_REF_TOKEN = re.compile(r"\s*(?:(\d+)|(.))", re.DOTALL)


def reference(completion: str, numbers: list[int], target: int) -> int:
    """Slow reference: recursive descent over Fractions, written independently of the package."""
    if "</think>" not in completion and "<think>" in completion:  # ends at the first <answer>, if any
        completion = completion[completion.find("<answer>"):] if "<answer>" in completion else ""
    tail = completion.split("</think>")[-1]
    close = tail.rfind("</answer>")
    if close < 0 or tail.rfind("<answer>", 0, close) < 0:
        return 0
    text = tail[tail.rfind("<answer>", 0, close) + len("<answer>") : close]
    text = text.replace("×", "*").replace("÷", "/").replace("−", "-")
    if any(ch.isspace() and ch not in " \t\n\r\f\v" for ch in text):
        return 0
    tokens = [m.group(1) or m.group(2) for m in _REF_TOKEN.finditer(text) if m.group(1) or m.group(2)]
    if tokens.count("=") > 1:
        return 0
    if "=" in tokens:
        at = tokens.index("=")
        rhs = tokens[at + 1 :]
        if len(rhs) != 1 or not rhs[0].isdigit() or (len(rhs[0]) > 1 and rhs[0][0] == "0") or int(rhs[0]) != target:
            return 0
        tokens = tokens[:at]
    pos = 0
    used: list[int] = []

    def peek():
        return tokens[pos] if pos < len(tokens) else None

    def expr():
        nonlocal pos
        value = term()
        while peek() in ("+", "-"):
            op = tokens[pos]
            pos += 1
            rhs = term()
            value = value + rhs if op == "+" else value - rhs
        return value

    def term():
        nonlocal pos
        value = factor()
        while peek() in ("*", "/"):
            op = tokens[pos]
            pos += 1
            rhs = factor()
            if op == "*":
                value = value * rhs
            elif rhs == 0:
                raise ZeroDivisionError
            else:
                value = value / rhs
        return value

    def factor():
        nonlocal pos
        tok = peek()
        if tok is None:
            raise SyntaxError
        if tok.isdigit() and tok.isascii():
            if len(tok) > 1 and tok[0] == "0":
                raise SyntaxError
            pos += 1
            used.append(int(tok))
            return Fraction(int(tok))
        if tok == "(":
            pos += 1
            value = expr()
            if peek() != ")":
                raise SyntaxError
            pos += 1
            return value
        raise SyntaxError

    try:
        value = expr()
        if pos != len(tokens):
            return 0
    except (SyntaxError, ZeroDivisionError):
        return 0
    return int(sorted(used) == sorted(numbers) and value == target)


def _random_case(rng: random.Random) -> tuple[str, list[int], int]:
    nums = [rng.choice([0, 1, 2, 3, 5, 7, 10, 25, 50, 75, 99, 100, 1000, 99999]) for _ in range(rng.randint(1, 6))]
    parts = [str(x) for x in nums]
    rng.shuffle(parts)
    while len(parts) > 1:  # random binary tree, random parentheses
        i = rng.randrange(len(parts) - 1)
        op = rng.choice(["+", "-", "*", "/", "×", "÷", "−"])
        sp = rng.choice(["", " ", "  "])
        joined = f"{parts[i]}{sp}{op}{sp}{parts[i + 1]}"
        if rng.random() < 0.6:
            depth = rng.randint(1, 3)
            joined = "(" * depth + joined + ")" * depth
        parts[i : i + 2] = [joined]
    text = parts[0]
    for _ in range(rng.choice([0, 0, 0, 1, 2])):  # corruptions
        kind = rng.randrange(5)
        at = rng.randrange(len(text) + 1)
        if kind == 0:
            text = text[:at] + rng.choice("()+-*/ 0123456789=x.^") + text[at:]
        elif kind == 1 and text:
            text = text[:at] + text[at + 1 :]
        elif kind == 2:
            text = text.replace("(", "", 1)
        elif kind == 3:
            text = "-" + text
        else:
            text = text.replace(" ", "", 1)
    # Targets: the true value when it is a whole number (so many rows are correct), else noise.
    value = _value(text)
    if value is not None and value.denominator == 1 and rng.random() < 0.8:
        target = int(value)
    else:
        target = rng.randint(-5, 200)
    if rng.random() < 0.1:
        text += f" = {target if rng.random() < 0.7 else target + 1}"
    wrapper = rng.choice(["<answer>{}</answer>", "<think>try <answer>1</answer></think><answer>{}</answer>",
                          "<answer>{}", "<answer>0</answer> no: <answer>{}</answer>"])
    return wrapper.format(text), nums, target


def _value(text: str):
    """Exact value of a (possibly corrupted) expression, or None; only used to pick targets."""
    text = text.replace("×", "*").replace("÷", "/").replace("−", "-")
    if not re.fullmatch(r"[0-9+\-*/() ]+", text):
        return None
    try:
        return _eval_fraction(text)
    except (IndexError, KeyError, ValueError, ZeroDivisionError):
        return None


def _eval_fraction(text: str) -> Fraction:
    """Evaluate a plain expression with Fractions (same grammar as the reference)."""
    tokens = re.findall(r"\d+|\S", text)
    out: list = []
    ops: list[str] = []
    prec = {"+": 1, "-": 1, "*": 2, "/": 2}

    def apply():
        b, a, op = out.pop(), out.pop(), ops.pop()
        out.append({"+": a + b, "-": a - b, "*": a * b, "/": a / b}[op])

    for tok in tokens:
        if tok.isdigit():
            out.append(Fraction(int(tok)))
        elif tok == "(":
            ops.append(tok)
        elif tok == ")":
            while ops[-1] != "(":
                apply()
            ops.pop()
        else:
            while ops and ops[-1] != "(" and prec[ops[-1]] >= prec[tok]:
                apply()
            ops.append(tok)
    while ops:
        apply()
    (value,) = out
    return value


def test_random_cross_check_against_reference():
    rng = random.Random(1234)
    cases = [_random_case(rng) for _ in range(4000)]
    completions, numbers, targets = map(list, zip(*cases))
    got = countdown_reward(completions, numbers, targets).tolist()
    want = [float(reference(c, x, t)) for c, x, t in cases]
    mismatches = [(c, x, t, g) for (c, x, t), g, w in zip(cases, got, want) if g != w]
    assert not mismatches, mismatches[:5]
    assert 0.2 < sum(want) / len(want) < 0.8  # the generator covers both outcomes


def test_exact_path_agrees_with_reference():
    """The slow exact path, called directly, follows the same rules as the vectorized path."""
    rng = random.Random(99)
    from r1lab.rewards.spans import last_answer_span

    for _ in range(1500):
        completion, nums, target = _random_case(rng)
        span = last_answer_span(completion)
        want = reference(completion, nums, target)
        got = 0 if span is None else int(score_expression_exact(span, nums, target))
        assert got == want, (completion, nums, target)


def test_vectorized_path_agrees_with_the_reference_evaluator():
    """The package's one statement of the rules (``score_expression_exact``, which the data
    generator and the evaluation use too) and the vectorized kernel agree on every labelled
    case and on random ones."""
    from r1lab.rewards.spans import last_answer_span

    rng = random.Random(7)
    cases = [c[:3] for c in ALL_CASES] + [_random_case(rng) for _ in range(3000)]
    completions, numbers, targets = map(list, zip(*cases))
    kernel = countdown_reward(completions, numbers, targets).tolist()
    for (completion, nums, target), got in zip(cases, kernel):
        span = last_answer_span(completion)
        want = span is not None and score_expression_exact(span, nums, target)
        assert got == float(want), (completion[:200], nums, target)
