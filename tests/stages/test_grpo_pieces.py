"""Pieces of the GRPO loop: old log-probs equal the first update's (ratio exactly 1), micro-batching."""
import torch

from r1lab.algorithms.policy_loss import PolicyLossConfig, compute_policy_loss
from r1lab.config.schema import TinyModelConfig
from r1lab.models.forward import token_logprobs
from r1lab.models.tiny import build_tiny_model, char_tokenizer
from r1lab.stages.context import length_grouped
from r1lab.stages.grpo_steps import collate_rollout, entropy_term_weights


def test_rollout_time_logprobs_give_ratio_exactly_one_on_the_first_update():
    tok = char_tokenizer()
    model = build_tiny_model(TinyModelConfig(hidden_size=32, num_layers=1, num_heads=2, num_kv_heads=2, intermediate_size=64), len(tok), tok)
    prompts = [tok("Use 1 2 3").input_ids, tok("Use 4 5").input_ids]
    comps = [tok("1+2+3").input_ids, tok("4+5=9</answer>").input_ids]
    b = collate_rollout(prompts, comps, tok.pad_token_id)
    with torch.no_grad():  # what the loop stores at rollout time when updates_per_batch > 1
        old, _ = token_logprobs(model, **b, temperature=0.7)
    logp, _ = token_logprobs(model, **b, temperature=0.7)  # the first update, with grad
    mask = b["loss_mask"][:, 1:]
    _, stats = compute_policy_loss(logp, old, torch.tensor([1.0, -1.0]), mask, PolicyLossConfig())
    assert torch.equal(stats["ratio"][mask.bool()], torch.ones(int(mask.sum())))


def test_collate_masks_exactly_the_completion_tokens():
    b = collate_rollout([[5, 6], [7]], [[8, 9, 10], [11]], pad_id=0)
    assert b["input_ids"].tolist() == [[5, 6, 8, 9, 10], [7, 11, 0, 0, 0]]
    assert b["loss_mask"].tolist() == [[0, 0, 1, 1, 1], [0, 1, 0, 0, 0]]
    assert b["attention_mask"].tolist() == [[1, 1, 1, 1, 1], [1, 1, 0, 0, 0]]


def test_length_grouped_groups_similar_lengths():
    assert length_grouped([5, 90, 7, 88, 6, 91], 2) == [[0, 4], [2, 3], [1, 5]]


def test_entropy_term_weights_cover_trained_rows_and_sample_the_rest_unbiased():
    adv = torch.tensor([0.5, 0.0, -0.5, 0.0] * 2500)
    assert torch.equal(entropy_term_weights(adv, 0.0, 0.25, seed=0, step=3), torch.zeros(10_000))  # no term
    assert torch.equal(entropy_term_weights(adv, -0.1, 1.0, seed=0, step=3), torch.ones(10_000))  # every row
    w = entropy_term_weights(adv, -0.1, 0.25, seed=0, step=3)
    assert torch.all(w[adv != 0] == 1.0)  # rows the policy loss trains anyway: weight 1, always run
    zero = w[adv == 0]
    assert set(zero.unique().tolist()) == {0.0, 4.0}  # drawn (weight 1/fraction) or not run
    assert abs(float((zero > 0).float().mean()) - 0.25) < 0.02
    assert abs(float(zero.mean()) - 1.0) < 0.08  # the expected weight is the full term's
    assert torch.equal(w, entropy_term_weights(adv, -0.1, 0.25, seed=0, step=3))  # resumed runs draw the same
    assert not torch.equal(w, entropy_term_weights(adv, -0.1, 0.25, seed=0, step=4))
