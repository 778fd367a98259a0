"""Pairwise preference losses (DPO and variants), per pair, to be minimised.

Every loss has the same signature::

    fn(chosen_logp: Tensor[B], rejected_logp: Tensor[B],
       ref_chosen_logp: Tensor[B], ref_rejected_logp: Tensor[B],
       cfg: DPOLossConfig, chosen_len: Tensor[B], rejected_len: Tensor[B])
       -> tuple[Tensor[B], dict[str, Tensor]]

Log-probs are **summed** over each completion's tokens; ``*_len`` are the completion token
counts. Members that need averages (``ipo``, ``simpo``) divide by the lengths themselves;
``simpo`` ignores the reference log-probs (pass anything, e.g. zeros). Take ``.mean()`` of the
per-pair loss over the batch (pairs are equal units, so accumulation over micro-batches of equal
size is a plain average).

Metrics, all ``[B]`` float32 and detached: ``chosen_rewards``, ``rejected_rewards`` (the implicit
rewards, ``beta * (logp - ref_logp)`` for DPO/IPO and ``beta * logp / len`` for SimPO),
``margins`` (chosen minus rejected) and ``accuracy`` (1 where ``margins > 0``).

Formulas follow TRL (``DPOTrainer``; ``CPOTrainer`` for SimPO), cross-checked by hand in
``tests/algorithms/test_dpo_loss.py``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from r1lab.registry import Registry


@dataclass
class DPOLossConfig:
    name: str = "sigmoid"
    """Loss in ``DPO_LOSSES``: ``sigmoid`` (DPO), ``ipo`` or ``simpo``."""
    beta: float = 0.1
    """Inverse temperature of the implicit reward, per nat (IPO: its ``tau``; SimPO: ~2)."""
    label_smoothing: float = 0.0
    """Probability that a preference label is flipped, in [0, 0.5) (conservative DPO, cDPO);
    used by ``sigmoid`` and ``simpo``."""
    simpo_gamma: float = 0.5
    """SimPO target reward margin, in units of ``beta * nats per token``."""

    def __post_init__(self) -> None:
        if self.beta <= 0:
            raise ValueError(f"DPOLossConfig.beta must be > 0, got {self.beta}")
        if not 0.0 <= self.label_smoothing < 0.5:
            raise ValueError(
                f"DPOLossConfig.label_smoothing must be in [0, 0.5), got {self.label_smoothing}"
            )


DPOLossFn = Callable[
    [Tensor, Tensor, Tensor, Tensor, DPOLossConfig, Tensor, Tensor],
    tuple[Tensor, dict[str, Tensor]],
]
DPO_LOSSES: Registry[DPOLossFn] = Registry("DPO loss")


def _smoothed_sigmoid_loss(logits: Tensor, label_smoothing: float) -> Tensor:
    """``-(1 - eps) log sigmoid(z) - eps log sigmoid(-z)``: BCE against a label ``1 - eps``."""
    return -(1.0 - label_smoothing) * F.logsigmoid(logits) - label_smoothing * F.logsigmoid(-logits)


def _metrics(chosen_rewards: Tensor, rejected_rewards: Tensor) -> dict[str, Tensor]:
    chosen_rewards = chosen_rewards.detach().float()
    rejected_rewards = rejected_rewards.detach().float()
    margins = chosen_rewards - rejected_rewards
    return {
        "chosen_rewards": chosen_rewards,
        "rejected_rewards": rejected_rewards,
        "margins": margins,
        "accuracy": (margins > 0).float(),
    }


@DPO_LOSSES.register("sigmoid")
def sigmoid(
    chosen_logp: Tensor,
    rejected_logp: Tensor,
    ref_chosen_logp: Tensor,
    ref_rejected_logp: Tensor,
    cfg: DPOLossConfig,
    chosen_len: Tensor,
    rejected_len: Tensor,
) -> tuple[Tensor, dict[str, Tensor]]:
    """DPO (arXiv:2305.18290) with cDPO label smoothing.

    ``z = beta * ((logp_c - ref_c) - (logp_r - ref_r))``;
    ``loss = -(1 - eps) log sigmoid(z) - eps log sigmoid(-z)``. ``eps = 0`` is plain DPO. (TRL
    <= 0.2x computed exactly this for ``loss_type="sigmoid"``; TRL 1.x moved the smoothing to
    other loss types, so the two agree at ``eps = 0``.)
    """
    chosen_logratio = chosen_logp.float() - ref_chosen_logp.float()
    rejected_logratio = rejected_logp.float() - ref_rejected_logp.float()
    z = cfg.beta * (chosen_logratio - rejected_logratio)
    loss = _smoothed_sigmoid_loss(z, cfg.label_smoothing)
    return loss, _metrics(cfg.beta * chosen_logratio, cfg.beta * rejected_logratio)


@DPO_LOSSES.register("ipo")
def ipo(
    chosen_logp: Tensor,
    rejected_logp: Tensor,
    ref_chosen_logp: Tensor,
    ref_rejected_logp: Tensor,
    cfg: DPOLossConfig,
    chosen_len: Tensor,
    rejected_len: Tensor,
) -> tuple[Tensor, dict[str, Tensor]]:
    """IPO (arXiv:2310.12036, eq. 17) with per-token averaged log-ratios, as in TRL.

    ``h = (logp_c - ref_c) / len_c - (logp_r - ref_r) / len_r``; ``loss = (h - 1/(2 beta))^2``.
    Lengths are clamped to >= 1. Rewards for the metrics use the summed log-ratios.
    """
    chosen_logratio = chosen_logp.float() - ref_chosen_logp.float()
    rejected_logratio = rejected_logp.float() - ref_rejected_logp.float()
    chosen_per_token = chosen_logratio / chosen_len.float().clamp(min=1.0)
    rejected_per_token = rejected_logratio / rejected_len.float().clamp(min=1.0)
    h = chosen_per_token - rejected_per_token
    loss = (h - 1.0 / (2.0 * cfg.beta)) ** 2
    return loss, _metrics(cfg.beta * chosen_logratio, cfg.beta * rejected_logratio)


@DPO_LOSSES.register("simpo")
def simpo(
    chosen_logp: Tensor,
    rejected_logp: Tensor,
    ref_chosen_logp: Tensor,
    ref_rejected_logp: Tensor,
    cfg: DPOLossConfig,
    chosen_len: Tensor,
    rejected_len: Tensor,
) -> tuple[Tensor, dict[str, Tensor]]:
    """SimPO (arXiv:2405.14734): reference-free, length-normalised.

    ``z = beta * (logp_c / len_c - logp_r / len_r) - gamma``; loss as in ``sigmoid`` (TRL's
    ``CPOTrainer`` with ``loss_type="simpo"``, which writes ``gamma`` as ``simpo_gamma``).
    The reference log-probs are ignored.
    """
    chosen_avg = chosen_logp.float() / chosen_len.float().clamp(min=1.0)
    rejected_avg = rejected_logp.float() / rejected_len.float().clamp(min=1.0)
    z = cfg.beta * (chosen_avg - rejected_avg) - cfg.simpo_gamma
    loss = _smoothed_sigmoid_loss(z, cfg.label_smoothing)
    return loss, _metrics(cfg.beta * chosen_avg, cfg.beta * rejected_avg)


def compute_dpo_loss(
    chosen_logp: Tensor,
    rejected_logp: Tensor,
    ref_chosen_logp: Tensor,
    ref_rejected_logp: Tensor,
    cfg: DPOLossConfig,
    chosen_len: Tensor,
    rejected_len: Tensor,
) -> tuple[Tensor, dict[str, Tensor]]:
    """Look up ``cfg.name`` in ``DPO_LOSSES`` and apply it."""
    return DPO_LOSSES.get(cfg.name)(
        chosen_logp, rejected_logp, ref_chosen_logp, ref_rejected_logp, cfg,
        chosen_len, rejected_len,
    )
