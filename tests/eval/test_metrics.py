import math

import numpy as np
import pytest

from r1lab.eval.metrics import ks_up_to, mean_pass_at_k, pass_at_k


def test_pass_at_k_worked_examples():
    # n=4 samples, c=1 correct: pass@1 = 1/4; pass@2 = 1 - C(3,2)/C(4,2) = 1 - 3/6 = 0.5
    assert pass_at_k(4, 1, 1) == pytest.approx(0.25)
    assert pass_at_k(4, 1, 2) == pytest.approx(0.5)
    # n=8, c=2, k=4: 1 - C(6,4)/C(8,4) = 1 - 15/70
    assert pass_at_k(8, 2, 4) == pytest.approx(1 - 15 / 70)
    assert pass_at_k(8, 0, 8) == 0.0
    assert pass_at_k(8, 1, 8) == 1.0


def test_pass_at_k_rejects_k_above_n():
    with pytest.raises(ValueError, match="pass@5"):
        pass_at_k(4, 1, 5)


def test_mean_pass_at_k_and_ks():
    correct = np.array([[1, 0, 0, 0], [1, 1, 0, 0], [0, 0, 0, 0]])
    assert mean_pass_at_k(correct, 1) == pytest.approx((0.25 + 0.5 + 0) / 3)
    assert mean_pass_at_k(correct, 2) == pytest.approx((0.5 + (1 - 1 / 6) + 0) / 3)
    assert ks_up_to(8) == [1, 2, 4, 8]
    assert ks_up_to(6) == [1, 2, 4, 6]
    assert ks_up_to(1) == [1]
    assert not math.isnan(mean_pass_at_k(correct, 4))


from r1lab.eval.metrics import avg_at_k, bootstrap_ci, majority_correct, pass_at_k_per_problem, wilson_ci  # noqa: E402


def test_avg_at_k_uses_the_first_k_samples():
    correct = np.array([[1, 0, 1, 1], [0, 0, 0, 1]])
    assert avg_at_k(correct, 4) == pytest.approx(4 / 8)
    assert avg_at_k(correct, 2) == pytest.approx(1 / 4)  # [1, 0] and [0, 0]
    assert avg_at_k(correct, 1) == pytest.approx(0.5)


def test_majority_vote_worked_examples():
    keys = [
        ["22", "22", "21", "invalid:7+"],  # 22 wins 2-1-1, right
        ["5", "6", "6", "5"],  # tie 5 (wrong) vs 6 (right): expected 0.5
        [None, None, "3", None],  # one vote: 3, wrong
        [None, None, None, None],  # all abstain: 0
        ["8", "9", "9", "9"],  # 9 wins but is wrong, though one sample was right
    ]
    correct = np.array([[1, 1, 0, 0], [0, 1, 1, 0], [0, 0, 0, 0], [0, 0, 0, 0], [1, 0, 0, 0]])
    assert majority_correct(keys, correct, 4).tolist() == [1.0, 0.5, 0.0, 0.0, 0.0]
    # maj@1 is the first sample's correctness when it answers
    assert majority_correct(keys, correct, 1).tolist() == [1.0, 0.0, 0.0, 0.0, 1.0]
    # maj@2 of problem 4: 8 vs 9 tie -> 0.5
    assert majority_correct(keys, correct, 2)[4] == pytest.approx(0.5)


def test_pass_at_k_per_problem_matches_mean():
    correct = np.array([[1, 0, 0, 0], [1, 1, 0, 0], [0, 0, 0, 0]])
    per = pass_at_k_per_problem(correct, 2)
    assert per.tolist() == pytest.approx([0.5, 1 - 1 / 6, 0.0])
    assert per.mean() == pytest.approx(mean_pass_at_k(correct, 2))


def test_bootstrap_ci_brackets_the_mean_and_is_deterministic():
    x = np.array([0.0] * 50 + [1.0] * 50)
    lo, hi = bootstrap_ci(x, resamples=2000, seed=0)
    assert lo < 0.5 < hi
    # normal approximation: 0.5 +- 1.96 * sqrt(0.25 / 100) = 0.5 +- 0.098
    assert lo == pytest.approx(0.402, abs=0.03) and hi == pytest.approx(0.598, abs=0.03)
    assert bootstrap_ci(x, resamples=2000, seed=0) == (lo, hi)
    assert bootstrap_ci(np.full(7, 0.25)) == (0.25, 0.25)


def test_wilson_interval_worked_examples():
    lo, hi = wilson_ci(5, 10)
    assert (lo, hi) == pytest.approx((0.2366, 0.7634), abs=1e-4)
    lo, hi = wilson_ci(0, 20)  # no success: lower bound 0, upper z^2/(n+z^2) = 3.8415/23.8415
    assert lo == 0.0 and hi == pytest.approx(0.1611, abs=1e-4)
    assert wilson_ci(0, 0) == (0.0, 1.0)
