"""Cold-start traces: every step's arithmetic is checked independently with Fractions, every
attempt consumes the pool of numbers correctly, and every final answer solves its problem."""
import random
import re
from collections import Counter
from fractions import Fraction

import pytest

from r1lab.data.countdown import generate_problems
from r1lab.data.traces import make_sft_dataset, make_trace

VAL = r"\d+|\(-?\d+(?:/\d+)?\)"
STEP = re.compile(rf"({VAL})([-+*/])({VAL})=({VAL})")
OPS = {"+": lambda a, b: a + b, "-": lambda a, b: a - b, "*": lambda a, b: a * b, "/": lambda a, b: a / b}


def value(text: str) -> Fraction:
    return Fraction(text.strip("()"))


def fraction_eval(expr: str) -> Fraction:
    assert re.fullmatch(r"[0-9+\-*/()]+", expr), expr
    return eval(re.sub(r"\d+", lambda m: f"Fraction({m.group()})", expr))


def parse_trace(response: str, numbers, target):
    """Check the whole trace; return (attempt verdicts, has check line, answer expression)."""
    *body, close, answer_line = response.split("\n")
    assert close == "</think>"
    m = re.fullmatch(r"<answer>(.+)</answer>", answer_line)
    assert m, answer_line
    answer = m.group(1)
    verdicts, checked = [], False
    for line in body:
        if line.startswith("check "):
            cm = re.fullmatch(rf"check ([0-9+\-*/()]+)=({VAL}) ok", line)
            assert cm, line
            assert fraction_eval(cm.group(1)) == value(cm.group(2)), line  # the check is true arithmetic
            assert cm.group(1) == answer
            checked = True
            continue
        assert not checked, "attempts after the check line"
        *steps, verdict = line.split(" ")
        assert verdict in ("no", "yes"), line
        pool = Counter(Fraction(n) for n in numbers)
        assert len(steps) == len(numbers) - 1, line
        for step in steps:
            sm = STEP.fullmatch(step)
            assert sm, step
            a, op, b, c = value(sm.group(1)), sm.group(2), value(sm.group(3)), value(sm.group(4))
            assert OPS[op](a, b) == c, step  # correct arithmetic
            for operand in (a, b):
                assert pool[operand] > 0, (line, "uses a number it does not have")
                pool[operand] -= 1
            pool[c] += 1
        final = +pool
        assert sum(final.values()) == 1
        verdicts.append((verdict, next(iter(final)) == target))
    return verdicts, checked, answer


def solves(expr, numbers, target) -> bool:
    return sorted(int(n) for n in re.findall(r"\d+", expr)) == sorted(numbers) and fraction_eval(expr) == target


def test_worked_example_format():
    trace = make_trace([3, 5, 7], 22, random.Random(0))
    verdicts, checked, answer = parse_trace(trace, [3, 5, 7], 22)
    assert checked and verdicts[-1] == ("yes", True) and solves(answer, [3, 5, 7], 22)
    assert trace.endswith(f"\n</think>\n<answer>{answer}</answer>")
    assert "<think>" not in trace


@pytest.mark.parametrize("num_numbers,count", [(3, 3000), (4, 150)])
def test_all_traces_correct(num_numbers, count):
    problems = generate_problems(count, num_numbers=num_numbers, seed=11)
    sft = make_sft_dataset(problems, seed=0)
    assert all(sft["response_correct"])
    dead_ends = Counter()
    for row in sft:
        verdicts, checked, answer = parse_trace(row["response"], row["numbers"], row["target"])
        assert checked
        assert solves(answer, row["numbers"], row["target"])
        *dead, last = verdicts
        assert last == ("yes", True)
        assert all(v == ("no", False) for v in dead)  # dead ends are genuinely wrong
        assert len(set(row["response"].split("\n")[: len(dead)])) == len(dead)  # no repeated attempt
        dead_ends[len(dead)] += 1
        if num_numbers == 3:
            assert 40 <= len(row["response"]) <= 250
    if num_numbers == 3:
        assert set(dead_ends) == {0, 1, 2, 3}  # uniform in [0, max_attempts)
        assert min(dead_ends.values()) > count / 4 * 0.8


def test_fraction_fallback():
    # 1 5 5 5 -> 24 needs 5*(5-1/5): no all-integer route exists.
    trace = make_trace([1, 5, 5, 5], 24, random.Random(3))
    verdicts, _, answer = parse_trace(trace, [1, 5, 5, 5], 24)
    assert verdicts[-1] == ("yes", True) and solves(answer, [1, 5, 5, 5], 24)
    assert "(24/5)" in trace or "(1/5)" in trace
    with pytest.raises(ValueError, match="no expression"):
        make_trace([1, 1], 5, random.Random(0))


def test_deterministic_in_seed():
    problems = generate_problems(200, seed=2)
    a = make_sft_dataset(problems, seed=7)["response"]
    assert a == make_sft_dataset(problems, seed=7)["response"]
    assert a != make_sft_dataset(problems, seed=8)["response"]
    assert make_sft_dataset(problems.select(range(50)), seed=7)["response"] == a[:50]


def test_behaviours_off_has_no_dead_ends_or_check():
    problems = generate_problems(300, seed=4)
    sft = make_sft_dataset(problems, seed=0, behaviours=False)
    for row in sft:
        verdicts, checked, answer = parse_trace(row["response"], row["numbers"], row["target"])
        assert verdicts == [("yes", True)] and not checked
        assert solves(answer, row["numbers"], row["target"])


@pytest.mark.parametrize("behaviours", [True, False])
def test_wrong_answer_rate(behaviours):
    problems = generate_problems(400, seed=5)
    sft = make_sft_dataset(problems, seed=0, wrong_answer_rate=0.25, behaviours=behaviours)
    assert sum(not c for c in sft["response_correct"]) == 100
    for row in sft:
        verdicts, _, answer = parse_trace(row["response"], row["numbers"], row["target"])  # arithmetic still right
        assert solves(answer, row["numbers"], row["target"]) == row["response_correct"]
        assert verdicts[-1][0] == "yes"
    with pytest.raises(ValueError, match="wrong_answer_rate"):
        make_sft_dataset(problems, seed=0, wrong_answer_rate=1.5)
