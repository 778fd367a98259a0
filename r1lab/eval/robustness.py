"""Robustness: accuracy on perturbed problems beside the plain ones.

Each name in ``eval.robustness`` is one of the task's perturbations (``Task.perturbations``: the
numbers reordered or renumbered, a distractor sentence, other wording; each task's module says
which it has and how its gold answers stay right). Every perturbed set is the evaluated problems
changed by that perturbation (seeded by the evaluation's seed), generated and scored as the plain
evaluation is: one greedy completion and ``eval.samples`` samples per problem, drawn with the
same seed as the plain samples (so a difference comes from the prompts, not from other draws).

eval.json's ``robustness``::

    {"plain": {"greedy_accuracy", "sampled_accuracy"},
     "perturbed": {name: {"greedy_accuracy", "sampled_accuracy", "greedy_drop", "sampled_drop",
                          "changed_share", "num_problems"}}}

``*_drop`` is plain minus perturbed (positive: the perturbation costs accuracy); ``changed_share``
the share of problems whose question text the perturbation changed (arith's ``reorder`` leaves
``a - b`` as it is, math's ``names`` changes only problems naming someone).
"""
from __future__ import annotations

from typing import Any, Sequence

from datasets import Dataset

from r1lab.config.errors import ConfigError
from r1lab.config.schema import EvalConfig
from r1lab.eval.evaluate import generate_rollouts
from r1lab.rollout.engine import RolloutEngine, SamplingParams
from r1lab.tasks import Task


def check_perturbations(names: Sequence[str], task: Task, at: str = "eval.robustness") -> None:
    """Every name is one of ``task``'s perturbations, none twice; ``ConfigError`` naming the field otherwise."""
    unknown = [n for n in names if n not in task.perturbations]
    if unknown:
        valid = ", ".join(task.perturbations) or "none (this task defines no perturbations; set it to [])"
        raise ConfigError(f"{at}={list(names)}: task {task.name!r} has no perturbation {', '.join(map(repr, unknown))}; valid: {valid}")
    if len(set(names)) != len(names):
        raise ConfigError(f"{at}={list(names)} names a perturbation twice")


def accuracy_of(engine: RolloutEngine, tokenizer, task: Task, template: str, cfg: EvalConfig, problems: Dataset,
                seed: int) -> dict[str, float]:
    """Greedy and sampled accuracy of ``problems``, generated as the plain evaluation generates them."""
    greedy = generate_rollouts(engine, tokenizer, task, template, problems, 1, SamplingParams(cfg.max_new_tokens, temperature=0.0),
                               cfg.batch_size, tools=cfg.tools)
    params = SamplingParams(cfg.max_new_tokens, cfg.temperature, cfg.top_p)
    sampled = generate_rollouts(engine, tokenizer, task, template, problems, cfg.samples, params, cfg.batch_size, seed, tools=cfg.tools)
    return {"greedy_accuracy": float(greedy.correct.mean()), "sampled_accuracy": float(sampled.correct.mean())}


def changed_share(task: Task, plain: Dataset, perturbed: Dataset) -> float:
    """Share of problems whose question text differs between ``plain`` and ``perturbed``."""
    if len(plain) != len(perturbed):
        raise ValueError(f"a perturbation returned {len(perturbed)} rows for {len(plain)} problems")
    if not len(plain):
        return 0.0
    return sum(task.question(a) != task.question(b) for a, b in zip(plain, perturbed)) / len(plain)


def robustness_figures(engine: RolloutEngine, tokenizer, task: Task, template: str, cfg: EvalConfig, problems: Dataset,
                       seed: int = 0, plain: dict[str, Any] | None = None) -> dict[str, Any]:
    """eval.json's ``robustness`` (module docstring) for the perturbations ``cfg.robustness``;
    ``plain``: the plain evaluation's figures of ``problems`` when already computed (else generated)."""
    check_perturbations(cfg.robustness, task)
    if plain is None:
        plain = accuracy_of(engine, tokenizer, task, template, cfg, problems, seed)
    base = {"greedy_accuracy": float(plain["greedy_accuracy"]), "sampled_accuracy": float(plain["sampled_accuracy"])}
    perturbed = {}
    for name in cfg.robustness:
        rows = task.perturb(name, problems, seed)
        fig: dict[str, Any] = accuracy_of(engine, tokenizer, task, template, cfg, rows, seed)
        fig["greedy_drop"] = base["greedy_accuracy"] - fig["greedy_accuracy"]
        fig["sampled_drop"] = base["sampled_accuracy"] - fig["sampled_accuracy"]
        fig["changed_share"] = changed_share(task, problems, rows)
        fig["num_problems"] = len(rows)
        perturbed[name] = fig
    return {"plain": base, "perturbed": perturbed}
