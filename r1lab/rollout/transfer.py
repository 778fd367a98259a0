"""Moving weights from a trainer rank to a rollout worker over a two-process gloo group.

The same transport vLLM's NCCL weight-transfer backend uses, with gloo in place of NCCL so it
runs on CPUs: the trainer (the sender, rank 0) opens a ``TCPStore`` and a stateless
``ProcessGroupGloo`` with one worker (rank 1), outside ``torch.distributed``'s default group (the
trainer's data-parallel ranks keep theirs). On GPUs the vLLM worker takes vLLM's own ``nccl``
backend instead; the hf worker and the vLLM CPU worker take this one
(`r1lab.rollout.vllm_worker` registers it in ``vllm.distributed.weight_transfer`` as
``r1lab_gloo``).

A push is a stream of buckets. Each bucket is announced on the control connection by its
metadata (``names``, ``dtype_names``, ``shapes``: vLLM's ``update_weights`` info) and then
broadcast as one flat byte buffer, so a bucket costs one collective whatever its dtypes.
"""
from __future__ import annotations

import datetime
import math
from dataclasses import dataclass
from typing import Iterable, Iterator

import torch
import torch.distributed as tdist

DEFAULT_BUCKET_BYTES = 64 << 20


@dataclass
class BucketInfo:
    """One bucket's metadata, in vLLM's ``update_weights`` form."""

    names: list[str]
    dtype_names: list[str]
    shapes: list[list[int]]

    @property
    def nbytes(self) -> int:
        return sum(math.prod(s) * _dtype(d).itemsize for s, d in zip(self.shapes, self.dtype_names))

    def as_dict(self) -> dict:
        return {"names": self.names, "dtype_names": self.dtype_names, "shapes": self.shapes}


def _dtype(name: str) -> torch.dtype:
    dtype = getattr(torch, name, None)
    if not isinstance(dtype, torch.dtype):
        raise ValueError(f"weight transfer: unknown dtype {name!r}")
    return dtype


def buckets(weights: Iterable[tuple[str, torch.Tensor]], bucket_bytes: int = DEFAULT_BUCKET_BYTES) -> Iterator[tuple[BucketInfo, list[torch.Tensor]]]:
    """Group ``(name, tensor)`` pairs into buckets of at most ``bucket_bytes`` (a larger tensor
    is a bucket of its own), in order."""
    names, tensors, size = [], [], 0
    for name, tensor in weights:
        nbytes = tensor.numel() * tensor.element_size()
        if names and size + nbytes > bucket_bytes:
            yield _info(names, tensors), tensors
            names, tensors, size = [], [], 0
        names.append(name)
        tensors.append(tensor)
        size += nbytes
    if names:
        yield _info(names, tensors), tensors


def _info(names: list[str], tensors: list[torch.Tensor]) -> BucketInfo:
    return BucketInfo(list(names), [str(t.dtype).removeprefix("torch.") for t in tensors], [list(t.shape) for t in tensors])


def pack(tensors: list[torch.Tensor]) -> torch.Tensor:
    """The tensors' bytes, one after the other, as one flat uint8 CPU tensor."""
    return torch.cat([t.detach().to("cpu").contiguous().reshape(-1).view(torch.uint8) for t in tensors])


def unpack(flat: torch.Tensor, info: BucketInfo) -> list[tuple[str, torch.Tensor]]:
    """Inverse of `pack`: ``(name, tensor)`` views of ``flat`` laid out as ``info`` says."""
    out, offset = [], 0
    for name, dtype_name, shape in zip(info.names, info.dtype_names, info.shapes):
        dtype = _dtype(dtype_name)
        nbytes = math.prod(shape) * dtype.itemsize
        out.append((name, flat[offset : offset + nbytes].view(dtype).view(shape)))
        offset += nbytes
    if offset != flat.numel():
        raise ValueError(f"weight transfer: bucket of {flat.numel()} bytes, its metadata says {offset}")
    return out


class GlooGroup:
    """A two-process gloo group: rank 0 the trainer (it hosts the store), rank 1 the worker."""

    def __init__(self, host: str, port: int, rank: int, timeout_s: float, store: tdist.TCPStore | None = None) -> None:
        timeout = datetime.timedelta(seconds=timeout_s or 3600)
        self.store = store or tdist.TCPStore(host, port, 2, rank == 0, timeout, wait_for_workers=False)
        self.group = tdist.ProcessGroupGloo(self.store, rank, 2, timeout)

    @staticmethod
    def open_store(host: str, timeout_s: float) -> tdist.TCPStore:
        """The trainer's store on a free port of ``host`` (its ``.port``), before the worker joins."""
        timeout = datetime.timedelta(seconds=timeout_s or 3600)
        return tdist.TCPStore(host, 0, 2, True, timeout, wait_for_workers=False)

    def broadcast(self, flat: torch.Tensor) -> None:
        opts = tdist.BroadcastOptions()
        opts.rootRank = 0
        self.group.broadcast([flat], opts).wait()

    def receive(self, info: BucketInfo) -> list[tuple[str, torch.Tensor]]:
        """The worker's side of one bucket's broadcast."""
        flat = torch.empty(info.nbytes, dtype=torch.uint8)
        self.broadcast(flat)
        return unpack(flat, info)
