"""Countdown solver, generator and splits. Solutions are checked by an independent evaluator:
Python ``eval`` over ``Fraction`` literals (safe here: the strings come from our own generator)."""
import re
import time
from fractions import Fraction

import pytest

from r1lab.tasks.countdown import (
    CountdownAnalysis,
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
    from r1lab.tasks.countdown import _solve_meet_in_middle, _value_map

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


def test_parse_expression_is_the_rewards_reference_evaluator():
    """One statement of the rules: the generator's parser and check accept what the reward accepts."""
    from r1lab.rewards.countdown import countdown_reward

    assert parse_expression("(6 − 2) × 25") == (Fraction(100), [6, 2, 25])
    assert parse_expression("100 ÷ (6 - 2)") == (Fraction(25), [100, 6, 2])
    assert parse_expression("(6 - 2) * 25 = 100") == (Fraction(100), [6, 2, 25])
    for bad in ("(6 - 2) * 25 = 99", "07 + 1", "(6 - 2) * 25 = 100 = 100", "１ + 2", "2(3)"):
        with pytest.raises(ValueError):
            parse_expression(bad)
    n3 = [6, 2, 25]
    cases = [("(6 - 2) × 25", n3, 100), ("(6 − 2) * 25", n3, 100), ("100 ÷ 4 * 4", [100, 4, 4], 100),
             ("(6 - 2) * 25 = 100", n3, 100), ("(6 - 2) * 25 = 99", n3, 100), ("6 * 2 * 25", n3, 100),
             ("(6 - 2) * 025", n3, 100), ("(6 - 2) ** 25", n3, 100), ("2 * 2 * 25", [2, 3, 25], 100)]
    for expr, numbers, target in cases:
        reward = countdown_reward([f"<answer>{expr}</answer>"], [numbers], [target]).item()
        assert is_solution(expr, numbers, target) == bool(reward), expr


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


# ----------------------------------------------------------------------------------------------
# The evaluation's analysis (moved here from tests/eval/test_answers.py with CountdownAnalysis)


def rows(n, numbers=(3, 5, 7), target=22):
    return {"numbers": [list(numbers)] * n, "target": [target] * n}


def test_countdown_answer_keys_vote_on_value():
    responses = [
        "<think>x</think><answer>5*3+7</answer>",
        "<think>x</think><answer> 7 + 5*3 </answer>",  # same value, other expression: same key
        "<think>x</think><answer>5*3+7=22</answer>",  # trailing "= target" allowed
        "<think>x</think><answer>7*3</answer>",  # does not use 5: keyed by its text
        "<think>x</think>no answer",
        "<think>x</think><answer>   </answer>",
        "<think>x</think><answer>(7-5)/3</answer>",
    ]
    keys = CountdownAnalysis().answer_keys(responses, rows(len(responses)))
    assert keys == ["22", "22", "22", "invalid:7*3", None, None, "2/3"]


def test_countdown_distance_is_capped_and_unusable_answers_cost_the_cap():
    responses = [
        "<answer>5*3+7</answer>",  # 22: distance 0
        "<answer>7*5-3</answer>",  # 32: distance 10
        "<answer>(7-5)/3</answer>",  # 2/3: distance 21.333
        "<answer>22</answer>",  # the target itself, but not using the numbers: cap
        "<answer>7*5*3</answer>",  # 105: 83
        "garbage",
    ]
    cap = CountdownAnalysis.distance_cap
    d = CountdownAnalysis().distances(responses, rows(len(responses)))
    assert d.tolist() == pytest.approx([0.0, 10.0, 22 - 2 / 3, cap, 83.0, cap])
    big = CountdownAnalysis().distances(["<answer>9*9*9</answer>"], rows(1, (9, 9, 9), 1))
    assert big.tolist() == [cap]


def test_countdown_difficulty_counts_solution_paths():
    a = CountdownAnalysis()
    # 1 2 3 -> 6: many orders reach it (1+2+3, 1*2*3, ...): easy; 3 5 7 -> 22 has one (5*3+7)
    labels = a.difficulty({"numbers": [[1, 2, 3], [3, 5, 7], [1, 2, 3, 4, 5]], "target": [6, 22, 15]})
    assert labels == ["easy", "hard", "5 numbers"]


def test_unicode_signs_are_keyed_and_measured_like_the_reward_scores_them():
    """Issue 18 (a): the reward accepts × ÷ −, so the majority-vote key and the distance do too."""
    a = CountdownAnalysis()
    r = rows(3, (6, 2, 25), 100)
    responses = ["<think>x</think><answer>(6 - 2) × 25</answer>", "<answer>(6 − 2)×25</answer>",
                 "<answer>25 ÷ (6 − 2)</answer>"]
    assert a.answer_keys(responses, r) == ["100", "100", "25/4"]
    assert a.distances(responses, r).tolist() == [0.0, 0.0, 100 - 25 / 4]


def test_answer_key_is_the_target_exactly_when_the_reward_is_one():
    """The analysis and the reward share the reference evaluator: over every labelled case of the
    reward's tests, an answer's key is ``str(target)`` exactly when the reward scores its
    expression (the answer without a trailing ``= ...`` claim) 1, and its distance is 0 then
    (rules broken: an ``invalid:`` key and the capped distance)."""
    from r1lab.rewards.countdown import countdown_reward
    from r1lab.rewards.spans import last_answer_span
    from tests.rewards.test_countdown import ALL_CASES

    completions, numbers, targets, expected = map(list, zip(*ALL_CASES))
    columns = {"numbers": numbers, "target": targets}
    a = CountdownAnalysis()
    keys, dist = a.answer_keys(completions, columns), a.distances(completions, columns)
    expressions = [f"<answer>{(last_answer_span(c) or '').split('=', 1)[0]}</answer>" for c in completions]
    scores = countdown_reward(expressions, numbers, targets).tolist()
    assert countdown_reward(completions, numbers, targets).tolist() == [float(e) for e in expected]
    assert 0 < sum(scores) < len(scores)
    for c, key, d, t, score in zip(completions, keys, dist, targets, scores):
        assert (key == str(t)) == (score == 1.0), (c[:200], key, t, score)
        if score == 1.0:
            assert d == 0.0, c[:200]
        if key is not None and key.startswith("invalid:"):
            assert d == CountdownAnalysis.distance_cap, c[:200]
