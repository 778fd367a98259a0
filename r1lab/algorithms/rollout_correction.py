"""Train/rollout mismatch: metrics, and importance-sampling (IS) corrections for it.

When completions are sampled by an inference engine (vLLM) rather than by the trainer, the two
compute slightly different probabilities for the same weights (other kernels, other precision,
other batching), so the data is mildly off-policy even at the first optimizer step. Yao et al.,
"Your efficient RL framework secretly brings you off-policy RL training" (2025), correct for it
with the importance ratio between the trainer's policy at sampling time and the sampler:

    ratio = pi_trainer(y) / pi_sampler(y),   y sampled from pi_sampler

taken per token (``level="token"``) or as one product over each sequence's completion tokens
(``level="sequence"``). verl's rollout IS and TRL's ``vllm_importance_sampling_correction``
implement the same idea. The weights multiply the per-token policy loss and carry no gradient.

Every mode has the same signature::

    fn(trainer_logp: Tensor[B, L], sampler_logp: Tensor[B, L], mask: Tensor[B, L],
       cfg: RolloutCorrectionConfig) -> Tensor[B, L]

``trainer_logp`` is the trainer's log-prob of each sampled token under the policy that sampled it
(the "old" policy, ``old_logp`` of ``r1lab.algorithms.policy_loss``), ``sampler_logp`` the
engine's log-prob of the same token, ``mask`` 1 on completion tokens, 0 on prompt and padding.
The weights are float32, detached, and **1 outside the mask**: 1 is neutral for the
multiplication ``loss * weights`` (the loss is already 0 there), whereas 0 would read as
"dropped" in ``correction_stats`` and NaN-prone garbage there would otherwise leak in.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch
from torch import Tensor

from r1lab.registry import Registry

# Keeps exp() finite on garbage (e.g. padding) positions and on the sum over a long sequence;
# real per-token log-ratios are far smaller. Ratios reported or used saturate at e^20 ~ 4.9e8.
_MAX_LOG_RATIO = 20.0

_LEVELS = ("token", "sequence")
PROXIMAL_POLICIES = ("trainer", "behaviour")


@dataclass
class RolloutCorrectionConfig:
    mode: str = "none"
    """Correction in ``ROLLOUT_CORRECTIONS``: ``none`` (weights all 1; sampler log-probs are not
    needed), ``truncate`` (truncated IS, TIS: weight ``min(ratio, cap)``) or ``mask`` (weight 0
    where the ratio is outside ``[1 / threshold, threshold]``, 1 elsewhere)."""
    level: str = "token"
    """Where the ratio is taken: ``token`` (one ratio per token) or ``sequence`` (one ratio per
    row, the product of its token ratios, broadcast to the row's tokens). Sequence ratios of long
    completions drift far from 1, so they need a looser ``cap`` / ``threshold``."""
    cap: float = 2.0
    """``truncate``: upper bound on the IS weight. Unitless, >= 1 (a cap below 1 would shrink
    even on-policy tokens). There is no lower bound: ratios below 1 pass through."""
    threshold: float = 2.0
    """``mask``: a token (``level=token``) or row (``level=sequence``) is dropped when its ratio
    is > ``threshold`` or < ``1 / threshold``. Unitless, > 1 (at 1 everything off-policy at all
    would be dropped)."""

    proximal: str = "trainer"
    """What the PPO ratio is clipped around when the rollout came from another policy (vLLM's
    kernels, or an older version with ``rollout.max_staleness >= 1``): ``trainer`` (the decoupled
    objective of AReaL, Fu et al. 2025: the ratio to the trainer's policy before the update, the
    proximal policy, with ``mode``'s IS weight from the behaviour policy to it) or ``behaviour``
    (plain PPO on the sampler's log-probs: ratio and clip against the policy that sampled, no
    separate IS weight, so ``mode`` must be ``none``). Equal when sampler and trainer agree."""

    def __post_init__(self) -> None:
        if self.proximal not in PROXIMAL_POLICIES:
            raise ValueError(
                f"RolloutCorrectionConfig.proximal must be one of {', '.join(PROXIMAL_POLICIES)}, got {self.proximal!r}"
            )
        if self.proximal == "behaviour" and self.mode != "none":
            raise ValueError(
                f"RolloutCorrectionConfig.proximal=behaviour clips against the sampler itself, so mode={self.mode!r} "
                "would weight twice; set mode=none, or proximal=trainer (the decoupled objective) to keep the IS weight"
            )
        if self.mode not in ROLLOUT_CORRECTIONS:
            raise ValueError(
                f"RolloutCorrectionConfig.mode must be one of "
                f"{', '.join(ROLLOUT_CORRECTIONS.names())}, got {self.mode!r}"
            )
        if self.level not in _LEVELS:
            raise ValueError(
                f"RolloutCorrectionConfig.level must be one of {', '.join(_LEVELS)}, "
                f"got {self.level!r}"
            )
        # `not (x >= ...)` so that NaN is rejected too.
        if not self.cap >= 1.0:
            raise ValueError(f"RolloutCorrectionConfig.cap must be >= 1, got {self.cap}")
        if not self.threshold > 1.0:
            raise ValueError(
                f"RolloutCorrectionConfig.threshold must be > 1, got {self.threshold}"
            )

    @property
    def needs_sampler_logp(self) -> bool:
        """Whether the inference engine must return log-probs of the sampled tokens."""
        return self.mode != "none" or self.proximal == "behaviour"


RolloutCorrectionFn = Callable[[Tensor, Tensor, Tensor, RolloutCorrectionConfig], Tensor]
ROLLOUT_CORRECTIONS: Registry[RolloutCorrectionFn] = Registry("rollout correction")


def _token_log_ratio(trainer_logp: Tensor, sampler_logp: Tensor, mask: Tensor) -> Tensor:
    """``trainer - sampler`` in float32, detached, 0 outside the mask (unclamped). ``[B, L]``."""
    x = trainer_logp.detach().float() - sampler_logp.detach().float()
    # where(), not multiply: garbage there may be inf, and inf * 0 is NaN.
    return torch.where(mask.bool(), x, torch.zeros_like(x))


def _log_ratio(
    trainer_logp: Tensor, sampler_logp: Tensor, mask: Tensor, level: str
) -> Tensor:  # [B, L] float32
    """Log of the IS ratio at ``level``, broadcast to ``[B, L]``; 0 outside the mask."""
    x = _token_log_ratio(trainer_logp, sampler_logp, mask)
    if level == "sequence":
        x = x.sum(dim=1, keepdim=True).expand_as(x)
        x = torch.where(mask.bool(), x, torch.zeros_like(x))
    return x


@ROLLOUT_CORRECTIONS.register("none")
def no_correction(
    trainer_logp: Tensor, sampler_logp: Tensor, mask: Tensor, cfg: RolloutCorrectionConfig
) -> Tensor:
    """All ones; ``sampler_logp`` is not read (it may be ``None``)."""
    return torch.ones_like(trainer_logp, dtype=torch.float32)


@ROLLOUT_CORRECTIONS.register("truncate")
def truncate(
    trainer_logp: Tensor, sampler_logp: Tensor, mask: Tensor, cfg: RolloutCorrectionConfig
) -> Tensor:
    """Truncated IS (TIS): ``min(ratio, cap)`` on completion tokens, 1 elsewhere."""
    x = _log_ratio(trainer_logp, sampler_logp, mask, cfg.level)
    # Clamping the log before exp() is min(ratio, cap) without ever forming an overflowing ratio.
    x = x.clamp(-_MAX_LOG_RATIO, min(math.log(cfg.cap), _MAX_LOG_RATIO))
    return torch.exp(x)  # exp(0) = 1 outside the mask


@ROLLOUT_CORRECTIONS.register("mask")
def mask_out(
    trainer_logp: Tensor, sampler_logp: Tensor, mask: Tensor, cfg: RolloutCorrectionConfig
) -> Tensor:
    """1 where the ratio is within ``[1 / threshold, threshold]``, 0 where it is outside.

    At ``level=sequence`` a whole row is dropped; outside the mask the weight is 1.
    """
    x = _log_ratio(trainer_logp, sampler_logp, mask, cfg.level)
    # Compared in log space (no exp, so no overflow); `<=` is False for NaN, so NaN ratios drop.
    keep = x.abs() <= math.log(cfg.threshold)
    return keep.to(torch.float32)


def importance_weights(
    trainer_logp: Tensor, sampler_logp: Tensor, mask: Tensor, cfg: RolloutCorrectionConfig
) -> Tensor:  # [B, L] float32
    """Detached per-token weights ``[B, L]`` to multiply into the per-token policy loss.

    ``trainer_logp``: ``[B, L]`` log-prob of each sampled token under the trainer's policy at
    sampling time (the "old" policy); ``sampler_logp``: ``[B, L]`` the inference engine's
    log-prob of the same token; ``mask``: ``[B, L]``, 1 on completion tokens. Mode ``none``
    gives all ones. Weights are 1 outside the mask.
    """
    with torch.no_grad():
        return ROLLOUT_CORRECTIONS.get(cfg.mode)(trainer_logp, sampler_logp, mask, cfg).detach()


def off_policy_terms(
    trainer_logp: Tensor, sampler_logp: Tensor | None, mask: Tensor, cfg: RolloutCorrectionConfig
) -> tuple[Tensor, Tensor | None]:
    """The log-probs the PPO ratio is taken against, ``[B, L]``, and the detached IS weights that
    multiply the per-token loss (``[B, L]``, or None for none), by ``cfg.proximal``:

    * ``trainer`` (decoupled): ``trainer_logp`` (the proximal policy: the trainer's before the
      update) and ``importance_weights(trainer_logp, sampler_logp)`` when ``cfg.mode`` is not
      ``none``: loss ``-min(r A, clip(r) A) * w`` with ``r = pi / pi_prox``, ``w = pi_prox / pi_behav``.
    * ``behaviour``: ``sampler_logp`` itself and no weight: loss ``-min(r A, clip(r) A)`` with
      ``r = pi / pi_behav``.

    ``sampler_logp`` None (the engine gave none): ``trainer_logp`` and no weight.
    """
    if sampler_logp is None:
        return trainer_logp, None
    if cfg.proximal == "behaviour":
        return sampler_logp.detach().to(trainer_logp.dtype), None
    if cfg.mode == "none":
        return trainer_logp, None
    return trainer_logp, importance_weights(trainer_logp, sampler_logp, mask, cfg)


def mismatch_sums(trainer_logp: Tensor, sampler_logp: Tensor, mask: Tensor) -> dict[str, float]:
    """Train/rollout mismatch summed over masked tokens, for the caller to aggregate.

    Inputs as in ``importance_weights``. With ``x = trainer - sampler`` per token, returns:

    * ``tokens``: number of masked tokens.
    * ``abs_logp_diff``: sum of ``|x|``.
    * ``kl``: sum of the k3 estimate ``exp(x) - x - 1`` of ``KL(sampler || trainer)`` (unbiased
      because the tokens were sampled from the sampler; see ``r1lab.algorithms.kl``).
    * ``ratio_max``: max of ``exp(x)``; 0 when there are no masked tokens (neutral for a max,
      since ratios are > 0). Not a sum: take the max across micro-batches and ranks.
    * ``sequences``: number of rows with at least one masked token.

    Sum the others across micro-batches and ranks and divide by ``tokens`` (or ``sequences``).
    """
    with torch.no_grad():
        m = mask.bool()
        x = _token_log_ratio(trainer_logp, sampler_logp, mask)
        xc = x.clamp(-_MAX_LOG_RATIO, _MAX_LOG_RATIO)
        k3 = torch.expm1(xc) - xc  # expm1 keeps precision when x is tiny; 0 outside the mask
        ratio = torch.where(m, torch.exp(xc), torch.zeros_like(xc))
        ratio_max = ratio.max() if ratio.numel() else ratio.new_zeros(())
        values = torch.stack(
            [
                m.sum().float(),
                x.abs().sum(),
                k3.sum(),
                ratio_max,
                m.any(dim=1).sum().float(),
            ]
        ).tolist()  # one device sync for all five
    return dict(zip(("tokens", "abs_logp_diff", "kl", "ratio_max", "sequences"), values))


def correction_stats(weights: Tensor, mask: Tensor) -> dict[str, float]:
    """Sums over masked tokens of the weights from ``importance_weights``, to aggregate.

    ``weights``, ``mask``: ``[B, L]``. Returns ``weight_sum`` (sum of the weights) and
    ``zeroed_tokens`` (how many have weight exactly 0, i.e. were masked out). Sum across
    micro-batches and ranks and divide by ``mismatch_sums``'s ``tokens`` for the mean IS weight
    and the share of tokens dropped.
    """
    with torch.no_grad():
        m = mask.bool()
        w = weights.detach().float()
        values = torch.stack(
            [
                torch.where(m, w, torch.zeros_like(w)).sum(),
                (m & (w == 0)).sum().float(),
            ]
        ).tolist()
    return dict(zip(("weight_sum", "zeroed_tokens"), values))
