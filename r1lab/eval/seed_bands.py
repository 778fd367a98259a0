"""Arms of a sweep over seeds: group runs whose overrides differ only in their seeds, and report
each figure's mean and spread over the seeds (``r1lab-compare``'s seed bands).

* **Arm**: the runs of a sweep whose command-line overrides are equal once the seed-like keys are
  dropped (``seed_keys``, glob patterns over override keys: by default ``seed`` and ``*.seed``,
  e.g. ``stages.grpo.seed``). ``r1lab -m recipe=ablation_kl stages.grpo.kl.beta=0.0,0.04
  seed=0,1,2`` has two arms of three runs.
* **Figures** (``metrics``): any number in a run's eval.json, by dotted path: ``greedy_accuracy``,
  ``pass_at_k.4``, ``by_difficulty.hard.greedy_accuracy``, ``process.true_claim_share``; the
  shorthands ``pass@K``, ``avg@K``, ``maj@K`` name ``pass_at_k.K`` ... A key that itself holds a
  dot is found too (the longest key that matches is taken first).
* **Curves** (``curves``): any metric a stage logs in its metrics.jsonl (``reward``,
  ``response_length``, ``reward/process_validity``), per optimizer step.
* **Spread**: over the n seeds of an arm, ``mean``, ``std`` (the sample standard deviation,
  ddof=1: an estimate of the seed-to-seed spread; ``None`` when n < 2), ``min``, ``max``. A run
  that lacks the figure (unfinished) is left out of its arm's n, which is reported.

Pure functions over the loaded runs (``r1lab.eval.compare.SweepRun``); the files are read there.
"""
from __future__ import annotations

import fnmatch
import math
import re
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np

SEED_KEYS = ("seed", "*.seed")  # override keys that name a seed: averaged over, not an arm
BANDS = ("minmax", "std")  # the shaded band of a curve: min..max over seeds, or mean ± one sample std
_SHORTHAND = re.compile(r"(pass|avg|maj)@(\d+)")


@dataclass
class Arm:
    """The runs of one arm: ``overrides`` without the seed-like keys, the runs' indices in the
    sweep, and each run's seed overrides (for labels)."""

    overrides: dict[str, str]
    runs: list[int] = field(default_factory=list)  # indices into the sweep's runs, in job order
    seeds: list[str] = field(default_factory=list)  # "seed=0" ... per run, in the same order


def is_seed_key(key: str, patterns: Sequence[str] = SEED_KEYS) -> bool:
    """Whether override ``key`` names a seed (matches one of ``patterns``, ``fnmatch`` globs).

    >>> is_seed_key("seed"), is_seed_key("stages.grpo.seed"), is_seed_key("stages.grpo.kl.beta")
    (True, True, False)
    """
    return any(fnmatch.fnmatchcase(key, p) for p in patterns)


def group_arms(overrides: Sequence[Mapping[str, str]], patterns: Sequence[str] = SEED_KEYS) -> list[Arm]:
    """The arms of runs with these ``overrides``, in first-seen order (module docstring)."""
    arms: dict[tuple, Arm] = {}
    for i, ov in enumerate(overrides):
        rest = {k: v for k, v in ov.items() if not is_seed_key(k, patterns)}
        seeds = ", ".join(f"{k}={v}" for k, v in ov.items() if is_seed_key(k, patterns))
        arm = arms.setdefault(tuple(sorted(rest.items())), Arm(rest))
        arm.runs.append(i)
        arm.seeds.append(seeds)
    return list(arms.values())


def arm_keys(arms: Sequence[Arm]) -> list[str]:
    """The override keys whose value differs between arms, in first-seen order."""
    keys: list[str] = []
    for a in arms:
        keys += [k for k in a.overrides if k not in keys]
    return [k for k in keys if len({a.overrides.get(k) for a in arms}) > 1]


def arm_label(arm: Arm, keys: Sequence[str]) -> str:
    """``kl.beta=0.04, template=direct``: the arm's distinguishing values (last key part)."""
    return ", ".join(f"{k.split('.')[-1]}={arm.overrides.get(k, '–')}" for k in keys) or "all runs"


def _walk(node: Any, parts: list[str]) -> Any:
    """The value at ``parts`` below ``node``, a key that holds dots taken whole (longest first)."""
    if not parts:
        return node
    if not isinstance(node, Mapping):
        return None
    for cut in range(len(parts), 0, -1):
        key = ".".join(parts[:cut])
        if key in node:
            found = _walk(node[key], parts[cut:])
            if found is not None:
                return found
    return None


def figure(result: Mapping[str, Any], path: str) -> float | None:
    """The number at dotted ``path`` of an eval.json (``pass@4`` = ``pass_at_k.4``), else None.

    >>> figure({"pass_at_k": {"4": 0.5}, "by_difficulty": {"hard": {"pass@k": 0.25}}}, "pass@4")
    0.5
    >>> figure({"by_difficulty": {"hard": {"pass@k": 0.25}}}, "by_difficulty.hard.pass@k")
    0.25
    """
    short = _SHORTHAND.fullmatch(path)
    if short:
        path = f"{short.group(1)}_at_k.{short.group(2)}"
    value = _walk(result, path.split("."))
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


def figure_paths(result: Mapping[str, Any], prefix: str = "") -> list[str]:
    """Every dotted path of a number in an eval.json (what ``metrics`` may name), ``ci95`` aside."""
    out: list[str] = []
    for key, value in result.items():
        path = f"{prefix}{key}"
        if isinstance(value, Mapping) and key != "ci95":
            out += figure_paths(value, f"{path}.")
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            out.append(path)
    return out


def spread(values: Sequence[float]) -> dict[str, float | int | None]:
    """``n``, ``mean``, ``std`` (sample, ddof=1; None when n < 2), ``min``, ``max`` of ``values``
    (NaN values left out; all None when none is left).

    >>> spread([1.0, 3.0, 2.0])
    {'n': 3, 'mean': 2.0, 'std': 1.0, 'min': 1.0, 'max': 3.0}
    """
    v = np.asarray([x for x in values if x is not None and not math.isnan(x)], dtype=float)
    if not v.size:
        return {"n": 0, "mean": None, "std": None, "min": None, "max": None}
    std = float(np.std(v, ddof=1)) if v.size > 1 else None
    return {"n": int(v.size), "mean": float(v.mean()), "std": std, "min": float(v.min()), "max": float(v.max())}


def curve_spread(curves: Sequence[Mapping[int, float]]) -> dict[str, list]:
    """Per-step :func:`spread` over runs' curves (``{step: value}`` each): ``step`` (every step
    any run logged, sorted) and, aligned with it, ``n``, ``mean``, ``std``, ``min``, ``max``."""
    steps = sorted({s for c in curves for s in c})
    out: dict[str, list] = {"step": steps, "n": [], "mean": [], "std": [], "min": [], "max": []}
    for s in steps:
        stats = spread([c[s] for c in curves if s in c])
        for name in ("n", "mean", "std", "min", "max"):
            out[name].append(stats[name])
    return out


def band(curve: Mapping[str, list], kind: str) -> tuple[list[float], list[float]]:
    """The shaded band of a :func:`curve_spread`: (lower, upper) per step, ``minmax`` (min..max
    over seeds) or ``std`` (mean ± one sample std; the mean itself where n < 2)."""
    if kind not in BANDS:
        raise ValueError(f"band={kind!r}; valid: {', '.join(BANDS)}")
    if kind == "minmax":
        return list(curve["min"]), list(curve["max"])
    sd = [0.0 if s is None else s for s in curve["std"]]
    return [m - d for m, d in zip(curve["mean"], sd)], [m + d for m, d in zip(curve["mean"], sd)]


__all__ = ["BANDS", "SEED_KEYS", "Arm", "arm_keys", "arm_label", "band", "curve_spread", "figure", "figure_paths",
           "group_arms", "is_seed_key", "spread"]
