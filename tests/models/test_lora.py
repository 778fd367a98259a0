"""LoRA: only adapters train, the reference is the same model with adapters off, exports load."""
from __future__ import annotations

import json
import signal

import pytest
import torch
from transformers import AutoModelForCausalLM

from r1lab.algorithms.kl import KLConfig, KL_ESTIMATORS, kl_loss_term
from r1lab.algorithms.policy_loss import PolicyLossConfig, compute_policy_loss
from r1lab.algorithms.reduce import LossNorm, reduce_loss
from r1lab.config.schema import EngineConfig, LoRAConfig, TinyModelConfig
from r1lab.engine import signals
from r1lab.models.forward import token_logprobs
from tests.helpers import run_cli
from r1lab.models.lora import adapters_off, apply_lora, is_lora, load_base_with_adapter, merged_state_dict
from r1lab.models.tiny import build_tiny_model, char_tokenizer, save_tiny_model
from r1lab.stages.grpo_steps import collate_rollout

# rendezvous variables an in-process Engine left in this test process must not leak into the child

TINY = TinyModelConfig(hidden_size=32, num_layers=1, num_heads=4, num_kv_heads=4, intermediate_size=64,
                       max_position_embeddings=64)


@pytest.fixture(autouse=True)
def keep_sigterm():
    before = signal.getsignal(signal.SIGTERM)
    yield
    signal.signal(signal.SIGTERM, before)
    signals._installed = False
    signals.reset()


def rollout(tok):
    g = torch.Generator().manual_seed(0)
    prompts = [torch.randint(4, len(tok), (n,), generator=g).tolist() for n in (3, 5, 4, 2)]
    completions = [torch.randint(4, len(tok), (n,), generator=g).tolist() for n in (6, 2, 4, 5)]
    return collate_rollout(prompts, completions, tok.pad_token_id)


def test_unknown_target_module_fails_with_the_names():
    model = build_tiny_model(TINY, vocab_size=40)
    with pytest.raises(ValueError, match=r"\['c_attn'\] not found .*'q_proj'"):
        apply_lora(model, LoRAConfig(enabled=True, target_modules=["c_attn"]))


def test_logprobs_of_a_peft_model_match_its_merged_weights():
    tok = char_tokenizer()
    model = apply_lora(build_tiny_model(TINY, vocab_size=len(tok), tokenizer=tok), LoRAConfig(r=4))
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.5)  # a trained adapter
    plain = build_tiny_model(TINY, vocab_size=len(tok), tokenizer=tok)
    plain.load_state_dict(merged_state_dict(model))
    b = rollout(tok)
    with torch.no_grad():
        got, _ = token_logprobs(model, **b, chunk_size=3)
        want, _ = token_logprobs(plain, **b)
        with adapters_off(model):
            base, _ = token_logprobs(model, **b)
        base_want, _ = token_logprobs(build_tiny_model(TINY, vocab_size=len(tok), tokenizer=tok), **b)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(base, base_want, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(got, base)


@pytest.mark.slow
def test_lora_grpo_step_trains_only_adapters_and_starts_at_zero_kl(tmp_path):
    from r1lab.engine.engine import Engine, OptimSettings

    tok = char_tokenizer()
    model = apply_lora(build_tiny_model(TINY, vocab_size=len(tok), tokenizer=tok), LoRAConfig(r=4, alpha=8))
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    opt = OptimSettings(lr=1e-2, weight_decay=0.0, max_grad_norm=1.0, schedule="constant", warmup_steps=0,
                        total_steps=4, min_lr_ratio=0.0, micro_batch_per_device=4)
    engine = Engine(model, EngineConfig(zero_stage=0, precision="fp32"), opt)
    policy = engine.module
    reference = policy  # what run_grpo uses with LoRA: no second copy
    b = rollout(tok)
    mask = b["loss_mask"][:, 1:]
    kl_cfg = KLConfig(beta=0.1)

    def kl_to_reference() -> float:
        with torch.no_grad():
            logp, _ = token_logprobs(policy, **b)
            with adapters_off(reference):
                ref, _ = token_logprobs(reference, **b)
        return float((KL_ESTIMATORS.get("k3")(logp, ref) * mask).sum() / mask.sum())

    assert kl_to_reference() == 0.0
    with torch.no_grad(), adapters_off(reference):
        ref_logp, _ = token_logprobs(reference, **b)
    logp, _ = token_logprobs(policy, **b)
    per_token, _ = compute_policy_loss(logp, logp.detach(), torch.tensor([1.0, -1.0, 0.5, -0.5]), mask, PolicyLossConfig())
    per_token = per_token + kl_loss_term(logp, ref_logp, kl_cfg)
    norm = LossNorm(num_sequences=4, num_tokens=int(mask.sum()), max_completion_length=8)
    engine.backward(reduce_loss(per_token, mask, norm, "seq_mean_token_mean"), last_micro_batch=True)

    changed = {n for n, p in policy.named_parameters() if not torch.equal(p.detach(), before[n])}
    assert changed and all("lora_" in n for n in changed), sorted(changed)
    assert any("lora_B" in n for n in changed)
    assert kl_to_reference() > 0.0
    with torch.no_grad(), adapters_off(reference):
        torch.testing.assert_close(token_logprobs(reference, **b)[0], ref_logp)  # the reference did not move

    # resumable checkpoint: adapters (and their optimizer state) only; loads back exactly
    path = engine.save(tmp_path / "resume", {"stage": "grpo"}, keep=1)
    weights = torch.load(path / "ds" / "mp_rank_00_model_states.pt", weights_only=False)["module"]
    # (DeepSpeed keeps a tied LM head, a second name of the frozen embedding: a known extra)
    assert {k for k in weights if "lora_" not in k} <= {"base_model.model.lm_head.weight"}
    trained = {n: p.detach().clone() for n, p in policy.named_parameters()}
    with torch.no_grad():
        for p in policy.parameters():
            if p.requires_grad:
                p.zero_()
    engine.load(tmp_path / "resume")
    for n, p in policy.named_parameters():
        torch.testing.assert_close(p.detach(), trained[n], rtol=0, atol=0, msg=n)

    # exports: the adapter alone, or merged weights that load without peft
    merged_dir, adapter_dir = tmp_path / "merged", tmp_path / "adapter"
    engine.save_pretrained(adapter_dir, tok)
    engine.save_pretrained(merged_dir, tok, merge_lora=True)
    assert (adapter_dir / "adapter_config.json").exists() and not (adapter_dir / "model.safetensors").exists()
    merged = AutoModelForCausalLM.from_pretrained(merged_dir)
    assert not is_lora(merged)
    with torch.no_grad():
        want = token_logprobs(policy, **b)[0]
        torch.testing.assert_close(token_logprobs(merged, **b)[0], want, rtol=1e-5, atol=1e-5)
    # a later stage folds an unmerged adapter into its base (the adapter names its base's path)
    base_dir = save_tiny_model(TINY, tmp_path / "base")
    config = json.loads((adapter_dir / "adapter_config.json").read_text())
    config["base_model_name_or_path"] = str(base_dir)
    (adapter_dir / "adapter_config.json").write_text(json.dumps(config))
    folded = load_base_with_adapter(str(adapter_dir), AutoModelForCausalLM.from_pretrained)
    with torch.no_grad():
        torch.testing.assert_close(token_logprobs(folded, **b)[0], want, rtol=1e-5, atol=1e-5)


@pytest.mark.slow
def test_lora_grpo_through_the_cli(tmp_path):
    """run_grpo with LoRA and a KL term: the reference is the adapter-free policy (KL 0 at step 1)."""
    run_dir = tmp_path / "run"
    cmd = ["recipe=r1_countdown_tiny", "stages.cold_start=null",
           f"run_dir={run_dir}", "engine.num_threads=1", "tracking.wandb.mode=disabled", "tracking.progress_bar=false",
           "eval.initial=false", "eval.num_problems=2", "eval.samples=1", "eval.max_new_tokens=8",
           "task.num_train=16", "task.num_test=4", "task.num_test_hard=4",
           "model.tiny.hidden_size=32", "model.tiny.num_layers=1", "model.tiny.intermediate_size=64",
           "model.lora.enabled=true", "model.lora.r=4", "model.lora.merge_on_save=true",
           "stages.grpo.steps=2", "stages.grpo.prompts_per_step=2", "stages.grpo.samples_per_prompt=2",
           "stages.grpo.max_new_tokens=12", "++stages.grpo.kl.beta=0.1", "++stages.grpo.save_every=1"]
    proc = run_cli(*cmd, env={"TOKENIZERS_PARALLELISM": "false", "DS_ACCELERATOR": "cpu"}, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    stage = run_dir / "stages" / "01-grpo"
    rows = [json.loads(x) for x in (stage / "metrics.jsonl").read_text().splitlines()]
    assert rows[0]["kl"] == 0.0 and rows[0]["nonfinite_steps"] == 0
    assert (stage / "checkpoint" / "model.safetensors").exists()  # merged: loads without peft
    states = torch.load(next((stage / "resume").glob("step-*/ds/mp_rank_00_model_states.pt")), weights_only=False)
    assert {k for k in states["module"] if "lora_" not in k} <= {"base_model.model.lm_head.weight"}
