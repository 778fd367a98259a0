"""Behaviour classifiers on labelled examples: (text, expected counts of the non-zero behaviours)."""
import doctest

import numpy as np
import pytest

from r1lab.rewards import behaviours
from r1lab.rewards.behaviours import BEHAVIOURS, behaviour_counts, behaviour_summary, count_behaviours, reasoning_text

LABELLED = [
    # the tiny model's trace vocabulary (r1lab.tasks.countdown_traces)
    ("9+7=16 16-8=8 no", {"backtracking": 1}),
    ("9+7=16 16-8=8 no\n9-7=2 8*2=16 yes", {"backtracking": 1}),
    ("7*5=35 35-3=32 no\n7*3=21 21-5=16 no\n5*3=15 15+7=22 yes\ncheck 5*3+7=22 ok\n</think>\n<answer>5*3+7</answer>",
     {"backtracking": 2, "verification": 1}),
    ("check 8*(9-7)=16 ok", {"verification": 1}),
    ("5*3=15 15+7=22 yes\ncheck 5*3+7=22 ok", {"verification": 1}),
    ("(24/5)*5=24 no", {"backtracking": 1}),
    ("5*3=15 15+7=22 yes", {}),
    ("no way to tell", {}),  # "no" not at the end of a computation line
    ("</think>\n9+7=16 no", {}),  # after </think>: not reasoning
    # a check whose line states a false claim (r1lab.rewards.claims) is a false verification
    ("check 5*4+3=19 ok", {"false_verification": 1}),  # 5*4+3 is 23
    ("5*4=20 20+3=23 yes\ncheck 5*4+3=23 ok", {"verification": 1}),
    ("6-1=7 7-1=7 yes\ncheck 6-1/1=10 ok\n</think>\n<answer>6-1/1</answer>", {"false_verification": 1}),
    ("6-1=7 7-1=7 yes\ncheck 6-1-1=4 ok", {"verification": 1}),  # the false claims are on another line
    ("check 9+7=16 ok\ncheck 16-8=9 ok", {"verification": 1, "false_verification": 1}),
    ("Let me check: 5*3+7 = 21. Correct.", {"false_verification": 1}),
    ("check <tool>5*3+7=19</tool><result>22</result> ok", {"verification": 1}),  # a tool call claims nothing
    # the calculator-tool trace vocabulary
    ("<tool>7*5-3</tool><result>32</result> no\n<tool>5*3+7</tool><result>22</result> yes\n</think>\n<answer>5*3+7</answer>",
     {"backtracking": 1}),
    ("<tool>7*5-3</tool><result>32</result> no\n<tool>7*3-5</tool><result>16</result>  no  \n", {"backtracking": 2}),
    ("<tool>5*3+7</tool><result>22</result> yes", {}),
    ("<tool>7*5</tool><result>35</result> now", {}),  # "no" must end the line
    # English reasoning
    ("Let me check: 5*3+7 = 22. Correct.", {"verification": 1}),
    ("Let's verify the result by plugging it back in.", {"verification": 2}),
    ("I will double-check the sum.", {"verification": 1}),
    ("To confirm, 6*4 = 24.", {"verification": 1}),
    ("Verifying: 3+4=7, so that works.", {"verification": 2}),
    ("So the answer is indeed correct.", {"verification": 1}),
    ("That doesn't work because 40 is too big.", {"backtracking": 2}),
    ("This is not right. Let me try again.", {"backtracking": 2}),
    ("That's wrong; let's try another approach.", {"backtracking": 2}),
    ("I'll start over and go back to the beginning.", {"backtracking": 2}),
    ("Dead end. Try something else.", {"backtracking": 2}),
    ("First, I add 3 and 5. Next, we multiply by 2.", {"subgoal": 2}),
    ("Step 1: find a pair that makes 10.", {"subgoal": 1}),
    ("Let's break this down into an intermediate goal of 12.", {"subgoal": 2}),
    ("Let's first compute 9-7.", {"subgoal": 1}),
    ("Working backwards from the target 24:", {"backward_chaining": 2}),
    ("To get 24, we need 4 and 6.", {"backward_chaining": 1}),
    ("21 is 3 away from the target.", {"backward_chaining": 1}),
    ("What number times 4 gives 24?", {"backward_chaining": 1}),
    ("The target minus 7 is 15.", {"backward_chaining": 1}),
    ("Wait, that uses 5 twice.", {"reflection": 1}),
    ("Hmm, on second thought the product is 35.", {"reflection": 2}),
    ("Aha! 7*3+1 = 22.", {"reflection": 1}),
    ("Hold on, I made a mistake.", {"reflection": 2}),
    ("Actually, let me reconsider.", {"reflection": 2}),
    ("WAIT. Let me re-examine the numbers.", {"reflection": 2}),
    ("Wait, wait. Let me check: 3*8 = 24. Yes, that works.", {"reflection": 2, "verification": 2}),
    ("The weights are awaiting review.", {}),  # no whole-word "wait"
    ("We compute 3 + 4 = 7 and then 7 * 2 = 14.", {}),
    ("", {}),
]


def test_enough_labelled_examples():
    assert len(LABELLED) >= 30
    for name in BEHAVIOURS:
        assert any(name in labels for _, labels in LABELLED), name


@pytest.mark.parametrize("text,expected", LABELLED)
def test_labelled_example(text, expected):
    want = {b: expected.get(b, 0) for b in BEHAVIOURS}
    assert count_behaviours(text) == want


def test_batched_counts_match_one_by_one_and_summary():
    texts = [t for t, _ in LABELLED]
    counts = behaviour_counts(texts)
    for i, t in enumerate(texts):
        assert {b: int(counts[b][i]) for b in BEHAVIOURS} == count_behaviours(t)
    summary = behaviour_summary({"verification": np.array([0, 2, 1, 0])})
    assert summary == {"verification": {"mean": 0.75, "rate": 0.5}}


def test_reasoning_text_stops_at_last_think_close():
    assert reasoning_text("a</think>b</think>c") == "a</think>b"
    assert reasoning_text("no tags") == "no tags"


def test_order_of_behaviours_is_kept_and_doctests():
    assert BEHAVIOURS[:5] == ("verification", "backtracking", "subgoal", "backward_chaining", "reflection")
    assert BEHAVIOURS[-1] == "false_verification"
    assert doctest.testmod(behaviours).failed == 0
