"""Run under torchrun: one GRPO-style step and one SFT step of a tiny model through `Engine`.

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
    from r1lab.algorithms.policy_loss import PolicyLossConfig, compute_policy_loss
    from r1lab.algorithms.reduce import LossNorm, reduce_loss
    from r1lab.config.schema import EngineConfig, TinyModelConfig
    from r1lab.engine import dist
    from r1lab.engine.engine import Engine, OptimSettings
    from r1lab.models.forward import token_logprobs
    from r1lab.models.tiny import build_tiny_model, char_tokenizer
    from r1lab.rollout.sampler import SamplingParams, generate
    from r1lab.stages.grpo import collate_rollout
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

    # --- one GRPO-style step: fixed rollout, fixed advantages, global LossNorm ------------------
    rows = synthetic_rows(0, len(tok))
    advantages = torch.linspace(-1.0, 1.0, GLOBAL_SEQUENCES)
    mine = list(range(rank * per_rank, (rank + 1) * per_rank))
    micro = [mine[i : i + MICRO_BATCH] for i in range(0, per_rank, MICRO_BATCH)]
    local_tokens = sum(len(rows[i][1]) for i in mine)
    norm = LossNorm(num_sequences=GLOBAL_SEQUENCES, num_tokens=int(dist.all_reduce_sum(torch.tensor(local_tokens))),
                    max_completion_length=8, world_size=world)
    loss_sum, logp_sum = 0.0, 0.0
    for j, mb in enumerate(micro):
        b = collate_rollout([rows[i][0] for i in mb], [rows[i][1] for i in mb], tok.pad_token_id)
        logp, entropy = token_logprobs(engine.module, **b, chunk_size=4, with_entropy=True)
        mask = b["loss_mask"][:, 1:]
        per_token, _ = compute_policy_loss(logp, logp.detach(), advantages[mb], mask, PolicyLossConfig())
        per_token = per_token - 0.01 * entropy - 0.1 * logp  # model-dependent value and gradient
        loss = reduce_loss(per_token, mask, norm, "seq_mean_token_mean")
        loss_sum += float(loss.detach())
        logp_sum += float((logp.detach() * mask).sum())
        engine.backward(loss, last_micro_batch=j == len(micro) - 1)
    result["grpo_loss"] = float(dist.all_reduce_sum(torch.tensor(loss_sum, dtype=torch.float64))) / world
    result["grpo_logp_sum"] = float(dist.all_reduce_sum(torch.tensor(logp_sum, dtype=torch.float64)))
    result["grpo_grad_norm"] = engine.grad_norm()

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
