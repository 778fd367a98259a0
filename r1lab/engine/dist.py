"""Process-group setup and the few collectives the stages need.

A plain ``python`` / ``r1lab`` run is a world of one: the rendezvous variables are filled in so
DeepSpeed does not look for MPI. Under ``deepspeed`` or ``torchrun`` they come from the launcher.
"""
from __future__ import annotations

import importlib
import os
import socket
from datetime import timedelta

import torch
import torch.distributed as torch_dist


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def device() -> torch.device:
    if torch.cuda.is_available():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
    return torch.device("cpu")


def init_distributed(cpu_shm_allreduce: bool = False, timeout_minutes: float = 30.0) -> None:
    """Initialise the process group once (gloo on CPU, nccl on GPU)."""
    if torch_dist.is_available() and torch_dist.is_initialized():
        return
    for key, value in (("RANK", "0"), ("LOCAL_RANK", "0"), ("WORLD_SIZE", "1"), ("MASTER_ADDR", "127.0.0.1")):
        os.environ.setdefault(key, value)
    os.environ.setdefault("MASTER_PORT", str(_free_port()))
    cuda = torch.cuda.is_available()
    os.environ.setdefault("DS_ACCELERATOR", "cuda" if cuda else "cpu")
    if not cuda and not cpu_shm_allreduce:
        # DeepSpeed JIT-compiles a shared-memory allreduce op on first use (minutes on 2 cores);
        # gloo's allreduce is enough for CPU runs, so skip the build unless asked for.
        importlib.import_module("deepspeed.comm.torch").build_shm_op = lambda: None
    import deepspeed

    if cuda:
        torch.cuda.set_device(device())
    deepspeed.init_distributed(
        dist_backend="nccl" if cuda else "gloo", timeout=timedelta(minutes=timeout_minutes)
    )


def rank() -> int:
    return torch_dist.get_rank() if torch_dist.is_available() and torch_dist.is_initialized() else 0


def world_size() -> int:
    return torch_dist.get_world_size() if torch_dist.is_available() and torch_dist.is_initialized() else 1


def is_main() -> bool:
    return rank() == 0


def barrier() -> None:
    if world_size() > 1:
        torch_dist.barrier()


def all_reduce_sum(t: torch.Tensor) -> torch.Tensor:
    if world_size() > 1:
        t = t.clone()
        torch_dist.all_reduce(t, op=torch_dist.ReduceOp.SUM)
    return t


def all_gather_objects(obj):
    """Gather a picklable object from every rank, in rank order."""
    if world_size() == 1:
        return [obj]
    out = [None] * world_size()
    torch_dist.all_gather_object(out, obj)
    return out
