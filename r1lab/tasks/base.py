"""What every task is: :class:`Task`, :class:`TaskAnalysis` and the registry :data:`TASKS`.

A :class:`Task` carries everything the rest of r1lab needs to know about its domain, so stages,
rollouts and evaluation never branch on a task's name: its splits and file loader, how a row
becomes a question, the reward that decides correctness (with it, the answer extraction policy)
and the dataset columns it reads, the evaluation's analysis of answers (:class:`TaskAnalysis`:
maj@k answer keys, answer distance, difficulty, each final answer's value), the column holding a
gold answer text, the text that opens an answer, and its perturbations (robustness evaluation:
name -> ``fn(rows, seed) -> rows``, each perturbed row keeping a right gold answer). Where an answer is in a response is one policy for every task
(``r1lab.rewards.spans``).

A task is one module that declares its settings, a ``TaskConfig`` subclass, and registers its
builder, ``config -> Task``, with it under the name configs use (``task=<name>``)::

    @dataclass
    class CountdownTaskConfig(TaskConfig):
        name: str = "countdown"
        num_train: int = 20000

    @register_task("countdown", CountdownTaskConfig)
    def build(cfg: CountdownTaskConfig) -> Task: ...

The schema is the Hydra node of the ``task`` config group's option ``<name>`` (``task_schemas``,
stored by ``r1lab.config.store``), so ``task.num_train=64`` is typed by the chosen task and a
task with no settings of its own registers with ``TaskConfig`` itself.

The builders of r1lab's own tasks are ``r1lab.tasks.countdown``, ``r1lab.tasks.math`` and
``r1lab.tasks.arith`` (the package imports each of its modules, so a module there registers itself
by being there); a package outside r1lab registers its tasks from an ``r1lab.plugins`` entry point
(``r1lab.registry``), which every lookup of :data:`TASKS` loads first.
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields, is_dataclass
from fractions import Fraction
from typing import Any, Callable, Mapping, NamedTuple, Sequence

import numpy as np
from datasets import Dataset
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from r1lab.config.schema import TaskConfig
from r1lab.registry import Registry

DISTANCE_CAP = 100.0  # answer distances are capped here; an unusable answer counts as the cap


class FinalAnswer(NamedTuple):
    """What a response's final answer states, as faithfulness compares it with the reasoning
    (``r1lab.eval.faithfulness``)."""

    value: Fraction | None  # its exact value; None: no answer, or not a number
    expression: str | None  # whitespace-free expression it gives (Countdown); None: a bare value


def number_value(text: str | None) -> Fraction | None:
    """``text`` as an exact number (``"22"``, ``"-3"``, ``"7/2"``, ``"0.5"``), else ``None``.

    >>> number_value("7/2"), number_value("x")
    (Fraction(7, 2), None)
    """
    if text is None:
        return None
    try:
        return Fraction(text.strip())
    except (ValueError, ZeroDivisionError):
        return None


# name -> fn(rows, seed) -> rows: the same problems reworded, reordered or padded, each with a right
# gold answer (robustness evaluation, ``r1lab.eval.robustness``); ``rows`` a split's ``Dataset``
Perturbation = Callable[[Dataset, int], Dataset]


class TaskAnalysis:
    """The task-specific part of the evaluation's analysis (one per task; eval calls these three).

    ``responses`` are full responses as the rewards see them (``full_response``: the template's
    ``<think>`` included), read with the one answer-span policy (``r1lab.rewards.spans``);
    ``rows`` hold the dataset columns aligned with them.
    """

    distance_cap = DISTANCE_CAP

    def answer_keys(self, responses: Sequence[str], rows: dict[str, list]) -> list[str | None]:
        """One normalised answer per response, the key maj@k votes on (``None``: abstains)."""
        raise NotImplementedError(f"{type(self).__name__} has no answer keys: give the Task an analysis")

    def distances(self, responses: Sequence[str], rows: dict[str, list]) -> np.ndarray | None:
        """``[N]`` distance of each answer to the right one (at most ``distance_cap``), or
        ``None`` when the task has none."""
        return None

    def difficulty(self, rows: dict[str, list]) -> list[str]:
        """One difficulty label per problem."""
        raise NotImplementedError(f"{type(self).__name__} has no difficulty labels: give the Task an analysis")

    def final_answers(self, responses: Sequence[str], rows: dict[str, list]) -> list[FinalAnswer]:
        """What each response's final answer states (faithfulness); by default its answer key
        read as a number, with no expression."""
        return [FinalAnswer(number_value(key), None) for key in self.answer_keys(responses, rows)]


@dataclass
class Task:
    name: str
    splits: dict[str, Dataset]  # train, test (held out), and task-specific extras such as test_hard
    correctness_reward: str  # registered reward that says whether an answer is right
    reward_columns: tuple[str, ...]  # dataset columns the rewards read
    question: Callable[[dict[str, Any]], str]  # row -> question text
    load_file: Callable[..., Dataset] | None = None  # (path, field=, split=, subset=, columns=) -> rows of this task's layout
    answer_opener: str = "<answer>"  # the text that opens a final answer (the perplexity bridge appends it)
    analysis: TaskAnalysis = field(default_factory=TaskAnalysis)  # answer keys, distances, difficulty (eval)
    gold_column: str = "answer"  # the column holding a gold answer text (the perplexity bridge scores it)
    perturbations: dict[str, Perturbation] = field(default_factory=dict)  # robustness: name -> fn(rows, seed) -> rows

    def perturb(self, name: str, rows: Dataset, seed: int) -> Dataset:
        """``rows`` perturbed by ``name``; ``KeyError`` listing this task's perturbations otherwise."""
        if name not in self.perturbations:
            raise KeyError(f"task {self.name!r} has no perturbation {name!r}; valid: {', '.join(self.perturbations) or 'none'}")
        return self.perturbations[name](rows, seed)

    def split(self, name: str) -> Dataset:
        if name not in self.splits:
            raise KeyError(f"task {self.name!r} has no split {name!r}; splits: {', '.join(self.splits)}")
        return self.splits[name]

    def columns(self, rows: dict[str, list]) -> dict[str, list]:
        """The reward columns of a batch of rows (a ``Dataset`` slice)."""
        return {c: rows[c] for c in self.reward_columns}


TaskBuilder = Callable[[TaskConfig], Task]

# task.name -> builder, with meta ``schema`` (its TaskConfig subclass). `in`, `names()` and
# iteration list r1lab's tasks and the plugins' alike.
TASKS: Registry[TaskBuilder] = Registry("task")


def register_task(name: str, schema: type = TaskConfig) -> Callable[[TaskBuilder], TaskBuilder]:
    """Decorator: make the builder ``fn(cfg: schema) -> Task`` the task ``name`` (``task=<name>``),
    configured by ``schema``: ``TaskConfig`` or a dataclass subclass holding the task's settings."""
    if not (isinstance(schema, type) and is_dataclass(schema) and issubclass(schema, TaskConfig)):
        raise ValueError(
            f"task {name!r}: schema {getattr(schema, '__name__', schema)!r} is not a dataclass subclass of "
            "r1lab.config.schema.TaskConfig"
        )
    return TASKS.register(name, schema=schema)


def task_schemas() -> dict[str, type]:
    """Task name -> its config schema, for every registered task."""
    return {name: TASKS.meta(name)["schema"] for name in TASKS.names()}


def typed_task(cfg: TaskConfig | Mapping[str, Any]) -> TaskConfig:
    """``cfg`` (a ``TaskConfig`` of any schema, a mapping or an OmegaConf node) as an instance of
    the schema its ``name`` registered; ``ValueError`` naming the unknown name, or the key that
    task has not and the fix, otherwise. A config of the right schema is returned as it is."""
    name = cfg.get("name") if isinstance(cfg, Mapping) else getattr(cfg, "name", None)
    if name not in TASKS:
        raise ValueError(f"task.name={name!r}; valid: {', '.join(TASKS)}")
    schema = TASKS.meta(name)["schema"]
    if isinstance(cfg, schema):
        return cfg
    try:
        raw = OmegaConf.to_container(OmegaConf.structured(cfg), resolve=True)  # plain: merged onto the schema by key
        return OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(schema), raw))
    except OmegaConfBaseException as err:
        valid = ", ".join(f.name for f in fields(schema))
        raise ValueError(
            f"task ({name}, {schema.__module__}.{schema.__name__}): {str(err).splitlines()[0]}; valid keys: {valid}. "
            f"Choose a task with task={name} (the config group), not task.name"
        ) from None


def saved_task_config(raw: Mapping[str, Any]) -> DictConfig:
    """A saved run's ``task`` (its ``config.yaml``) as a node of its task's schema.

    Runs written before task settings moved into each task's schema kept them under
    ``task.<name>.*`` (``task.countdown.num_test``) beside every task's answer options; those read
    as the same settings, flat (``task.num_test``), the options other tasks have left out."""
    raw = OmegaConf.to_container(raw, resolve=True) if isinstance(raw, DictConfig) else dict(raw)
    name = raw.get("name")
    if name in TASKS and isinstance(raw.get(name), dict):  # the old layout
        own = {f.name for f in fields(TASKS.meta(name)["schema"])}
        raw = {**{k: v for k, v in raw.items() if k in own}, **raw[name]}
    return OmegaConf.structured(typed_task(raw))


def check_no_old_task_overrides(overrides: Sequence[str]) -> None:
    """``ValueError`` for a command-line override in the old layout (``task.countdown.num_train=64``),
    naming its flat spelling (``task.num_train=64``); Hydra would only say the key is not there."""
    for arg in overrides:
        key = arg.lstrip("+~").split("=", 1)[0]
        parts = key.split(".")
        if len(parts) >= 3 and parts[0] == "task" and parts[1] in TASKS:
            flat = ".".join(["task", *parts[2:]])
            raise ValueError(f"{key}: a task's settings are flat now, typed by the chosen task: write {flat} "
                             f"(with task={parts[1]})")


def build_task(cfg: TaskConfig) -> Task:
    """The task ``cfg.name`` built from ``cfg`` (typed by its schema: :func:`typed_task`), after
    the schema's own checks; ``ValueError`` naming the field and the fix otherwise."""
    cfg = typed_task(cfg)
    cfg.check()
    return TASKS[cfg.name](cfg)


def source_options(cfg: TaskConfig, which: str) -> dict[str, Any]:
    """Load options of ``task.<which>_file`` (which: train | test) for ``r1lab.data.files.load_source``."""
    return {
        "field": f"task.{which}_file",
        "split": getattr(cfg, f"{which}_split"),
        "subset": cfg.subset,
        "columns": cfg.columns,
        "option_fields": {"split": f"task.{which}_split", "subset": "task.subset", "columns": "task.columns"},
    }


def files_over(splits: dict[str, Dataset], cfg: TaskConfig, load_file: Callable[..., Dataset]) -> dict[str, Dataset]:
    """``splits`` with ``task.train_file`` / ``task.test_file``, where set, read in their place."""
    for which in ("train", "test"):
        path = getattr(cfg, f"{which}_file")
        if path:
            splits[which] = load_file(path, **source_options(cfg, which))
    return splits
