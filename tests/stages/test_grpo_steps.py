"""GRPO's named steps (`r1lab.stages.grpo_steps`) one at a time, on a micro model, without the CLI:
dynamic sampling, the KL in the reward against a hand computation, what is trained on, the fixed
log-probs of a train batch, and one update with its metrics."""
from __future__ import annotations

from dataclasses import replace

import torch

from r1lab.models.forward import token_logprobs
from r1lab.models.tiny import build_tiny_model
from r1lab.rewards import build_rewards
from r1lab.stages import grpo_steps as steps
from r1lab.stages.context import step_indices

from .helpers import MICRO, make_ctx, script_completions, write_jsonl

RIGHT = "2+1=3 yes</think><answer>2+1</answer>"  # completions of "Use 1 2 to make 3." after "<think>"
WRONG = "2*1=2 no</think><answer>2*1</answer>"


def _ctx(tmp_path, micro_model, script, **grpo):
    tmp_path.mkdir(parents=True, exist_ok=True)
    train = write_jsonl(tmp_path / "train.jsonl", [{"id": f"p{i}", "numbers": [1, 2], "target": 3} for i in range(40)])
    stage = {"kind": "grpo", "steps": 1, "prompts_per_step": 4, "samples_per_prompt": 2, "micro_batch_per_device": 3,
             "max_new_tokens": 48, "rewards": {"countdown": 1.0}, "seed": 3, **grpo}
    ctx = make_ctx(tmp_path / "01-grpo", micro_model, {"grpo": stage}, train_file=train)
    return script_completions(ctx, script)


def _collect(ctx, draws=0):
    model, tok = ctx.load_policy()
    engine = ctx.rollout_engine(model, tok)
    weights = build_rewards({"countdown": 1.0})
    rounds = steps.grpo_rounds(engine, model, tok, ctx.task, "r1_zero_short", ctx.task.split("train"), ctx.cfg, weights)
    out = steps.collect_rollout(rounds, ctx.cfg, draws)
    return out, model, tok


def test_dynamic_sampling_tops_up_with_varied_groups_and_advances_the_prompt_stream(tmp_path, micro_model):
    # each round of 4 prompts x 2 samples reads RIGHT RIGHT | RIGHT WRONG | RIGHT RIGHT | RIGHT WRONG:
    # two groups of four have varied rewards, so filling 4 takes two rounds
    script = [RIGHT, RIGHT, RIGHT, WRONG]
    ctx = _ctx(tmp_path, micro_model, script, dynamic_sampling=True, max_sampling_rounds=5)
    out, _, _ = _collect(ctx, draws=7)
    assert (out.rounds, out.draws, out.sampled_groups, out.rollout.num_groups) == (2, 9, 8, 4)
    assert out.rollout.rewards.view(-1, 2).tolist() == [[1.0, 0.0]] * 4  # only the varied groups
    train = ctx.task.split("train")
    drawn = [train["id"][int(i)] for d in (7, 8) for i in step_indices(d, 4, len(train), 3)]
    assert steps.drawn_prompt_ids(train, 9, 4, 3)[-len(set(drawn)):] == list(dict.fromkeys(drawn))

    plain = _ctx(tmp_path / "plain", micro_model, script)
    out, _, _ = _collect(plain)
    assert (out.rounds, out.draws, out.sampled_groups, out.rollout.num_groups) == (1, 1, 4, 4)
    assert out.rollout.rewards.tolist() == [1.0, 1.0, 1.0, 0.0] * 2

    never = _ctx(tmp_path / "never", micro_model, [RIGHT], dynamic_sampling=True, max_sampling_rounds=3)
    out, _, _ = _collect(never)
    assert (out.rounds, out.draws, out.rollout.num_groups) == (3, 3, 0)  # no varied group: all rounds spent, none kept


def _sequence_logps(model, prompt, completion):
    ids = torch.tensor([prompt + completion])
    mask = torch.zeros_like(ids)
    mask[0, len(prompt):] = 1
    with torch.no_grad():
        logp, _ = token_logprobs(model, ids, torch.ones_like(ids), mask)
    return logp[0, len(prompt) - 1:]  # [len(completion)]


def test_kl_in_the_reward_subtracts_beta_times_each_sequence_k3_sum(tmp_path, micro_model):
    ctx = _ctx(tmp_path, micro_model, [RIGHT, WRONG, WRONG, RIGHT], kl={"beta": 0.5, "in_reward": True})
    out, model, tok = _collect(ctx)
    reference = build_tiny_model(replace(MICRO, init_seed=11), vocab_size=len(tok), tokenizer=tok).eval()
    rollout = out.rollout
    loss_tokens = steps.loss_token_counts(rollout, "keep")
    got = steps.kl_penalised_rewards(model, reference, rollout, loss_tokens, ctx.cfg, tok.pad_token_id, "cpu")
    for i in range(len(rollout)):  # by hand, one sequence at a time: k3 = exp(ref - logp) - (ref - logp) - 1
        d = _sequence_logps(reference, rollout.prompts[i], rollout.completions[i]) - _sequence_logps(model, rollout.prompts[i], rollout.completions[i])
        expected = float(rollout.rewards[i]) - 0.5 * float((d.exp() - d - 1).sum())
        assert abs(float(got[i]) - expected) < 1e-4, (i, float(got[i]), expected)
    assert float((rollout.rewards - got).min()) > 0.01  # a real penalty on every sequence
    # a masked (overlong) completion carries no KL
    masked = steps.kl_penalised_rewards(model, reference, rollout, torch.zeros_like(loss_tokens), ctx.cfg, tok.pad_token_id, "cpu")
    assert torch.equal(masked, rollout.rewards.float())


def test_trained_rows_skip_zero_advantage_unless_a_per_token_term_needs_them():
    adv = torch.tensor([0.5, 0.0, -0.5, 0.0])
    assert steps.trained_rows(adv, torch.zeros(4), kl_in_loss=False) == [0, 2]
    assert steps.trained_rows(adv, torch.tensor([1.0, 0.0, 1.0, 4.0]), kl_in_loss=False) == [0, 2, 3]
    assert steps.trained_rows(adv, torch.zeros(4), kl_in_loss=True) == [0, 1, 2, 3]


def test_train_batch_holds_old_and_reference_logprobs_and_one_update_moves_the_policy(tmp_path, micro_model):
    ctx = _ctx(tmp_path, micro_model, [RIGHT, WRONG], updates_per_batch=2, kl={"beta": 0.1})
    out, model, tok = _collect(ctx)
    rollout, cfg = out.rollout, ctx.cfg
    reference = build_tiny_model(replace(MICRO, init_seed=11), vocab_size=len(tok), tokenizer=tok).eval()
    loss_tokens = steps.loss_token_counts(rollout, "keep")
    rows = steps.trained_rows(torch.tensor([1.0, -1.0] * 4), torch.zeros(8), kl_in_loss=True)
    batch = steps.build_train_batch(rollout, rows, loss_tokens, cfg, tok.pad_token_id, model, reference)
    assert sorted(i for mb in batch.rows for i in mb) == list(range(8)) and batch.weights == [1.0] * 3  # 8 rows in 3s
    for mb, b, old, ref in zip(batch.rows, batch.batches, batch.old_logps, batch.ref_logps):
        for k, i in enumerate(mb):
            n = len(rollout.completions[i])
            start = len(rollout.prompts[i]) - 1
            assert torch.allclose(old[k, start:start + n], _sequence_logps(model, rollout.prompts[i], rollout.completions[i]), atol=1e-5)
            assert torch.allclose(ref[k, start:start + n], _sequence_logps(reference, rollout.prompts[i], rollout.completions[i]), atol=1e-5)
        assert b["loss_mask"].sum() == sum(loss_tokens[mb])

    norm = steps.loss_normaliser(len(rollout), loss_tokens, cfg.max_new_tokens)
    assert (norm.num_sequences, norm.num_tokens) == (8, int(loss_tokens.sum()))

    class Backward:  # the Engine's backward/step contract, on the plain module
        device, module = "cpu", model

        def __init__(self):
            self.opt = torch.optim.SGD(model.parameters(), lr=0.5)

        def backward(self, loss, last_micro_batch):
            loss.backward()
            if last_micro_batch:
                self.opt.step()
                self.opt.zero_grad()

    before = [p.detach().clone() for p in model.parameters()]
    advantages = torch.tensor([1.0, -1.0] * 4)
    sums = steps.policy_update(Backward(), batch, advantages, norm, cfg)
    assert any(not torch.equal(a, p) for a, p in zip(before, model.parameters()))
    assert sums.tokens == float(loss_tokens.sum()) and sums.kl > 0  # KL to a different model, first update only
    metrics = steps.step_metrics(rollout, rollout.rewards, "countdown", sums, norm, 2, seconds_train=1.0, updates_per_batch=2)
    assert metrics["accuracy"] == 0.5 and metrics["reward"] == 0.5 and abs(metrics["reward_std"] - 0.5) < 1e-6
    assert metrics["response_length"] == sum(map(len, rollout.completions)) / 8
    assert abs(metrics["kl"] - sums.kl / sums.tokens) < 1e-6 and metrics["trained_fraction"] == 1.0
    assert metrics["train_tokens_per_s"] == sums.tokens * 2  # two updates in one second
