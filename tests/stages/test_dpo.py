"""The DPO stage: pairs from crafted samples, the loss against a hand computation from an
independent forward pass, accumulation invariance, on-policy pairs and their report."""
from __future__ import annotations

import json
import math

import pytest
import torch
import torch.nn.functional as F
from datasets import load_from_disk

from r1lab.models.load import load_model, load_tokenizer
from r1lab.models.templates import encode_prompt
from r1lab.stages import rejection
from r1lab.stages.dpo import run_dpo
from r1lab.stages.filters import build_pairs

from .helpers import make_ctx, script_completions, write_jsonl

PAIRS = [
    {"prompt": "Use 1 2 to make 3.", "chosen": "2+1=3 yes</think><answer>2+1</answer>", "rejected": "2*1=2</think><answer>2*1</answer>"},
    {"prompt": "Use 2 3 to make 6.", "chosen": "2*3=6 yes</think><answer>2*3</answer>", "rejected": "2+3=5 no</think>"},
]


def s(correct, failed=(), index=0):
    return {"correct": correct, "failed": list(failed), "sample_index": index}


def test_pairs_from_crafted_samples():
    groups = [
        [s(True, index=0), s(False, index=1), s(True, ["language"], index=2), s(True, index=3)],  # 2 good, 2 bad
        [s(True), s(True)],  # all good: skipped
        [s(False), s(True, ["well_formed"])],  # none good (correct but unreadable is bad): skipped
    ]
    pairs, counts = build_pairs(groups, pairs_per_prompt=5, seed=0)
    assert counts == {"prompts": 3, "prompts_with_pair": 1, "prompts_all_accepted": 1, "prompts_none_accepted": 1, "pairs": 2}
    assert {c["sample_index"] for c, _ in pairs} == {0, 3} and {r["sample_index"] for _, r in pairs} == {1, 2}
    one, _ = build_pairs(groups, pairs_per_prompt=1, seed=0)
    assert len(one) == 1 and one == build_pairs(groups, pairs_per_prompt=1, seed=0)[0]


def sequence_logp(model, tok, prompt: str, response: str) -> tuple[float, int]:
    """Summed log-prob of response (+ EOS) after the prompt, from a plain full forward pass."""
    p = encode_prompt(tok, "r1_zero_short", prompt)
    r = tok(response, add_special_tokens=False).input_ids + [tok.eos_token_id]
    ids = torch.tensor([p + r])
    with torch.no_grad():
        logp = F.log_softmax(model(input_ids=ids).logits[0, :-1].double(), -1)
    targets = ids[0, 1:]
    return float(logp[torch.arange(len(targets)), targets][len(p) - 1 :].sum()), len(r)


def dpo_stage(tmp_path, model, **over):
    tmp_path.mkdir(parents=True, exist_ok=True)
    pairs = write_jsonl(tmp_path / "pairs.jsonl", PAIRS)
    stage = {"kind": "dpo", "data": pairs, "steps": 1, "batch_size": 2, "micro_batch_per_device": 2, "lr": 1e-3,
             "schedule": "constant", "max_grad_norm": 0.0, **over}
    ctx = make_ctx(tmp_path / "stage", model, {"dpo": stage})
    run_dpo(ctx)
    return ctx, [json.loads(line) for line in (ctx.stage_dir / "metrics.jsonl").read_text().splitlines()]


def test_simpo_loss_matches_a_hand_computation(tmp_path, micro_model):
    model, tok = load_model(micro_model), load_tokenizer(micro_model)
    beta, gamma = 2.0, 0.5
    losses, margins = [], []
    for pair in PAIRS:
        c, lc = sequence_logp(model, tok, pair["prompt"], pair["chosen"])
        r, lr = sequence_logp(model, tok, pair["prompt"], pair["rejected"])
        z = beta * (c / lc - r / lr) - gamma
        losses.append(-math.log(1 / (1 + math.exp(-z))))
        margins.append(beta * (c / lc - r / lr))
    ctx, metrics = dpo_stage(tmp_path, micro_model, loss={"name": "simpo", "beta": beta, "simpo_gamma": gamma})
    assert metrics[0]["loss"] == pytest.approx(sum(losses) / 2, rel=1e-5)
    assert metrics[0]["rewards/margin"] == pytest.approx(sum(margins) / 2, rel=1e-4, abs=1e-6)
    assert not (ctx.stage_dir / "reference_logps.pt").exists()  # simpo is reference-free


def test_sigmoid_dpo_starts_at_log2_and_moves_the_margin(tmp_path, micro_model):
    beta = 0.5
    ctx, metrics = dpo_stage(tmp_path, micro_model, loss={"name": "sigmoid", "beta": beta})
    # the policy is its own reference at the first step: z = 0, loss = log 2
    assert metrics[0]["loss"] == pytest.approx(math.log(2), abs=1e-6)
    assert metrics[0]["rewards/margin"] == pytest.approx(0.0, abs=1e-6)
    ref = torch.load(ctx.stage_dir / "reference_logps.pt")
    base, tok = load_model(micro_model), load_tokenizer(micro_model)
    trained = load_model(str(ctx.checkpoint_dir))
    losses = []
    for i, pair in enumerate(PAIRS):
        c0, _ = sequence_logp(base, tok, pair["prompt"], pair["chosen"])
        r0, _ = sequence_logp(base, tok, pair["prompt"], pair["rejected"])
        assert ref[i].tolist() == pytest.approx([c0, r0], abs=1e-4)  # reference log-probs saved up front
        c1, _ = sequence_logp(trained, tok, pair["prompt"], pair["chosen"])
        r1, _ = sequence_logp(trained, tok, pair["prompt"], pair["rejected"])
        losses.append(-F.logsigmoid(torch.tensor(beta * ((c1 - c0) - (r1 - r0)))).item())
    assert sum(losses) / 2 < math.log(2)  # one step lowered the loss


def test_accumulation_invariance(tmp_path, micro_model):
    one, _ = dpo_stage(tmp_path / "one", micro_model, micro_batch_per_device=2)
    two, _ = dpo_stage(tmp_path / "two", micro_model, micro_batch_per_device=1)
    a, b = load_model(str(one.checkpoint_dir)).state_dict(), load_model(str(two.checkpoint_dir)).state_dict()
    base = load_model(micro_model).state_dict()
    assert any(not torch.equal(a[k], base[k]) for k in a)  # parameters changed
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-5, atol=1e-6)


def test_on_policy_pairs_and_report(tmp_path, micro_model, monkeypatch):
    good = "2+1=3 yes</think><answer>2+1</answer>"
    train = write_jsonl(tmp_path / "train.jsonl", [{"id": "a", "numbers": [1, 2], "target": 3}, {"id": "b", "numbers": [5, 5], "target": 1}])
    stage = {"kind": "dpo", "samples_per_prompt": 3, "pairs_per_prompt": 2, "steps": 1, "batch_size": 2, "micro_batch_per_device": 2}
    ctx = make_ctx(tmp_path / "stage", micro_model, {"dpo": stage}, train_file=train)
    run_dpo(script_completions(ctx, [good, "2*1=2</think><answer>2*1</answer>", good + " ```"]))
    report = json.loads((ctx.stage_dir / "report.json").read_text())
    # problem b: the answers do not make 1 from 5 5, so nothing is accepted there
    assert report == {"prompts": 2, "prompts_with_pair": 1, "prompts_all_accepted": 0, "prompts_none_accepted": 1,
                      "pairs": 1, "samples": 6, "accepted_samples": 1}
    pairs = load_from_disk(str(ctx.stage_dir / "pairs"))
    assert pairs["prompt_id"] == ["a"] and pairs["chosen"] == [good]
    assert (ctx.checkpoint_dir / "config.json").exists()
