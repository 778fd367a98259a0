"""Decode attention with a prompt prefix shared by the rows sampled from it (cascade attention).

GRPO, evaluation and rejection sampling draw k completions per prompt. Decoding is bound by
reading the KV cache, and with the prompt copied into every row most of that cache is k copies of
the same prompt. Here the prompt's keys and values are kept once per distinct prompt
(``SharedPrefix``) and the cache holds only the generated tokens of each row; attention scores
the query of every row against its prompt (one matmul per prompt for all its rows) and against
its own generated tokens, and normalises both parts together, so the result equals ordinary
attention over ``prompt + generated``.

It plugs into Hugging Face models as an attention implementation (``ATTENTION``), switched on
only while decoding (``decoding_with``) and only for architectures whose attention is plain
softmax attention with rotary positions applied before the cache (``SUPPORTED``).
"""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass

import torch
from transformers import AttentionInterface

ATTENTION = "r1lab_shared_prefix"
SUPPORTED = ("llama", "qwen2", "qwen3", "mistral")


@dataclass
class SharedPrefix:
    keys: list[torch.Tensor]  # per layer [U, H_kv, P, D]: the distinct prompts, left-padded
    values: list[torch.Tensor]  # per layer [U, H_kv, P, D]
    padding: torch.Tensor  # [U, 1, 1, P] additive: 0 on real prompt tokens, -inf on left padding
    group: torch.Tensor  # [B] long: the prompt of each live row
    slot: torch.Tensor  # [B] long: the row's place among its prompt's rows
    slots: int  # rows per prompt at most

    @classmethod
    def from_prefill(cls, cache, mask: torch.Tensor, row_of: torch.Tensor) -> "SharedPrefix":
        """The prompt cache of a prefill over the distinct prompts; ``row_of[b]`` = prompt of row b."""
        slot = torch.zeros_like(row_of)
        counts = torch.zeros(mask.shape[0], dtype=torch.long, device=row_of.device)
        for b, u in enumerate(row_of.tolist()):  # k-th copy of a prompt -> slot k
            slot[b] = counts[u]
            counts[u] += 1
        return cls(
            keys=[layer.keys for layer in cache.layers],
            values=[layer.values for layer in cache.layers],
            padding=torch.zeros(mask.shape, dtype=cache.layers[0].keys.dtype, device=mask.device)
            .masked_fill_(~mask.bool(), float("-inf"))[:, None, None, :],
            group=row_of,
            slot=slot,
            slots=int(counts.max()),
        )

    def select(self, keep: torch.Tensor) -> None:
        """Keep the live rows ``keep`` (indices into the current rows), as the cache does."""
        self.group, self.slot = self.group[keep], self.slot[keep]


def shared_prefix_attention(
    module: torch.nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    scaling: float,
    dropout: float = 0.0,
    shared_prefix: SharedPrefix | None = None,
    **kwargs,
) -> tuple[torch.Tensor, None]:
    """One decode step. query ``[B, H, 1, D]``; key, value: each row's generated tokens ``[B, H_kv, t, D]``.

    Returns ``[B, 1, H, D]`` (the layout Hugging Face attention functions return).
    """
    if shared_prefix is None or query.shape[2] != 1:
        raise RuntimeError(f"{ATTENTION} attention is for decoding one token with a SharedPrefix")
    p = shared_prefix
    kp, vp = p.keys[module.layer_idx], p.values[module.layer_idx]
    num_prompts, kv_heads, prefix_len, dim = kp.shape
    rows, heads = query.shape[0], query.shape[1]
    rep = heads // kv_heads  # grouped-query attention: query heads per key/value head
    q = query.reshape(rows, kv_heads, rep, dim)
    # every prompt's rows against its keys at once: [U, H_kv, slots * rep, D] x [U, H_kv, P, D]
    grouped = q.new_zeros(num_prompts, kv_heads, p.slots, rep, dim)
    grouped[p.group, :, p.slot] = q
    grouped = grouped.view(num_prompts, kv_heads, p.slots * rep, dim)
    prefix_out, prefix_lse = _attend(grouped, kp, vp, scaling, p.padding)
    prefix_out = prefix_out.view(num_prompts, kv_heads, p.slots, rep, dim)[p.group, :, p.slot]  # [B, H_kv, rep, D]
    prefix_lse = prefix_lse.view(num_prompts, kv_heads, p.slots, rep)[p.group, :, p.slot]  # [B, H_kv, rep]
    own_out, own_lse = _attend(q, key, value, scaling)
    # the two partial softmaxes, each normalised over its own keys, reweighted by their mass
    top = torch.maximum(prefix_lse, own_lse)
    w_prefix, w_own = (prefix_lse - top).exp(), (own_lse - top).exp()
    out = (prefix_out * w_prefix[..., None] + own_out * w_own[..., None]) / (w_prefix + w_own)[..., None]
    return out.to(query.dtype).reshape(rows, heads, 1, dim).transpose(1, 2), None


def _attend(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float, mask: torch.Tensor | None = None, fused: bool | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """``softmax(q k^T * scale + mask) v`` ``[..., Lq, D]`` and the log-sum-exp of its scores ``[..., Lq]``."""
    if fused is None:
        fused = q.device.type == "cpu" and hasattr(torch.ops.aten, "_scaled_dot_product_flash_attention_for_cpu")
    if fused:
        # torch's fused CPU kernel returns the log-sum-exp beside the output
        out, lse = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu(q, k, v, 0.0, False, attn_mask=mask, scale=scale)
        return out, lse
    scores = (q @ k.transpose(-1, -2)).float() * scale
    if mask is not None:
        scores = scores + mask
    lse = scores.logsumexp(-1)
    return ((scores - lse[..., None]).exp().to(q.dtype) @ v), lse


AttentionInterface.register(ATTENTION, shared_prefix_attention)


def supports_shared_prefix(model: torch.nn.Module) -> bool:
    """A Hugging Face model whose attention this module can stand in for while decoding."""
    config = getattr(model, "config", None)
    return config is not None and getattr(config, "model_type", None) in SUPPORTED and not getattr(config, "use_sliding_window", False)


@contextmanager
def decoding_with(model: torch.nn.Module, implementation: str):
    """Switch the model's attention implementation for the duration of a decode loop."""
    config = model.config
    before = config._attn_implementation
    config._attn_implementation = implementation
    try:
        yield
    finally:
        config._attn_implementation = before
