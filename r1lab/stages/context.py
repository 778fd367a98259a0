"""What the pipeline hands a stage, and the setup every stage shares (engine, tracker, resume)."""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch

from r1lab.config.errors import ConfigError
from r1lab.config.schema import RunConfig
from r1lab.tasks import Task
from r1lab.engine import dist
from r1lab.engine.engine import Engine, OptimSettings
from r1lab.models.load import load_model, load_tokenizer
from r1lab.models.lora import apply_lora, full_model_path, is_adapter_dir, load_base_with_adapter
from r1lab.models.templates import record_template
from r1lab.stages.registry import STAGE_KINDS, Stage
from r1lab.tracking.tracker import Tracker


# the evaluation records' fields shown in a completion table (greedy completion first per problem)
EVAL_SAMPLE_COLUMNS = ("problem", "kind", "sample", "question", "response", "answer", "correct", "format", "length", "stopped")


@dataclass
class StageContext:
    run: RunConfig
    stage: Stage
    stage_dir: Path  # <run_dir>/stages/NN-name
    start_model: str  # path or hub id the stage starts from
    task: Task
    group: str  # pipeline run id: groups this stage's W&B run with its siblings

    @property
    def cfg(self):
        return self.stage.cfg

    @property
    def checkpoint_dir(self) -> Path:
        """The stage's final model, in Hugging Face format."""
        return self.stage_dir / "checkpoint"

    @property
    def resume_dir(self) -> Path:
        """Resumable mid-stage checkpoints (model, optimizer, RNG, data position)."""
        return self.stage_dir / "resume"

    def load_policy(self):
        check_batch_sizes(self.stage.name, self.cfg, dist.world_size())  # before any heavy work
        start, lora = self.start_model, self.run.model.lora
        if is_adapter_dir(start):  # a LoRA stage exported without merging: fold its adapter in
            model = load_base_with_adapter(start, lambda path: load_model(path, self.run.model))
            tokenizer = load_tokenizer(model.config._name_or_path, self.run.model)
        else:
            model = load_model(start, self.run.model)
            tokenizer = load_tokenizer(start, self.run.model)
        if lora.enabled:
            model = apply_lora(model, lora)
        return model, tokenizer

    def rollout_engine(self, module: torch.nn.Module, tokenizer, engine: Engine | None = None, placement: str = "colocated"):
        """The run's rollout engine (``rollout.backend``) sampling from ``module``; pass the
        training ``engine`` when ``module`` is its (possibly ZeRO-3 partitioned) model.
        ``placement="separate"``: on rollout workers (GRPO with ``rollout.placement=separate``)."""
        from r1lab.rollout.engine import Policy, build_rollout_engine

        policy = Policy(module=module, path=full_model_path(self.start_model))
        if engine is not None:
            policy.gathered, policy.gather_params = engine.gathered, engine.gathered_params
            policy.version = lambda: engine.step
        return build_rollout_engine(self.run.rollout, policy, tokenizer, self.run.seed, placement)

    def engine(self, model: torch.nn.Module, total_steps: int) -> Engine:
        c = self.cfg
        opt = OptimSettings(
            lr=c.lr,
            weight_decay=c.weight_decay,
            max_grad_norm=c.max_grad_norm,
            schedule=c.schedule,
            warmup_steps=int(round(c.warmup_ratio * total_steps)),
            total_steps=total_steps,
            min_lr_ratio=c.min_lr_ratio,
            micro_batch_per_device=c.micro_batch_per_device,
        )
        return Engine(model, self.run.engine, opt)

    def after_step(
        self, engine: Engine, tracker: Tracker, tokenizer, step: int, total_steps: int, state: dict | None = None,
        rollout=None, rank_files: dict | None = None,
    ) -> None:
        """Held-out evaluation every ``eval.every`` steps (with ``rollout``, the stage's rollout
        engine, when it has one); resumable checkpoint every ``save_every`` steps; on SIGTERM,
        save and exit. ``rank_files``: name -> function returning this rank's JSON state to save
        with a checkpoint (called only when one is written)."""
        every = self.run.eval.every
        if every and step % every == 0 and step < total_steps:  # the pipeline evaluates the final model
            figures, samples = self.evaluate_during_training(engine, tokenizer, rollout, with_samples=True)
            tracker.log(step, figures)
            if self.run.tracking.completions_every:
                tracker.log_completions(step, "eval", samples[: self.run.tracking.completions_rows])
        state = {"stage": self.stage.name, **(state or {})}
        if self.cfg.save_every and step % self.cfg.save_every == 0 and step < total_steps:
            engine.save(self.resume_dir, state, keep=self.cfg.keep_checkpoints, rank_files=rank_files)
        if engine.preempted():  # SIGTERM: save this step and exit (r1lab.engine.signals)
            engine.save_and_exit(self.resume_dir, state, self.cfg.keep_checkpoints, tracker.finish, rank_files=rank_files)

    def evaluate_during_training(self, engine: Engine, tokenizer, rollout=None, with_samples: bool = False):
        """``eval/<figure>`` on the first ``eval.every_num_problems`` held-out problems, sampled
        by ``rollout`` (default: a rollout engine on the training model, closed after): the headline
        figures, ``eval/behaviour/<name>`` (mean per completion), ``eval/process/<name>`` (eval.json's
        ``process``: claims judged exactly) and, when the completions could call tools,
        ``eval/tools/<name>``. ``with_samples``: also the completions, one table row each
        (``EVAL_SAMPLE_COLUMNS``)."""
        from r1lab.eval.evaluate import evaluate_with_samples  # the eval package imports the rollout sampler

        ev = self.run.eval
        cfg = replace(ev, num_problems=ev.every_num_problems, samples=ev.every_samples)
        was_training = engine.module.training
        engine.eval()
        sampler = rollout or self.rollout_engine(engine.module, tokenizer, engine)
        result, records = evaluate_with_samples(sampler, tokenizer, self.task, self.run.model.template, cfg, seed=self.run.seed)
        if rollout is None:
            sampler.close()
        if was_training:
            engine.train()
        keys = ("greedy_accuracy", "sampled_accuracy", "format_rate", "mean_response_length", "seconds")
        figures = {f"eval/{k}": float(result[k]) for k in keys}
        figures.update({f"eval/behaviour/{b}": v["mean"] for b, v in result["behaviours"].items()})
        figures.update({f"eval/process/{name}": float(v) for name, v in (result.get("process") or {}).items()})
        figures.update({f"eval/tools/{name}": float(v) for name, v in (result.get("tools") or {}).items()})
        if not with_samples:
            return figures
        return figures, [{c: r[c] for c in EVAL_SAMPLE_COLUMNS if c in r} for r in records]

    def finish(self, engine: Engine, tracker: Tracker, tokenizer) -> None:
        """Close the tracker and export the stage's model in Hugging Face format."""
        tracker.finish()
        record_template(tokenizer, self.run.model.template)
        engine.save_pretrained(self.checkpoint_dir, tokenizer, merge_lora=self.run.model.lora.merge_on_save)

    def tracker(self, total_steps: int, start_step: int = 0) -> Tracker:
        return Tracker(
            self.run.tracking,
            self.stage_dir,
            run_name=f"{self.run.name}/{self.stage.dirname}",
            group=self.group,
            config={"stage": asdict(self.cfg), "model": asdict(self.run.model), "task": asdict(self.run.task)},
            total_steps=total_steps,
            start_step=start_step,
        )


def per_rank(global_count: int, field: str) -> int:
    """Split a global batch size over the data-parallel ranks, or fail with the numbers."""
    world = dist.world_size()
    if global_count % world:
        raise ConfigError(f"{field}={global_count} is not divisible by the {world} data-parallel ranks")
    return global_count // world


def check_batch_sizes(name: str, cfg, world: int) -> None:
    """Fail at start, with the numbers, on batch sizes the data-parallel ranks cannot split.

    Every rank must get the same number of sequences (and so of micro-batches: ZeRO-3 gathers
    weights collectively at each forward, so all ranks must run the same passes). A kind
    registered with ``equal_micro_batches`` (SFT): a rank's share must also split into equal
    micro-batches of ``micro_batch_per_device`` (or fit in one).
    """
    field = next((f for f in ("prompts_per_step", "batch_size") if hasattr(cfg, f)), None)
    if field is None:  # a stage without a global training batch (e.g. rejection sampling)
        return
    total = getattr(cfg, field)
    if total % world:
        raise ConfigError(
            f"stages.{name}.{field}={total} is not divisible by the {world} data-parallel ranks "
            f"(use a multiple of {world})"
        )
    micro = cfg.micro_batch_per_device
    kind = STAGE_KINDS.get(cfg.kind) if cfg.kind in STAGE_KINDS else None
    if kind is not None and kind.equal_micro_batches and total // world > micro and (total // world) % micro:
        raise ConfigError(
            f"stages.{name}.{field}={total} over {world} ranks gives {total // world} sequences per rank, "
            f"which does not split into micro-batches of micro_batch_per_device={micro}; make {field} a "
            f"multiple of world_size x micro_batch_per_device = {world * micro}, or change micro_batch_per_device"
        )


def length_grouped(lengths: list[int], size: int) -> list[list[int]]:
    """Indices grouped into micro-batches of ``size`` rows of similar length (less padding)."""
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    return micro_batches(order, size)


def micro_batches(items: list, size: int) -> list[list]:
    return [items[i : i + size] for i in range(0, len(items), size)]


def ceil_div(a: int, b: int) -> int:
    return int(math.ceil(a / b))


def step_indices(step: int, batch_size: int, num_examples: int, seed: int) -> np.ndarray:
    """Example indices of optimizer step ``step``: consecutive slices of per-epoch permutations."""
    start, stop = step * batch_size, (step + 1) * batch_size
    out = []
    for epoch in range(start // num_examples, ceil_div(stop, num_examples)):
        perm = np.random.default_rng([seed, epoch]).permutation(num_examples)
        lo, hi = max(start - epoch * num_examples, 0), min(stop - epoch * num_examples, num_examples)
        out.append(perm[lo:hi])
    return np.concatenate(out)
