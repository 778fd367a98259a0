"""The GRPO objective of one micro-batch: tensors in, the scalar loss and its figures out.

Per token (``mask`` = 1 on the completion tokens that carry loss)::

    loss_t = policy_loss(logp, old, A) * w_IS  +  beta * KL_est(logp, ref)  -  c_H * e * H
    loss   = reduce(loss_t, mask, norm)

* ``policy_loss``: ``POLICY_LOSSES[loss.name]`` (PPO's clipped ratio ``exp(logp - old)`` for
  GRPO) against ``old``, which `off_policy_terms` picks from the trainer's log-probs at sampling
  time (``proximal_logp``) and the rollout engine's (``sampler_logp``) by ``correction``, with the
  IS weight ``w_IS`` from the behaviour policy to the proximal one when ``correction.mode`` asks;
* the KL term only when ``ref_logp`` is given (``kl.in_reward`` puts the KL in the reward instead,
  and the caller then passes no reference);
* the entropy bonus only when ``entropy_coef`` is not 0, ``e`` its weight per sequence;
* ``reduce``: ``REDUCTIONS[reduction]`` over the step's global counts ``norm``.

This is the loss TRL's ``GRPOTrainer.compute_loss`` computes (``tests/bench/
test_grpo_loss_agreement.py`` checks value and gradient against it); the GRPO stage calls it once
per micro-batch and backprops what it returns. No model, engine or stage config here.
"""
from __future__ import annotations

import torch
from torch import Tensor

from r1lab.algorithms.kl import KL_ESTIMATORS, KLConfig, kl_loss_term
from r1lab.algorithms.policy_loss import PolicyLossConfig, compute_policy_loss
from r1lab.algorithms.reduce import LossNorm, reduce_loss
from r1lab.algorithms.rollout_correction import (
    RolloutCorrectionConfig,
    correction_stats,
    mismatch_sums,
    off_policy_terms,
)


def grpo_objective(
    logp: Tensor,
    proximal_logp: Tensor,
    advantages: Tensor,
    mask: Tensor,
    norm: LossNorm,
    loss: PolicyLossConfig,
    reduction: str,
    *,
    sampler_logp: Tensor | None = None,
    correction: RolloutCorrectionConfig | None = None,
    ref_logp: Tensor | None = None,
    kl: KLConfig | None = None,
    entropy: Tensor | None = None,
    entropy_coef: float = 0.0,
    entropy_weight: Tensor | None = None,
    with_figures: bool = True,
) -> tuple[Tensor, dict[str, float]]:
    """This micro-batch's share of the step's loss (a scalar with grad) and its figures.

    ``logp``: ``[B, L]`` the policy being trained (with grad); ``proximal_logp``: ``[B, L]`` the
    trainer's policy before the update (``logp.detach()`` with one update per batch);
    ``sampler_logp``: ``[B, L]`` the rollout engine's, or None; ``ref_logp``: ``[B, L]`` the
    reference's, or None for no KL term; ``entropy``: ``[B, L]`` the policy's entropy (with grad
    when it is trained); ``advantages``, ``entropy_weight``: ``[B]``; ``mask``: ``[B, L]``.

    The figures (``with_figures``; else ``{}``) are sums over the masked tokens, for the caller
    to add up over micro-batches and ranks: ``loss`` (the returned value), ``tokens``,
    ``entropy``, ``clip_low``, ``clip_high``, ``kl`` (with ``ref_logp``) and, with
    ``sampler_logp``, ``mismatch/<name>`` from `mismatch_sums` and `correction_stats`
    (``mismatch/ratio_max`` is a max, not a sum).
    """
    correction = correction or RolloutCorrectionConfig()
    old, is_weights = off_policy_terms(proximal_logp, sampler_logp, mask, correction)
    per_token, stats = compute_policy_loss(logp, old, advantages, mask, loss)
    if is_weights is not None:
        per_token = per_token * is_weights
    if ref_logp is not None:
        per_token = per_token + kl_loss_term(logp, ref_logp, kl)
    if entropy_coef:
        per_token = per_token - entropy_coef * entropy_weight[:, None] * entropy
    value = reduce_loss(per_token, mask, norm, reduction)
    if not with_figures:
        return value, {}
    m = mask.float()
    figures = {
        "loss": float(value.detach()),
        "tokens": float(m.sum()),
        "clip_low": float((stats["clipped_low"].float() * m).sum()),
        "clip_high": float((stats["clipped_high"].float() * m).sum()),
    }
    if entropy is not None:
        figures["entropy"] = float((entropy.detach() * m).sum())
    if ref_logp is not None:
        with torch.no_grad():
            figures["kl"] = float((KL_ESTIMATORS.get(kl.estimator)(logp, ref_logp) * m).sum())
    if sampler_logp is not None:
        weights = is_weights if is_weights is not None else torch.ones_like(mask, dtype=torch.float32)
        gap = {**mismatch_sums(proximal_logp, sampler_logp, mask), **correction_stats(weights, mask)}
        figures.update({f"mismatch/{name}": v for name, v in gap.items()})
    return value, figures
