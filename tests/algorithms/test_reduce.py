import pytest
import torch

from r1lab.algorithms.policy_loss import PolicyLossConfig, compute_policy_loss
from r1lab.algorithms.reduce import REDUCTIONS, LossNorm, reduce_loss

# Two sequences: [1, 2, 3 | pad] and [4 | pad, pad, pad]. Padding holds garbage (100, NaN) that
# must not leak in.
LOSS = torch.tensor([[1.0, 2.0, 3.0, 100.0], [4.0, float("nan"), 100.0, 100.0]])
MASK = torch.tensor([[1, 1, 1, 0], [1, 0, 0, 0]])


@pytest.mark.parametrize(
    "name, expected",
    [
        ("seq_mean_token_mean", 3.0),  # sequence means 2 and 4 -> (2 + 4) / 2
        ("token_mean", 2.5),  # (1 + 2 + 3 + 4) / 4 tokens
        ("seq_mean_token_sum_norm", 1.25),  # (1 + 2 + 3 + 4) / (2 sequences * 4 max length)
    ],
)
def test_hand_computed(name, expected):
    norm = LossNorm(num_sequences=2, num_tokens=4, max_completion_length=4)
    assert reduce_loss(LOSS, MASK, norm, name).item() == pytest.approx(expected)
    # world_size multiplies, to cancel the engine's average of gradients over ranks
    norm2 = LossNorm(num_sequences=2, num_tokens=4, max_completion_length=4, world_size=2)
    assert reduce_loss(LOSS, MASK, norm2, name).item() == pytest.approx(2 * expected)


# --- Gradient-accumulation and data-parallel invariance ---------------------------------------
B, L, D = 8, 6, 3
LENGTHS = [6, 1, 3, 5, 2, 6, 4, 1]  # variable lengths, so the normalisation matters


def _batch():
    g = torch.Generator().manual_seed(0)
    features = torch.randn(B, L, D, generator=g)
    advantages = torch.randn(B, generator=g)
    mask = (torch.arange(L).unsqueeze(0) < torch.tensor(LENGTHS).unsqueeze(1)).float()
    old_logp = -torch.rand(B, L, generator=g) * 3
    return features, advantages, mask, old_logp


def _micro_loss(w, rows, name, norm):
    """A GRPO micro-batch: logp = features @ w (a 'model'), clipped loss, reduced."""
    features, advantages, mask, old_logp = _batch()
    logp = old_logp[rows] + 0.3 * torch.tanh(features[rows] @ w)  # ratios in ~[0.74, 1.35]
    per_token, _ = compute_policy_loss(
        logp, old_logp[rows], advantages[rows], mask[rows], PolicyLossConfig(clip_low=0.2, clip_high=0.28)
    )
    return reduce_loss(per_token, mask[rows], norm, name)


def _grad_and_loss(name, micro_batches_per_rank):
    """Engine semantics: each rank sums its micro-batch gradients, then ranks are averaged."""
    world_size = len(micro_batches_per_rank)
    _, _, mask, _ = _batch()
    norm = LossNorm(
        num_sequences=B, num_tokens=int(mask.sum()), max_completion_length=L, world_size=world_size
    )
    rank_grads, total = [], 0.0
    for micro_batches in micro_batches_per_rank:
        w = torch.tensor([0.5, -1.0, 2.0], requires_grad=True)
        for rows in micro_batches:
            loss = _micro_loss(w, rows, name, norm)
            loss.backward()  # gradients accumulate (sum) in w.grad
            total += loss.item()
        rank_grads.append(w.grad)
    return torch.stack(rank_grads).mean(0), total / world_size


@pytest.mark.parametrize("name", REDUCTIONS.names())
def test_accumulation_and_ranks_do_not_change_the_gradient(name):
    full_grad, full_loss = _grad_and_loss(name, [[list(range(8))]])
    accum_grad, accum_loss = _grad_and_loss(name, [[[0, 1], [2, 3], [4, 5], [6, 7]]])
    ranks_grad, ranks_loss = _grad_and_loss(name, [[[0, 1], [2, 3]], [[4, 5], [6, 7]]])
    uneven_grad, _ = _grad_and_loss(name, [[[0], [1, 2, 3]], [[4, 5, 6], [7]]])
    assert full_grad.abs().sum() > 0
    for grad in (accum_grad, ranks_grad, uneven_grad):
        torch.testing.assert_close(grad, full_grad, rtol=1e-5, atol=1e-7)
    assert accum_loss == pytest.approx(full_loss, rel=1e-5)
    assert ranks_loss == pytest.approx(full_loss, rel=1e-5)


def test_local_normalisation_would_not_be_invariant():
    """Sanity check that the test above can fail: a per-micro-batch token mean is biased."""
    features, advantages, mask, old_logp = _batch()

    def grad_of(groups):
        w = torch.tensor([0.5, -1.0, 2.0], requires_grad=True)
        for rows in groups:
            norm = LossNorm(len(rows), int(mask[rows].sum()), L)  # local counts: wrong
            (_micro_loss(w, rows, "token_mean", norm) / len(groups)).backward()
        return w.grad

    assert not torch.allclose(grad_of([list(range(8))]), grad_of([[0, 1], [2, 3], [4, 5], [6, 7]]))


def test_loss_norm_validation():
    with pytest.raises(ValueError, match="num_tokens"):
        LossNorm(num_sequences=2, num_tokens=0, max_completion_length=4)
