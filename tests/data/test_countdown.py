"""Countdown solver, generator and splits. Solutions are checked by an independent evaluator:
Python ``eval`` over ``Fraction`` literals (safe here: the strings come from our own generator)."""
import re
import time
from fractions import Fraction

import pytest

from r1lab.data.countdown import (
    generate_problems,
    is_solution,
    keys_of,
    make_splits,
    parse_expression,
    problem_key,
    question_text,
    reachable_targets,
    solve,
)


def fraction_eval(expr: str) -> Fraction:
    assert re.fullmatch(r"[0-9+\-*/() ]+", expr), expr
    return eval(re.sub(r"\d+", lambda m: f"Fraction({m.group()})", expr))


def check(expr: str, numbers, target) -> None:
    assert sorted(int(n) for n in re.findall(r"\d+", expr)) == sorted(numbers), (expr, numbers)
    assert fraction_eval(expr) == target, (expr, target)


def test_solve_worked_examples():
    assert solve([3, 5, 7], 22) == "3*5+7"
    assert solve([3, 5, 7], 20) == "(7-3)*5"
    assert solve([1, 1], 5) is None
    assert solve([4], 4) == "4"
    # Needs a fraction on the way; the classic 24-game puzzles.
    check(solve([1, 5, 5, 5], 24), [1, 5, 5, 5], 24)
    check(solve([3, 3, 8, 8], 24), [3, 3, 8, 8], 24)
    assert solve([3, 3, 8, 8], 25) is None or fraction_eval(solve([3, 3, 8, 8], 25)) == 25


def test_solve_minimal_parentheses_and_determinism():
    cases = [([3, 5, 7], 20), ([7, 6, 5, 4], 1), ([8, 4, 2], 1), ([9, 8, 7, 6], 2), ([2, 3, 4, 5], 7)]
    hard = generate_problems(200, num_numbers=4, seed=9)
    for numbers, target in cases + list(zip(hard["numbers"], hard["target"])):
        expr = solve(numbers, target)
        check(expr, numbers, target)
        assert solve(list(reversed(numbers)), target) == expr  # order of the input does not matter
        # No pair of parentheses can be dropped without changing the value.
        for m in re.finditer(r"\(", expr):
            depth, j = 0, m.start()
            for j in range(m.start(), len(expr)):
                depth += {"(": 1, ")": -1}.get(expr[j], 0)
                if depth == 0:
                    break
            dropped = expr[: m.start()] + expr[m.start() + 1 : j] + expr[j + 1 :]
            assert fraction_eval(dropped) != target, (expr, dropped)


def test_meet_in_the_middle_matches_full_map():
    from r1lab.data.countdown import _solve_meet_in_middle, _value_map

    for nums in [(1, 2, 3, 4), (2, 2, 6, 9), (0, 1, 5, 7), (3, 3, 8, 8)]:
        full = _value_map(nums)
        for value in list(full)[::7] + [0, 10_000]:
            assert _solve_meet_in_middle(nums, value) == full.get(value), (nums, value)


def test_solve_five_numbers():
    numbers = [2, 3, 7, 9, 11]  # 5 numbers take the meet-in-the-middle path
    for target in (1, 100, 997):
        expr = solve(numbers, target)
        if expr is not None:
            check(expr, numbers, target)
    assert solve([1, 1, 1, 1, 1], 1000) is None


def test_reachable_targets():
    targets = reachable_targets([3, 5, 7])
    assert 22 in targets and 105 in targets and 106 not in targets
    for t in targets:
        check(solve([3, 5, 7], t), [3, 5, 7], t)


def test_parse_expression_and_is_solution():
    assert parse_expression("(1 + 2) / 3") == (Fraction(1), [1, 2, 3])
    assert parse_expression("7/2") == (Fraction(7, 2), [7, 2])
    for bad in ("1+", "(1+2", "1+2)", "-1+2", "2**3", "1.5*2", "4/(2-2)", "abc"):
        with pytest.raises(ValueError):
            parse_expression(bad)
    assert is_solution("(7-3)*5", [3, 5, 7], 20)
    assert not is_solution("(7-3)*5", [3, 5, 7, 1], 20)  # every number must be used
    assert not is_solution("7*3", [3, 5, 7], 21)
    assert is_solution("7/2*2", [7, 2, 2], 7)  # exact rationals: 7/2 is 3.5, not 3
    assert not is_solution("7/2*2", [7, 2, 2], 6)


def test_generate_is_deterministic_and_seed_dependent():
    a = generate_problems(200, seed=1)
    b = generate_problems(200, seed=1)
    c = generate_problems(200, seed=2)
    assert a.to_list() == b.to_list()
    assert a.to_list() != c.to_list()
    assert generate_problems(50, seed=1).to_list() == a.to_list()[:50]  # prefix-stable


def test_generated_problems_are_solvable_and_in_range():
    ds = generate_problems(2000, seed=0)
    assert ds.column_names == ["id", "numbers", "target", "solution"]
    for row in ds:
        assert len(row["numbers"]) == 3 and all(1 <= n <= 9 for n in row["numbers"])
        assert 1 <= row["target"] <= 99 and row["target"] not in row["numbers"]
        check(row["solution"], row["numbers"], row["target"])
        assert row["id"] == f"cd3-{'_'.join(map(str, row['numbers']))}-{row['target']}"
    hard = generate_problems(30, num_numbers=4, number_range=(1, 13), target_range=(10, 200), seed=0)
    for row in hard:
        check(row["solution"], row["numbers"], row["target"])


def test_generate_20000_is_fast():
    start = time.perf_counter()
    generate_problems(20_000, seed=5)
    assert time.perf_counter() - start < 15  # a few seconds on one slow core


def test_exclude_and_unique():
    first = generate_problems(100, seed=0, unique=True)
    keys = keys_of(first)
    assert len(keys) == 100
    second = generate_problems(500, seed=1, exclude=keys)
    assert not keys & keys_of(second)
    with pytest.raises(ValueError, match="could only generate"):
        generate_problems(10, num_numbers=2, number_range=(1, 2), target_range=(1, 9), unique=True)


def test_splits_disjoint_and_test_independent_of_num_train():
    small = make_splits(num_train=300, num_test=100, num_test_hard=20, seed=3)
    big = make_splits(num_train=1500, num_test=100, num_test_hard=20, seed=3)
    assert small["test"].to_list() == big["test"].to_list()
    assert small["test_hard"].to_list() == big["test_hard"].to_list()
    assert big["train"].to_list()[:300] == small["train"].to_list()
    for splits in (small, big):
        train, test, hard = (keys_of(splits[k]) for k in ("train", "test", "test_hard"))
        assert not train & test and not train & hard
        assert len(test) == 100 and len(hard) == 20  # held-out splits have no repeats
        assert all(len(n) == 4 for n in splits["test_hard"]["numbers"])
        assert all(len(n) == 3 for n in splits["train"]["numbers"])
    assert make_splits(10, 10, 5, seed=4)["test"].to_list() != small["test"].to_list()


def test_problem_key_ignores_order():
    assert problem_key([7, 3, 5], 22) == problem_key([3, 5, 7], 22) == ((3, 5, 7), 22)


def test_question_text():
    assert question_text([3, 5, 7], 22) == "Use 3 5 7 to make 22."
    assert question_text([3, 5, 7], 22, style="full") == (
        "Using the numbers [3, 5, 7], create an equation that equals 22. You can use basic arithmetic "
        "operations (+, -, *, /) and each number can only be used once. Show your work in <think> </think> "
        "tags. And return the final answer in <answer> </answer> tags, for example <answer> (1 + 2) / 3 </answer>."
    )
    with pytest.raises(ValueError, match="valid styles: short, full"):
        question_text([1, 2], 3, style="long")
