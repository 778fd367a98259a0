import math

import pytest
import torch

from r1lab.algorithms.policy_loss import POLICY_LOSSES, PolicyLossConfig, compute_policy_loss
from r1lab.algorithms.reduce import LossNorm, seq_mean_token_mean

STAT_KEYS = {"ratio", "clipped_low", "clipped_high", "clipped_dual"}


def run(name, log_ratio, advantages, mask=None, **cfg_kw):
    """Loss and d loss / d logp for a given per-token log-ratio (old_logp fixed at -1)."""
    log_ratio = torch.as_tensor(log_ratio, dtype=torch.float32)
    old_logp = torch.full_like(log_ratio, -1.0)
    logp = (old_logp + log_ratio).requires_grad_(True)
    mask = torch.ones_like(log_ratio) if mask is None else torch.as_tensor(mask, dtype=torch.float32)
    loss, stats = compute_policy_loss(
        logp, old_logp, torch.as_tensor(advantages, dtype=torch.float32), mask,
        PolicyLossConfig(name=name, **cfg_kw),
    )
    (grad,) = torch.autograd.grad(loss.sum(), logp)
    return loss.detach(), grad, stats


# Ratios [1, 1.1, 1.5, 0.5] with clip 0.2 -> clip range [0.8, 1.2]; a 5th, padded position holds
# garbage (a log-ratio of 60 would overflow exp in float32).
RATIOS = [1.0, 1.1, 1.5, 0.5]
LOG_RATIOS = [[math.log(r) for r in RATIOS] + [60.0]] * 2
MASK = [[1, 1, 1, 1, 0]] * 2


def test_clipped_hand_computed():
    loss, grad, stats = run("clipped", LOG_RATIOS, [1.0, -1.0], MASK)
    # A = +1: loss = max(-r, -clip(r)) = -min(r, clip(r))
    #   r=1 -> -1; r=1.1 -> -1.1; r=1.5 -> -1.2 (clipped high); r=0.5 -> -0.5 (not clipped: the
    #   pessimistic min picks the unclipped term). d/dlogp of -r A = -r A where unclipped, 0 where
    #   clipped: [-1, -1.1, 0, -0.5].
    # A = -1: loss = max(r, clip(r)): 1; 1.1; 1.5 (unclipped); 0.8 (clipped low).
    #   gradient r A * -1 = [1, 1.1, 1.5, 0].
    expected_loss = torch.tensor([[-1.0, -1.1, -1.2, -0.5, 0.0], [1.0, 1.1, 1.5, 0.8, 0.0]])
    expected_grad = torch.tensor([[-1.0, -1.1, 0.0, -0.5, 0.0], [1.0, 1.1, 1.5, 0.0, 0.0]])
    torch.testing.assert_close(loss, expected_loss)
    torch.testing.assert_close(grad, expected_grad)
    assert stats.keys() == STAT_KEYS
    assert stats["clipped_high"].tolist() == [[0, 0, 1, 0, 0], [0, 0, 0, 0, 0]]
    assert stats["clipped_low"].tolist() == [[0, 0, 0, 0, 0], [0, 0, 0, 1, 0]]
    assert stats["clipped_dual"].sum() == 0
    torch.testing.assert_close(stats["ratio"][0], torch.tensor(RATIOS + [0.0]))
    assert not any(s.requires_grad for s in stats.values())


def test_clip_higher_is_asymmetric():
    # DAPO: clip_low 0.2, clip_high 0.28, A = +1. r = 1.25 is inside [0.8, 1.28] -> loss -1.25,
    # grad -1.25; r = 1.3 is clipped -> loss -1.28, grad 0. A = -1, r = 0.75 < 0.8 -> clipped
    # low at 0.8, grad 0.
    log_ratio = [[math.log(1.25), math.log(1.3)], [math.log(0.75), 0.0]]
    loss, grad, _ = run("clipped", log_ratio, [1.0, -1.0], clip_low=0.2, clip_high=0.28)
    torch.testing.assert_close(loss, torch.tensor([[-1.25, -1.28], [0.8, 1.0]]))
    torch.testing.assert_close(grad, torch.tensor([[-1.25, 0.0], [0.0, 1.0]]))


def test_dual_clip():
    # c = 3. A = -1: r = 4 -> max(4, 1.2) = 4 capped at 3, grad 0; r = 2 -> 2, grad 2.
    # A = +1: the dual clip does not apply: r = 4 -> -1.2 (clipped high).
    log_ratio = [[math.log(4.0), math.log(2.0)], [math.log(4.0), 0.0]]
    loss, grad, stats = run("clipped", log_ratio, [-1.0, 1.0], dual_clip=3.0)
    torch.testing.assert_close(loss, torch.tensor([[3.0, 2.0], [-1.2, -1.0]]))
    torch.testing.assert_close(grad, torch.tensor([[0.0, 2.0], [0.0, -1.0]]))
    assert stats["clipped_dual"].tolist() == [[1, 0], [0, 0]]


def test_ratio_is_exactly_one_with_detached_old_logp():
    logp = torch.tensor([[-0.3, -2.7, -11.1]], requires_grad=True)
    for name in POLICY_LOSSES.names():
        loss, stats = compute_policy_loss(
            logp, logp.detach(), torch.tensor([0.7]), torch.ones(1, 3), PolicyLossConfig(name=name)
        )
        assert torch.all(stats["ratio"] == 1.0), name
        (grad,) = torch.autograd.grad(loss.sum(), logp)
        # d/dlogp of -A r at r = 1 is -A (vanilla: d/dlogp of -A logp = -A too)
        torch.testing.assert_close(grad, torch.full((1, 3), -0.7))
        if name != "vanilla_pg":
            torch.testing.assert_close(loss, torch.full((1, 3), -0.7))


def test_gspo_sequence_ratio_and_gradient():
    # Valid log-ratios [0.3, -0.1, 0.1] (mean 0.1), 4th token padded with garbage.
    # s = exp(0.1) = 1.105171 at every valid token. A = +1, PPO-width clip: unclipped.
    # With seq_mean_token_mean, loss = -s and d/dlogp_t = -s / 3 = -0.368390 (GSPO's gradient).
    log_ratio = [[0.3, -0.1, 0.1, 50.0]]
    mask = [[1, 1, 1, 0]]
    loss, grad, stats = run("gspo", log_ratio, [1.0], mask)
    s = math.exp(0.1)
    torch.testing.assert_close(loss, torch.tensor([[-s, -s, -s, 0.0]]))
    torch.testing.assert_close(stats["ratio"], torch.tensor([[s, s, s, 0.0]]))
    torch.testing.assert_close(grad, torch.tensor([[-s, -s, -s, 0.0]]))  # d(sum of tokens)

    logp = (torch.tensor(log_ratio) - 1.0).requires_grad_(True)
    per_token, _ = compute_policy_loss(
        logp, torch.full((1, 4), -1.0), torch.tensor([1.0]), torch.tensor(mask), PolicyLossConfig("gspo")
    )
    norm = LossNorm(num_sequences=1, num_tokens=3, max_completion_length=4)
    (grad,) = torch.autograd.grad(seq_mean_token_mean(per_token, torch.tensor(mask), norm), logp)
    torch.testing.assert_close(grad, torch.tensor([[-s / 3, -s / 3, -s / 3, 0.0]]))


def test_gspo_with_paper_clip_range():
    # s = 1.105 > 1 + 4e-4: the whole sequence is clipped high: loss -1.0004, no gradient.
    loss, grad, stats = run("gspo", [[0.3, -0.1, 0.1]], [1.0], clip_low=3e-4, clip_high=4e-4)
    torch.testing.assert_close(loss, torch.full((1, 3), -1.0004))
    assert torch.all(grad == 0)
    assert stats["clipped_high"].tolist() == [[1, 1, 1]]


def test_vanilla_pg():
    # loss = -A logp = -2 * [-0.5, -1.0] = [1, 2]; gradient -A = -2; padding 0.
    logp = torch.tensor([[-0.5, -1.0, 7.0]], requires_grad=True)
    loss, stats = compute_policy_loss(
        logp, logp.detach() + 0.1, torch.tensor([2.0]), torch.tensor([[1, 1, 0]]),
        PolicyLossConfig("vanilla_pg"),
    )
    torch.testing.assert_close(loss, torch.tensor([[1.0, 2.0, 0.0]]), check_dtype=False)
    (grad,) = torch.autograd.grad(loss.sum(), logp)
    torch.testing.assert_close(grad, torch.tensor([[-2.0, -2.0, 0.0]]))
    assert stats.keys() == STAT_KEYS


@pytest.mark.parametrize("name", ["clipped", "gspo", "vanilla_pg"])
def test_padding_is_zero_and_never_nan(name):
    logp = torch.tensor([[-1.0, float("-inf")], [-2.0, 1e4]], requires_grad=True)
    old = torch.tensor([[-1.2, -5.0], [float("-inf"), -1e4]])
    mask = torch.tensor([[1, 0], [0, 0]])
    loss, stats = compute_policy_loss(logp, old, torch.tensor([1.0, -1.0]), mask, PolicyLossConfig(name))
    (grad,) = torch.autograd.grad(loss.sum(), logp)
    assert torch.isfinite(loss).all() and torch.isfinite(grad).all()
    assert loss[0, 1] == 0 and torch.all(loss[1] == 0) and torch.all(grad[1] == 0)
    assert all(torch.isfinite(s).all() for s in stats.values())


def test_bad_config():
    with pytest.raises(ValueError, match="dual_clip"):
        PolicyLossConfig(dual_clip=0.5)
    with pytest.raises(ValueError, match="clip_low"):
        PolicyLossConfig(clip_low=1.0)
