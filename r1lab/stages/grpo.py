"""GRPO: group-relative policy optimisation with rule-based rewards (DeepSeekMath, DeepSeek-R1).

Kept from R1: no critic; per prompt a group of ``samples_per_prompt`` completions scored by
rule-based rewards (verifier correctness, format, language) and normalised within the group; a
PPO-style clipped ratio; an optional KL to the frozen starting policy (k3 estimator by default).
Variants (Dr. GRPO, DAPO, GSPO, RLOO) are config values looked up in `r1lab.algorithms`
registries; this loop never branches on their names.

One step = one rollout batch of ``prompts_per_step`` prompts (global) x ``samples_per_prompt``,
then ``updates_per_batch`` optimizer steps on it (micro-batches accumulated). With one update
the "old" log-probs are the current ones detached (ratio exactly 1, no extra forward pass).
"""
from __future__ import annotations

import time
from contextlib import nullcontext

import torch

from r1lab.algorithms.advantages import compute_advantages, group_stats
from r1lab.algorithms.kl import KL_ESTIMATORS, kl_loss_term, kl_penalty_in_reward
from r1lab.algorithms.policy_loss import compute_policy_loss
from r1lab.algorithms.reduce import LossNorm, reduce_loss
from r1lab.algorithms.rollout_correction import correction_stats, importance_weights, mismatch_sums
from r1lab.engine import dist
from r1lab.eval.behaviours import behaviour_counts
from r1lab.models.forward import token_logprobs
from r1lab.models.load import load_model
from r1lab.models.lora import adapters_off, is_lora
from r1lab.rewards.reward_model import configure_reward_model
from r1lab.rollout.groups import Rollout, sample_groups
from r1lab.rollout.sampler import SamplingParams
from r1lab.stages.context import StageContext, length_grouped, per_rank, step_indices


def sampler_logprobs_batch(
    prompts: list[list[int]], completions: list[list[int]], logprobs: list[list[float] | None]
) -> torch.Tensor | None:
    """The rollout engine's log-probs laid out like ``token_logprobs``' output: ``[b, T-1]``, the
    entry at t for the token at t+1 (the rows of `collate_rollout`); None if any row has none."""
    if any(lp is None for lp in logprobs):
        return None
    width = max(len(p) + len(c) for p, c in zip(prompts, completions))
    out = torch.zeros((len(prompts), width), dtype=torch.float32)
    for i, (p, c, lp) in enumerate(zip(prompts, completions, logprobs)):
        out[i, len(p) : len(p) + len(c)] = torch.tensor(lp, dtype=torch.float32)
    return out[:, 1:]


def collate_rollout(prompts: list[list[int]], completions: list[list[int]], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-padded prompt+completion rows [b, T] (T trimmed to this micro-batch) and the completion mask."""
    width = max(len(p) + len(c) for p, c in zip(prompts, completions))
    n = len(prompts)
    ids = torch.full((n, width), pad_id, dtype=torch.long)
    attn = torch.zeros((n, width), dtype=torch.long)
    mask = torch.zeros((n, width), dtype=torch.long)
    for i, (p, c) in enumerate(zip(prompts, completions)):
        ids[i, : len(p) + len(c)] = torch.tensor(p + c)
        attn[i, : len(p) + len(c)] = 1
        mask[i, len(p) : len(p) + len(c)] = 1
    return {"input_ids": ids, "attention_mask": attn, "loss_mask": mask}


def entropy_term_weights(advantages: torch.Tensor, coef: float, fraction: float, seed: int, step: int) -> torch.Tensor:
    """Per-sequence weight of the entropy term, ``[N]``.

    Sequences with a non-zero advantage run anyway (policy loss) and weigh 1. Of the others, each
    is drawn with probability ``fraction`` and weighs ``1 / fraction``, so the expected term is the
    full one; the rest weigh 0 and are not run. ``coef == 0``: no entropy term, all weights 0.
    """
    if coef == 0:
        return torch.zeros_like(advantages)
    if fraction >= 1.0:
        return torch.ones_like(advantages)
    gen = torch.Generator().manual_seed(seed * 1_000_003 + step * 7919 + 17)  # same draw on resume
    drawn = torch.rand(advantages.shape, generator=gen) < fraction
    return torch.where(advantages != 0, 1.0, torch.where(drawn, 1.0 / fraction, 0.0))


def completion_rows(rollout: Rollout, tokenizer, limit: int, advantages: torch.Tensor | None = None) -> list[dict]:
    """The first ``limit`` rows of ``rollout`` as a completion table: prompt (decoded with its
    special tokens: exactly what the model was conditioned on, role markers of a chat template
    included), completion (the generated text), total reward, each unweighted component
    ``reward/<name>``, advantage, response length in tokens, truncated."""
    rows = []
    for i in range(min(limit, len(rollout))):
        row = {"prompt": tokenizer.decode(rollout.prompts[i], skip_special_tokens=False), "completion": rollout.texts[i],
               "reward": float(rollout.rewards[i])}
        row.update({f"reward/{name}": float(v[i]) for name, v in rollout.components.items()})
        if advantages is not None:
            row["advantage"] = float(advantages[i])
        row.update(response_length=len(rollout.completions[i]), truncated=bool(rollout.truncated[i]))
        rows.append(row)
    return rows


def run_grpo(ctx: StageContext) -> None:
    cfg, template = ctx.cfg, ctx.run.model.template
    model, tokenizer = ctx.load_policy()
    train = ctx.task.split("train")
    rank_prompts = per_rank(cfg.prompts_per_step, f"stages.{ctx.stage.name}.prompts_per_step")
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
    sampling = SamplingParams(cfg.max_new_tokens, cfg.temperature, cfg.top_p)
    correctness = ctx.task.correctness_reward
    # zero-weighted components are computed for the metrics only
    reward_weights = {correctness: 0.0, "format": 0.0, **cfg.rewards}
    configure_reward_model(cfg.reward_model_path, cfg.reward_model_batch_size, cfg.reward_model_normalize, cfg.reward_routing)
    rollout_engine = ctx.rollout_engine(engine.module, tokenizer, engine)  # sampling goes through it alone
    empty_steps = 0

    while engine.step < total_updates:
        step = engine.step // cfg.updates_per_batch
        # --- rollout: this rank's prompts, G samples each; DAPO: keep topping up varied groups ---
        parts, sampled_groups = [], 0
        for _ in range(cfg.max_sampling_rounds if cfg.dynamic_sampling else 1):
            idx = step_indices(draws, cfg.prompts_per_step, len(train), cfg.seed)
            rows = train.select(idx[dist.rank() * rank_prompts : (dist.rank() + 1) * rank_prompts].tolist())
            seed = cfg.seed * 1_000_003 + draws * 1009 + dist.rank()
            engine.eval()
            part = sample_groups(rollout_engine, tokenizer, ctx.task, template, list(rows), G, sampling, reward_weights, seed, cfg.format_gate)
            engine.train()
            draws += 1
            sampled_groups += part.num_groups
            parts.append(part.keep_groups(part.varied_groups()) if cfg.dynamic_sampling else part)
            if sum(p.num_groups for p in parts) >= rank_prompts:
                break
        rollout_engine.sleep()  # CUDA vLLM: its memory is the update's until the next rollout
        rollout = Rollout.concat(parts)
        # every rank trains on the same number of groups (equal passes: ZeRO collectives)
        num_groups = min(min(dist.all_gather_objects(rollout.num_groups)), rank_prompts)
        rollout = rollout.keep_groups(torch.arange(rollout.num_groups) < num_groups)
        if num_groups == 0:
            empty_steps += 1
            if empty_steps >= 10:
                raise RuntimeError(
                    f"stages.{ctx.stage.name}: dynamic sampling found no group with varied rewards in "
                    f"{empty_steps} steps x {cfg.max_sampling_rounds} rounds; raise max_sampling_rounds or set dynamic_sampling=false"
                )
            continue
        empty_steps = 0
        t_gen = time.time()

        # --- advantages ------------------------------------------------------------------------
        prompts, comp_ids, truncated = rollout.prompts, rollout.completions, rollout.truncated
        rewards, components = rollout.rewards, rollout.components
        # tokens that carry loss: overlong completions may be masked out
        loss_tokens = torch.tensor([0 if cfg.overlong == "mask" and t else len(c) for c, t in zip(comp_ids, truncated)])

        def make_batches(rows: list[int]) -> tuple[list[list[int]], list[dict[str, torch.Tensor]]]:
            mbs = length_grouped([len(prompts[i]) + len(comp_ids[i]) for i in rows], cfg.micro_batch_per_device)
            mbs = [[rows[i] for i in mb] for mb in mbs]
            batches = [collate_rollout([prompts[i] for i in mb], [comp_ids[i] for i in mb], pad) for mb in mbs]
            for mb, b in zip(mbs, batches):
                b["loss_mask"][loss_tokens[mb] == 0] = 0
            return mbs, batches

        def sampler_logps_of(mbs):  # the rollout engine's log-probs, [b, T-1] per micro-batch (None: it gave none)
            return [sampler_logprobs_batch([prompts[i] for i in mb], [comp_ids[i] for i in mb],
                                           [rollout.sampler_logprobs[i] for i in mb]) for mb in mbs]

        def logprobs_of(model, batches, is_reference=False):  # no grad, one [b, T-1] tensor per micro-batch
            with torch.no_grad(), adapters_off(model) if is_reference else nullcontext():
                return [token_logprobs(model, **{k: v.to(engine.device) for k, v in b.items()},
                                       chunk_size=cfg.logprob_chunk, temperature=cfg.temperature)[0] for b in batches]

        if reference is not None and cfg.kl.in_reward:  # KL to the reference, subtracted from the reward
            mbs, batches = make_batches(list(range(len(prompts))))
            olds, refs = logprobs_of(engine.module, batches), logprobs_of(reference, batches, is_reference=True)
            penalised = rewards.clone()
            for mb, b, old, ref in zip(mbs, batches, olds, refs):
                penalised[mb] = kl_penalty_in_reward(rewards[mb], old.cpu(), ref.cpu(), b["loss_mask"][:, 1:], cfg.kl)
            rewards = penalised
        advantages = compute_advantages(rewards.view(-1, G), cfg.advantage).view(-1)  # [N]

        # --- which sequences to run: with no per-token term beside the policy loss, a sequence with
        # zero advantage has zero gradient, so it is skipped (exactly; the normaliser still counts it)
        entropy_coef = cfg.entropy_coef if step >= cfg.entropy_from_step else 0.0
        entropy_weight = entropy_term_weights(
            advantages, entropy_coef, cfg.entropy_sample_fraction, cfg.seed * 1009 + dist.rank(), step
        )
        if reference is not None and not cfg.kl.in_reward:  # the KL term: every sequence
            rows = list(range(len(prompts)))
        else:
            rows = ((advantages != 0) | (entropy_weight > 0)).nonzero().squeeze(-1).tolist()
        mbs, batches = make_batches(rows)
        # every rank runs the same number of micro-batches (ZeRO collectives); padding ones weigh 0
        num_mbs = max(1, max(dist.all_gather_objects(len(mbs))))
        weights = [1.0] * len(mbs) + [0.0] * (num_mbs - len(mbs))
        if len(mbs) < num_mbs:
            pad_mbs, pad_batches = make_batches([0])
            mbs += pad_mbs * (num_mbs - len(mbs))
            batches += pad_batches * (num_mbs - len(batches))
        sampler_logps = sampler_logps_of(mbs)
        old_logps = logprobs_of(engine.module, batches) if cfg.updates_per_batch > 1 else []
        ref_logps = logprobs_of(reference, batches, is_reference=True) if reference is not None and not cfg.kl.in_reward else []
        t_score = time.time()

        # --- policy update(s) ------------------------------------------------------------------
        norm = LossNorm(
            num_sequences=num_groups * G * dist.world_size(),
            num_tokens=max(1, int(dist.all_reduce_sum(loss_tokens.sum()).item())),
            max_completion_length=cfg.max_new_tokens,
            world_size=dist.world_size(),
        )
        sums = {"loss": 0.0, "kl": 0.0, "entropy": 0.0, "clip_low": 0.0, "clip_high": 0.0, "tokens": 0.0}
        mismatch = {"tokens": 0.0, "abs_logp_diff": 0.0, "kl": 0.0, "weight_sum": 0.0, "zeroed_tokens": 0.0}
        ratio_max = 0.0
        for update in range(cfg.updates_per_batch):
            for j, (mb, b, weight) in enumerate(zip(mbs, batches, weights)):
                b = {k: v.to(engine.device) for k, v in b.items()}
                mask = b["loss_mask"][:, 1:]
                logp, entropy = token_logprobs(
                    engine.module, **b, chunk_size=cfg.logprob_chunk, with_entropy=True, temperature=cfg.temperature,
                    entropy_grad=entropy_coef != 0,
                )
                old = old_logps[j] if old_logps else logp.detach()
                per_token, stats = compute_policy_loss(logp, old, advantages[mb].to(engine.device), mask, cfg.loss)
                sampler = sampler_logps[j].to(engine.device) if sampler_logps[j] is not None else None
                is_weights = importance_weights(old, sampler, mask, cfg.rollout_correction) if sampler is not None else None
                if is_weights is not None and cfg.rollout_correction.mode != "none":
                    # the rollout came from the engine's policy, not the trainer's: reweight towards the trainer's
                    per_token = per_token * is_weights
                if ref_logps:
                    per_token = per_token + kl_loss_term(logp, ref_logps[j], cfg.kl)
                if entropy_coef:
                    per_token = per_token - entropy_coef * entropy_weight[mb].to(engine.device)[:, None] * entropy
                loss = weight * reduce_loss(per_token, mask, norm, cfg.loss.reduction)
                engine.backward(loss, last_micro_batch=j == num_mbs - 1)
                if update == 0 and weight:
                    m = mask.float()
                    sums["loss"] += float(loss.detach()) / dist.world_size()
                    sums["tokens"] += float(m.sum())
                    sums["entropy"] += float((entropy.detach() * m).sum())
                    sums["clip_low"] += float((stats["clipped_low"].float() * m).sum())
                    sums["clip_high"] += float((stats["clipped_high"].float() * m).sum())
                    if ref_logps:
                        with torch.no_grad():
                            sums["kl"] += float((KL_ESTIMATORS.get(cfg.kl.estimator)(logp, ref_logps[j]) * m).sum())
                    if sampler is not None:
                        gap = mismatch_sums(old, sampler, mask)
                        ratio_max = max(ratio_max, gap["ratio_max"])
                        for key, value in {**gap, **correction_stats(is_weights, mask)}.items():
                            if key in mismatch:
                                mismatch[key] += value
        t_train = time.time()

        # --- metrics -----------------------------------------------------------------------------
        lengths = torch.tensor([len(c) for c in comp_ids], dtype=torch.float32)
        correct = components[correctness]
        summed = dist.all_reduce_sum(
            torch.tensor(
                [sums["loss"], sums["entropy"], sums["clip_low"], sums["clip_high"], sums["kl"], sums["tokens"],
                 float(rewards.sum()), float(rewards.square().sum()), float(correct.sum()),
                 float(lengths.sum()), float(truncated.sum()), float(len(rewards))]
            )
        ).tolist()
        loss_sum, ent, clo, chi, kl, trained, r_sum, r_sq, c_sum, len_sum, trunc, n = summed
        tokens = max(trained, 1.0)  # entropy, clipping and KL are over the tokens trained on
        metrics = {
            "loss": loss_sum,
            "lr": engine.lr(),
            "grad_norm": engine.grad_norm(),
            "nonfinite_steps": engine.nonfinite_steps,
            "reward": r_sum / n,
            "reward_std": max(0.0, r_sq / n - (r_sum / n) ** 2) ** 0.5,
            "accuracy": c_sum / n,
            "response_length": len_sum / n,
            "response_length_max": float(lengths.max()),
            "truncated_fraction": trunc / n,
            "entropy": ent / tokens,
            "clip_fraction_low": clo / tokens,
            "clip_fraction_high": chi / tokens,
            "kl": kl / tokens,
            "gen_tokens_per_s": len_sum / max(rollout.seconds_generate, 1e-9),
            "train_tokens_per_s": trained * cfg.updates_per_batch / max(t_train - t_score, 1e-9),
            "trained_fraction": trained / max(1, norm.num_tokens),
            "time_generate": rollout.seconds_generate,
            "time_reward": rollout.seconds_reward,
            "sampling_rounds": len(parts),
            "kept_group_fraction": num_groups / max(1, sampled_groups),
            "time_logprobs_advantages": t_score - t_gen,
            "time_train": t_train - t_score,
        }
        for name, values in components.items():
            metrics[f"reward/{name}"] = float(values.mean())
        metrics.update(mismatch_metrics(mismatch, ratio_max))
        if hasattr(rollout_engine, "seconds_last_push"):  # engines that hold a copy of the weights
            metrics["time_weight_push"] = rollout_engine.seconds_last_push
        behaviours = behaviour_counts(rollout.responses)  # occurrences per completion, all ranks
        totals = dist.all_reduce_sum(torch.tensor([float(c.sum()) for c in behaviours.values()])).tolist()
        for name, total in zip(behaviours, totals):
            metrics[f"behaviour/{name}"] = total / n
        for name, value in group_stats(rewards.view(-1, G), correct.view(-1, G) > 0).items():
            metrics[name] = float(value)
        tracker.log(step + 1, metrics)
        every = ctx.run.tracking.completions_every
        if every and (step + 1) % every == 0:
            tracker.log_completions(step + 1, "train", completion_rows(rollout, tokenizer, ctx.run.tracking.completions_rows, advantages))
        ctx.after_step(engine, tracker, tokenizer, step + 1, cfg.steps, {"draws": draws}, rollout=rollout_engine)
    rollout_engine.close()
    ctx.finish(engine, tracker, tokenizer)


def mismatch_metrics(sums: dict[str, float], ratio_max: float) -> dict[str, float]:
    """Train/rollout mismatch over the tokens trained on, all ranks: how far the engine's
    log-probs are from the trainer's (``rollout/*``), and what the IS correction did."""
    names = sorted(sums)
    total = dict(zip(names, dist.all_reduce_sum(torch.tensor([sums[n] for n in names], dtype=torch.float64)).tolist()))
    if total["tokens"] == 0:
        return {}
    tokens = total["tokens"]
    out = {
        "rollout/abs_logp_diff": total["abs_logp_diff"] / tokens,
        "rollout/kl_sampler_trainer": total["kl"] / tokens,
        "rollout/ratio_max": max(dist.all_gather_objects(ratio_max)),
        "rollout/is_weight_mean": total["weight_sum"] / tokens,
        "rollout/is_zeroed_fraction": total["zeroed_tokens"] / tokens,
    }
    return out
