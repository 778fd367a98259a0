"""Forward passes that return per-token log-probs without materialising full logits."""
from __future__ import annotations

import torch

from r1lab.algorithms.logprobs import selective_log_softmax, token_logprobs_and_entropy


def causal_lm(model: torch.nn.Module) -> torch.nn.Module:
    """The Hugging Face causal LM inside ``model`` (a peft ``PeftModel`` wraps it; LoRA layers stay in place)."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def _zero3_partitioned(param: torch.Tensor) -> bool:
    # DeepSpeed ZeRO-3 gives each parameter a `ds_tensor` (this rank's shard); outside the
    # module's own forward the parameter itself is an empty placeholder.
    return hasattr(param, "ds_tensor")


def token_logprobs(
    model: torch.nn.Module,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    loss_mask: torch.Tensor,
    chunk_size: int = 1024,
    with_entropy: bool = False,
    temperature: float = 1.0,
    position_ids: torch.Tensor | None = None,
    entropy_grad: bool = False,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Log-prob of each next token where ``loss_mask`` is set.

    Args:
        model: a Hugging Face causal LM, or a peft model wrapping one (adapters as currently
            enabled: inside ``model.disable_adapter()`` this is the base model).
        input_ids, attention_mask: ``[B, T]`` (left or right padded).
        loss_mask: ``[B, T]``, 1 on the tokens whose log-prob is wanted (position 0 is ignored:
            nothing predicts it).
        position_ids: ``[B, T]``; default counts non-padding tokens (right for left padding).
        entropy_grad: the entropy carries a gradient (for an entropy term in the loss).
    Returns:
        ``(logp [B, T-1], entropy [B, T-1] or None)``, aligned with ``input_ids[:, 1:]``; 0 off the mask.

    The decoder runs alone and the LM head is applied in chunks of valid positions
    (`token_logprobs_and_entropy`). Under DeepSpeed ZeRO-3 the LM-head weight is partitioned and
    only gathered inside the model's own forward, so there the whole model runs and the log-probs
    come from its full ``[B, T, V]`` logits: same values, more activation memory.
    """
    if position_ids is None:
        position_ids = (attention_mask.cumsum(-1) - 1).clamp(min=0)
    lm = causal_lm(model)
    head = lm.get_output_embeddings()
    mask = loss_mask[:, 1:]
    if _zero3_partitioned(head.weight):
        # the root module: ZeRO-3's per-forward bookkeeping hangs on its pre-forward hook
        return _logprobs_from_logits(
            model, input_ids, attention_mask, position_ids, mask, with_entropy, temperature, entropy_grad
        )
    hidden = lm.base_model(
        input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids, use_cache=False
    ).last_hidden_state  # [B, T, H]
    return token_logprobs_and_entropy(
        hidden[:, :-1],
        head.weight,
        input_ids[:, 1:],
        chunk_size=chunk_size,
        with_entropy=with_entropy,
        temperature=temperature,
        lm_head_bias=head.bias,
        mask=mask,
        entropy_grad=entropy_grad,
    )


def _logprobs_from_logits(model, input_ids, attention_mask, position_ids, mask, with_entropy, temperature, entropy_grad):
    logits = model(
        input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids, use_cache=False
    ).logits[:, :-1]  # [B, T-1, V]
    keep = mask.bool()
    logp = selective_log_softmax(logits, input_ids[:, 1:], temperature=temperature)  # [B, T-1]
    logp = torch.where(keep, logp, torch.zeros_like(logp))
    entropy = None
    if with_entropy:
        with torch.set_grad_enabled(entropy_grad and torch.is_grad_enabled()):
            rows = []
            for row in logits:  # [T-1, V]: one float32 row at a time
                lp = torch.log_softmax(row.float() / temperature, dim=-1)
                rows.append(-(lp.exp() * lp).sum(-1))
            entropy = torch.where(keep, torch.stack(rows), torch.zeros_like(logp))
    return logp, entropy
