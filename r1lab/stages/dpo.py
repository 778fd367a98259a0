"""DPO on preference pairs judged by the verifier: preference learning after RL and SFT.

Not R1's own last stage: R1 ends with a second RL round (rule rewards for reasoning, reward models
for helpfulness and harmlessness). DPO (Rafailov et al., 2023) is the offline, cheaper stand-in
kept here: no rollouts during training, one frozen reference, a pairwise loss.

Pairs (``data``):

* ``on_policy``: per prompt (``source``, as in the rejection stage) sample k completions from the
  starting policy; chosen = a correct and readable one (the task's verifier + the readability
  filters), rejected = an incorrect or unreadable one; prompts without both are skipped and
  counted in ``report.json``. Pairs are saved to ``<stage_dir>/pairs/`` before training, so a
  resumed stage trains on the same pairs.
* a jsonl/parquet file with ``prompt`` (question, wrapped in the model's template), ``chosen``
  and ``rejected`` (responses after the prompt).

Loss: ``r1lab.algorithms.dpo_loss`` (``loss.name``: sigmoid = DPO, ipo, simpo) on sequence
log-probs, i.e. ``token_logprobs`` summed over each response's tokens (EOS appended, as in SFT),
with the response token counts for the length-normalised variants. Reference: the starting
policy, whose log-probs are computed once before the first update (with the policy itself, which
*is* the frozen reference at that point: no second copy in memory) and saved next to the pairs;
``simpo`` needs none. Each micro-batch's loss is its pairs' summed loss times
``world_size / batch_size`` (global pairs per step): gradients summed over micro-batches and
averaged over ranks are exactly those of the mean over the step's pairs, whatever the
accumulation or rank count (the convention of ``r1lab.algorithms.reduce``).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Optional

import torch
from datasets import Dataset, load_from_disk

from r1lab.algorithms.dpo_loss import DPOLossConfig, compute_dpo_loss
from r1lab.config.schema import SampledPromptsConfig
from r1lab.engine import dist
from r1lab.engine.checkpoint import commit_dir, tmp_path, write_json_atomic
from r1lab.models.forward import token_logprobs
from r1lab.models.templates import encode_prompt
from r1lab.stages.context import StageContext, ceil_div, micro_batches, per_rank, step_indices
from r1lab.stages.filters import build_pairs
from r1lab.stages.rejection import prompt_rows, sample_all_ranks
from r1lab.stages.sft import collate, encode_response
from r1lab.stages.registry import register_stage


@dataclass
class DPOStageConfig(SampledPromptsConfig):
    """The schema of a ``dpo`` stage (registered with :func:`run_dpo` at the bottom)."""

    kind: str = "dpo"
    data: str = "on_policy"  # on_policy (pairs sampled now, judged by verifier + readability) | file, save_to_disk folder, dataset folder or hub id with prompt/chosen/rejected
    data_split: str = "train"  # split of `data` read from a dataset folder or hub id
    data_subset: Optional[str] = None  # dataset config name of `data`; null = the only one
    data_columns: dict[str, str] = field(default_factory=dict)  # pair column (prompt | chosen | rejected) -> dataset column, renamed on load
    pairs_per_prompt: int = 1  # on_policy: most pairs built from one prompt's k samples
    loss: DPOLossConfig = field(default_factory=DPOLossConfig)  # sigmoid (DPO) | ipo | simpo, with beta
    steps: int = 0  # optimizer steps; 0 = derived from `epochs`
    epochs: float = 1.0
    batch_size: int = 32  # global pairs per optimizer step (micro_batch_per_device counts pairs too)
    max_length: int = 512  # tokens per sequence (prompt + response); longer ones are truncated
    logprob_chunk: int = 1024  # positions per chunk when computing log-probs (bounds logits memory)


# (prompt, chosen, rejected): token ids; each response as (ids, loss mask), the mask None when the
# response holds no tool output (else 0 on its <result>...</result> tokens: the policy did not write them)
Response = tuple[list[int], "list[int] | None"]
PairIds = tuple[list[int], Response, Response]


def on_policy_pairs(ctx: StageContext, model, tokenizer) -> tuple[Dataset, dict]:
    """Sample, judge and pair (see the module docstring); returns the pairs and the counts."""
    rows = prompt_rows(ctx)
    engine = ctx.rollout_engine(model, tokenizer)
    samples = sample_all_ranks(ctx, engine, tokenizer, rows)
    engine.close()
    groups: dict[int, list] = {i: [] for i in range(len(rows))}
    for s in samples:
        groups[s["row"]].append(s)
    pairs, counts = build_pairs([groups[i] for i in range(len(rows))], ctx.cfg.pairs_per_prompt, ctx.cfg.seed)
    correctness = ctx.task.correctness_reward
    table = {name: [] for name in ("prompt", "chosen", "rejected", "prompt_id", "chosen_sample", "rejected_sample", "rejected_why")}
    for good, bad in pairs:
        table["prompt"].append(ctx.task.question(rows[good["row"]]))
        table["chosen"].append(good["completion"])
        table["rejected"].append(bad["completion"])
        table["prompt_id"].append(str(rows[good["row"]]["id"]))
        table["chosen_sample"].append(good["sample_index"])
        table["rejected_sample"].append(bad["sample_index"])
        table["rejected_why"].append(",".join(([] if bad["correct"] else [f"incorrect ({correctness})"]) + bad["failed"]))
    counts["samples"] = len(samples)
    counts["accepted_samples"] = sum(bool(s["correct"]) and not s["failed"] for s in samples)
    return Dataset.from_dict(table), counts


def load_pairs(ctx: StageContext, model, tokenizer) -> Dataset:
    """This stage's pairs: saved ones (resume), else built now and saved (``pairs/``, ``report.json``)."""
    saved = ctx.stage_dir / "pairs"
    if saved.exists():
        return load_from_disk(str(saved))
    cfg = ctx.cfg
    if cfg.data == "on_policy":
        model.to(dist.device())
        pairs, counts = on_policy_pairs(ctx, model, tokenizer)
    else:
        from r1lab.data.files import columns_fix, load_source, require_columns

        at = f"stages.{ctx.stage.name}."
        pairs = load_source(  # a file, a save_to_disk folder, a dataset folder or a hub id
            cfg.data, field=f"{at}data", split=cfg.data_split, subset=cfg.data_subset, columns=cfg.data_columns,
            option_fields={"split": f"{at}data_split", "subset": f"{at}data_subset", "columns": f"{at}data_columns"},
        )
        require_columns(
            pairs, ["prompt", "chosen", "rejected"], source=f"{at}data '{cfg.data}'", fix=columns_fix(cfg.data, f"{at}data_columns")
        )
        counts = {"pairs": len(pairs), "file": cfg.data}
    if dist.is_main():
        write_json_atomic(ctx.stage_dir / "report.json", counts)
        print(f"[r1lab] dpo pairs: {counts}", flush=True)
        if len(pairs):  # an empty set is not saved: a rerun with other settings samples again
            tmp = tmp_path(saved)
            pairs.save_to_disk(str(tmp))
            commit_dir(tmp, saved)
    dist.barrier()
    return pairs


def tokenize_pairs(pairs: Dataset, tokenizer, template: str) -> list[PairIds]:
    eos = [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []

    def response(text: str) -> Response:
        ids, mask = encode_response(tokenizer, text)
        return ids + eos, None if mask is None else mask + [1] * len(eos)

    return [(encode_prompt(tokenizer, template, r["prompt"]), response(r["chosen"]), response(r["rejected"])) for r in pairs]


def collate_pairs(batch: list[PairIds], pad_id: int, max_length: int) -> dict[str, torch.Tensor]:
    """Rows ``[2b, T]``: the b chosen sequences, then the b rejected ones (one forward for both);
    tool output carries no loss and no log-prob."""
    rows = [(p, *c) for p, c, _ in batch] + [(p, *r) for p, _, r in batch]
    return collate([row if row[2] is not None else row[:2] for row in rows], pad_id, max_length, packing=False)


def sequence_logps(model, b: dict[str, torch.Tensor], chunk: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Summed response log-probs ``[2b]`` and response token counts ``[2b]`` of collated rows."""
    logp, _ = token_logprobs(model, b["input_ids"], b["attention_mask"], b["loss_mask"], chunk_size=chunk, position_ids=b["position_ids"])
    mask = b["loss_mask"][:, 1:]  # [2b, T-1]
    return (logp * mask).sum(-1), mask.sum(-1)


@torch.no_grad()
def reference_logps(model, examples: list[PairIds], cfg, pad: int, device) -> torch.Tensor:
    """``[P, 2]`` (chosen, rejected) summed log-probs of every pair under ``model``, all ranks."""
    mine = list(range(dist.rank(), len(examples), dist.world_size()))
    local = []
    for idx in micro_batches(mine, cfg.micro_batch_per_device):
        b = {k: v.to(device) for k, v in collate_pairs([examples[i] for i in idx], pad, cfg.max_length).items()}
        logp, _ = sequence_logps(model, b, cfg.logprob_chunk)
        local.extend(zip(idx, logp.view(2, -1).t().cpu().tolist()))
    merged = dict(x for part in dist.all_gather_objects(local) for x in part)
    return torch.tensor([merged[i] for i in range(len(examples))], dtype=torch.float64)


def run_dpo(ctx: StageContext) -> None:
    cfg, template = ctx.cfg, ctx.run.model.template
    model, tokenizer = ctx.load_policy()
    pairs = load_pairs(ctx, model, tokenizer)
    if len(pairs) == 0:
        raise ValueError(
            f"stages.{ctx.stage.name}: no preference pairs (see {ctx.stage_dir / 'report.json'}); "
            "sample more prompts or samples_per_prompt, or give a pairs file in `data`"
        )
    examples = tokenize_pairs(pairs, tokenizer, template)
    rank_batch = per_rank(cfg.batch_size, f"stages.{ctx.stage.name}.batch_size")
    total_steps = cfg.steps or ceil_div(int(cfg.epochs * len(examples)), cfg.batch_size)
    engine = ctx.engine(model, total_steps)
    tracker = ctx.tracker(total_steps)
    engine.load(ctx.resume_dir)
    pad = tokenizer.pad_token_id

    # --- reference log-probs, once: the policy before its first update is the frozen reference ---
    ref_file = ctx.stage_dir / "reference_logps.pt"
    if cfg.loss.name == "simpo":
        ref = torch.zeros(len(examples), 2, dtype=torch.float64)  # reference-free
    elif ref_file.exists():
        ref = torch.load(ref_file)
    else:
        if engine.step > 0:
            raise RuntimeError(f"{ref_file} is missing but the stage resumed at step {engine.step}")
        engine.eval()
        ref = reference_logps(engine.module, examples, cfg, pad, engine.device)
        if dist.is_main():
            torch.save(ref, tmp_path(ref_file))
            tmp_path(ref_file).rename(ref_file)
    engine.train()

    while engine.step < total_steps:
        t0 = time.time()
        idx = step_indices(engine.step, cfg.batch_size, len(examples), cfg.seed)
        mine = idx[dist.rank() * rank_batch : (dist.rank() + 1) * rank_batch].tolist()
        sums = dict.fromkeys(("loss", "chosen", "rejected", "margin", "accuracy", "logp_chosen", "logp_rejected", "tokens"), 0.0)
        chunks = micro_batches(mine, cfg.micro_batch_per_device)
        for j, mb in enumerate(chunks):
            b = {k: v.to(engine.device) for k, v in collate_pairs([examples[i] for i in mb], pad, cfg.max_length).items()}
            logp, lengths = sequence_logps(engine.module, b, cfg.logprob_chunk)  # [2b], [2b]
            n = len(mb)
            ref_mb = ref[mb].to(engine.device)  # [b, 2]
            per_pair, stats = compute_dpo_loss(
                logp[:n], logp[n:], ref_mb[:, 0], ref_mb[:, 1], cfg.loss, lengths[:n], lengths[n:]
            )  # [b]
            loss = per_pair.sum() * (dist.world_size() / cfg.batch_size)
            engine.backward(loss, last_micro_batch=j == len(chunks) - 1)
            for name, value in zip(sums, (per_pair.detach().sum(), stats["chosen_rewards"].sum(), stats["rejected_rewards"].sum(),
                                          stats["margins"].sum(), stats["accuracy"].sum(), logp[:n].detach().sum(),
                                          logp[n:].detach().sum(), lengths.sum())):
                sums[name] += float(value)
        total = dist.sum_by_name(sums, dtype=torch.float64)
        elapsed = time.time() - t0
        mean = {name: x / cfg.batch_size for name, x in total.items()}
        tracker.log(
            engine.step,
            {
                "loss": mean["loss"],
                "rewards/chosen": mean["chosen"],
                "rewards/rejected": mean["rejected"],
                "rewards/margin": mean["margin"],
                "rewards/accuracy": mean["accuracy"],
                "logps/chosen": mean["logp_chosen"],
                "logps/rejected": mean["logp_rejected"],
                "lr": engine.lr(),
                "grad_norm": engine.grad_norm(),
                "nonfinite_steps": engine.nonfinite_steps,
                "tokens_per_s": total["tokens"] / max(elapsed, 1e-9),
                "step_seconds": elapsed,
            },
        )
        ctx.after_step(engine, tracker, tokenizer, engine.step, total_steps)
    ctx.finish(engine, tracker, tokenizer)


register_stage(DPOStageConfig, run_dpo)
