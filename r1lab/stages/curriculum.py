"""Which training prompts each GRPO sampling round draws: today's shuffled stream, or a curriculum.

A *sampler* answers ``indices(draw)``: the ``prompts_per_step`` (global) train-row indices of
sampling round ``draw``; every rank computes the same answer and takes its slice, so
data-parallel ranks draw one prompt set between them, as without a curriculum. Three modes
(``stages.<grpo>.curriculum.mode``, the `CURRICULA` registry; the loop never branches on it):

* ``none`` (default): `step_indices`, consecutive slices of per-epoch permutations: the exact
  prompts r1lab has always drawn.
* ``difficulty``: each epoch walks the train split from easy to hard (curriculum learning, Bengio
  et al., 2009), shuffled within each level (a fresh shuffle per epoch). The level is the task's
  difficulty label (``task.analysis.difficulty``, the labels evaluation reports), ordered by
  ``curriculum.order`` or inferred (easy < medium < hard, then labels by their first number,
  then the rest alphabetically), or a numeric column of the rows (``curriculum.column``, low =
  easy). Stateless: the prompts of a round are a function of the round alone.
* ``adaptive``: reward-adaptive sampling. A running success estimate ``p`` per prompt (an
  exponential moving average of its groups' mean correctness, starting at ``curriculum.prior``)
  weights each round's draw, without replacement, by ``p (1 - p) + floor``: highest for prompts
  solved about half the time, whose groups have the most varied rewards and so the largest
  group-relative advantages (the same argument as DAPO's dynamic sampling, made before sampling
  instead of after); ``floor`` keeps solved and hopeless prompts in play. The estimates, the
  rounds drawn but not yet consumed (separate placement samples ahead) and the record of drawn
  prompts are the sampler's state, saved with every resumable checkpoint (exact resume).

What a round drew is observed (`seen`) as the rounds are consumed, and `sync` ends the step: the
adaptive sampler gathers every rank's observations in rank order (one collective a step), so all
ranks hold the same estimates; it returns the step's ``curriculum/*`` figures. Under dynamic
sampling with several ranks a rank may consume more rounds in a step than another (as without a
curriculum); each observation carries its prompts' indices, so the estimates stay right.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Optional

import numpy as np
from datasets import Dataset

from r1lab.engine import dist
from r1lab.engine.seeds import derive_seed
from r1lab.registry import Registry
from r1lab.rollout.groups import Rollout
from r1lab.stages.context import ceil_div, step_indices

CURRICULA: Registry[type] = Registry("curriculum mode")  # mode -> PromptSampler subclass
LEVEL_WORDS = {"easy": 0, "medium": 1, "hard": 2}  # the countdown task's labels, in order


@dataclass
class CurriculumConfig:
    """How a GRPO stage picks each round's prompts (module docstring of `r1lab.stages.curriculum`)."""

    mode: str = "none"  # none (today's shuffled stream) | difficulty (easy -> hard each epoch) | adaptive (weight p(1-p) + floor)
    column: Optional[str] = None  # difficulty: numeric column of the train rows ordering them (low = easy); None = the task's labels
    order: list[str] = field(default_factory=list)  # difficulty: the task's labels from easy to hard; [] = inferred
    prior: float = 0.5  # adaptive: success estimate of a prompt not yet sampled, in [0, 1] (0.5 = the largest weight: unseen first)
    ema: float = 0.5  # adaptive: weight of a new group's success in the running estimate, in (0, 1] (1 = last group only)
    floor: float = 0.01  # adaptive: added to every weight p(1-p) (max 0.25), > 0: solved and hopeless prompts are still drawn

    def check(self, where: str) -> None:
        """Start-up checks; ``where``: the field's path, e.g. ``stages.grpo.curriculum``."""
        if self.mode not in CURRICULA:
            raise ValueError(f"{where}.mode={self.mode!r} is not registered; valid: {', '.join(CURRICULA.names())}")
        if not 0.0 <= self.prior <= 1.0:
            raise ValueError(f"{where}.prior={self.prior}: a success rate, must be in [0, 1]")
        if not 0.0 < self.ema <= 1.0:
            raise ValueError(f"{where}.ema={self.ema}: must be in (0, 1]; 1 keeps only each prompt's last group")
        if self.floor <= 0:
            raise ValueError(f"{where}.floor={self.floor}: must be > 0, else prompts at p=0 or 1 can never be drawn again")


class PromptSampler:
    """Base (and ``none``): the shuffled stream of `step_indices`; no state, no figures.

    ``cfg``: the curriculum config; ``train``: the train split; ``task``: its `Task`;
    ``prompts_per_step``: prompts a round draws, all ranks; ``seed``: the stage's seed;
    ``where``: the config path for error messages."""

    def __init__(self, cfg: CurriculumConfig, train: Dataset, task, prompts_per_step: int, seed: int,
                 where: str = "curriculum") -> None:
        self.cfg, self.num_rows, self.batch, self.seed = cfg, len(train), prompts_per_step, seed
        self.correctness = task.correctness_reward if task is not None else None
        self.step_draws: list[int] = []  # rounds consumed this step (figures)

    def indices(self, draw: int) -> np.ndarray:
        """``[prompts_per_step]`` train-row indices of round ``draw``, the same on every rank."""
        return step_indices(draw, self.batch, self.num_rows, self.seed)

    def seen(self, draw: int, part: Rollout) -> None:
        """Round ``draw`` was consumed on this rank; ``part``: its groups, before any are dropped."""
        self.step_draws.append(draw)

    def sync(self) -> dict[str, float]:
        """End of a step (every rank calls it): the step's ``curriculum/*`` figures."""
        self.step_draws = []
        return {}

    def drawn_ids(self, train: Dataset, draws: int) -> list[str]:
        """Ids of every prompt the first ``draws`` rounds drew (all ranks), first-draw order, once each."""
        ids, seen = train["id"], {}
        for d in range(draws):
            for i in self.indices(d):
                seen.setdefault(ids[int(i)], None)
        return list(seen)

    def state_dict(self) -> dict[str, Any]:
        """JSON state for a resumable checkpoint ({}: nothing to save)."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass


CURRICULA.register("none", PromptSampler)


def level_order(labels: list[str], order: list[str] | None = None) -> list[str]:
    """The distinct ``labels`` from easy to hard: ``order`` when given, else easy < medium < hard,
    then labels by their first number ("Level 2", "5 numbers"), then the rest alphabetically.

    >>> level_order(["hard", "easy", "5 numbers", "medium"])
    ['easy', 'medium', 'hard', '5 numbers']
    >>> level_order(["Level 10", "Level 2", "unknown"])
    ['Level 2', 'Level 10', 'unknown']
    """
    distinct = sorted(set(labels))
    if order:
        missing = [lbl for lbl in distinct if lbl not in order]
        if missing:
            raise ValueError(f"curriculum.order={list(order)} lacks the labels {missing}; the train split's labels are {distinct}")
        return [lbl for lbl in order if lbl in distinct]

    def key(label: str) -> tuple:
        number = re.search(r"\d+(\.\d+)?", label)
        if label in LEVEL_WORDS:
            return (0, LEVEL_WORDS[label], label)
        return (1, float(number.group()), label) if number else (2, 0.0, label)

    return sorted(distinct, key=key)


def difficulty_levels(cfg: CurriculumConfig, train: Dataset, task) -> np.ndarray:
    """``[num_rows]`` difficulty of each train row (higher = harder): ``cfg.column``'s value, or
    the position of the task's label in `level_order`."""
    if cfg.column is not None:
        if cfg.column not in train.column_names:
            raise ValueError(f"curriculum.column={cfg.column!r} is not a column of the train split; it has {train.column_names}")
        return np.asarray(train[cfg.column], dtype=np.float64)
    labels = task.analysis.difficulty(train[:])
    rank = {lbl: i for i, lbl in enumerate(level_order(labels, cfg.order))}
    return np.asarray([rank[lbl] for lbl in labels], dtype=np.float64)


def easy_to_hard(levels: np.ndarray, seed: int, epoch: int) -> np.ndarray:
    """``[num_rows]`` one epoch's order: row indices by ascending level, shuffled within each level.

    >>> easy_to_hard(np.array([2.0, 0.0, 1.0, 0.0]), seed=0, epoch=0)[2:].tolist()
    [2, 0]
    """
    rng = np.random.default_rng(derive_seed(seed, "grpo/curriculum_epoch", epoch))
    tiebreak = rng.permutation(len(levels))  # a random rank within each level: the shuffle
    return np.lexsort((tiebreak, levels))


class DifficultySampler(PromptSampler):
    """``difficulty``: each epoch easy -> hard (`easy_to_hard`), ``prompts_per_step`` at a time."""

    def __init__(self, cfg: CurriculumConfig, train: Dataset, task, prompts_per_step: int, seed: int,
                 where: str = "curriculum") -> None:
        super().__init__(cfg, train, task, prompts_per_step, seed, where)
        try:
            self.levels = difficulty_levels(cfg, train, task)  # [num_rows]
        except (ValueError, NotImplementedError) as err:
            raise ValueError(f"{where} (mode=difficulty): {err}") from None
        self._epochs: dict[int, np.ndarray] = {}  # epoch -> its order, cached (labels are costly, orders cheap)

    def epoch_order(self, epoch: int) -> np.ndarray:
        if epoch not in self._epochs:
            self._epochs = {epoch: easy_to_hard(self.levels, self.seed, epoch)}  # rounds go forward: keep one
        return self._epochs[epoch]

    def indices(self, draw: int) -> np.ndarray:
        start, stop, n = draw * self.batch, (draw + 1) * self.batch, self.num_rows
        parts = [self.epoch_order(e)[max(start - e * n, 0) : min(stop - e * n, n)] for e in range(start // n, ceil_div(stop, n))]
        return np.concatenate(parts)

    def sync(self) -> dict[str, float]:
        drawn = np.concatenate([self.indices(d) for d in self.step_draws]) if self.step_draws else np.zeros(0, dtype=int)
        self.step_draws = []
        return {"curriculum/mean_difficulty": float(self.levels[drawn].mean())} if drawn.size else {}


CURRICULA.register("difficulty", DifficultySampler)


def adaptive_weights(success: np.ndarray, floor: float) -> np.ndarray:
    """``[num_rows]`` sampling probabilities from success estimates: ``p (1 - p) + floor``, normalised.

    >>> adaptive_weights(np.array([0.5, 1.0, 0.0]), 0.05).round(6).tolist()
    [0.75, 0.125, 0.125]
    """
    w = success * (1.0 - success) + floor
    return w / w.sum()


def updated_success(success: np.ndarray, rows: list[int], values: list[float], ema: float) -> np.ndarray:
    """``success`` after the groups of ``rows`` scored ``values`` (mean correctness), in order:
    ``p <- (1 - ema) p + ema v`` per group (a prompt twice in a step is updated twice)."""
    out = success.copy()
    for i, v in zip(rows, values):
        out[i] = (1.0 - ema) * out[i] + ema * v
    return out


class AdaptiveSampler(PromptSampler):
    """``adaptive``: each round ``prompts_per_step`` distinct prompts, drawn with `adaptive_weights`."""

    def __init__(self, cfg: CurriculumConfig, train: Dataset, task, prompts_per_step: int, seed: int,
                 where: str = "curriculum") -> None:
        super().__init__(cfg, train, task, prompts_per_step, seed, where)
        if prompts_per_step > self.num_rows:
            raise ValueError(f"{where}.mode=adaptive draws prompts_per_step={prompts_per_step} distinct prompts a round; "
                             f"the train split has {self.num_rows}: lower prompts_per_step or use mode=none")
        self.success = np.full(self.num_rows, cfg.prior)  # [num_rows] running success estimates
        self.groups = np.zeros(self.num_rows, dtype=np.int64)  # [num_rows] groups observed per prompt
        self.pending: dict[int, list[int]] = {}  # draw -> its indices, drawn but not consumed (fixed once drawn)
        self.drawn: dict[int, None] = {}  # every consumed prompt, first-draw order
        self.observed: list[tuple[list[int], list[float]]] = []  # this rank's this step: (rows, success)

    def indices(self, draw: int) -> np.ndarray:
        if draw not in self.pending:  # drawn once: a round sampled ahead keeps the prompts it was drawn with
            rng = np.random.default_rng(derive_seed(self.seed, "grpo/curriculum_draw", draw))
            picked = rng.choice(self.num_rows, size=self.batch, replace=False, p=adaptive_weights(self.success, self.cfg.floor))
            self.pending[draw] = [int(i) for i in picked]
        return np.asarray(self.pending[draw])

    def seen(self, draw: int, part: Rollout) -> None:
        super().seen(draw, part)
        success = part.components[self.correctness].view(-1, part.group_size).float().mean(1).clamp(0, 1).tolist()  # [groups]
        start = dist.rank() * len(success)
        self.observed.append((self.indices(draw)[start : start + len(success)].tolist(), success))
        self.pending.pop(draw)

    def sync(self) -> dict[str, float]:
        gathered = [obs for rank_obs in dist.all_gather_objects(self.observed) for obs in rank_obs]  # rank order
        self.observed, self.step_draws = [], []
        rows = [i for r, _ in gathered for i in r]
        if not rows:
            return {}
        before = float(self.success[rows].mean())  # what the draw believed of the prompts it picked
        self.success = updated_success(self.success, rows, [v for _, vs in gathered for v in vs], self.cfg.ema)
        np.add.at(self.groups, rows, 1)
        self.drawn.update(dict.fromkeys(rows))
        return {"curriculum/success_estimate": before, "curriculum/seen_fraction": float((self.groups > 0).mean())}

    def drawn_ids(self, train: Dataset, draws: int) -> list[str]:
        ids = train["id"]
        return [ids[i] for i in self.drawn]

    def state_dict(self) -> dict[str, Any]:
        return {"success": self.success.tolist(), "groups": self.groups.tolist(),
                "pending": {str(d): idx for d, idx in self.pending.items()}, "drawn": list(self.drawn)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if not state:
            return
        if len(state["success"]) != self.num_rows:
            raise ValueError(f"the checkpoint's curriculum state covers {len(state['success'])} prompts; the train split has "
                             f"{self.num_rows}: resume with the same task data")
        self.success = np.asarray(state["success"], dtype=np.float64)
        self.groups = np.asarray(state["groups"], dtype=np.int64)
        self.pending = {int(d): [int(i) for i in idx] for d, idx in state["pending"].items()}
        self.drawn = dict.fromkeys(int(i) for i in state["drawn"])


CURRICULA.register("adaptive", AdaptiveSampler)


def build_sampler(cfg: CurriculumConfig, train: Dataset, task, prompts_per_step: int, seed: int,
                  where: str = "curriculum") -> PromptSampler:
    """The sampler of ``cfg.mode`` (`CURRICULA`) over ``train``."""
    return CURRICULA.get(cfg.mode)(cfg, train, task, prompts_per_step, seed, where)
