"""Advantage estimators for group-sampled RL (GRPO and friends).

Every estimator has the same signature::

    fn(rewards: Tensor[P, G], cfg: AdvantageConfig, *,
       lengths: Tensor[P, G] | None = None,     # int, completion lengths in tokens
       truncated: Tensor[P, G] | None = None,   # bool, completions cut at max_new_tokens
       ) -> Tensor[P, G]   # float32

``P`` prompts, ``G`` samples per prompt; row ``p`` holds the rewards of the ``G`` completions of
prompt ``p``. The advantage of a completion is later broadcast over its tokens. ``lengths`` and
``truncated`` are what per-sequence estimators need (a length penalty, overlong shaping); the
GRPO stage always passes them, every estimator accepts them, and those here ignore them. An
estimator that needs them fails when they are None.

Shared conventions (tested):

* A group whose rewards are all equal gives exactly ``0.0`` for every member of the group, for
  every estimator: such a group carries no learning signal, and we do not want ``eps``-noise or
  ``NaN`` from a ``0 / 0``. (``mean`` of ``G`` equal floats is not always bit-equal to them, so
  this is enforced explicitly, not left to arithmetic.)
* Standard deviations are **unbiased** (Bessel, ``N - 1``), as ``torch.std`` computes them and as
  TRL's GRPOTrainer and verl use them, so our advantages match theirs to the last digit. The
  DeepSeekMath paper does not say which it uses. A single sample has no spread: its std is 0.
* Divisions are by ``std + eps``; a denominator that is exactly 0 gives 0, never ``NaN``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import Tensor

from r1lab.registry import Registry

_SCALES = ("group", "batch", "none")


@dataclass
class AdvantageConfig:
    name: str = "group_mean"
    """Estimator in ``ADVANTAGES``: ``group_mean``, ``rloo`` or ``reinforce_pp``."""
    scale: str = "group"
    """``group_mean`` only: divide by the per-group reward std (``group``, GRPO), the std of all
    rewards of the step (``batch``) or nothing (``none``, Dr. GRPO, arXiv:2503.20783). Unitless."""
    eps: float = 1e-6
    """Added to every std before dividing, in reward units."""

    def __post_init__(self) -> None:
        if self.scale not in _SCALES:
            raise ValueError(f"AdvantageConfig.scale must be one of {_SCALES}, got {self.scale!r}")
        if self.eps < 0:
            raise ValueError(f"AdvantageConfig.eps must be >= 0, got {self.eps}")


AdvantageFn = Callable[..., Tensor]  # fn(rewards, cfg, *, lengths=None, truncated=None) -> [P, G]
ADVANTAGES: Registry[AdvantageFn] = Registry("advantage estimator")


def _std(x: Tensor, dim: int | None = None, keepdim: bool = False) -> Tensor:
    """Unbiased std; 0 (not NaN) when fewer than two elements are reduced."""
    if dim is None:
        return x.std() if x.numel() >= 2 else x.new_zeros(())
    if x.shape[dim] < 2:
        return torch.zeros_like(x.sum(dim=dim, keepdim=keepdim))
    return x.std(dim=dim, keepdim=keepdim)


def _divide(num: Tensor, den: Tensor) -> Tensor:
    """``num / den``, with 0 wherever ``den`` is 0."""
    safe = torch.where(den > 0, den, torch.ones_like(den))
    return torch.where(den > 0, num / safe, torch.zeros_like(num))


def _flat_groups(rewards: Tensor) -> Tensor:  # [P, 1] bool
    """Groups whose rewards are all equal."""
    return (rewards.amax(dim=1, keepdim=True) == rewards.amin(dim=1, keepdim=True))


def _centered(rewards: Tensor) -> Tensor:  # [P, G] float32
    """Reward minus its group mean; exactly 0 in groups whose rewards are all equal."""
    rewards = rewards.float()
    centered = rewards - rewards.mean(dim=1, keepdim=True)
    return centered.masked_fill(_flat_groups(rewards), 0.0)


def _check(rewards: Tensor) -> None:
    if rewards.dim() != 2:
        raise ValueError(f"rewards must be [P, G], got shape {tuple(rewards.shape)}")


@ADVANTAGES.register("group_mean")
def group_mean(rewards: Tensor, cfg: AdvantageConfig, *, lengths: Tensor | None = None, truncated: Tensor | None = None) -> Tensor:
    """GRPO: ``(r - mean_group(r)) / (std + eps)``, std chosen by ``cfg.scale``.

    ``scale="group"`` is GRPO (DeepSeekMath, arXiv:2402.03300); ``"batch"`` divides by the std of
    all ``P * G`` rewards (more robust when most groups have tiny spread); ``"none"`` is Dr. GRPO,
    which drops the division because it up-weights prompts that are too easy or too hard.
    """
    _check(rewards)
    centered = _centered(rewards)
    if cfg.scale == "none":
        return centered
    if cfg.scale == "group":
        std = _std(rewards.float(), dim=1, keepdim=True)  # [P, 1]
    else:
        std = _std(rewards.float())  # []
    return _divide(centered, std + cfg.eps)


@ADVANTAGES.register("rloo")
def rloo(rewards: Tensor, cfg: AdvantageConfig, *, lengths: Tensor | None = None, truncated: Tensor | None = None) -> Tensor:
    """RLOO: ``r_i - mean_{j != i} r_j`` (leave-one-out baseline, arXiv:2402.14740).

    Equal to ``G / (G - 1) * (r_i - mean(r))``. Not divided by any std (``cfg.scale`` is
    ignored). With ``G == 1`` there is no baseline to leave one out of: the advantage is 0.
    """
    _check(rewards)
    g = rewards.shape[1]
    if g < 2:
        return torch.zeros_like(rewards, dtype=torch.float32)
    return _centered(rewards) * (g / (g - 1))


@ADVANTAGES.register("reinforce_pp")
def reinforce_pp(rewards: Tensor, cfg: AdvantageConfig, *, lengths: Tensor | None = None, truncated: Tensor | None = None) -> Tensor:
    """REINFORCE++ with a group baseline (arXiv:2501.03262, "REINFORCE++-baseline").

    Subtract the group mean, then whiten over the whole batch: divide by the std (unbiased) of
    the ``P * G`` centred rewards, plus ``eps``. Subtracting the batch mean of the centred rewards
    is skipped on purpose: it is 0 by construction (each group's centred rewards sum to 0), and
    subtracting its float round-off would break "all-equal groups give exactly 0". Note the std
    is that of the *centred* rewards (within-group spread only), unlike ``group_mean`` with
    ``scale="batch"``, which uses the std of the raw rewards. ``cfg.scale`` is ignored.
    """
    _check(rewards)
    centered = _centered(rewards)
    return _divide(centered, _std(centered) + cfg.eps)


def compute_advantages(
    rewards: Tensor, cfg: AdvantageConfig, *, lengths: Tensor | None = None, truncated: Tensor | None = None
) -> Tensor:
    """Look up ``cfg.name`` in ``ADVANTAGES`` and apply it: ``[P, G]`` -> ``[P, G]`` float32.

    ``lengths`` (``[P, G]`` completion tokens) and ``truncated`` (``[P, G]`` bool) go to the
    estimator as they are; shapes other than the rewards' fail here."""
    for label, x in (("lengths", lengths), ("truncated", truncated)):
        if x is not None and tuple(x.shape) != tuple(rewards.shape):
            raise ValueError(f"{label} must be shaped like the rewards {tuple(rewards.shape)}, got {tuple(x.shape)}")
    return ADVANTAGES.get(cfg.name)(rewards, cfg, lengths=lengths, truncated=truncated)


def group_stats(rewards: Tensor, correct: Tensor | None = None) -> dict[str, Tensor]:
    """Metrics about the groups of a step (0-dim float32 tensors, for logging).

    ``rewards``: ``[P, G]``; ``correct``: optional ``[P, G]`` bool, whether each completion solved
    its prompt. Keys: ``frac_groups_zero_std`` (groups with no learning signal),
    ``reward_std_in_group`` (mean unbiased within-group std) and, when ``correct`` is given,
    ``frac_groups_all_correct`` and ``frac_groups_none_correct``.
    """
    _check(rewards)
    rewards = rewards.float()
    stats = {
        "frac_groups_zero_std": _flat_groups(rewards).float().mean(),
        "reward_std_in_group": _std(rewards, dim=1).mean(),
    }
    if correct is not None:
        correct = correct.bool()
        stats["frac_groups_all_correct"] = correct.all(dim=1).float().mean()
        stats["frac_groups_none_correct"] = (~correct.any(dim=1)).float().mean()
    return stats
