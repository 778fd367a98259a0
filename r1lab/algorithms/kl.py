"""Per-token estimators of KL(pi || pi_ref) from tokens sampled from pi, and how to apply them.

Every estimator has the same signature::

    fn(logp: Tensor[B, L], ref_logp: Tensor[B, L]) -> Tensor[B, L]

With ``x = ref_logp - logp`` (log of ``pi_ref / pi`` at the sampled token), following Schulman,
"Approximating KL divergence" (2020):

* ``k1 = -x``: unbiased, high variance, can be negative.
* ``k2 = x^2 / 2``: biased, low variance, >= 0.
* ``k3 = exp(x) - x - 1``: unbiased, low variance, >= 0 (GRPO's choice, DeepSeekMath eq. 4).

Values on masked positions are whatever the inputs give; multiply by the mask (or reduce with a
reduction from ``r1lab.algorithms.reduce``) before using them.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import Tensor

from r1lab.registry import Registry

# Keeps exp() in k3 finite on garbage (e.g. padding) positions; real log-ratios are far smaller.
_MAX_LOG_RATIO = 20.0


@dataclass
class KLConfig:
    beta: float = 0.0
    """Weight of the KL penalty, per nat. 0 disables it and no reference model is loaded at all
    (DAPO and Dr. GRPO drop it; DeepSeekMath used 0.04)."""
    estimator: str = "k3"
    """Estimator in ``KL_ESTIMATORS``: ``k1``, ``k2`` or ``k3``."""
    in_reward: bool = False
    """False: add ``beta * KL`` per token to the loss (GRPO). True: subtract ``beta * KL``
    (summed over the sequence, detached) from the sequence's reward before advantages (PPO-RLHF
    style); the loss then has no KL term."""

    def __post_init__(self) -> None:
        if self.beta < 0:
            raise ValueError(f"KLConfig.beta must be >= 0, got {self.beta}")

    @property
    def needs_reference(self) -> bool:
        """Whether a reference model must be loaded to compute ``ref_logp``."""
        return self.beta > 0


KLFn = Callable[[Tensor, Tensor], Tensor]
KL_ESTIMATORS: Registry[KLFn] = Registry("KL estimator")


def _log_ratio(logp: Tensor, ref_logp: Tensor) -> Tensor:  # [B, L] float32: log(pi_ref / pi)
    return (ref_logp.float() - logp.float()).clamp(-_MAX_LOG_RATIO, _MAX_LOG_RATIO)


@KL_ESTIMATORS.register("k1")
def k1(logp: Tensor, ref_logp: Tensor) -> Tensor:
    """``logp - ref_logp``."""
    return -_log_ratio(logp, ref_logp)


@KL_ESTIMATORS.register("k2")
def k2(logp: Tensor, ref_logp: Tensor) -> Tensor:
    """``(logp - ref_logp)^2 / 2``."""
    return 0.5 * _log_ratio(logp, ref_logp).square()


@KL_ESTIMATORS.register("k3")
def k3(logp: Tensor, ref_logp: Tensor) -> Tensor:
    """``exp(ref_logp - logp) - (ref_logp - logp) - 1``."""
    x = _log_ratio(logp, ref_logp)
    return torch.expm1(x) - x  # expm1 keeps precision when x is tiny


def kl_loss_term(logp: Tensor, ref_logp: Tensor, cfg: KLConfig) -> Tensor:  # [B, L]
    """Per-token ``beta * KL`` to add to the per-token policy loss before reducing it.

    Zero (no reference needed, ``ref_logp`` may be ``None``) when ``beta == 0`` or when the KL
    goes into the reward instead.
    """
    if cfg.beta == 0 or cfg.in_reward:
        return torch.zeros_like(logp, dtype=torch.float32)
    return cfg.beta * KL_ESTIMATORS.get(cfg.estimator)(logp, ref_logp)


def kl_penalty_in_reward(
    rewards: Tensor, logp: Tensor, ref_logp: Tensor, mask: Tensor, cfg: KLConfig
) -> Tensor:  # [N]
    """``rewards - beta * sum_t KL_t`` over each sequence's valid tokens, detached.

    ``rewards``: ``[N]``; ``logp``, ``ref_logp``, ``mask``: ``[N, L]``. Returns ``rewards``
    unchanged (as float32) when ``beta == 0`` or ``cfg.in_reward`` is False.
    """
    rewards = rewards.float()
    if cfg.beta == 0 or not cfg.in_reward:
        return rewards
    with torch.no_grad():
        kl = KL_ESTIMATORS.get(cfg.estimator)(logp, ref_logp)
        kl = torch.where(mask.bool(), kl, torch.zeros_like(kl)).sum(dim=1)  # [N]
    return rewards - cfg.beta * kl
