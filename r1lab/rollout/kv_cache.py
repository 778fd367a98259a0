"""A KV cache that grows by doubling, for the decode loop.

Hugging Face's ``DynamicLayer`` appends each step's keys and values with ``torch.cat``, copying the
whole cache every token: on a CPU with a 512-row batch that copy was 40% of decode time. This layer
writes into preallocated buffers and hands attention a view of the filled part.
"""
from __future__ import annotations

import inspect

import torch
from transformers import LlamaForCausalLM
from transformers.cache_utils import Cache, DynamicLayer

# The keyword a model's forward takes its cache by, and the output field that returns it:
# transformers 5.2x calls both ``cache``; 5.19 (the release vLLM's CPU build pins) ``past_key_values``.
CACHE_KWARG = "cache" if "cache" in inspect.signature(LlamaForCausalLM.forward).parameters else "past_key_values"


class GrowingLayer(DynamicLayer):
    """A ``DynamicLayer`` with capacity: amortised O(1) copying per generated token."""

    def lazy_initialization(self, key_states: torch.Tensor, value_states: torch.Tensor) -> None:
        super().lazy_initialization(key_states, value_states)
        self._k: torch.Tensor | None = None  # [B, H, capacity, D]
        self._v: torch.Tensor | None = None
        self._len = 0

    def _grow(self, needed: int, like_k: torch.Tensor, like_v: torch.Tensor) -> None:
        capacity = max(64, 2 * needed)
        k = like_k.new_empty(*like_k.shape[:-2], capacity, like_k.shape[-1])
        v = like_v.new_empty(*like_v.shape[:-2], capacity, like_v.shape[-1])
        if self._k is not None:
            k[..., : self._len, :] = self._k[..., : self._len, :]
            v[..., : self._len, :] = self._v[..., : self._len, :]
        self._k, self._v = k, v

    def _expose(self) -> None:
        self.keys = self._k[..., : self._len, :]
        self.values = self._v[..., : self._len, :]

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs):
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        n = key_states.shape[-2]
        if self._k is None or self._len + n > self._k.shape[-2]:
            self._grow(self._len + n, key_states, value_states)
        self._k[..., self._len : self._len + n, :] = key_states
        self._v[..., self._len : self._len + n, :] = value_states
        self._len += n
        self._expose()
        return self.keys, self.values

    def batch_select_indices(self, indices: torch.Tensor) -> None:
        if self._k is not None:
            self._k, self._v = self._k[indices], self._v[indices]
            self._expose()

    def crop(self, tokens_to_remove: int) -> None:
        raise NotImplementedError("GrowingLayer is for sampling only")

    def reorder_cache(self, beam_idx: torch.LongTensor) -> None:
        raise NotImplementedError("GrowingLayer is for sampling only")


def growing_cache() -> Cache:
    return Cache(layer_class_to_replicate=GrowingLayer)
