"""Reward registry and weighted combination.

A reward is a plain batched function: completions plus dataset columns in, a float32 tensor of
shape ``[N]`` out. Every registered reward has the same signature::

    fn(completions: list[str], **columns: list) -> torch.Tensor  # [N] float32

Each reward takes the dataset columns it needs by name (``numbers`` and ``target`` for Countdown,
``answer`` for math) and ignores the rest through ``**columns``. Config chooses rewards by name
with weights, e.g. ``rewards: {countdown: 1.0, format: 0.1}``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Mapping, Sequence

import torch

RewardFn = Callable[..., torch.Tensor]

REWARDS: dict[str, RewardFn] = {}


def register_reward(name: str) -> Callable[[RewardFn], RewardFn]:
    """Decorator: make ``fn`` available to configs under ``name``."""

    def wrap(fn: RewardFn) -> RewardFn:
        if name in REWARDS:
            raise ValueError(f"reward {name!r} is registered twice")
        REWARDS[name] = fn
        return fn

    return wrap


def get_reward(name: str) -> RewardFn:
    if name not in REWARDS:
        raise KeyError(f"unknown reward {name!r}; valid rewards: {', '.join(sorted(REWARDS))}")
    return REWARDS[name]


@dataclass
class RewardOutput:
    total: torch.Tensor  # [N] float32, weighted sum of the components
    components: dict[str, torch.Tensor]  # name -> [N] float32, unweighted


def combine_rewards(
    weights: Mapping[str, float],
    completions: Sequence[str],
    columns: Mapping[str, Sequence],
) -> RewardOutput:
    """Score ``completions`` with every reward named in ``weights`` and sum them, weighted.

    ``columns`` holds the dataset columns aligned with ``completions`` (one entry per completion).
    """
    completions = list(completions)
    n = len(completions)
    total = torch.zeros(n, dtype=torch.float32)
    components: dict[str, torch.Tensor] = {}
    for name, weight in weights.items():
        values = get_reward(name)(completions, **columns)
        if values.shape != (n,):
            raise ValueError(f"reward {name!r} returned shape {tuple(values.shape)}, expected ({n},)")
        values = values.to(torch.float32)
        components[name] = values
        total += float(weight) * values
    return RewardOutput(total=total, components=components)
