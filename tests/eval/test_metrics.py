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
