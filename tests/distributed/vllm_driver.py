"""Run under torchrun: a ZeRO-3 engine and a colocated vLLM engine on every rank; after optimizer
steps the pushed weights (gathered a bucket at a time) must be the trainer's.

    torchrun --nproc_per_node 2 tests/distributed/vllm_driver.py MODEL_DIR OUT_DIR

Rank r writes ``rank<r>.json``: greedy tokens of vLLM before the steps, of the HF engine (the
trainer's gathered weights) and of vLLM after them, and the largest gap between vLLM's sampled
log-probs and the trainer's forward. Ranks decode different lengths (no collective may depend on it).
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import torch

os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")


def main(model_dir: str, out: Path) -> None:
    from r1lab.config.schema import EngineConfig, RolloutConfig
    from r1lab.engine import dist
    from r1lab.engine.engine import Engine, OptimSettings
    from r1lab.models.forward import token_logprobs
    from r1lab.models.load import load_model, load_tokenizer
    from r1lab.rollout.engine import Policy, SamplingParams, build_rollout_engine

    tok = load_tokenizer(model_dir)
    opt = OptimSettings(lr=0.05, weight_decay=0.0, max_grad_norm=0.0, schedule="constant", warmup_steps=0,
                        total_steps=10, min_lr_ratio=0.0, micro_batch_per_device=1)
    # persistence threshold 0: partition even the tiny model's small tensors, as for a real model
    engine = Engine(load_model(model_dir), EngineConfig(zero_stage=3, precision="fp32"), opt,
                    ds_config_overrides={"zero_optimization": {"stage3_param_persistence_threshold": 0}})
    policy = Policy(module=engine.module, path=model_dir, gathered=engine.gathered, gather_params=engine.gathered_params,
                    version=lambda: engine.step)
    vllm = build_rollout_engine(RolloutConfig(backend="vllm", max_model_len=256, max_num_seqs=16, kv_cache_gb=0.25), policy, tok, seed=0)
    hf = build_rollout_engine(RolloutConfig(backend="hf"), policy, tok, seed=0)
    prompts = [tok(p).input_ids for p in ["User: Use 1 2 3 to make 6\nAssistant: <think>", "Use 9"]]
    greedy = SamplingParams(max_new_tokens=16 + 4 * dist.rank(), temperature=0.0, stop=[])
    before = vllm.generate(prompts, greedy, None)
    target = tok("3*2=6</think><answer>", add_special_tokens=False).input_ids
    for _ in range(3):  # raise the log-prob of `target` after the first prompt (the same on every rank)
        ids = torch.tensor([prompts[0] + target])
        mask = torch.zeros_like(ids)
        mask[0, len(prompts[0]) :] = 1
        logp, _ = token_logprobs(engine.module, ids, torch.ones_like(ids), mask)
        engine.backward(-(logp * mask[:, 1:]).sum(), last_micro_batch=True)
    after_hf, after_vllm = hf.generate(prompts, greedy, None), vllm.generate(prompts, greedy, None)
    sampled = vllm.generate(prompts, SamplingParams(max_new_tokens=12, temperature=1.0, stop=[]), seed=dist.rank())
    gap = 0.0
    with engine.gathered():
        for p, c in zip(prompts, sampled):
            ids = torch.tensor([p + c.token_ids])
            mask = torch.zeros_like(ids)
            mask[0, len(p) :] = 1
            with torch.no_grad():
                logp, _ = token_logprobs(engine.module, ids, torch.ones_like(ids), mask)
            trainer = logp[0, len(p) - 1 :]
            gap = max(gap, float((trainer - torch.tensor(c.logprobs)).abs().max()))
    result = {
        "steps": engine.step,
        "before": [c.token_ids for c in before],
        "after_hf": [c.token_ids for c in after_hf],
        "after_vllm": [c.token_ids for c in after_vllm],
        "logprob_gap": gap,
    }
    (out / f"rank{dist.rank()}.json").write_text(json.dumps(result))


if __name__ == "__main__":
    main(sys.argv[1], Path(sys.argv[2]))
