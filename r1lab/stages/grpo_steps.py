"""The named steps of one GRPO step, each a plain function a test can call with a tiny model.

A GRPO step runs them in this order (`r1lab.stages.grpo.run_grpo` calls the first two, then
`train_on_rollout`, which runs the rest)::

    grpo_rounds            where sampling rounds come from: in place, or ahead on rollout workers
    collect_rollout        sample groups for this step's prompts (DAPO's dynamic sampling: top up)
    loss_token_counts      tokens that carry loss per sequence (overlong completions may be masked)
    kl_penalised_rewards   KL to the reference subtracted from the reward (kl.in_reward only)
    compute_advantages     group-relative advantages (r1lab.algorithms.advantages)
    trained_rows           the sequences that have a gradient at all
    build_train_batch      micro-batches, equal in number on every rank, with their fixed log-probs
    loss_normaliser        the global sequence and token counts every rank divides by
    policy_update          forward, loss (r1lab.algorithms.grpo_objective), backward over the
                           micro-batches, ``updates_per_batch`` times
    step_metrics           the step's figures, summed over ranks by name

Shapes: N = this rank's sequences (groups x samples_per_prompt); per micro-batch, ``[b, T]``
token rows and ``[b, T-1]`` per-token values (entry t is about token t+1).
"""
from __future__ import annotations

import time
from contextlib import nullcontext
from dataclasses import dataclass, field

import numpy as np
import torch
from datasets import Dataset

from r1lab.algorithms.advantages import compute_advantages, group_stats
from r1lab.algorithms.grpo_objective import grpo_objective
from r1lab.algorithms.kl import kl_penalty_in_reward
from r1lab.algorithms.reduce import LossNorm
from r1lab.tasks import Task
from r1lab.engine import dist
from r1lab.engine.seeds import derive_seed
from r1lab.models.forward import token_logprobs
from r1lab.models.lora import adapters_off
from r1lab.rewards.behaviours import behaviour_counts
from r1lab.rewards.claims import claim_counts, process_figures
from r1lab.rollout.groups import GroupRequest, Rollout, group_request, score_groups
from r1lab.rollout.rounds import AheadRounds, InPlaceRounds, RoundSpec
from r1lab.rollout.sampler import SamplingParams
from r1lab.rollout.tool_calls import tool_figures, tool_sums
from r1lab.stages.context import length_grouped
from r1lab.stages.curriculum import CurriculumConfig, PromptSampler

MISMATCH_SUMS = ("tokens", "abs_logp_diff", "kl", "weight_sum", "zeroed_tokens")


# --- collating -----------------------------------------------------------------------------------


def collate_rollout(
    prompts: list[list[int]], completions: list[list[int]], pad_id: int, tool_masks: list[list[int] | None] | None = None
) -> dict[str, torch.Tensor]:
    """Right-padded prompt+completion rows [b, T] (T trimmed to this micro-batch) and the loss
    mask: the completion's tokens, less those a tool wrote (``tool_masks``: 1 = tool token)."""
    width = max(len(p) + len(c) for p, c in zip(prompts, completions))
    n = len(prompts)
    ids = torch.full((n, width), pad_id, dtype=torch.long)
    attn = torch.zeros((n, width), dtype=torch.long)
    mask = torch.zeros((n, width), dtype=torch.long)
    for i, (p, c) in enumerate(zip(prompts, completions)):
        ids[i, : len(p) + len(c)] = torch.tensor(p + c)
        attn[i, : len(p) + len(c)] = 1
        mask[i, len(p) : len(p) + len(c)] = 1
        if tool_masks and tool_masks[i] is not None:
            mask[i, len(p) : len(p) + len(c)] -= torch.tensor(tool_masks[i], dtype=torch.long)
    return {"input_ids": ids, "attention_mask": attn, "loss_mask": mask}


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


def micro_batches_of(
    rollout: Rollout, rows: list[int], loss_tokens: torch.Tensor, size: int, pad_id: int
) -> tuple[list[list[int]], list[dict[str, torch.Tensor]]]:
    """``rows`` of ``rollout`` in length-grouped micro-batches of ``size``: the row indices of each
    and its collated tensors (`collate_rollout`), loss masked on rows with no loss tokens."""
    lengths = [len(rollout.prompts[i]) + len(rollout.completions[i]) for i in rows]
    mbs = [[rows[i] for i in mb] for mb in length_grouped(lengths, size)]
    masks = rollout.tool_masks or [None] * len(rollout)
    batches = [collate_rollout([rollout.prompts[i] for i in mb], [rollout.completions[i] for i in mb], pad_id,
                               [masks[i] for i in mb]) for mb in mbs]
    for mb, b in zip(mbs, batches):
        b["loss_mask"][loss_tokens[mb] == 0] = 0
    return mbs, batches


def batch_logprobs(model, batches: list[dict[str, torch.Tensor]], device, chunk_size: int, temperature: float,
                   adapters_disabled: bool = False) -> list[torch.Tensor]:
    """No-grad per-token log-probs of each micro-batch, ``[b, T-1]`` each. ``adapters_disabled``:
    the LoRA policy with its adapters off (the reference under LoRA)."""
    with torch.no_grad(), adapters_off(model) if adapters_disabled else nullcontext():
        return [token_logprobs(model, **{k: v.to(device) for k, v in b.items()}, chunk_size=chunk_size,
                               temperature=temperature)[0] for b in batches]


# --- 1. the rollout ------------------------------------------------------------------------------


@dataclass
class CollectedRollout:
    rollout: Rollout  # this rank's kept groups: the same number on every rank
    draws: int  # sampling rounds drawn so far, this step's included (the position in the prompt stream)
    rounds: int  # sampling rounds this step
    sampled_groups: int  # groups this rank sampled this step, before dynamic sampling kept some
    curriculum: dict[str, float] = field(default_factory=dict)  # the prompt sampler's curriculum/* figures ({}: mode none)


def grpo_rounds(
    rollout_engine, engine, tokenizer, task: Task, template: str, train: Dataset, cfg, reward_weights: dict[str, float],
    max_staleness: int | None = None, sampler: PromptSampler | None = None,
):
    """Where this rank's sampling rounds come from: drawn in place from the live policy
    (`InPlaceRounds`), or, with ``max_staleness`` set (``rollout.placement=separate``), up to that
    many rounds ahead on the rollout workers (`AheadRounds`). ``engine``: the training engine
    (its mode is switched for sampling in place; its step is the policy version). ``sampler``:
    which prompts each round draws (`r1lab.stages.curriculum`; None: the shuffled stream)."""
    rank_prompts = cfg.prompts_per_step // dist.world_size()
    sampling = SamplingParams(cfg.max_new_tokens, cfg.temperature, cfg.top_p)
    sampler = sampler or PromptSampler(CurriculumConfig(), train, task, cfg.prompts_per_step, cfg.seed)

    def spec(draw: int) -> RoundSpec:
        idx = sampler.indices(draw)  # [prompts_per_step], all ranks: this rank takes its slice
        rows = train.select(idx[dist.rank() * rank_prompts : (dist.rank() + 1) * rank_prompts].tolist())
        request = group_request(tokenizer, task, template, list(rows), cfg.samples_per_prompt, cfg.tools)
        return RoundSpec(request, sampling, derive_seed(cfg.seed, "grpo/sampling", draw, dist.rank()), cfg.tools)

    def score(request: GroupRequest, completions, seconds: float) -> Rollout:
        return score_groups(request, completions, template, reward_weights, cfg.format_gate, seconds)

    if max_staleness is None:
        return InPlaceRounds(rollout_engine, tokenizer, spec, score, lambda sampling: engine.eval() if sampling else engine.train())
    return AheadRounds(rollout_engine, spec, score, max_staleness, lambda: engine.step, cfg.updates_per_batch)


def collect_rollout(rounds, cfg, draws: int, sampler: PromptSampler | None = None) -> CollectedRollout:
    """This step's groups: the next round of ``rounds`` (`grpo_rounds`), this rank's prompts of it.

    Each round takes the next ``prompts_per_step`` prompts of the stream (``sampler.indices`` at
    ``draws``, the sampler `grpo_rounds` was given; this rank its slice), and ``sampler`` sees
    each consumed round before any group is dropped (an adaptive curriculum learns from it). With ``dynamic_sampling`` (DAPO), groups whose rewards are all
    equal are dropped and rounds continue until this rank has ``prompts_per_step / world`` groups
    or ``max_sampling_rounds`` are spent; then every rank keeps the smallest count any rank has,
    so all ranks train on the same number of groups (ZeRO's collectives need equal passes).
    """
    rank_prompts = cfg.prompts_per_step // dist.world_size()
    parts, sampled_groups = [], 0
    for _ in range(cfg.max_sampling_rounds if cfg.dynamic_sampling else 1):
        part = rounds.get(draws)
        if sampler is not None:
            sampler.seen(draws, part)
        draws += 1
        sampled_groups += part.num_groups
        parts.append(part.keep_groups(part.varied_groups()) if cfg.dynamic_sampling else part)
        if sum(p.num_groups for p in parts) >= rank_prompts:
            break
    rollout = Rollout.concat(parts)
    num_groups = min(min(dist.all_gather_objects(rollout.num_groups)), rank_prompts)
    rollout = rollout.keep_groups(torch.arange(rollout.num_groups) < num_groups)
    figures = sampler.sync() if sampler is not None else {}  # every rank: an adaptive sampler gathers here
    return CollectedRollout(rollout, draws, len(parts), sampled_groups, figures)


def drawn_prompt_ids(train: Dataset, draws: int, prompts_per_step: int, seed: int) -> list[str]:
    """Ids of every prompt the first ``draws`` sampling rounds of the shuffled stream drew (all
    ranks), in draw order, once each (a curriculum's: its sampler's ``drawn_ids``)."""
    return PromptSampler(CurriculumConfig(), train, None, prompts_per_step, seed).drawn_ids(train, draws)


# --- 2. rewards and advantages -------------------------------------------------------------------


def loss_token_counts(rollout: Rollout, overlong: str) -> torch.Tensor:
    """``[N]`` tokens of each completion that carry loss: the sampled ones (not a tool's output),
    or none for a truncated completion under ``overlong="mask"`` (DAPO's overlong filtering)."""
    masks = rollout.tool_masks or [None] * len(rollout)
    sampled = [len(c) - (sum(m) if m is not None else 0) for c, m in zip(rollout.completions, masks)]
    return torch.tensor([0 if overlong == "mask" and t else n for n, t in zip(sampled, rollout.truncated)])


def kl_penalised_rewards(
    module, reference, rollout: Rollout, loss_tokens: torch.Tensor, cfg, pad_id: int, device
) -> torch.Tensor:
    """``[N]`` rewards minus the KL of the policy to the reference over each completion
    (``kl.in_reward``: the KL enters the advantage instead of the loss)."""
    mbs, batches = micro_batches_of(rollout, list(range(len(rollout))), loss_tokens, cfg.micro_batch_per_device, pad_id)
    olds = batch_logprobs(module, batches, device, cfg.logprob_chunk, cfg.temperature)
    refs = batch_logprobs(reference, batches, device, cfg.logprob_chunk, cfg.temperature, adapters_disabled=reference is module)
    penalised = rollout.rewards.clone()
    for mb, b, old, ref in zip(mbs, batches, olds, refs):
        penalised[mb] = kl_penalty_in_reward(rollout.rewards[mb], old.cpu(), ref.cpu(), b["loss_mask"][:, 1:], cfg.kl)
    return penalised


# --- 3. what to train on -------------------------------------------------------------------------


def entropy_term_weights(advantages: torch.Tensor, coef: float, fraction: float, seed: int, step: int, rank: int = 0) -> torch.Tensor:
    """Per-sequence weight of the entropy term, ``[N]``.

    Sequences with a non-zero advantage run anyway (policy loss) and weigh 1. Of the others, each
    is drawn with probability ``fraction`` and weighs ``1 / fraction``, so the expected term is the
    full one; the rest weigh 0 and are not run. ``coef == 0``: no entropy term, all weights 0.
    """
    if coef == 0:
        return torch.zeros_like(advantages)
    if fraction >= 1.0:
        return torch.ones_like(advantages)
    gen = torch.Generator().manual_seed(derive_seed(seed, "grpo/entropy", step, rank))  # same draw on resume
    drawn = torch.rand(advantages.shape, generator=gen) < fraction
    return torch.where(advantages != 0, 1.0, torch.where(drawn, 1.0 / fraction, 0.0))


def trained_rows(advantages: torch.Tensor, entropy_weight: torch.Tensor, kl_in_loss: bool) -> list[int]:
    """Indices of the sequences to run. With no per-token term beside the policy loss, a sequence
    with zero advantage has zero gradient, so it is skipped (exactly: the normaliser still counts
    it); a KL term in the loss needs every sequence."""
    if kl_in_loss:
        return list(range(len(advantages)))
    return ((advantages != 0) | (entropy_weight > 0)).nonzero().squeeze(-1).tolist()


@dataclass
class TrainBatch:
    """This rank's micro-batches of one step and the log-probs fixed before the update."""

    rows: list[list[int]]  # rollout row indices of each micro-batch
    batches: list[dict[str, torch.Tensor]]  # collate_rollout tensors, [b, T]
    weights: list[float]  # 1.0; 0.0 for padding micro-batches that only keep ranks in step
    sampler_logps: list[torch.Tensor | None]  # the rollout engine's log-probs, [b, T-1] (None: it gave none)
    old_logps: list[torch.Tensor] = field(default_factory=list)  # behaviour policy, [b, T-1] (updates_per_batch > 1)
    ref_logps: list[torch.Tensor] = field(default_factory=list)  # reference, [b, T-1] (KL in the loss)


def build_train_batch(
    rollout: Rollout, rows: list[int], loss_tokens: torch.Tensor, cfg, pad_id: int, module=None, reference=None, device="cpu",
) -> TrainBatch:
    """``rows`` in micro-batches; every rank runs the same number (ZeRO's collectives), padding ones
    weigh 0. Old log-probs come from ``module`` when there are several updates per batch, reference
    log-probs from ``reference`` when the KL is in the loss."""
    mbs, batches = micro_batches_of(rollout, rows, loss_tokens, cfg.micro_batch_per_device, pad_id)
    num_mbs = max(1, max(dist.all_gather_objects(len(mbs))))
    weights = [1.0] * len(mbs) + [0.0] * (num_mbs - len(mbs))
    if len(mbs) < num_mbs:
        pad_mbs, pad_batches = micro_batches_of(rollout, [0], loss_tokens, cfg.micro_batch_per_device, pad_id)
        mbs += pad_mbs * (num_mbs - len(mbs))
        batches += pad_batches * (num_mbs - len(batches))
    sampler = [sampler_logprobs_batch([rollout.prompts[i] for i in mb], [rollout.completions[i] for i in mb],
                                      [rollout.sampler_logprobs[i] for i in mb]) for mb in mbs]
    batch = TrainBatch(mbs, batches, weights, sampler)
    if cfg.updates_per_batch > 1:
        batch.old_logps = batch_logprobs(module, batches, device, cfg.logprob_chunk, cfg.temperature)
    if reference is not None and not cfg.kl.in_reward:
        batch.ref_logps = batch_logprobs(reference, batches, device, cfg.logprob_chunk, cfg.temperature,
                                         adapters_disabled=reference is module)
    return batch


def loss_normaliser(num_sequences: int, loss_tokens: torch.Tensor, max_completion_length: int) -> LossNorm:
    """The counts every rank divides by: sequences and loss tokens of the whole step, all ranks.

    ``num_sequences``: this rank's (equal on every rank); ``loss_tokens``: ``[N]`` this rank's.
    Dividing by global counts makes the update independent of how the batch is split over ranks.
    """
    return LossNorm(
        num_sequences=num_sequences * dist.world_size(),
        num_tokens=max(1, int(dist.all_reduce_sum(loss_tokens.sum()).item())),
        max_completion_length=max_completion_length,
        world_size=dist.world_size(),
    )


# --- 4. the update -------------------------------------------------------------------------------


@dataclass
class UpdateSums:
    """Sums over this rank's trained tokens in the first update (the metrics' numerators)."""

    loss: float = 0.0
    kl: float = 0.0
    entropy: float = 0.0
    clip_low: float = 0.0
    clip_high: float = 0.0
    tokens: float = 0.0
    mismatch: dict[str, float] = field(default_factory=lambda: dict.fromkeys(MISMATCH_SUMS, 0.0))
    ratio_max: float = 0.0


def policy_update(
    engine, batch: TrainBatch, advantages: torch.Tensor, norm: LossNorm, cfg, entropy_coef: float = 0.0,
    entropy_weight: torch.Tensor | None = None,
) -> UpdateSums:
    """``updates_per_batch`` optimizer steps on ``batch`` (micro-batches accumulated): the clipped
    policy loss (IS-corrected towards the trainer's policy when ``rollout_correction`` asks), the KL
    term when there are reference log-probs, the entropy bonus, reduced with ``norm``.
    ``advantages``, ``entropy_weight``: ``[N]``."""
    sums = UpdateSums()
    num_mbs = len(batch.batches)
    for update in range(cfg.updates_per_batch):
        for j, (mb, b, weight) in enumerate(zip(batch.rows, batch.batches, batch.weights)):
            b = {k: v.to(engine.device) for k, v in b.items()}
            logp, entropy = token_logprobs(
                engine.module, **b, chunk_size=cfg.logprob_chunk, with_entropy=True, temperature=cfg.temperature,
                entropy_grad=entropy_coef != 0,
            )
            # the rollout came from the engine's (possibly older) policy: clip against the proximal
            # policy and reweight from the behaviour policy to it, or clip against the behaviour policy
            loss, figures = grpo_objective(
                logp, batch.old_logps[j] if batch.old_logps else logp.detach(), advantages[mb].to(engine.device),
                b["loss_mask"][:, 1:], norm, cfg.loss, cfg.loss.reduction,
                sampler_logp=batch.sampler_logps[j].to(engine.device) if batch.sampler_logps[j] is not None else None,
                correction=cfg.rollout_correction, ref_logp=batch.ref_logps[j] if batch.ref_logps else None, kl=cfg.kl,
                entropy=entropy, entropy_coef=entropy_coef,
                entropy_weight=entropy_weight[mb].to(engine.device) if entropy_coef else None,
                with_figures=update == 0 and bool(weight),
            )
            engine.backward(weight * loss, last_micro_batch=j == num_mbs - 1)
            if figures:  # the first update's real micro-batches (weight 1; padding ones weigh 0)
                add_update_figures(sums, figures)
    return sums


def add_update_figures(sums: UpdateSums, figures: dict[str, float]) -> None:
    """Add one micro-batch's `grpo_objective` figures to ``sums`` (the loss as a rank's share)."""
    sums.loss += figures["loss"] / dist.world_size()
    sums.tokens += figures["tokens"]
    sums.entropy += figures["entropy"]
    sums.clip_low += figures["clip_low"]
    sums.clip_high += figures["clip_high"]
    if "kl" in figures:
        sums.kl += figures["kl"]
    if "mismatch/ratio_max" in figures:
        sums.ratio_max = max(sums.ratio_max, figures["mismatch/ratio_max"])
        for key in sums.mismatch:
            sums.mismatch[key] += figures[f"mismatch/{key}"]


# --- 4b. one step's training, on its rollout -----------------------------------------------------


def train_on_rollout(
    engine, reference, collected: CollectedRollout, cfg, step: int, pad_id: int, correctness: str, t_step: float,
) -> tuple[dict[str, float], torch.Tensor]:
    """Steps 2 to 5 on this step's groups (``collected``, from `collect_rollout`): loss tokens, the
    KL in the reward, advantages, the rows to train, the train batch, the normaliser, the update
    and the step's figures with its timings (``t_step``: when the step began). Returns the figures
    (those of the rollout engine and the rounds are the caller's) and the ``[N]`` advantages."""
    rollout, G = collected.rollout, cfg.samples_per_prompt
    t_gen = time.time()
    loss_tokens = loss_token_counts(rollout, cfg.overlong)
    rewards = rollout.rewards
    if reference is not None and cfg.kl.in_reward:
        rewards = kl_penalised_rewards(engine.module, reference, rollout, loss_tokens, cfg, pad_id, engine.device)
    advantages = compute_advantages(
        rewards.view(-1, G), cfg.advantage,
        lengths=torch.tensor([len(c) for c in rollout.completions]).view(-1, G), truncated=rollout.truncated.view(-1, G),
    ).view(-1)  # [N]
    entropy_coef = cfg.entropy_coef if step >= cfg.entropy_from_step else 0.0
    entropy_weight = entropy_term_weights(advantages, entropy_coef, cfg.entropy_sample_fraction, cfg.seed, step, dist.rank())
    rows = trained_rows(advantages, entropy_weight, kl_in_loss=reference is not None and not cfg.kl.in_reward)
    batch = build_train_batch(rollout, rows, loss_tokens, cfg, pad_id, engine.module, reference, engine.device)
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
    return metrics, advantages


# --- 5. metrics ----------------------------------------------------------------------------------


def step_metrics(
    rollout: Rollout, rewards: torch.Tensor, correctness: str, sums: UpdateSums, norm: LossNorm, group_size: int,
    seconds_train: float = 0.0, updates_per_batch: int = 1,
) -> dict[str, float]:
    """The step's figures over all ranks: rewards (``rewards``: ``[N]``, after any KL penalty),
    accuracy (the ``correctness`` component), lengths, the update's per-token means, throughput
    and rollout timings, the train/rollout mismatch, behaviour phrases per completion, process
    validity (``process/*``: the reasoning's arithmetic claims), tool use (``tools/*``) and group
    statistics. Optimizer figures are the caller's."""
    lengths = torch.tensor([len(c) for c in rollout.completions], dtype=torch.float32)
    correct = rollout.components[correctness]
    total = dist.sum_by_name({
        "loss": sums.loss, "entropy": sums.entropy, "clip_low": sums.clip_low, "clip_high": sums.clip_high,
        "kl": sums.kl, "tokens": sums.tokens, "reward": float(rewards.sum()), "reward_sq": float(rewards.square().sum()),
        "correct": float(correct.sum()), "length": float(lengths.sum()), "truncated": float(rollout.truncated.sum()),
        "sequences": float(len(rewards)),
    })
    n = total["sequences"]
    tokens = max(total["tokens"], 1.0)  # entropy, clipping and KL are over the tokens trained on
    metrics = {
        "loss": total["loss"],
        "reward": total["reward"] / n,
        "reward_std": max(0.0, total["reward_sq"] / n - (total["reward"] / n) ** 2) ** 0.5,
        "accuracy": total["correct"] / n,
        "response_length": total["length"] / n,
        "response_length_max": float(lengths.max()),
        "truncated_fraction": total["truncated"] / n,
        "entropy": total["entropy"] / tokens,
        "clip_fraction_low": total["clip_low"] / tokens,
        "clip_fraction_high": total["clip_high"] / tokens,
        "kl": total["kl"] / tokens,
        "gen_tokens_per_s": total["length"] / max(rollout.seconds_generate, 1e-9),
        "train_tokens_per_s": total["tokens"] * updates_per_batch / max(seconds_train, 1e-9),
        "trained_fraction": total["tokens"] / max(1, norm.num_tokens),
        "time_generate": rollout.seconds_generate,
        "time_reward": rollout.seconds_reward,
    }
    for name, values in rollout.components.items():
        metrics[f"reward/{name}"] = float(values.mean())
    metrics.update(mismatch_metrics(sums.mismatch, sums.ratio_max))
    behaviours = dist.sum_by_name({name: float(c.sum()) for name, c in behaviour_counts(rollout.responses).items()})
    for name, count in behaviours.items():
        metrics[f"behaviour/{name}"] = count / n  # occurrences per completion, all ranks
    counts = claim_counts(rollout.responses)  # process validity: the reasoning's arithmetic claims, judged exactly
    gathered = dist.all_gather_objects((counts, correct.numpy()))
    every = {k: np.concatenate([c[k] for c, _ in gathered]) for k in counts}
    figures = process_figures(every, np.concatenate([ok for _, ok in gathered]))
    metrics.update({f"process/{k}": v for k, v in figures.items() if k != "num_claims"})
    if rollout.tool_stats:
        metrics.update({f"tools/{k}": v for k, v in tool_figures(dist.sum_by_name(tool_sums(rollout.tool_stats)), n).items()})
    for name, value in group_stats(rewards.view(-1, group_size), correct.view(-1, group_size) > 0).items():
        metrics[name] = float(value)
    return metrics


def mismatch_metrics(sums: dict[str, float], ratio_max: float) -> dict[str, float]:
    """Train/rollout mismatch over the tokens trained on, all ranks: how far the engine's
    log-probs are from the trainer's (``rollout/*``), and what the IS correction did."""
    total = dist.sum_by_name({name: sums[name] for name in sorted(sums)}, dtype=torch.float64)
    if total["tokens"] == 0:
        return {}
    tokens = total["tokens"]
    return {
        "rollout/abs_logp_diff": total["abs_logp_diff"] / tokens,
        "rollout/kl_sampler_trainer": total["kl"] / tokens,
        "rollout/ratio_max": max(dist.all_gather_objects(ratio_max)),
        "rollout/is_weight_mean": total["weight_sum"] / tokens,
        "rollout/is_zeroed_fraction": total["zeroed_tokens"] / tokens,
    }


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
