"""Per-token policy-gradient losses (to be minimised).

Every policy loss has the same signature::

    fn(logp: Tensor[B, L], old_logp: Tensor[B, L], advantages: Tensor[B], mask: Tensor[B, L],
       cfg: PolicyLossConfig) -> tuple[Tensor[B, L], dict[str, Tensor]]

``logp`` are the current policy's log-probs of the sampled tokens (with grad), ``old_logp`` those
of the policy that sampled them (no grad; pass ``logp.detach()`` when each batch gets a single
optimizer step, which makes the ratio exactly 1 while keeping its gradient). ``mask`` is 1 on
completion tokens, 0 on prompt and padding. The per-token loss is 0 wherever ``mask`` is 0 and
is turned into a scalar by a reduction from ``r1lab.algorithms.reduce``.

The stats dict has the same keys for every member, all ``[B, L]`` float32, detached and 0 on
masked positions: ``ratio`` (importance ratio; 0 where masked), ``clipped_low``,
``clipped_high`` and ``clipped_dual`` (1 where that clip is the active one, i.e. where the token
gets no gradient). Average them over ``mask`` for metrics.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

import torch
from torch import Tensor

from r1lab.registry import Registry

# exp() of a log-ratio beyond this overflows float32 gradients; real ratios never get near it.
_MAX_LOG_RATIO = 20.0


@dataclass
class PolicyLossConfig:
    name: str = "clipped"
    """Loss in ``POLICY_LOSSES``: ``clipped`` (PPO/GRPO), ``gspo`` or ``vanilla_pg``."""
    clip_low: float = 0.2
    """Ratio lower bound is ``1 - clip_low``. Unitless. GSPO uses ~3e-4 (sequence ratio)."""
    clip_high: float = 0.2
    """Ratio upper bound is ``1 + clip_high``; DAPO's clip-higher sets 0.28 (arXiv:2503.14476).
    Unitless. GSPO uses ~4e-4."""
    dual_clip: Optional[float] = None
    """Dual-clip PPO constant ``c > 1`` (arXiv:1912.09729): for negative advantages the loss is
    capped at ``-c * A``, bounding the push on tokens whose ratio exploded. ``None`` = off."""

    def __post_init__(self) -> None:
        if not 0.0 <= self.clip_low < 1.0:
            raise ValueError(f"PolicyLossConfig.clip_low must be in [0, 1), got {self.clip_low}")
        if self.clip_high < 0.0:
            raise ValueError(f"PolicyLossConfig.clip_high must be >= 0, got {self.clip_high}")
        if self.dual_clip is not None and self.dual_clip <= 1.0:
            raise ValueError(f"PolicyLossConfig.dual_clip must be > 1 or None, got {self.dual_clip}")


PolicyLossFn = Callable[
    [Tensor, Tensor, Tensor, Tensor, PolicyLossConfig], tuple[Tensor, dict[str, Tensor]]
]
POLICY_LOSSES: Registry[PolicyLossFn] = Registry("policy loss")


def _clipped_surrogate(
    ratio: Tensor, advantages: Tensor, mask: Tensor, cfg: PolicyLossConfig
) -> tuple[Tensor, dict[str, Tensor]]:
    """PPO's pessimistic surrogate ``max(-r A, -clip(r) A)``, optionally dual-clipped.

    ``ratio``: ``[B, L]``; ``advantages``: ``[B]``. Gradient w.r.t. ``log r`` is ``-r A`` where
    the unclipped term is active and 0 where a clip is.
    """
    mask = mask.to(ratio.dtype)
    adv = advantages.to(ratio.dtype).unsqueeze(1)  # [B, 1]
    unclipped = -adv * ratio
    clipped = -adv * ratio.clamp(1.0 - cfg.clip_low, 1.0 + cfg.clip_high)
    loss = torch.maximum(unclipped, clipped)  # [B, L]
    with torch.no_grad():
        # Where the clipped term is strictly larger, the clip is active (no gradient).
        clip_active = clipped > unclipped
        clipped_low = clip_active & (adv < 0)  # ratio < 1 - clip_low, pushing down further
        clipped_high = clip_active & (adv > 0)  # ratio > 1 + clip_high, pushing up further
        clipped_dual = torch.zeros_like(clip_active)
    if cfg.dual_clip is not None:
        cap = -adv * cfg.dual_clip  # [B, 1]; positive where adv < 0
        capped = torch.minimum(loss, cap)
        with torch.no_grad():
            clipped_dual = (adv < 0) & (loss > cap)
        loss = torch.where(adv < 0, capped, loss)
    loss = loss * mask
    stats = {
        "ratio": (ratio * mask).detach(),
        "clipped_low": clipped_low.to(ratio.dtype) * mask,
        "clipped_high": clipped_high.to(ratio.dtype) * mask,
        "clipped_dual": clipped_dual.to(ratio.dtype) * mask,
    }
    return loss, stats


def _masked_log_ratio(logp: Tensor, old_logp: Tensor, mask: Tensor) -> Tensor:  # [B, L] float32
    """``logp - old_logp`` on valid tokens, 0 elsewhere (so garbage there can't make NaNs)."""
    log_ratio = logp.float() - old_logp.float().detach()
    log_ratio = torch.where(mask.bool(), log_ratio, torch.zeros_like(log_ratio))
    return log_ratio.clamp(-_MAX_LOG_RATIO, _MAX_LOG_RATIO)


@POLICY_LOSSES.register("clipped")
def clipped(
    logp: Tensor, old_logp: Tensor, advantages: Tensor, mask: Tensor, cfg: PolicyLossConfig
) -> tuple[Tensor, dict[str, Tensor]]:
    """PPO clipped surrogate with the per-token ratio ``exp(logp - old_logp)`` (GRPO).

    Asymmetric bounds ``[1 - clip_low, 1 + clip_high]`` give DAPO's clip-higher; ``dual_clip``
    adds dual-clip PPO.
    """
    ratio = torch.exp(_masked_log_ratio(logp, old_logp, mask))  # [B, L]
    return _clipped_surrogate(ratio, advantages, mask, cfg)


@POLICY_LOSSES.register("gspo")
def gspo(
    logp: Tensor, old_logp: Tensor, advantages: Tensor, mask: Tensor, cfg: PolicyLossConfig
) -> tuple[Tensor, dict[str, Tensor]]:
    """GSPO (arXiv:2507.18071): one length-normalised ratio per sequence, clipped.

    ``s_i = exp(mean_t (logp - old_logp))`` over the valid tokens of sequence ``i``. We use the
    paper's "GSPO-token" form, ``s_{i,t} = sg[s_i] * pi(y_t) / sg[pi(y_t)]``: its value is
    ``s_i`` at every token (so the clip decision is per sequence) and, reduced with
    ``seq_mean_token_mean``, its gradient is exactly GSPO's sequence-level gradient. Because the
    ratio is a geometric mean of token ratios it stays very close to 1: the paper clips at
    ``clip_low=3e-4, clip_high=4e-4``, not PPO's 0.2.
    """
    log_ratio = _masked_log_ratio(logp, old_logp, mask)  # [B, L]
    lengths = mask.to(log_ratio.dtype).sum(dim=1).clamp(min=1.0)  # [B]
    seq_log_ratio = (log_ratio.sum(dim=1) / lengths).detach()  # [B]
    token_log_ratio = seq_log_ratio.unsqueeze(1) + log_ratio - log_ratio.detach()  # [B, L]
    ratio = torch.exp(token_log_ratio)  # value s_i everywhere, gradient s_i * dlogp_t
    return _clipped_surrogate(ratio, advantages, mask, cfg)


@POLICY_LOSSES.register("vanilla_pg")
def vanilla_pg(
    logp: Tensor, old_logp: Tensor, advantages: Tensor, mask: Tensor, cfg: PolicyLossConfig
) -> tuple[Tensor, dict[str, Tensor]]:
    """REINFORCE: ``-A * logp``, no ratio, no clipping. On-policy only; a baseline to compare.

    ``old_logp`` and the clip fields are unused except for the ``ratio`` metric.
    """
    m = mask.to(torch.float32)
    safe_logp = torch.where(mask.bool(), logp.float(), torch.zeros_like(logp, dtype=torch.float32))
    loss = -advantages.float().unsqueeze(1) * safe_logp * m
    ratio = torch.exp(_masked_log_ratio(logp, old_logp, mask)).detach() * m
    zeros = torch.zeros_like(m)
    stats = {"ratio": ratio, "clipped_low": zeros, "clipped_high": zeros, "clipped_dual": zeros}
    return loss, stats


def compute_policy_loss(
    logp: Tensor, old_logp: Tensor, advantages: Tensor, mask: Tensor, cfg: PolicyLossConfig
) -> tuple[Tensor, dict[str, Tensor]]:
    """Look up ``cfg.name`` in ``POLICY_LOSSES`` and apply it."""
    return POLICY_LOSSES.get(cfg.name)(logp, old_logp, advantages, mask, cfg)
