"""Held-out evaluation of a model on a task split, written to a stage's ``eval.json``.

Per problem: one greedy completion, and ``k`` samples at the eval temperature. Figures:
``greedy_accuracy``; ``sampled_accuracy`` (mean correctness over the k samples: R1's pass@1);
``pass_at_k`` (unbiased estimator, k = 1, 2, 4, ... k); ``format_rate`` (share of samples with
R1's strict tag format); ``mean_response_length`` (sampled, in tokens). Problems are sharded over
ranks and merged in order.
"""
from __future__ import annotations

import time
from typing import Any

import numpy as np
import torch

from r1lab.config.schema import EvalConfig
from r1lab.data.task import Task
from r1lab.engine import dist
from r1lab.eval.metrics import ks_up_to, mean_pass_at_k
from r1lab.models.templates import encode_prompt, full_response
from r1lab.rewards import get_reward
from r1lab.rollout.sampler import SamplingParams, generate


def score(task: Task, template: str, texts: list[str], rows: dict[str, list]) -> dict[str, np.ndarray]:
    """Correctness and strict format of each completion; rows' columns align with texts."""
    responses = [full_response(template, t) for t in texts]
    columns = task.columns(rows)
    correct = get_reward(task.correctness_reward)(responses, **columns).numpy()
    formatted = get_reward("format")(responses, **columns).numpy()
    return {"correct": correct, "format": formatted}


@torch.no_grad()
def evaluate(model, tokenizer, task: Task, template: str, cfg: EvalConfig, seed: int = 0) -> dict[str, Any]:
    ds = task.split(cfg.split)
    if cfg.num_problems:
        ds = ds.select(range(min(cfg.num_problems, len(ds))))
    mine = list(range(dist.rank(), len(ds), dist.world_size()))
    rows = ds.select(mine)[:]
    prompts = [encode_prompt(tokenizer, template, task.question(r)) for r in ds.select(mine)]
    k = cfg.samples
    start = time.time()
    greedy = generate(model, tokenizer, prompts, SamplingParams(cfg.max_new_tokens, temperature=0.0), cfg.batch_size)
    gen = torch.Generator(device=next(model.parameters()).device).manual_seed(seed)
    repeated = [p for p in prompts for _ in range(k)]
    sampled = generate(
        model, tokenizer, repeated, SamplingParams(cfg.max_new_tokens, cfg.temperature, cfg.top_p), cfg.batch_size, gen
    )
    g = score(task, template, [c.text for c in greedy], rows)
    rep_rows = {c: [v for v in rows[c] for _ in range(k)] for c in task.reward_columns}
    s = score(task, template, [c.text for c in sampled], rep_rows)
    local = {
        "index": mine,
        "greedy": g["correct"].tolist(),
        "correct": s["correct"].reshape(-1, k).tolist() if mine else [],
        "format": s["format"].tolist(),
        "length": [len(c.token_ids) for c in sampled],
    }
    merged = dist.all_gather_objects(local)
    order = np.argsort(np.concatenate([m["index"] for m in merged]))
    greedy_correct = np.concatenate([m["greedy"] for m in merged])[order]
    correct = np.concatenate([np.asarray(m["correct"]).reshape(-1, k) for m in merged])[order]
    fmt = np.concatenate([m["format"] for m in merged])
    lengths = np.concatenate([m["length"] for m in merged])
    return {
        "split": cfg.split,
        "num_problems": int(len(ds)),
        "greedy_accuracy": float(greedy_correct.mean()),
        "sampled_accuracy": float(correct.mean()),
        "samples_per_problem": k,
        "temperature": cfg.temperature,
        "top_p": cfg.top_p,
        "pass_at_k": {str(kk): mean_pass_at_k(correct, kk) for kk in ks_up_to(k)},
        "format_rate": float(fmt.mean()),
        "mean_response_length": float(lengths.mean()),
        "max_new_tokens": cfg.max_new_tokens,
        "seconds": round(time.time() - start, 1),
    }
