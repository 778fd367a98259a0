"""Run under torchrun: two GRPO steps (the stage's own step functions) and one SFT step of a tiny model through `Engine`.

    torchrun --nproc_per_node N tests/distributed/driver.py --out DIR [--zero 2 3]
    torchrun --nproc_per_node 2 tests/distributed/driver.py --out DIR --mode timeout

The global batch is the same for every world size (each rank takes its slice, in micro-batches
of 2), so with losses normalised by global counts the loss and the updated parameters must not
depend on N. Rank 0 writes ``zero<stage>.pt``: losses, greedy tokens sampled inside
``Engine.gathered()`` (ranks decode different numbers of tokens) and the flattened parameters.
"""
from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import torch

GLOBAL_SEQUENCES = 8
MICRO_BATCH = 2


def synthetic_rows(seed: int, vocab: int) -> list[tuple[list[int], list[int]]]:
    """Fixed (prompt, completion) token ids of varied lengths: the same on every rank and world size."""
    g = torch.Generator().manual_seed(seed)
    rows = []
    for _ in range(GLOBAL_SEQUENCES):
        p_len, c_len = int(torch.randint(2, 6, (1,), generator=g)), int(torch.randint(1, 9, (1,), generator=g))
        ids = torch.randint(4, vocab, (p_len + c_len,), generator=g).tolist()
        rows.append((ids[:p_len], ids[p_len:]))
    return rows


def run(zero: int, out: Path) -> None:
    from r1lab.algorithms.reduce import LossNorm, reduce_loss
    from r1lab.config.schema import EngineConfig, TinyModelConfig
    from r1lab.stages.grpo import GRPOLossConfig, GRPOStageConfig
    from r1lab.engine import dist
    from r1lab.engine.engine import Engine, OptimSettings
    from r1lab.models.forward import token_logprobs
    from r1lab.models.tiny import build_tiny_model, char_tokenizer
    from r1lab.rollout.sampler import SamplingParams, generate
    from r1lab.rollout.groups import Rollout
    from r1lab.stages.grpo_steps import build_train_batch, loss_normaliser, loss_token_counts, policy_update, step_metrics
    from r1lab.stages.sft import collate

    tok = char_tokenizer()
    cfg = TinyModelConfig(hidden_size=32, num_layers=2, num_heads=4, num_kv_heads=2, intermediate_size=64,
                          max_position_embeddings=64, init_seed=0)
    model = build_tiny_model(cfg, vocab_size=len(tok), tokenizer=tok)
    opt = OptimSettings(lr=1e-3, weight_decay=0.0, max_grad_norm=1.0, schedule="constant", warmup_steps=0,
                        total_steps=10, min_lr_ratio=0.0, micro_batch_per_device=MICRO_BATCH)
    # persistence threshold 0: partition even the tiny model's small tensors, as for a real model
    overrides = {"zero_optimization": {"stage3_param_persistence_threshold": 0}} if zero == 3 else None
    engine = Engine(model, EngineConfig(zero_stage=zero, precision="fp32"), opt, ds_config_overrides=overrides)
    rank, world = dist.rank(), dist.world_size()
    per_rank = GLOBAL_SEQUENCES // world
    result: dict = {"world_size": world}

    # --- sampling with full weights; rank r decodes 3 + 4r tokens (no collective may depend on it)
    engine.eval()
    prompt = tok("12+3=", add_special_tokens=False).input_ids
    with engine.gathered():
        comp = generate(engine.module, tok, [prompt], SamplingParams(max_new_tokens=3 + 4 * rank, temperature=0.0, stop=[]),
                        batch_size=1)
    result["greedy_tokens"] = comp[0].token_ids[:3]
    engine.train()

    # --- GRPO steps through the stage's own step functions: a fixed rollout, fixed advantages, ------
    # this rank's slice; under token_mean the loss normaliser's token count must be global, under
    # seq_mean_token_mean its sequence count, or the update depends on the world size
    rows = synthetic_rows(0, len(tok))
    mine = list(range(rank * per_rank, (rank + 1) * per_rank))
    rollout = Rollout(
        group_size=2, prompts=[rows[i][0] for i in mine], completions=[rows[i][1] for i in mine], texts=[""] * per_rank,
        responses=[""] * per_rank, sampler_logprobs=[None] * per_rank, truncated=torch.zeros(per_rank, dtype=torch.bool),
        rewards=torch.linspace(0.0, 1.0, GLOBAL_SEQUENCES)[mine], components={"correct": torch.ones(per_rank)},
    )
    advantages = torch.linspace(-1.0, 1.0, GLOBAL_SEQUENCES)[mine]
    for reduction in ("token_mean", "seq_mean_token_mean"):
        cfg = GRPOStageConfig(micro_batch_per_device=MICRO_BATCH, max_new_tokens=8, logprob_chunk=4, samples_per_prompt=2,
                              entropy_coef=0.01, loss=GRPOLossConfig(reduction=reduction))
        loss_tokens = loss_token_counts(rollout, cfg.overlong)
        batch = build_train_batch(rollout, list(range(per_rank)), loss_tokens, cfg, tok.pad_token_id)
        norm = loss_normaliser(per_rank, loss_tokens, cfg.max_new_tokens)
        sums = policy_update(engine, batch, advantages, norm, cfg, cfg.entropy_coef, torch.ones(per_rank))
        metrics = step_metrics(rollout, rollout.rewards, "correct", sums, norm, cfg.samples_per_prompt)
        for key in ("loss", "entropy", "reward", "response_length"):
            result[f"grpo_{reduction}_{key}"] = metrics[key]
        result[f"grpo_{reduction}_grad_norm"] = engine.grad_norm()

    # --- one SFT step (token mean over the whole step) -------------------------------------------
    sft_rows = synthetic_rows(1, len(tok))
    local = [sft_rows[i] for i in mine]
    batches = [collate(local[i : i + MICRO_BATCH], tok.pad_token_id, 64, False) for i in range(0, per_rank, MICRO_BATCH)]
    tokens = int(dist.all_reduce_sum(torch.tensor(sum(int(b["loss_mask"][:, 1:].sum()) for b in batches))))
    norm = LossNorm(num_sequences=GLOBAL_SEQUENCES, num_tokens=tokens, max_completion_length=64, world_size=world)
    nll = 0.0
    for j, b in enumerate(batches):
        logp, _ = token_logprobs(engine.module, b["input_ids"], b["attention_mask"], b["loss_mask"],
                                 position_ids=b["position_ids"], chunk_size=4)
        mask = b["loss_mask"][:, 1:]
        loss = reduce_loss(-logp, mask, norm, "token_mean")
        nll += float(-(logp.detach() * mask).sum())
        engine.backward(loss, last_micro_batch=j == len(batches) - 1)
    result["sft_loss"] = float(dist.all_reduce_sum(torch.tensor(nll, dtype=torch.float64))) / tokens
    result["sft_grad_norm"] = engine.grad_norm()

    with engine.gathered():
        result["params"] = torch.cat([p.detach().flatten().clone() for p in engine.module.parameters()])
    if dist.is_main():
        torch.save(result, out / f"zero{zero}.pt")
    dist.barrier()


def timeout_check(out: Path) -> None:
    """Rank 1 never reaches the barrier: rank 0 must fail fast with a message naming rank and operation."""
    from r1lab.engine import dist

    dist.init_distributed(timeout_minutes=0.05)  # 3 s
    if dist.rank() == 1:
        time.sleep(5)
        return
    began = time.time()
    try:
        dist.barrier("barrier (driver test)")
        message = "no error"
    except dist.CollectiveTimeout as err:
        message = str(err)
    (out / "timeout.txt").write_text(f"{time.time() - began:.1f}\n{message}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--zero", type=int, nargs="+", default=[2, 3])
    ap.add_argument("--mode", choices=["parity", "timeout"], default="parity")
    args = ap.parse_args()
    torch.set_num_threads(1)
    if args.mode == "timeout":
        timeout_check(args.out)
        return
    for zero in args.zero:
        run(zero, args.out)


if __name__ == "__main__":
    os.environ.setdefault("DS_ACCELERATOR", "cpu")
    main()
