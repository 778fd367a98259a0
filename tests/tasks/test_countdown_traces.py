"""Cold-start traces: every step's arithmetic is checked independently with Fractions, every
attempt consumes the pool of numbers correctly, and every final answer solves its problem."""
import random
import re
from collections import Counter
from fractions import Fraction

import pytest

from r1lab.tasks.countdown import generate_problems
from r1lab.tasks.countdown_traces import all_attempts, make_sft_dataset, make_trace

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


# --- tool traces: each attempt is one calculator call checking the whole expression ------------

TOOL_LINE = re.compile(r"<tool>([0-9+\-*/()]+)=(\d+)</tool><result>(true|false: -?\d+(?:/\d+)?)</result> (no|yes)")


def shown(value: Fraction) -> str:
    return str(value.numerator) if value.denominator == 1 else f"{value.numerator}/{value.denominator}"


def parse_tool_trace(response: str, numbers, target: int | None = None):
    """Check a tool trace; return (attempts as (expression, value, verdict), answer). Each call
    checks the attempt against ``target`` and its result is the exact verdict (``true`` /
    ``false: <value>``), which the line's own verdict copies (except where a wrong answer is
    planted: the caller checks that)."""
    *body, close, answer_line = response.split("\n")
    assert close == "</think>"
    m = re.fullmatch(r"<answer>(.+)</answer>", answer_line)
    assert m, answer_line
    attempts = []
    for line in body:
        lm = TOOL_LINE.fullmatch(line)
        assert lm, line  # no check line, nothing but calls
        expr, called_target, result, verdict = lm.groups()
        assert target is None or int(called_target) == target, line
        assert sorted(int(n) for n in re.findall(r"\d+", expr)) == sorted(numbers), line  # every number once
        value = fraction_eval(expr)
        assert result == ("true" if value == int(called_target) else f"false: {shown(value)}"), line  # exact, as the calculator writes it
        attempts.append((expr, value, verdict))
    assert attempts and attempts[-1][2] == "yes" and all(v == "no" for _, _, v in attempts[:-1])
    assert m.group(1) == attempts[-1][0]  # the answer is the final call's expression
    assert len({e for e, _, _ in attempts}) == len(attempts)  # never the same call twice
    return attempts, m.group(1)


def plain_attempt_exprs(response: str, numbers) -> list[set[str]]:
    """For each attempt line of a plain trace, the expressions of the attempts that read so (equal
    numbers make one line stand for a few orderings, e.g. ``4/(9-5)`` and ``(9-5)/4``)."""
    by_line = {}
    for integers_only in (True, False):
        for a in all_attempts(tuple(sorted(numbers)), integers_only):
            by_line.setdefault(a.line("").rstrip(), set()).add(a.expr)
    lines = [l for l in response.split("\n")[:-2] if not l.startswith("check ")]
    return [by_line[l.rsplit(" ", 1)[0]] for l in lines]


def test_tool_worked_example():
    trace = make_trace([3, 5, 7], 22, random.Random(0), tools=True)
    attempts, answer = parse_tool_trace(trace, [3, 5, 7], 22)
    assert attempts[-1][1] == 22 and solves(answer, [3, 5, 7], 22)
    assert trace.endswith("<tool>5*3+7=22</tool><result>true</result> yes\n</think>\n<answer>5*3+7</answer>")
    assert "check" not in trace and "<think>" not in trace


@pytest.mark.parametrize("num_numbers,count", [(3, 2000), (4, 150)])
def test_tool_traces_correct_and_same_attempts_as_plain(num_numbers, count):
    problems = generate_problems(count, num_numbers=num_numbers, seed=11)
    plain = make_sft_dataset(problems, seed=0)
    tool = make_sft_dataset(problems, seed=0, tools=True)
    assert all(tool["response_correct"])
    collisions = 0
    for row, plain_trace in zip(tool, plain["response"]):
        attempts, answer = parse_tool_trace(row["response"], row["numbers"], row["target"])
        assert solves(answer, row["numbers"], row["target"])
        assert [v == row["target"] for _, v, _ in attempts] == [verdict == "yes" for _, _, verdict in attempts]
        # the same attempts in the same order, as many as in the plain trace
        plain_exprs = plain_attempt_exprs(plain_trace, row["numbers"])
        assert len(plain_exprs) == len(attempts)
        called = [e for e, _, _ in attempts]
        for i, candidates in enumerate(plain_exprs):
            if called[i] not in candidates:  # only where the plain attempt's expression was already called
                assert candidates & set(called[:i]), (plain_trace, row["response"])
                collisions += 1
                break
    assert collisions <= 0.01 * count


def test_tool_results_are_the_real_calculators():
    from r1lab.tools import TOOLS, ToolLimits

    calculator, limits = TOOLS["calculator"], ToolLimits()
    problems = generate_problems(200, num_numbers=4, seed=3)
    traces = list(make_sft_dataset(problems, seed=1, tools=True, wrong_answer_rate=0.2)["response"])
    traces.append(make_trace([1, 5, 5, 5], 24, random.Random(3), tools=True))  # fractions on the way
    calls = [m.groups() for t in traces for m in re.finditer(r"<tool>(.*?)</tool><result>(.*?)</result>", t)]
    assert len(calls) > 400 and any("/" in result for _, result in calls) and any(r == "true" for _, r in calls)
    for body, result in calls:
        out = calculator(body, limits)
        assert (out.text, out.status) == (result, "ok"), body


def test_countdown_tool_traces_are_the_calculator_traces_asked_of_the_checker():
    """tool="countdown": the same attempts, each call the bare expression, each result what the
    real countdown tool says of it for that row (so "true" exactly on the solution)."""
    from r1lab.tools import dispatch, ToolLimits

    problems = generate_problems(200, num_numbers=4, seed=3)
    calc = make_sft_dataset(problems, seed=1, tools=True)
    check = make_sft_dataset(problems, seed=1, tools=True, tool="countdown")
    assert all(check["response_correct"])
    n_calls = 0
    for row, calc_trace in zip(check, calc["response"]):
        calls = re.findall(r"<tool>(.*?)</tool><result>(.*?)</result> (no|yes)", row["response"])
        calc_calls = re.findall(r"<tool>(.*?)=\d+</tool>", calc_trace)
        assert [body for body, _, _ in calls] == calc_calls
        for body, result, verdict in calls:
            assert dispatch(body, ["countdown"], ToolLimits(), row)[1].text == result
            assert (verdict == "yes") == (result == "true") == solves(body, row["numbers"], row["target"])
        n_calls += len(calls)
    assert n_calls > 400
    with pytest.raises(ValueError, match="not 'python'"):
        make_trace([3, 5, 7], 22, random.Random(0), tools=True, tool="python")


def test_tool_fraction_fallback():
    trace = make_trace([1, 5, 5, 5], 24, random.Random(3), tools=True)
    attempts, answer = parse_tool_trace(trace, [1, 5, 5, 5], 24)
    assert solves(answer, [1, 5, 5, 5], 24)
    assert any(v.denominator != 1 for _, v, _ in attempts)  # e.g. <result>false: 26/5</result>


def test_tool_behaviours_off_is_one_call():
    problems = generate_problems(300, seed=4)
    sft = make_sft_dataset(problems, seed=0, behaviours=False, tools=True)
    for row in sft:
        attempts, answer = parse_tool_trace(row["response"], row["numbers"], row["target"])
        assert len(attempts) == 1 and attempts[0][1] == row["target"]


def test_tool_wrong_answer_shows_the_true_result():
    problems = generate_problems(400, seed=5)
    plain = make_sft_dataset(problems, seed=0, wrong_answer_rate=0.25)
    sft = make_sft_dataset(problems, seed=0, wrong_answer_rate=0.25, tools=True)
    assert sft["response_correct"] == plain["response_correct"]  # the same rows get a wrong answer
    assert sum(not c for c in sft["response_correct"]) == 100
    for row in sft:
        *body, _, answer_line = row["response"].split("\n")
        expr, _, result, verdict = TOOL_LINE.fullmatch(body[-1]).groups()
        value = fraction_eval(expr)
        assert verdict == "yes" and result == ("true" if value == row["target"] else f"false: {shown(value)}")  # the result is honest
        assert (result == "true") == row["response_correct"] == solves(expr, row["numbers"], row["target"])
        assert answer_line == f"<answer>{expr}</answer>"


def test_strict_format_accepts_tool_traces():
    from r1lab.rewards.countdown import countdown_reward
    from r1lab.rewards.format import format_reward

    problems = generate_problems(50, seed=6)
    sft = make_sft_dataset(problems, seed=0, tools=True)
    full = ["<think>" + r for r in sft["response"]]  # the template's prompt opens <think>
    assert format_reward(full).tolist() == [1.0] * len(full)
    assert countdown_reward(full, sft["numbers"], sft["target"]).tolist() == [1.0] * len(full)


def test_answer_only_traces_are_the_reasoning_traces_answers():
    """The direct template's cold start: the same final answers as the reasoning traces of the
    same seed, nothing before them; scored through the direct template as the rewards see it."""
    from r1lab.models.templates import full_response
    from r1lab.rewards.countdown import countdown_reward
    from r1lab.rewards.format import format_reward
    from r1lab.tasks.countdown_traces import answer_only_trace

    problems = generate_problems(60, seed=8)
    reasoned = make_sft_dataset(problems, seed=3, wrong_answer_rate=0.1)
    direct = make_sft_dataset(problems, seed=3, wrong_answer_rate=0.1, answer_only=True)
    for r, d in zip(reasoned["response"], direct["response"]):
        assert d == r.rsplit("<answer>", 1)[1] == answer_only_trace(r) and "<think>" not in d and "\n" not in d
    assert direct["response_correct"] == reasoned["response_correct"]
    full = [full_response("direct", d) for d in direct["response"]]
    assert format_reward(full).tolist() == [1.0] * len(full)
    assert countdown_reward(full, direct["numbers"], direct["target"]).tolist() == [float(c) for c in direct["response_correct"]]
