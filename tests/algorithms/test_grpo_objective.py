"""`grpo_objective` on a hand-worked micro-batch: the clipped ratio, the KL term, the entropy
bonus, the IS correction and the reductions, loss value, gradient and figures."""
import math

import pytest
import torch

from r1lab.algorithms.grpo_objective import grpo_objective
from r1lab.algorithms.kl import KLConfig
from r1lab.algorithms.policy_loss import PolicyLossConfig
from r1lab.algorithms.reduce import LossNorm
from r1lab.algorithms.rollout_correction import RolloutCorrectionConfig

LN2 = math.log(2.0)
# Two sequences: row 0 has two loss tokens, row 1 one; the last slots are padding (garbage there).
MASK = torch.tensor([[1, 1, 0], [1, 0, 0]])
ADV = torch.tensor([1.0, -1.0])
OLD = torch.zeros(2, 3)  # the proximal log-probs: ratio r = exp(logp - 0) = the numbers below
RATIOS = [[1.5, 0.9, 7.0], [0.5, 1.0, 7.0]]
NORM = LossNorm(num_sequences=2, num_tokens=3, max_completion_length=4)
CLIP = PolicyLossConfig()  # clipped, r in [0.8, 1.2]


def logp():
    return torch.log(torch.tensor(RATIOS)).requires_grad_(True)


# Policy loss per token, max(-A r, -A clip(r)):
#   row 0, A = +1: r = 1.5 -> max(-1.5, -1.2) = -1.2 (clip_high active, no gradient)
#                  r = 0.9 -> max(-0.9, -0.9) = -0.9 (gradient -A r = -0.9 w.r.t. logp)
#   row 1, A = -1: r = 0.5 -> max(0.5, 0.8) = 0.8    (clip_low active, no gradient)


def test_clipped_loss_with_kl_and_entropy_by_hand():
    # KL (beta 0.5, k3 = e^x - x - 1 with x = ref - logp): ref differs only at (0, 1), x = ln 2,
    #   k3 = 2 - ln 2 - 1 = 1 - ln 2 = 0.30685; term 0.5 * 0.30685 = 0.15343; d k3 / d logp = 1 - e^x = -1.
    ref = torch.log(torch.tensor([[1.5, 1.8, 7.0], [0.5, 1.0, 7.0]]))
    # entropy bonus (coef 0.1, weights 1 and 2 per sequence): -0.1*1*1 = -0.1, -0.1*1*2 = -0.2 in
    #   row 0, -0.1*2*3 = -0.6 in row 1 (the padding's 9 is masked)
    entropy = torch.tensor([[1.0, 2.0, 9.0], [3.0, 9.0, 9.0]])
    x = logp()
    loss, figures = grpo_objective(
        x, OLD, ADV, MASK, NORM, CLIP, "seq_mean_token_mean", ref_logp=ref, kl=KLConfig(beta=0.5),
        entropy=entropy, entropy_coef=0.1, entropy_weight=torch.tensor([1.0, 2.0]),
    )
    # row 0: (-1.2 - 0.1) + (-0.9 + 0.15343 - 0.2) = -2.24657, mean over 2 tokens -1.12329
    # row 1: 0.8 - 0.6 = 0.2; seq_mean_token_mean: (-1.12329 + 0.2) / 2 sequences = -0.46164
    expected = ((-1.3 + (-0.9 + 0.5 * (1 - LN2) - 0.2)) / 2 + 0.2) / 2
    assert loss.item() == pytest.approx(expected, abs=1e-6) and expected == pytest.approx(-0.46164, abs=1e-5)
    loss.backward()
    # d loss / d logp at (0, 1): (policy -0.9 + KL 0.5 * -1) / 2 tokens / 2 sequences = -0.35;
    # the clipped tokens have none (and at (0, 0) x = 0, so the KL's gradient 1 - e^0 is 0 too)
    assert x.grad.flatten().tolist() == pytest.approx([0.0, -0.35, 0.0, 0.0, 0.0, 0.0], abs=1e-6)
    assert figures == pytest.approx({
        "loss": expected, "tokens": 3.0, "clip_low": 1.0, "clip_high": 1.0,
        "entropy": 1.0 + 2.0 + 3.0,  # masked tokens only
        "kl": 1 - LN2,  # the k3 sum, unweighted by beta
    }, abs=1e-6)


@pytest.mark.parametrize("reduction, expected", [
    ("seq_mean_token_mean", ((-1.2 - 0.9) / 2 + 0.8) / 2),  # -0.125
    ("token_mean", (-1.2 - 0.9 + 0.8) / 3),  # all 3 tokens of the step weigh the same: -0.43333
    ("seq_mean_token_sum_norm", (-1.2 - 0.9 + 0.8) / 4 / 2),  # / max_completion_length 4 / 2 sequences
])
def test_reductions_and_no_extra_terms(reduction, expected):
    loss, figures = grpo_objective(logp(), OLD, ADV, MASK, NORM, CLIP, reduction)
    assert loss.item() == pytest.approx(expected, abs=1e-6)
    assert "kl" not in figures and not any(k.startswith("mismatch/") for k in figures)  # no reference, no sampler


def test_truncated_importance_weights_from_the_sampler():
    # sampler log-probs: x = proximal - sampler = -ln 2 at (0, 0) and ln 4 at (0, 1), 0 at (1, 0):
    # IS weights min(e^x, cap 2) = 0.5, 2, 1 multiply the policy loss
    sampler = torch.tensor([[LN2, -2 * LN2, 5.0], [0.0, 5.0, 5.0]])
    loss, figures = grpo_objective(
        logp(), OLD, ADV, MASK, NORM, CLIP, "seq_mean_token_mean",
        sampler_logp=sampler, correction=RolloutCorrectionConfig(mode="truncate", cap=2.0),
    )
    # row 0: (-1.2 * 0.5 + -0.9 * 2) / 2 = -1.2; row 1: 0.8 * 1; (-1.2 + 0.8) / 2 = -0.2
    assert loss.item() == pytest.approx(-0.2, abs=1e-6)
    assert {k: v for k, v in figures.items() if k.startswith("mismatch/")} == pytest.approx({
        "mismatch/tokens": 3.0, "mismatch/sequences": 2.0,
        "mismatch/abs_logp_diff": LN2 + 2 * LN2,
        "mismatch/kl": (0.5 + LN2 - 1) + (4 - 2 * LN2 - 1),  # k3 = e^x - x - 1 per token
        "mismatch/ratio_max": 4.0,  # the ratio, before the cap
        "mismatch/weight_sum": 0.5 + 2.0 + 1.0, "mismatch/zeroed_tokens": 0.0,
    }, abs=1e-5)


def test_behaviour_proximal_clips_against_the_sampler_and_no_figures_when_not_asked():
    # proximal=behaviour: the ratio is taken to the sampler's log-probs, not to OLD. With the
    # sampler at ln [1.5, 0.9] / ln 0.5 the ratios are all 1: loss -A per token, no clip
    sampler = torch.log(torch.tensor(RATIOS))
    loss, figures = grpo_objective(
        logp(), OLD, ADV, MASK, NORM, CLIP, "token_mean", sampler_logp=sampler,
        correction=RolloutCorrectionConfig(proximal="behaviour"), with_figures=False,
    )
    assert loss.item() == pytest.approx((-1 - 1 + 1) / 3, abs=1e-6) and figures == {}
