import math

import pytest
import torch

from r1lab.algorithms.rollout_correction import (
    ROLLOUT_CORRECTIONS,
    RolloutCorrectionConfig,
    correction_stats,
    importance_weights,
    mismatch_sums,
)

E = math.exp
NAN = float("nan")
INF = float("inf")

# Row 0: three completion tokens, x = trainer - sampler = [0.2, -0.5, 0.0], sum -0.3.
# Row 1: two completion tokens, x = [0.7, -0.6], sum 0.1; its padded slot has x = 100.
# Row 2: no completion tokens at all, only garbage (inf, NaN, 97) that must never leak out.
TRAINER = torch.tensor([[-1.0, -2.0, -0.5], [-0.3, -1.0, 50.0], [7.0, 7.0, 7.0]])
SAMPLER = torch.tensor([[-1.2, -1.5, -0.5], [-1.0, -0.4, -50.0], [-INF, NAN, -90.0]])
MASK = torch.tensor([[1, 1, 1], [1, 1, 0], [0, 0, 0]])


def weights(mode: str, level: str = "token", **kw) -> torch.Tensor:
    cfg = RolloutCorrectionConfig(mode=mode, level=level, **kw)
    return importance_weights(TRAINER, SAMPLER, MASK, cfg)


def test_registry_names():
    assert ROLLOUT_CORRECTIONS.names() == ["mask", "none", "truncate"]


def test_none_is_all_ones_and_ignores_sampler():
    out = weights("none")
    assert out.dtype == torch.float32
    assert torch.equal(out, torch.ones(3, 3))
    # mode none must not even read the sampler's log-probs
    assert torch.equal(
        importance_weights(TRAINER, None, MASK, RolloutCorrectionConfig()), torch.ones(3, 3)
    )
    assert not RolloutCorrectionConfig().needs_sampler_logp
    assert RolloutCorrectionConfig(mode="truncate").needs_sampler_logp


def test_token_ratio_below_a_large_cap_is_the_raw_ratio():
    # cap 100 never binds: per-token ratios e^x; 1 outside the mask (incl. the x = 100 pad slot)
    expected = torch.tensor([[E(0.2), E(-0.5), 1.0], [E(0.7), E(-0.6), 1.0], [1.0, 1.0, 1.0]])
    torch.testing.assert_close(weights("truncate", cap=100.0), expected)


def test_token_truncate():
    # cap 1.1: e^0.2 = 1.2214 -> 1.1, e^0.7 = 2.0138 -> 1.1; ratios < 1 are not raised
    expected = torch.tensor([[1.1, E(-0.5), 1.0], [1.1, E(-0.6), 1.0], [1.0, 1.0, 1.0]])
    torch.testing.assert_close(weights("truncate", cap=1.1), expected)


def test_sequence_truncate():
    # row 0: e^-0.3 = 0.7408 (under the cap) on all 3 tokens; row 1: e^0.1 = 1.1052 -> 1.05 on its
    # 2 tokens, 1 on the pad slot; row 2 has no tokens: all 1
    expected = torch.tensor(
        [[E(-0.3)] * 3, [1.05, 1.05, 1.0], [1.0, 1.0, 1.0]]
    )
    torch.testing.assert_close(weights("truncate", level="sequence", cap=1.05), expected)


def test_sequence_ratio_is_the_product_of_token_ratios():
    # cap 100 never binds: row ratios e^-0.3 and e^0.1
    expected = torch.tensor([[E(-0.3)] * 3, [E(0.1), E(0.1), 1.0], [1.0, 1.0, 1.0]])
    torch.testing.assert_close(weights("truncate", level="sequence", cap=100.0), expected)


def test_truncate_huge_ratio_inside_mask_is_capped_not_inf():
    # x = 100 on a completion token: e^100 overflows float32, the weight must still be the cap
    trainer = torch.tensor([[50.0, -1.0]])
    sampler = torch.tensor([[-50.0, -1.0]])
    mask = torch.tensor([[1, 1]])
    for level, expected in (("token", [[2.0, 1.0]]), ("sequence", [[2.0, 2.0]])):
        cfg = RolloutCorrectionConfig(mode="truncate", level=level, cap=2.0)
        torch.testing.assert_close(
            importance_weights(trainer, sampler, mask, cfg), torch.tensor(expected)
        )


# Mask-mode fixture: trainer 0 everywhere, sampler = -(desired log-ratio).
L3, L15 = math.log(3.0), math.log(1.5)
MASK_LOG_RATIO = torch.tensor(
    [
        [L3 / 2, L3 / 2],  # tokens 1.732 each (kept per token); row 3 -> dropped
        [-L3, 0.0],  # token 1/3 (dropped), 1 (kept); row 1/3 -> dropped
        [L15, 99.0],  # token 1.5 (kept), pad slot with garbage; row 1.5 -> kept
        [-L15, 0.0],  # token 1/1.5 (kept), 1 (kept); row 1/1.5 -> kept
        [L15, L15],  # tokens 1.5 each (kept per token); row 2.25 -> dropped
    ]
)
MASK_MASK = torch.tensor([[1, 1], [1, 1], [1, 0], [1, 1], [1, 1]])


def mask_weights(level: str) -> torch.Tensor:
    cfg = RolloutCorrectionConfig(mode="mask", level=level, threshold=2.0)
    trainer = torch.zeros(5, 2)
    return importance_weights(trainer, trainer - MASK_LOG_RATIO, MASK_MASK, cfg)


def test_sequence_mask():
    expected = torch.tensor([[0.0, 0.0], [0.0, 0.0], [1.0, 1.0], [1.0, 1.0], [0.0, 0.0]])
    assert torch.equal(mask_weights("sequence"), expected)


def test_token_mask():
    expected = torch.tensor([[1.0, 1.0], [0.0, 1.0], [1.0, 1.0], [1.0, 1.0], [1.0, 1.0]])
    assert torch.equal(mask_weights("token"), expected)


def test_mask_drops_nan_ratio_on_completion_token():
    trainer = torch.tensor([[NAN, -1.0]])
    sampler = torch.tensor([[-1.0, -1.0]])
    cfg = RolloutCorrectionConfig(mode="mask")
    out = importance_weights(trainer, sampler, torch.tensor([[1, 1]]), cfg)
    assert torch.equal(out, torch.tensor([[0.0, 1.0]]))


@pytest.mark.parametrize("mode", ["none", "truncate", "mask"])
@pytest.mark.parametrize("level", ["token", "sequence"])
def test_weights_detached_float32_finite(mode, level):
    trainer = TRAINER.to(torch.bfloat16).requires_grad_(True)
    sampler = SAMPLER.clone().requires_grad_(True)
    out = importance_weights(trainer, sampler, MASK, RolloutCorrectionConfig(mode=mode, level=level))
    assert not out.requires_grad
    assert out.grad_fn is None
    assert out.dtype == torch.float32
    assert out.shape == (3, 3)
    assert torch.isfinite(out).all()
    # outside the mask the weight is 1 (neutral in loss * weights)
    assert torch.equal(out[~MASK.bool()], torch.ones(4))


def test_mismatch_sums_hand_computed():
    out = mismatch_sums(TRAINER, SAMPLER, MASK)
    assert set(out) == {"tokens", "abs_logp_diff", "kl", "ratio_max", "sequences"}
    assert out["tokens"] == 5.0
    assert out["sequences"] == 2.0  # row 2 has no completion token
    # |0.2| + |-0.5| + 0 + |0.7| + |-0.6| = 2.0
    assert out["abs_logp_diff"] == pytest.approx(2.0, abs=1e-5)
    # k3 = e^x - x - 1: 0.0214028 + 0.1065307 + 0 + 0.3137527 + 0.1488116 = 0.5904978
    assert out["kl"] == pytest.approx(0.5904978, abs=1e-5)
    # max e^x over completion tokens is e^0.7 = 2.0137527 (the pad slot's e^100 is ignored)
    assert out["ratio_max"] == pytest.approx(E(0.7), abs=1e-5)


def test_mismatch_sums_zero_when_engines_agree():
    out = mismatch_sums(TRAINER, TRAINER.clone(), MASK)
    assert out == {"tokens": 5.0, "abs_logp_diff": 0.0, "kl": 0.0, "ratio_max": 1.0, "sequences": 2.0}


def test_mismatch_sums_empty_mask():
    out = mismatch_sums(TRAINER, SAMPLER, torch.zeros(3, 3))
    assert out == {"tokens": 0.0, "abs_logp_diff": 0.0, "kl": 0.0, "ratio_max": 0.0, "sequences": 0.0}


def test_correction_stats():
    w = mask_weights("token")  # one completion token zeroed, 8 completion tokens in all
    out = correction_stats(w, MASK_MASK)
    assert out == {"weight_sum": 8.0, "zeroed_tokens": 1.0}
    # zeros and values outside the mask are not counted
    w = torch.tensor([[0.5, 0.0, 0.0], [2.0, 1.5, 7.0]])
    out = correction_stats(w, torch.tensor([[1, 1, 0], [1, 0, 0]]))
    assert out == {"weight_sum": 2.5, "zeroed_tokens": 1.0}


@pytest.mark.parametrize(
    "kwargs, field",
    [
        ({"mode": "clip"}, "mode"),
        ({"level": "row"}, "level"),
        ({"cap": 0.5}, "cap"),
        ({"cap": NAN}, "cap"),
        ({"threshold": 1.0}, "threshold"),
        ({"threshold": 0.5}, "threshold"),
    ],
)
def test_invalid_config(kwargs, field):
    with pytest.raises(ValueError, match=rf"RolloutCorrectionConfig\.{field} must"):
        RolloutCorrectionConfig(**kwargs)


def test_valid_config_edges():
    RolloutCorrectionConfig(mode="truncate", cap=1.0)  # cap 1 is allowed: weights <= 1
    RolloutCorrectionConfig(mode="mask", level="sequence", threshold=1.001)


# --- off-policy objectives (rollout.max_staleness >= 1): hand-computed -----------------------------------------


def _one_step_off_case():
    """Two tokens, advantage +1: current pi, proximal (trainer before the update), behaviour (the
    stale policy that sampled). Log-ratios: pi - prox = +0.1, -0.1; prox - behav = +0.4, -0.7;
    pi - behav = +0.5, -0.8."""
    logp = torch.tensor([[-1.0, -2.0]])
    prox = torch.tensor([[-1.1, -1.9]])
    behav = torch.tensor([[-1.5, -1.2]])
    return logp, prox, behav, torch.ones(1, 2), torch.ones(1)


def test_decoupled_objective_clips_against_the_proximal_policy_and_weights_by_prox_over_behaviour():
    from r1lab.algorithms.policy_loss import PolicyLossConfig, compute_policy_loss
    from r1lab.algorithms.rollout_correction import off_policy_terms

    logp, prox, behav, mask, adv = _one_step_off_case()
    old, w = off_policy_terms(prox, behav, mask, RolloutCorrectionConfig(mode="truncate", cap=2.0))
    assert torch.equal(old, prox)
    # w = min(exp(prox - behav), 2) = exp(0.4), exp(-0.7)
    assert torch.allclose(w, torch.tensor([[1.4918247, 0.4965853]]), atol=1e-6)
    per_token, _ = compute_policy_loss(logp, old, adv, mask, PolicyLossConfig(clip_low=0.2, clip_high=0.2))
    # r = exp(+-0.1) = 1.1051709, 0.9048374, both inside [0.8, 1.2]: loss = -r * A * w
    assert torch.allclose(per_token * w, torch.tensor([[-1.1051709 * 1.4918247, -0.9048374 * 0.4965853]]), atol=1e-6)
    # the cap binds: prox - behav = 1.0 gives min(e, 1.5) = 1.5
    _, capped = off_policy_terms(torch.tensor([[-0.5]]), torch.tensor([[-1.5]]), torch.ones(1, 1),
                                 RolloutCorrectionConfig(mode="truncate", cap=1.5))
    assert torch.allclose(capped, torch.tensor([[1.5]]))
    # mask: a token whose prox/behav ratio is outside [1/2, 2] is dropped (exp(0.4) kept, exp(-0.7) < 1/2 dropped)
    _, kept = off_policy_terms(prox, behav, mask, RolloutCorrectionConfig(mode="mask", threshold=2.0))
    assert kept.tolist() == [[1.0, 0.0]]


def test_behaviour_objective_clips_against_the_sampler_with_no_extra_weight():
    from r1lab.algorithms.policy_loss import PolicyLossConfig, compute_policy_loss
    from r1lab.algorithms.rollout_correction import off_policy_terms

    logp, prox, behav, mask, adv = _one_step_off_case()
    old, w = off_policy_terms(prox, behav, mask, RolloutCorrectionConfig(proximal="behaviour"))
    assert torch.equal(old, behav) and w is None
    per_token, stats = compute_policy_loss(logp, old, adv, mask, PolicyLossConfig(clip_low=0.2, clip_high=0.2))
    # r = exp(0.5) = 1.6487 clipped to 1.2 (A > 0); r = exp(-0.8) = 0.4493 below 0.8 is not clipped for A > 0
    assert torch.allclose(per_token, torch.tensor([[-1.2, -0.4493290]]), atol=1e-6)
    assert stats["clipped_high"].tolist() == [[1.0, 0.0]]


def test_off_policy_terms_without_sampler_logprobs_fall_back_to_the_trainer():
    from r1lab.algorithms.rollout_correction import off_policy_terms

    prox = torch.tensor([[-1.0]])
    for cfg in (RolloutCorrectionConfig(), RolloutCorrectionConfig(mode="truncate"), RolloutCorrectionConfig(proximal="behaviour")):
        old, w = off_policy_terms(prox, None, torch.ones(1, 1), cfg)
        assert torch.equal(old, prox) and w is None
    old, w = off_policy_terms(prox, torch.tensor([[-3.0]]), torch.ones(1, 1), RolloutCorrectionConfig())  # mode none
    assert torch.equal(old, prox) and w is None


def test_behaviour_objective_refuses_a_second_weight():
    with pytest.raises(ValueError, match="proximal=behaviour.*mode=none"):
        RolloutCorrectionConfig(proximal="behaviour", mode="truncate")
    with pytest.raises(ValueError, match="proximal must be one of trainer, behaviour"):
        RolloutCorrectionConfig(proximal="stale")
