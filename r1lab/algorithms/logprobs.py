"""Token log-probs (and entropy) without materialising ``[B, L, V]`` float32 logits.

For a 150k-token vocabulary a ``[B, L, V]`` float32 tensor is the largest allocation of an RL
step (8 x 4096 x 152k x 4 bytes = 20 GB), and autograd keeps one for the backward pass as well.
``token_logprobs_and_entropy`` instead applies the LM head to chunks of the *valid* positions,
does the log-softmax in float32 and keeps only the log-prob of the target token. Each chunk runs
under ``torch.utils.checkpoint``, so the backward pass recomputes one chunk's logits at a time:
peak extra memory is ``chunk_size x V`` floats, forward and backward.

``selective_log_softmax`` is the same gather for callers that already hold the logits; it loops
over rows so the float32 copy is one row at a time.
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.checkpoint import checkpoint


def _chunk_logprobs(
    hidden: Tensor,  # [n, H]
    weight: Tensor,  # [V, H]
    bias: Optional[Tensor],  # [V] or None
    targets: Tensor,  # [n] long
    temperature: float,
    with_entropy: bool = False,
    entropy_grad: bool = False,
) -> tuple[Tensor, Tensor]:  # ([n] float32 log-probs, [n] float32 entropy; empty if not asked)
    logits = F.linear(hidden, weight, bias).float()  # [n, V]
    if temperature != 1.0:
        logits = logits / temperature
    target_logits = logits.gather(1, targets.unsqueeze(1)).squeeze(1)  # [n]
    logz = torch.logsumexp(logits, dim=1)
    if with_entropy:  # from the same logits: no second LM-head projection
        with torch.set_grad_enabled(entropy_grad and torch.is_grad_enabled()):
            logp_all = logits - logz.unsqueeze(1)
            entropy = -(logp_all.exp() * logp_all).sum(dim=1)
    else:
        entropy = logits.new_zeros(0)
    return target_logits - logz, entropy


def token_logprobs_and_entropy(
    hidden: Tensor,
    lm_head_weight: Tensor,
    target_ids: Tensor,
    chunk_size: int = 1024,
    with_entropy: bool = True,
    temperature: float = 1.0,
    lm_head_bias: Optional[Tensor] = None,
    mask: Optional[Tensor] = None,
    entropy_grad: bool = False,
) -> tuple[Tensor, Optional[Tensor]]:
    """Log-prob of ``target_ids`` under ``softmax((hidden @ W.T + b) / temperature)``.

    Args:
        hidden: ``[B, L, H]`` final hidden states (after the last norm), any float dtype.
        lm_head_weight: ``[V, H]`` (``model.get_output_embeddings().weight``).
        target_ids: ``[B, L]`` token whose log-prob to take at each position (the next token;
            shift before calling).
        chunk_size: positions per chunk; peak extra memory is ``chunk_size * V`` float32.
        with_entropy: also return the entropy of each position's distribution.
        entropy_grad: the entropy carries a gradient too (an entropy term in the loss);
            otherwise it is detached (logged only).
        temperature: logits are divided by it (use the sampling temperature, so the log-probs
            are those of the distribution the tokens were drawn from).
        lm_head_bias: ``[V]`` or ``None`` (most LMs have no bias).
        mask: ``[B, L]``; positions where it is 0 are skipped and get log-prob and entropy 0.
            ``None`` = every position.

    Returns:
        ``(logp [B, L] float32, entropy [B, L] float32 or None)``. ``logp`` has a gradient with
        respect to ``hidden``, ``lm_head_weight`` and ``lm_head_bias`` when they require one.
    """
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    b, l, h = hidden.shape
    flat_hidden = hidden.reshape(b * l, h)  # [B*L, H]
    flat_targets = target_ids.reshape(b * l).long()  # [B*L]
    if mask is not None:
        positions = mask.reshape(b * l).nonzero().squeeze(1)  # [N] valid flat positions
        flat_hidden = flat_hidden.index_select(0, positions)
        flat_targets = flat_targets.index_select(0, positions)
    n = flat_hidden.shape[0]

    needs_grad = torch.is_grad_enabled() and (
        hidden.requires_grad
        or lm_head_weight.requires_grad
        or (lm_head_bias is not None and lm_head_bias.requires_grad)
    )
    logp_chunks: list[Tensor] = []
    entropy_chunks: list[Tensor] = []
    for start in range(0, n, chunk_size):
        h_chunk = flat_hidden[start : start + chunk_size]
        t_chunk = flat_targets[start : start + chunk_size]
        if needs_grad:
            # Saves only the inputs; the chunk's logits are recomputed in backward.
            logp, ent = checkpoint(
                _chunk_logprobs, h_chunk, lm_head_weight, lm_head_bias, t_chunk, temperature, with_entropy,
                entropy_grad, use_reentrant=False,
            )
        else:
            logp, ent = _chunk_logprobs(h_chunk, lm_head_weight, lm_head_bias, t_chunk, temperature, with_entropy)
        logp_chunks.append(logp)
        if with_entropy:
            entropy_chunks.append(ent)

    tie = (hidden, lm_head_weight) if needs_grad else None
    selected = positions if mask is not None else None
    logp = _scatter(logp_chunks, (b, l), selected, hidden.device, tie)
    entropy = _scatter(entropy_chunks, (b, l), selected, hidden.device, tie) if with_entropy else None
    return logp, entropy


def _scatter(chunks: list[Tensor], shape: tuple[int, int], positions: Optional[Tensor], device,
             tie: Optional[tuple[Tensor, Tensor]] = None) -> Tensor:  # -> [B, L] float32
    """The chunks' values at their flat ``positions`` of a ``[B, L]`` float32 tensor, 0 elsewhere
    (``positions`` None: the chunks are every position). ``tie``: (hidden, lm_head_weight) when a
    gradient is wanted, so that zeros from an empty selection still hang on the graph."""
    b, l = shape
    flat = torch.cat(chunks) if chunks else torch.zeros(0, dtype=torch.float32, device=device)
    if not chunks and tie is not None:
        # nothing selected (a micro-batch whose every row is masked, e.g. all cut under
        # overlong=mask): zeros still tied to the graph, so the loss has a grad_fn and
        # backward (and ZeRO's gradient collectives) run with zero gradients
        hidden, lm_head_weight = tie
        flat = flat + (hidden.sum() * 0.0 + lm_head_weight.sum() * 0.0).float()
    if positions is None:
        return flat.reshape(b, l)
    out = torch.zeros(b * l, dtype=torch.float32, device=device)
    return out.index_put((positions,), flat).reshape(b, l)


def selective_log_softmax(logits: Tensor, ids: Tensor, temperature: float = 1.0) -> Tensor:
    """``log_softmax(logits / temperature, -1).gather(-1, ids)``, one row at a time, in float32.

    ``logits``: ``[B, L, V]``; ``ids``: ``[B, L]``. Returns ``[B, L]`` float32. Without grad
    the extra memory is one ``[L, V]`` float32 row instead of a ``[B, L, V]`` copy; with grad,
    autograd still keeps every row's log-softmax for backward, so use
    ``token_logprobs_and_entropy`` (from hidden states) when the backward pass must stay lean.
    """
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    rows = []
    for row_logits, row_ids in zip(logits, ids):  # [L, V], [L]
        row = row_logits.float()
        if temperature != 1.0:
            row = row / temperature
        rows.append(row.log_softmax(dim=-1).gather(-1, row_ids.long().unsqueeze(-1)).squeeze(-1))
    if not rows:
        return logits.new_zeros(ids.shape, dtype=torch.float32)
    return torch.stack(rows)
