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
Which prompts a round draws is the ``curriculum``'s (`r1lab.stages.curriculum`): by default the
shuffled stream r1lab always drew; easy -> hard, or reward-adaptive, on request.

Output: ``checkpoint/`` and ``prompts.json``, the ids of every training prompt the stage drew
(dynamic sampling draws several rounds a step), which rejection sampling reads to sample only
prompts RL never saw.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Optional

import torch

from r1lab.algorithms.advantages import ADVANTAGES, AdvantageConfig
from r1lab.algorithms.kl import KL_ESTIMATORS, KLConfig
from r1lab.algorithms.policy_loss import POLICY_LOSSES, PolicyLossConfig
from r1lab.algorithms.reduce import REDUCTIONS
from r1lab.algorithms.rollout_correction import RolloutCorrectionConfig
from r1lab.config.schema import StageConfig, ToolsConfig
from r1lab.engine import dist
from r1lab.engine.checkpoint import write_json_atomic
from r1lab.models.load import load_model
from r1lab.models.lora import is_lora
from r1lab.rewards import REWARDS, build_rewards, make_params
from r1lab.stages.context import StageContext, per_rank
from r1lab.stages.curriculum import CurriculumConfig, PromptSampler, build_sampler
from r1lab.stages.grpo_steps import collect_rollout, completion_rows, grpo_rounds, train_on_rollout
from r1lab.stages.registry import register_stage

PROMPTS_FILE = "prompts.json"  # <stage_dir>/prompts.json: {"draws": n, "prompt_ids": [...]}
ROUNDS_FILE = "rounds_in_flight"  # <resume>/<step>/rounds_in_flight-rank<r>.json: separate placement's rounds sampled ahead
MAX_EMPTY_STEPS = 10  # dynamic sampling: consecutive steps without a varied group before giving up


@dataclass
class GRPOLossConfig(PolicyLossConfig):
    """The policy loss (``name``: clipped | gspo | vanilla_pg, with its clip range) and how the
    per-token losses of a step are reduced to one number."""

    reduction: str = "seq_mean_token_mean"  # seq_mean_token_mean (GRPO) | token_mean (DAPO) | seq_mean_token_sum_norm (Dr. GRPO)


@dataclass
class GRPOStageConfig(StageConfig):
    """The schema of a ``grpo`` stage (registered with :func:`run_grpo` at the bottom)."""

    kind: str = "grpo"
    steps: int = 100  # optimizer steps (one rollout batch each, times updates_per_batch)
    prompts_per_step: int = 32  # global prompts per rollout batch
    samples_per_prompt: int = 8  # group size G
    updates_per_batch: int = 1  # mu: optimizer steps per rollout batch
    max_new_tokens: int = 256  # longest completion, in tokens
    temperature: float = 1.0
    top_p: float = 1.0
    rewards: dict[str, float] = field(default_factory=dict)  # reward name -> weight, required; a default would merge into (not be replaced by) the YAML mapping
    advantage: AdvantageConfig = field(default_factory=AdvantageConfig)
    loss: GRPOLossConfig = field(default_factory=GRPOLossConfig)
    kl: KLConfig = field(default_factory=KLConfig)
    # The rollout engine's log-probs differ from the trainer's (vLLM: other kernels, bf16): importance
    # sampling towards the trainer's policy, truncated (mode=truncate, cap) or by masking (mode=mask)
    rollout_correction: RolloutCorrectionConfig = field(default_factory=RolloutCorrectionConfig)
    format_gate: bool = False  # every reward counts only in a response with R1's strict tag format
    overlong: str = "none"  # completions cut at max_new_tokens: none (train on them) | mask (no loss)
    dynamic_sampling: bool = False  # DAPO: drop groups whose rewards are all equal, sample more to fill the batch
    max_sampling_rounds: int = 4  # dynamic sampling: sampling rounds per step at most (then train on what was kept)
    entropy_coef: float = 0.0  # loss -= coef * entropy: > 0 an entropy bonus (exploration), < 0 entropy minimisation (sharpening); 0 = logged only
    entropy_from_step: int = 0  # the entropy term applies from this GRPO step on (0 = from the start)
    # The entropy term needs a forward/backward pass over sequences the policy loss would skip
    # (zero advantage). It runs on this fraction of them, drawn at random each step and weighted
    # 1/fraction: the same term in expectation, at a fraction of the cost (1.0 = all of them).
    entropy_sample_fraction: float = 1.0
    logprob_chunk: int = 1024  # positions per chunk when computing log-probs (bounds logits memory)
    tools: ToolsConfig = field(default_factory=ToolsConfig)  # tools the rollouts may call (multi-turn); default none
    # which prompts each round draws: none (the shuffled stream) | difficulty (easy -> hard) | adaptive (near 50% success)
    curriculum: CurriculumConfig = field(default_factory=CurriculumConfig)
    # reward name -> its parameters, for the rewards that take some (each one's params dataclass in
    # r1lab.rewards: RewardModelParams, RoutedParams), e.g. {reward_model: {path: my/rm, batch_size: 16}}
    reward_params: dict[str, Any] = field(default_factory=dict)
    # moved into reward_params (see MOVED_GRPO_FIELDS): kept only so an old config gets the new spelling
    reward_model_path: Optional[str] = None
    reward_model_batch_size: Optional[int] = None
    reward_model_normalize: Optional[str] = None
    reward_routing: Optional[dict[str, float]] = None

    def check(self, name: str) -> None:
        if self.samples_per_prompt < 2:
            raise ValueError(
                f"stages.{name}.samples_per_prompt={self.samples_per_prompt}: GRPO needs groups of at least 2"
            )
        if self.prompts_per_step < 1 or self.steps < 0 or self.updates_per_batch < 1:
            raise ValueError(f"stages.{name}: prompts_per_step, updates_per_batch must be >= 1, steps >= 0")
        if not 0.0 < self.entropy_sample_fraction <= 1.0:
            raise ValueError(
                f"stages.{name}.entropy_sample_fraction={self.entropy_sample_fraction}: must be in (0, 1]; 1.0 runs the entropy term on every sequence"
            )
        for old, new in MOVED_GRPO_FIELDS.items():
            if getattr(self, old) is not None:
                raise ValueError(
                    f"stages.{name}.{old} moved: set stages.{name}.{new} instead (the `routed` reward has "
                    f"its own: reward_params.routed.path, .batch_size, .normalize, .routing)"
                )
        if not self.rewards:
            raise ValueError(f"stages.{name}.rewards is empty; e.g. rewards: {{countdown: 1.0}}")
        self.curriculum.check(f"stages.{name}.curriculum")
        for field_, value, registry in (
            ("advantage.name", self.advantage.name, ADVANTAGES.names()),
            ("loss.name", self.loss.name, POLICY_LOSSES.names()),
            ("loss.reduction", self.loss.reduction, REDUCTIONS.names()),
            ("kl.estimator", self.kl.estimator, KL_ESTIMATORS.names()),
            *(("rewards", reward, REWARDS.names()) for reward in self.rewards),
        ):
            if value not in registry:
                raise ValueError(f"stages.{name}.{field_}={value!r} is not registered; valid: {', '.join(registry)}")
        for reward, params in self.reward_params.items():
            try:
                make_params(reward, params)
            except (TypeError, ValueError) as err:
                raise ValueError(f"stages.{name}.reward_params.{reward}: {err}") from None


# GRPO fields that moved: old name -> where the value goes now (setting an old one fails, naming the new)
MOVED_GRPO_FIELDS = {
    "reward_model_path": "reward_params.reward_model.path",
    "reward_model_batch_size": "reward_params.reward_model.batch_size",
    "reward_model_normalize": "reward_params.reward_model.normalize",
    "reward_routing": "reward_params.routed.routing",
}


def run_grpo(ctx: StageContext) -> None:
    cfg, run = ctx.cfg, setup_grpo(ctx)
    engine, tokenizer, rollout_engine, rounds, tracker = run.engine, run.tokenizer, run.rollout_engine, run.rounds, run.tracker
    draws, empty_steps = run.draws, 0
    try:
        while engine.step < run.total_updates:
            step = engine.step // cfg.updates_per_batch
            t_step = time.time()
            collected = collect_rollout(rounds, cfg, draws, run.sampler)
            rollout_engine.sleep()  # CUDA vLLM: its memory is the update's until the next rollout
            draws, rollout = collected.draws, collected.rollout
            if rollout.num_groups == 0:
                empty_steps = count_empty_step(empty_steps, f"stages.{ctx.stage.name}", cfg.max_sampling_rounds)
                continue
            empty_steps = 0
            metrics, advantages = train_on_rollout(engine, run.reference, collected, cfg, step, tokenizer.pad_token_id,
                                                   run.correctness, t_step)
            if rollout_engine.pushes_weights:  # engines that hold a copy of the weights
                metrics["time_weight_push"] = rollout_engine.seconds_last_push
            metrics.update(rounds.step_figures())  # separate placement: version lag, waits, worker idle, weight sync
            metrics.update(collected.curriculum)  # curriculum/*: none without a curriculum
            tracker.log(step + 1, metrics)
            every = ctx.run.tracking.completions_every
            if every and (step + 1) % every == 0:
                tracker.log_completions(step + 1, "train", completion_rows(rollout, tokenizer, ctx.run.tracking.completions_rows, advantages))
            ctx.after_step(engine, tracker, tokenizer, step + 1, cfg.steps, resume_state(draws, run.sampler), rollout=rollout_engine,
                           rank_files={ROUNDS_FILE: rounds.checkpoint} if run.separate else None)
    finally:  # an error too: workers stop, a push in flight ends before the process does
        rounds.close()
        rollout_engine.close()
    write_prompt_record(ctx, run.train, draws, run.sampler)
    ctx.finish(engine, tracker, tokenizer)


@dataclass
class GRPORun:
    """What the loop of `run_grpo` works with, built once by `setup_grpo`."""

    engine: Any  # the training engine (r1lab.engine.Engine)
    tokenizer: Any
    reference: Optional[torch.nn.Module]  # the KL's frozen reference (None: no KL; LoRA: the policy itself)
    train: Any  # the task's training split (a datasets.Dataset)
    tracker: Any
    correctness: str  # the task's correctness reward (accuracy)
    rollout_engine: Any  # sampling goes through it alone
    rounds: Any  # grpo_rounds: in place, or ahead on rollout workers
    separate: bool  # rollout.placement=separate: the rounds in flight are saved with checkpoints
    draws: int  # sampling rounds drawn so far (the position in the prompt stream, restored on resume)
    total_updates: int  # steps x updates_per_batch optimizer steps
    sampler: PromptSampler  # which prompts each round draws (curriculum; its state is resumed)


def setup_grpo(ctx: StageContext) -> GRPORun:
    """Policy, engine (resumed), reference, tracker, rewards, rollout engine and the sampling rounds."""
    cfg = ctx.cfg
    model, tokenizer = ctx.load_policy()
    train = ctx.task.split("train")
    per_rank(cfg.prompts_per_step, f"stages.{ctx.stage.name}.prompts_per_step")
    total_updates = cfg.steps * cfg.updates_per_batch
    engine = ctx.engine(model, total_updates)
    reference = None
    if cfg.kl.needs_reference:
        # LoRA: the reference is the policy itself with its adapters off (`adapters_off`), no copy
        reference = engine.module if is_lora(engine.module) else load_model(ctx.start_model, ctx.run.model).to(engine.device).eval().requires_grad_(False)
    state = engine.load(ctx.resume_dir) or {}
    draws = int(state.get("draws", engine.step // cfg.updates_per_batch))  # sampling rounds so far
    sampler = build_sampler(cfg.curriculum, train, ctx.task, cfg.prompts_per_step, cfg.seed, f"stages.{ctx.stage.name}.curriculum")
    sampler.load_state_dict(state.get("curriculum") or {})  # before the rounds: a restored round's prompts are the sampler's
    tracker = ctx.tracker(cfg.steps, start_step=engine.step // cfg.updates_per_batch)
    correctness = ctx.task.correctness_reward
    # zero-weighted components are computed for the metrics only; rewards with parameters are built from reward_params
    reward_weights = build_rewards({correctness: 0.0, "format": 0.0, **cfg.rewards}, cfg.reward_params)
    separate = ctx.run.rollout.placement == "separate"
    rollout_engine = ctx.rollout_engine(engine.module, tokenizer, engine, placement=ctx.run.rollout.placement)
    rounds = grpo_rounds(rollout_engine, engine, tokenizer, ctx.task, ctx.run.model.template, train, cfg, reward_weights,
                         ctx.run.rollout.max_staleness if separate else None, sampler)
    rounds.restore(engine.load_rank_file(ROUNDS_FILE) or {})  # the rounds a checkpoint saved in flight
    return GRPORun(engine, tokenizer, reference, train, tracker, correctness, rollout_engine, rounds, separate, draws, total_updates,
                   sampler)


def resume_state(draws: int, sampler: PromptSampler) -> dict[str, Any]:
    """What a resumable checkpoint saves of the prompt stream: the rounds drawn, and the
    curriculum's state when it has one (an adaptive one's estimates)."""
    state = sampler.state_dict()
    return {"draws": draws, "curriculum": state} if state else {"draws": draws}


def count_empty_step(empty_steps: int, where: str, max_sampling_rounds: int) -> int:
    """One more consecutive step in which dynamic sampling kept no group; fail after ``MAX_EMPTY_STEPS``."""
    empty_steps += 1
    if empty_steps >= MAX_EMPTY_STEPS:
        raise RuntimeError(
            f"{where}: dynamic sampling found no group with varied rewards in "
            f"{empty_steps} steps x {max_sampling_rounds} rounds; raise max_sampling_rounds or set dynamic_sampling=false"
        )
    return empty_steps


def write_prompt_record(ctx: StageContext, train, draws: int, sampler: PromptSampler) -> None:
    """``<stage_dir>/prompts.json``: every training prompt the stage drew, for later stages."""
    if dist.is_main():
        ids = sampler.drawn_ids(train, draws)
        write_json_atomic(ctx.stage_dir / PROMPTS_FILE, {"draws": draws, "prompt_ids": ids})


register_stage(GRPOStageConfig, run_grpo)
