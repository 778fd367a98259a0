"""The pure math of GRPO and DPO: registries of small functions, one signature per kind.

Imports only torch. Each kind is a ``Registry`` (look a member up by the name in its config)
plus the config dataclass every member of that kind takes:

==========================  =========================  ==============================
kind                        registry                   config
==========================  =========================  ==============================
advantage estimators        ``ADVANTAGES``             ``AdvantageConfig``
per-token policy losses     ``POLICY_LOSSES``          ``PolicyLossConfig``
loss reductions             ``REDUCTIONS``             ``LossNorm`` (global counts)
KL estimators               ``KL_ESTIMATORS``          ``KLConfig``
preference losses           ``DPO_LOSSES``             ``DPOLossConfig``
rollout corrections (IS)    ``ROLLOUT_CORRECTIONS``    ``RolloutCorrectionConfig``
==========================  =========================  ==============================

``grpo_objective`` puts them together: the GRPO loss of one micro-batch (policy term, KL term,
importance correction, reduction) as one pure function, the one ``policy_update`` calls.
"""
from r1lab.algorithms.advantages import ADVANTAGES, AdvantageConfig, compute_advantages, group_stats
from r1lab.algorithms.dpo_loss import DPO_LOSSES, DPOLossConfig, compute_dpo_loss
from r1lab.algorithms.grpo_objective import grpo_objective
from r1lab.algorithms.kl import KL_ESTIMATORS, KLConfig, kl_loss_term, kl_penalty_in_reward
from r1lab.algorithms.logprobs import selective_log_softmax, token_logprobs_and_entropy
from r1lab.algorithms.policy_loss import POLICY_LOSSES, PolicyLossConfig, compute_policy_loss
from r1lab.algorithms.reduce import REDUCTIONS, LossNorm, reduce_loss
from r1lab.algorithms.rollout_correction import ROLLOUT_CORRECTIONS, RolloutCorrectionConfig
from r1lab.registry import Registry

__all__ = [
    "ADVANTAGES",
    "AdvantageConfig",
    "compute_advantages",
    "group_stats",
    "DPO_LOSSES",
    "DPOLossConfig",
    "compute_dpo_loss",
    "grpo_objective",
    "KL_ESTIMATORS",
    "KLConfig",
    "kl_loss_term",
    "kl_penalty_in_reward",
    "selective_log_softmax",
    "token_logprobs_and_entropy",
    "POLICY_LOSSES",
    "PolicyLossConfig",
    "compute_policy_loss",
    "REDUCTIONS",
    "LossNorm",
    "reduce_loss",
    "ROLLOUT_CORRECTIONS",
    "RolloutCorrectionConfig",
    "Registry",
]
