"""The opt-in evaluations beside the held-out one: what RL costs elsewhere, and robustness.

Run after the plain evaluation of a model (the pipeline's ``evaluate_into``, for the starting
model and after each stage, and ``r1lab-eval``), each under its own ``EvalConfig`` field and
eval.json key, all off by default so an eval.json without them is unchanged:

* ``eval.faithfulness`` -> ``faithfulness`` (``r1lab.eval.faithfulness``): from the plain
  evaluation's own completions, no generation;
* ``eval.forgetting`` -> ``forgetting`` (``r1lab.eval.forgetting``): general-text perplexity and
  general questions;
* ``eval.robustness`` -> ``robustness`` (``r1lab.eval.robustness``): the task's perturbations.

None of them draws from a global random generator (every sample is seeded by the engine call), so
they change none of the plain figures, whichever of them run.
"""
from __future__ import annotations

from typing import Any

import torch

from r1lab.config.schema import EvalConfig
from r1lab.eval.answers import task_analysis
from r1lab.eval.faithfulness import faithfulness_of_records
from r1lab.eval.forgetting import forgetting_figures
from r1lab.eval.robustness import check_perturbations, robustness_figures
from r1lab.rollout.engine import RolloutEngine
from r1lab.tasks import Task


def check_suites(cfg: EvalConfig, task: Task, at: str = "eval") -> None:
    """Start-up checks that need the built task (``ConfigError`` naming the field): the
    perturbation names of ``eval.robustness``."""
    check_perturbations(cfg.robustness, task, f"{at}.robustness")


def wanted(cfg: EvalConfig) -> bool:
    """Does ``cfg`` ask for any of the suites?"""
    return bool(cfg.faithfulness or cfg.forgetting or cfg.robustness)


def run_suites(engine: RolloutEngine, model: torch.nn.Module, tokenizer, task: Task, template: str, cfg: EvalConfig,
               seed: int, problems, result: dict[str, Any], records: list[dict[str, Any]]) -> dict[str, Any]:
    """The eval.json keys of the suites ``cfg`` turns on ({} when none): ``result`` and ``records``
    are the plain evaluation's figures and completions (``evaluate_with_samples``) of
    ``problems``. Every rank calls it (generation is sharded)."""
    out: dict[str, Any] = {}
    if cfg.faithfulness:
        out["faithfulness"] = faithfulness_of_records(task_analysis(task), records, task.reward_columns)
    if cfg.robustness:
        out["robustness"] = robustness_figures(engine, tokenizer, task, template, cfg, problems, seed, plain=result)
    if cfg.forgetting:
        out["forgetting"] = forgetting_figures(engine, model, tokenizer, template, cfg.max_new_tokens, cfg.batch_size)
    return out
