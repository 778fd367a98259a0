"""Loss reductions: per-token loss -> this micro-batch's share of the step's scalar loss.

Every reduction has the same signature::

    fn(per_token_loss: Tensor[B, L], mask: Tensor[B, L], norm: LossNorm) -> Tensor[]

Invariance to gradient accumulation and to the number of data-parallel ranks
---------------------------------------------------------------------------
An optimizer step sees ``num_sequences`` completions (``num_tokens`` valid tokens) in total,
split into micro-batches over ``world_size`` ranks. ``norm`` holds those GLOBAL counts, so every
denominator is the same constant for every micro-batch of the step, and each value returned is
a micro-batch's exact contribution to the full-batch loss ``L``::

    sum over ranks r, micro-batches m of  reduce(loss[r, m], mask[r, m], norm)  ==  world_size * L

The factor ``world_size`` is built in because data-parallel engines (DeepSpeed, DDP) *average*
gradients over ranks: rank ``r`` backprops ``sum_m value[r, m]``, the all-reduce divides by
``world_size``, and the gradient applied is exactly ``grad L``. Requirements on the caller:

* backprop each value as is and let gradients **sum** over micro-batches: with DeepSpeed call
  ``engine.backward(loss, scale_wrt_gas=False)`` (its default divides by the accumulation steps);
* count ``num_sequences``/``num_tokens`` over the whole step on all ranks (an all-reduce of the
  local counts before the first micro-batch), since micro-batches differ in length;
* to log ``L``: sum the values over micro-batches, all-reduce-sum over ranks, divide by
  ``world_size`` (or: sum over micro-batches and average over ranks).

Which tokens weigh what
-----------------------
* ``seq_mean_token_mean`` (GRPO, DeepSeekMath): mean over each sequence's tokens, then mean over
  sequences. Every sequence weighs the same; a token of a long answer weighs less.
* ``token_mean`` (DAPO, arXiv:2503.14476): all tokens of the step weigh the same.
* ``seq_mean_token_sum_norm`` (Dr. GRPO, arXiv:2503.20783): per-sequence token sum divided by
  the constant ``max_completion_length``, then mean over sequences; no length bias at all.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import Tensor

from r1lab.registry import Registry


@dataclass
class LossNorm:
    """Global counts for one optimizer step (all micro-batches, all data-parallel ranks)."""

    num_sequences: int
    """Completions in the step, summed over micro-batches and ranks."""
    num_tokens: int
    """Valid (mask == 1) completion tokens in the step, summed over micro-batches and ranks."""
    max_completion_length: int
    """Generation budget in tokens (``max_new_tokens``), the Dr. GRPO normaliser."""
    world_size: int = 1
    """Data-parallel ranks whose gradients the engine averages."""

    def __post_init__(self) -> None:
        for field in ("num_sequences", "num_tokens", "max_completion_length", "world_size"):
            if int(getattr(self, field)) < 1:
                raise ValueError(f"LossNorm.{field} must be >= 1, got {getattr(self, field)}")


ReductionFn = Callable[[Tensor, Tensor, LossNorm], Tensor]
REDUCTIONS: Registry[ReductionFn] = Registry("loss reduction")


def _masked(per_token_loss: Tensor, mask: Tensor) -> Tensor:
    # where(), not multiply: a NaN/inf on a padding position must not leak into the sum.
    return torch.where(mask.bool(), per_token_loss, torch.zeros_like(per_token_loss))


@REDUCTIONS.register("seq_mean_token_mean")
def seq_mean_token_mean(per_token_loss: Tensor, mask: Tensor, norm: LossNorm) -> Tensor:
    """``world_size / num_sequences * sum_i (sum_t loss_it / len_i)`` (original GRPO)."""
    lengths = mask.to(per_token_loss.dtype).sum(dim=1).clamp(min=1.0)  # [B]
    per_seq = _masked(per_token_loss, mask).sum(dim=1) / lengths  # [B]
    return per_seq.sum() * (norm.world_size / norm.num_sequences)


@REDUCTIONS.register("token_mean")
def token_mean(per_token_loss: Tensor, mask: Tensor, norm: LossNorm) -> Tensor:
    """``world_size / num_tokens * sum_it loss_it`` (DAPO)."""
    return _masked(per_token_loss, mask).sum() * (norm.world_size / norm.num_tokens)


@REDUCTIONS.register("seq_mean_token_sum_norm")
def seq_mean_token_sum_norm(per_token_loss: Tensor, mask: Tensor, norm: LossNorm) -> Tensor:
    """``world_size / (num_sequences * max_completion_length) * sum_it loss_it`` (Dr. GRPO)."""
    denom = norm.num_sequences * norm.max_completion_length
    return _masked(per_token_loss, mask).sum() * (norm.world_size / denom)


def reduce_loss(per_token_loss: Tensor, mask: Tensor, norm: LossNorm, name: str) -> Tensor:
    """Look up ``name`` in ``REDUCTIONS`` and apply it."""
    return REDUCTIONS.get(name)(per_token_loss, mask, norm)
