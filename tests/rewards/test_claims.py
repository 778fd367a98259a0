"""Arithmetic claims on labelled examples: (text, [(expr, value, true), ...]) in order."""
import doctest
import json

import numpy as np
import pytest

from r1lab.rewards import claims as claims_module
from r1lab.rewards.claims import Claim, claim_counts, find_claims, has_false_claim, mask_tool_text, process_summary

TRACE = (
    "7*5=35 35-3=32 no\n7*3=21 21-5=16 no\n5*3=15 15+7=22 yes\ncheck 5*3+7=22 ok\n</think>\n<answer>5*3+7</answer>"
)
TOOL_TRACE = (
    "<tool>7*5-3</tool><result>32</result> no\n<tool>5*3+7</tool><result>22</result> yes\n</think>\n<answer>5*3+7</answer>"
)
REJECTED = "6-1=7 7-1=7 yes\ncheck 6-1/1=10 ok\n</think>\n<answer>6-1/1</answer>"

LABELLED = [
    # the tiny model's trace: 7 claims, all true (2 per attempt line, 1 check)
    (TRACE, [("7*5", "35", True), ("35-3", "32", True), ("7*3", "21", True), ("21-5", "16", True),
             ("5*3", "15", True), ("15+7", "22", True), ("5*3+7", "22", True)]),
    (TOOL_TRACE, []),  # tool calls are requests, results the tool's: nothing the model claims
    ("check 5*4+3=19 ok", [("5*4+3", "19", False)]),  # after GRPO: 5*4+3 is 23
    ("check 5*4+3=23 ok", [("5*4+3", "23", True)]),
    ("6-1=7 7-1=7 yes", [("6-1", "7", False), ("7-1", "7", False)]),
    ("check 6-1/1=10 ok", [("6-1/1", "10", False)]),
    (REJECTED, [("6-1", "7", False), ("7-1", "7", False), ("6-1/1", "10", False)]),
    ("(24/5)*5=24 no", [("(24/5)*5", "24", True)]),
    ("24/5=(24/5)", [("24/5", "(24/5)", True)]),
    ("24/5=(23/5)", [("24/5", "(23/5)", False)]),
    ("12/5=12/5", [("12/5", "12/5", True)]),
    ("9/2=4.5", [("9/2", "4.5", True)]),
    ("1.5*2=3", [("1.5*2", "3", True)]),
    ("0.1+0.2=0.3", [("0.1+0.2", "0.3", True)]),  # exact: no float rounding
    ("5-7=-2", [("5-7", "-2", True)]),
    ("5-7=(-2)", [("5-7", "(-2)", True)]),
    ("5-7=2", [("5-7", "2", False)]),
    ("5 * 4 + 3 = 23", [("5 * 4 + 3", "23", True)]),
    ("7 × 3 − 1 = 20 and 8 ÷ 2 = 4", [("7 × 3 − 1", "20", True), ("8 ÷ 2", "4", True)]),
    ("so 12 + 7 = 19.", [("12 + 7", "19", True)]),
    ("Let me check: 5*3+7 = 22. Correct.", [("5*3+7", "22", True)]),
    ("(so 3+4=7)", [("3+4", "7", True)]),
    ("i.e. (3+4)*2=14", [("(3+4)*2", "14", True)]),
    ("6/0=0", [("6/0", "0", False)]),  # division by zero: a false claim
    ("5*3=15 -> 15+7=22", [("5*3", "15", True), ("15+7", "22", True)]),
    ("2*3 = 3+3 = 6", [("3+3", "6", True)]),  # "= 3+3" states no number: only the last is a claim
    # not claims
    ("3+4 = ", []),  # no number after '='
    ("3+4 = seven", []),
    ("x = 7", []),  # no operator
    ("(5)=5", []),
    ("-2+5=3", []),  # no unary minus: not the claim 2+5=3
    ("2(3+4)=14", []),  # implicit multiplication
    ("x2+3=5", []),
    ("a == b, 2*3 <= 7, 2+2 != 5", []),
    ("</think>\n1+1=3", []),  # after </think>: the answer, not reasoning
    ("<tool>1+1=3</tool>", []),  # inside a tool call: a request
    ("<result>1+1=3</result>", []),  # the tool's text
    ("<tool>1+1=3", []),  # an unclosed call masks to the end
    ("", []),
]


def test_enough_labelled_examples():
    assert len(LABELLED) >= 30
    assert any(c for _, cs in LABELLED for c in cs if not c[2]) and any(c for _, cs in LABELLED for c in cs if c[2])


@pytest.mark.parametrize("text,expected", LABELLED)
def test_labelled_example(text, expected):
    assert [(c.expr, c.value, c.true) for c in find_claims(text)] == expected


def test_positions_index_the_reasoning_text():
    text = "so 12 + 7 = 19.\n<tool>1+2</tool><result>3</result> then 3*3=9</think>1+1=2"
    found = find_claims(text)
    assert [text[c.start : c.end] for c in found] == ["12 + 7 = 19", "3*3=9"]
    assert found[0] == Claim("12 + 7", "19", True, 3, 14)


def test_mask_keeps_length_and_positions():
    text = "a<tool>1+1=3</tool>b<result>x</result>c<tool>open"
    masked = mask_tool_text(text)
    assert len(masked) == len(text)
    assert masked.replace("\x00", "") == "abc"
    assert mask_tool_text("plain 1+1=2") == "plain 1+1=2"


def test_counts_and_false_claim_flag():
    texts = [TRACE, REJECTED, TOOL_TRACE, "check 5*4+3=19 ok\n</think>"]
    counts = claim_counts(texts)
    assert counts["claims"].tolist() == [7, 3, 0, 1]
    assert counts["true_claims"].tolist() == [7, 0, 0, 0]
    assert counts["claims"].dtype == np.int64
    assert [has_false_claim(t) for t in texts] == [False, True, False, True]


def test_process_summary():
    texts = [TRACE, REJECTED, TOOL_TRACE, "check 5*4+3=19 ok\n</think>"]
    out = process_summary(texts, np.array([1.0, 1.0, 0.0, 0.0]))
    assert out == {
        "num_claims": 11.0,
        "claims_per_completion": 11 / 4,
        "true_claim_share": 7 / 11,
        "correct_with_false_claim": 0.5,  # of the 2 correct ones, REJECTED has a false claim
        "false_claim_completions": 0.5,
    }
    json.dumps(out, allow_nan=False)


def test_process_summary_without_claims_or_correct_completions():
    out = process_summary([TOOL_TRACE, "no arithmetic"], np.array([0, 0]))
    # no claim: nothing false, share 1.0; num_claims says there was nothing to judge
    assert out == {"num_claims": 0.0, "claims_per_completion": 0.0, "true_claim_share": 1.0,
                   "correct_with_false_claim": 0.0, "false_claim_completions": 0.0}
    empty = process_summary([], np.zeros(0))
    assert empty["claims_per_completion"] == 0.0 and empty["true_claim_share"] == 1.0
    json.dumps(empty, allow_nan=False)
    with pytest.raises(ValueError, match="claim counts"):
        process_summary(["1+1=2"], np.zeros(2))


def test_degenerate_text_is_bounded():
    text = ("1 " * 5000) + "+1=2 " + "= " * 2000 + "9" * 5000 + "=9"
    found = find_claims(text)  # the run before '=' is capped: no quadratic blow-up, no huge literals
    assert all(len(c.expr) <= claims_module.MAX_EXPR_CHARS for c in found)


def test_doctests():
    assert doctest.testmod(claims_module).failed == 0
