"""Typed configs of the evaluation apps (``r1lab-eval``, ``r1lab-report``, ``r1lab-compare``).

They live here rather than in ``r1lab.config.schema`` because they configure tools that read a
finished model or run, not a training run; they reuse its ``TaskConfig`` and ``EvalConfig``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from omegaconf import MISSING

from r1lab.config.schema import EvalConfig, RolloutConfig, TaskConfig


@dataclass
class ScalingConfig:
    """Test-time scaling sweep; empty lists = no sweep."""

    samples: list[int] = field(default_factory=list)  # samples per problem, e.g. [1, 2, 4, 8, 16]
    max_new_tokens: list[int] = field(default_factory=list)  # token budgets, e.g. [64, 128, 256]; empty = [eval.max_new_tokens]


@dataclass
class StudiesConfig:
    """Studies of ``r1lab-eval`` (``r1lab.eval.studies``), written into eval.json ``studies`` and eval.md."""

    behaviours: bool = False  # reasoning behaviours of the model's own samples, by outcome, top phrases (+ behaviours.png)
    templates: list[str] = field(default_factory=list)  # template sensitivity, e.g. [r1_zero, chat, none] (+ templates.png)
    perplexity_bridge: bool = False  # gold answer's perplexity without vs with the model's greedy reasoning (+ perplexity_bridge.png)
    bridge_problems: int = 0  # perplexity bridge: the first N evaluated problems; 0 = all
    bridge_batch_size: int = 16  # perplexity bridge: sequences per forward pass


@dataclass
class EvalAppConfig:
    """``r1lab-eval``: evaluate one model on a task split or a file of problems."""

    model: str = MISSING  # model folder or hub id; or a run's stage dir (its checkpoint/), or a run dir (its last stage)
    template: Optional[str] = None  # prompt template; default: the run's when `model` is in a run dir, else r1_zero
    dtype: str = "auto"  # auto (bf16 on GPU, fp32 on CPU) | float32 | bfloat16 | float16
    trust_remote_code: bool = False
    data_file: Optional[str] = None  # jsonl/parquet problems to evaluate instead of the task's test split
    out_dir: Optional[str] = None  # default: <stage dir>/eval-<task>-<split> for a run's model, else outputs/eval/<timestamp>
    inherit_run_config: bool = True  # a run's model: start from the run's `task` and `eval` (command-line overrides win)
    seed: int = 0  # seed of the sampled completions and of the bootstrap
    num_threads: int = 0  # CPU torch threads; 0 = torch's default
    task: TaskConfig = field(default_factory=TaskConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    scaling: ScalingConfig = field(default_factory=ScalingConfig)
    studies: StudiesConfig = field(default_factory=StudiesConfig)
    rollout: RolloutConfig = field(default_factory=RolloutConfig)  # the sampling engine: rollout.backend=hf | vllm


@dataclass
class ReportConfig:
    """``r1lab-report``: plots and one HTML page of a pipeline run."""

    run_dir: str = MISSING  # the run directory (with stages/)
    out_dir: Optional[str] = None  # default: <run_dir>/report
    max_completions: int = 20  # completions shown per stage (from samples.jsonl, when present)


@dataclass
class CompareConfig:
    """``r1lab-compare``: one table and one plot over the runs of a Hydra sweep."""

    sweep_dir: str = MISSING  # multirun/<name>/<timestamp>/ holding one run dir per job
    out_dir: Optional[str] = None  # default: the sweep dir
    # Seed bands (r1lab.eval.seed_bands): runs whose overrides differ only in seed-like keys form an
    # arm; each figure gets its mean, sample std (ddof=1), min and max over the arm's seeds.
    # eval.json figures by dotted path, e.g. [greedy_accuracy, pass_at_k.4, by_difficulty.hard.greedy_accuracy];
    # [] = the headline figures, shown only when some arm has several seeds
    metrics: list[str] = field(default_factory=list)
    curves: list[str] = field(default_factory=list)  # metrics.jsonl names per step, e.g. [reward, response_length] (compare-curves.png)
    stage: Optional[str] = None  # the stage read for metrics and curves: its directory (02-grpo) or name (grpo); null = each run's final stage
    band: str = "minmax"  # the curves' shaded band: minmax (min..max over seeds) | std (mean ± one sample std)
    seed_keys: list[str] = field(default_factory=lambda: ["seed", "*.seed"])  # override keys (globs) averaged over, not arms
