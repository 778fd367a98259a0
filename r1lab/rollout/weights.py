"""The policy's weights as (Hugging Face name, tensor) pairs, for pushing into an inference engine.

Under LoRA the adapters are folded in (``W + scale * B @ A``), under the plain model's names, so
the engine serves the merged model and the trainer's ``PeftModel`` stays unmerged. Under ZeRO-3
the parameters are gathered a bucket at a time (``bucket_bytes``), never the whole model at once;
each tensor is yielded while its bucket is gathered, copied, so the consumer may keep it.
"""
from __future__ import annotations

import contextlib
from typing import Callable, ContextManager, Iterator

import torch

from r1lab.models.lora import is_lora

GatherFn = Callable[[list[torch.nn.Parameter]], ContextManager]


def no_gather(params: list[torch.nn.Parameter]) -> ContextManager:
    return contextlib.nullcontext()


def _numel(p: torch.nn.Parameter) -> int:
    return int(getattr(p, "ds_numel", p.numel()))  # ZeRO-3 partitions: the full size is ds_numel


def _buckets(items: list[tuple[str, torch.nn.Parameter]], bucket_bytes: int) -> Iterator[list[tuple[str, torch.nn.Parameter]]]:
    bucket, size = [], 0
    for name, p in items:
        nbytes = _numel(p) * p.element_size()
        if bucket and size + nbytes > bucket_bytes:
            yield bucket
            bucket, size = [], 0
        bucket.append((name, p))
        size += nbytes
    if bucket:
        yield bucket


def _lora_owner(name: str) -> str:
    """``a.q_proj.base_layer.weight`` -> ``a.q_proj`` (the LoRA layer holding that base weight)."""
    return name.rsplit(".base_layer.", 1)[0]


@torch.no_grad()
def named_weights(
    module: torch.nn.Module, gather: GatherFn = no_gather, bucket_bytes: int = 256 << 20
) -> Iterator[tuple[str, torch.Tensor]]:
    """Every parameter of ``module`` (adapters merged) as ``(name, tensor)``, in module order.

    Names are those of the plain Hugging Face model (``model.layers.0.self_attn.q_proj.weight``);
    a tied weight appears under each of its names.
    """
    base = module.get_base_model() if is_lora(module) else module
    lora_layers = {}
    if is_lora(module):
        from peft.tuners.lora import LoraLayer

        lora_layers = {name: m for name, m in base.named_modules() if isinstance(m, LoraLayer)}
    # tied weights under each of their names: vLLM's in-place reload checks every layer got its own
    items = [(n, p) for n, p in base.named_parameters(remove_duplicate=False) if ".lora_" not in n]
    for bucket in _buckets(items, bucket_bytes):
        layers = [lora_layers[owner] for owner in map(_lora_owner, (n for n, _ in bucket)) if owner in lora_layers]
        adapters = {id(p): p for layer in layers for n, p in layer.named_parameters() if "lora_" in n}
        with gather([p for _, p in bucket] + list(adapters.values())):
            for name, p in bucket:
                weight = p.data
                layer = lora_layers.get(_lora_owner(name)) if name.endswith(".base_layer.weight") else None
                if layer is not None:
                    delta = sum(layer.get_delta_weight(a) for a in layer.active_adapters if a in layer.lora_A)
                    if torch.is_tensor(delta):
                        weight = weight + delta.to(weight.dtype)
                yield name.replace(".base_layer.", "."), weight.detach().clone()
