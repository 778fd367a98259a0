"""Forward passes that return per-token log-probs without materialising full logits."""
from __future__ import annotations

import torch

from r1lab.algorithms.logprobs import token_logprobs_and_entropy


def token_logprobs(
    model: torch.nn.Module,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    loss_mask: torch.Tensor,
    chunk_size: int = 1024,
    with_entropy: bool = False,
    temperature: float = 1.0,
    position_ids: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Log-prob of each next token where ``loss_mask`` is set.

    Args:
        input_ids, attention_mask: ``[B, T]`` (left or right padded).
        loss_mask: ``[B, T]``, 1 on the tokens whose log-prob is wanted (position 0 is ignored:
            nothing predicts it).
        position_ids: ``[B, T]``; default counts non-padding tokens (right for left padding).
    Returns:
        ``(logp [B, T-1], entropy [B, T-1] or None)``, aligned with ``input_ids[:, 1:]``; 0 off the mask.
    """
    if position_ids is None:
        position_ids = (attention_mask.cumsum(-1) - 1).clamp(min=0)
    hidden = model.base_model(
        input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids, use_cache=False
    ).last_hidden_state  # [B, T, H]
    head = model.get_output_embeddings()
    return token_logprobs_and_entropy(
        hidden[:, :-1],
        head.weight,
        input_ids[:, 1:],
        chunk_size=chunk_size,
        with_entropy=with_entropy,
        temperature=temperature,
        lm_head_bias=head.bias,
        mask=loss_mask[:, 1:],
    )
