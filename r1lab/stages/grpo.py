"""GRPO: group-relative policy optimisation with rule-based rewards (DeepSeekMath, DeepSeek-R1).

Kept from R1: no critic; per prompt a group of ``samples_per_prompt`` completions scored by
rule-based rewards (verifier correctness, format, language) and normalised within the group; a
PPO-style clipped ratio; an optional KL to the frozen starting policy (k3 estimator by default).
Variants (Dr. GRPO, DAPO, GSPO, RLOO) are config values looked up in `r1lab.algorithms`
registries; this loop never branches on their names.

One step = one rollout batch of ``prompts_per_step`` prompts (global) x ``samples_per_prompt``,
then ``updates_per_batch`` optimizer steps on it (micro-batches accumulated). With one update
the "old" log-probs are the current ones detached (ratio exactly 1, no extra forward pass).
The loop below calls the named steps of `r1lab.stages.grpo_steps`, each testable alone.

Output: ``checkpoint/`` and ``prompts.json``, the ids of every training prompt the stage drew
(dynamic sampling draws several rounds a step), which rejection sampling reads to sample only
prompts RL never saw.
"""
from __future__ import annotations

import time

import torch

from r1lab.config.schema import GRPOStageConfig
from r1lab.algorithms.advantages import compute_advantages
from r1lab.engine import dist
from r1lab.engine.checkpoint import write_json_atomic
from r1lab.models.load import load_model
from r1lab.models.lora import is_lora
from r1lab.rewards import build_rewards
from r1lab.stages.context import StageContext, per_rank
from r1lab.stages.grpo_steps import (
    build_train_batch,
    collect_rollout,
    completion_rows,
    drawn_prompt_ids,
    entropy_term_weights,
    grpo_rounds,
    kl_penalised_rewards,
    loss_normaliser,
    loss_token_counts,
    policy_update,
    step_metrics,
    trained_rows,
)
from r1lab.stages.registry import register_stage

PROMPTS_FILE = "prompts.json"  # <stage_dir>/prompts.json: {"draws": n, "prompt_ids": [...]}
ROUNDS_FILE = "rounds_in_flight"  # <resume>/<step>/rounds_in_flight-rank<r>.json: separate placement's rounds sampled ahead
MAX_EMPTY_STEPS = 10  # dynamic sampling: consecutive steps without a varied group before giving up


def run_grpo(ctx: StageContext) -> None:
    cfg, template = ctx.cfg, ctx.run.model.template
    model, tokenizer = ctx.load_policy()
    train = ctx.task.split("train")
    per_rank(cfg.prompts_per_step, f"stages.{ctx.stage.name}.prompts_per_step")
    G = cfg.samples_per_prompt
    total_updates = cfg.steps * cfg.updates_per_batch
    engine = ctx.engine(model, total_updates)
    reference = None
    if cfg.kl.needs_reference:
        # LoRA: the reference is the policy itself with its adapters off (`adapters_off`), no copy
        reference = engine.module if is_lora(engine.module) else load_model(ctx.start_model, ctx.run.model).to(engine.device).eval().requires_grad_(False)
    state = engine.load(ctx.resume_dir) or {}
    draws = int(state.get("draws", engine.step // cfg.updates_per_batch))  # sampling rounds so far
    tracker = ctx.tracker(cfg.steps, start_step=engine.step // cfg.updates_per_batch)
    pad = tokenizer.pad_token_id
    correctness = ctx.task.correctness_reward
    # zero-weighted components are computed for the metrics only; rewards with parameters are built from reward_params
    reward_weights = build_rewards({correctness: 0.0, "format": 0.0, **cfg.rewards}, cfg.reward_params)
    placement = ctx.run.rollout.placement
    rollout_engine = ctx.rollout_engine(engine.module, tokenizer, engine, placement=placement)  # sampling goes through it alone
    rounds = grpo_rounds(rollout_engine, engine, tokenizer, ctx.task, template, train, cfg, reward_weights,
                         ctx.run.rollout.max_staleness if placement == "separate" else None)
    rounds.restore(engine.load_rank_file(ROUNDS_FILE) or {})  # the rounds a checkpoint saved in flight
    empty_steps = 0

    try:
        while engine.step < total_updates:
            step = engine.step // cfg.updates_per_batch
            t_step = time.time()
            collected = collect_rollout(rounds, cfg, draws)
            rollout_engine.sleep()  # CUDA vLLM: its memory is the update's until the next rollout
            draws, rollout = collected.draws, collected.rollout
            if rollout.num_groups == 0:
                empty_steps += 1
                if empty_steps >= MAX_EMPTY_STEPS:
                    raise RuntimeError(
                        f"stages.{ctx.stage.name}: dynamic sampling found no group with varied rewards in "
                        f"{empty_steps} steps x {cfg.max_sampling_rounds} rounds; raise max_sampling_rounds or set dynamic_sampling=false"
                    )
                continue
            empty_steps = 0
            t_gen = time.time()

            loss_tokens = loss_token_counts(rollout, cfg.overlong)
            rewards = rollout.rewards
            if reference is not None and cfg.kl.in_reward:
                rewards = kl_penalised_rewards(engine.module, reference, rollout, loss_tokens, cfg, pad, engine.device)
            advantages = compute_advantages(
                rewards.view(-1, G), cfg.advantage,
                lengths=torch.tensor([len(c) for c in rollout.completions]).view(-1, G), truncated=rollout.truncated.view(-1, G),
            ).view(-1)  # [N]
            entropy_coef = cfg.entropy_coef if step >= cfg.entropy_from_step else 0.0
            entropy_weight = entropy_term_weights(advantages, entropy_coef, cfg.entropy_sample_fraction, cfg.seed, step, dist.rank())
            rows = trained_rows(advantages, entropy_weight, kl_in_loss=reference is not None and not cfg.kl.in_reward)
            batch = build_train_batch(rollout, rows, loss_tokens, cfg, pad, engine.module, reference, engine.device)
            t_score = time.time()

            norm = loss_normaliser(rollout.num_groups * G, loss_tokens, cfg.max_new_tokens)
            sums = policy_update(engine, batch, advantages, norm, cfg, entropy_coef, entropy_weight)
            t_train = time.time()

            metrics = step_metrics(rollout, rewards, correctness, sums, norm, G, t_train - t_score, cfg.updates_per_batch)
            metrics.update({
                "lr": engine.lr(),
                "grad_norm": engine.grad_norm(),
                "nonfinite_steps": engine.nonfinite_steps,
                "sampling_rounds": collected.rounds,
                "kept_group_fraction": rollout.num_groups / max(1, collected.sampled_groups),
                "time_logprobs_advantages": t_score - t_gen,
                "time_train": t_train - t_score,
                "time_step": t_train - t_step,  # the whole step: sampling (or waiting for it), scoring, update
            })
            if rollout_engine.pushes_weights:  # engines that hold a copy of the weights
                metrics["time_weight_push"] = rollout_engine.seconds_last_push
            metrics.update(rounds.step_figures())  # separate placement: version lag, waits, worker idle, weight sync
            tracker.log(step + 1, metrics)
            every = ctx.run.tracking.completions_every
            if every and (step + 1) % every == 0:
                tracker.log_completions(step + 1, "train", completion_rows(rollout, tokenizer, ctx.run.tracking.completions_rows, advantages))
            ctx.after_step(engine, tracker, tokenizer, step + 1, cfg.steps, {"draws": draws}, rollout=rollout_engine,
                           rank_files={ROUNDS_FILE: rounds.checkpoint} if placement == "separate" else None)
    finally:  # an error too: workers stop, a push in flight ends before the process does
        rounds.close()
        rollout_engine.close()
    write_prompt_record(ctx, train, draws)
    ctx.finish(engine, tracker, tokenizer)


def write_prompt_record(ctx: StageContext, train, draws: int) -> None:
    """``<stage_dir>/prompts.json``: every training prompt the stage drew, for later stages."""
    if dist.is_main():
        ids = drawn_prompt_ids(train, draws, ctx.cfg.prompts_per_step, ctx.cfg.seed)
        write_json_atomic(ctx.stage_dir / PROMPTS_FILE, {"draws": draws, "prompt_ids": ids})


register_stage(GRPOStageConfig, run_grpo)
