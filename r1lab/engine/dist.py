"""Process-group setup and the few collectives the stages need.

A plain ``python`` / ``r1lab`` run is a world of one, set up without the launcher's rendezvous
variables (and without MPI discovery). Under ``deepspeed`` or ``torchrun`` they come from the launcher.
"""
from __future__ import annotations

import contextlib
import importlib
import os
import socket
from datetime import timedelta

from typing import Mapping

import torch
import torch.distributed as torch_dist


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class CollectiveTimeout(RuntimeError):
    """A collective did not complete in ``engine.collective_timeout_minutes``: another rank is gone or stuck."""


_timeout_minutes = 30.0


def device() -> torch.device:
    if torch.cuda.is_available():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
    return torch.device("cpu")


def init_distributed(cpu_shm_allreduce: bool = False, timeout_minutes: float = 30.0) -> None:
    """Initialise the process group once (gloo on CPU, nccl on GPU).

    ``timeout_minutes`` bounds every collective: one that waits longer raises (gloo) or aborts
    the process (NCCL's watchdog), instead of hanging a job whose other rank has died.
    """
    global _timeout_minutes
    if torch_dist.is_available() and torch_dist.is_initialized():
        _adopt_process_group()
        return
    _timeout_minutes = timeout_minutes
    launched = "MASTER_PORT" in os.environ  # torchrun, deepspeed and srun+torchrun set the rendezvous
    for key, value in (("RANK", "0"), ("LOCAL_RANK", "0"), ("WORLD_SIZE", "1")):
        os.environ.setdefault(key, value)  # DeepSpeed reads LOCAL_RANK from the environment
    cuda = torch.cuda.is_available()
    os.environ.setdefault("DS_ACCELERATOR", "cuda" if cuda else "cpu")
    if not cuda and not cpu_shm_allreduce:
        # DeepSpeed JIT-compiles a shared-memory allreduce op on first use (minutes on 2 cores);
        # gloo's allreduce is enough for CPU runs, so skip the build unless asked for.
        importlib.import_module("deepspeed.comm.torch").build_shm_op = lambda: None
    import deepspeed

    if cuda:
        torch.cuda.set_device(device())
    rendezvous = {}
    if not launched:
        # A world of one: rendezvous on a private port that is not exported, so that processes
        # started from this one (which inherit its environment) do not try to bind it as well.
        rendezvous = dict(init_method=f"tcp://127.0.0.1:{_free_port()}", rank=0, world_size=1,
                          auto_mpi_discovery=False)
    deepspeed.init_distributed(
        dist_backend="nccl" if cuda else "gloo", timeout=timedelta(minutes=timeout_minutes), **rendezvous
    )


def _adopt_process_group() -> None:
    """A process group made by someone else (an in-process vLLM engine makes one when there is
    none) becomes DeepSpeed's too: its launcher variables and ``deepspeed.comm`` are set from it."""
    import deepspeed

    for key, value in (("RANK", torch_dist.get_rank()), ("LOCAL_RANK", 0), ("WORLD_SIZE", torch_dist.get_world_size())):
        os.environ.setdefault(key, str(value))
    if not deepspeed.comm.is_initialized():
        deepspeed.init_distributed(dist_backend=torch_dist.get_backend(), dist_init_required=False)


def rank() -> int:
    return torch_dist.get_rank() if torch_dist.is_available() and torch_dist.is_initialized() else 0


def world_size() -> int:
    return torch_dist.get_world_size() if torch_dist.is_available() and torch_dist.is_initialized() else 1


def is_main() -> bool:
    return rank() == 0


def _is_timeout(err: BaseException) -> bool:
    text = str(err).lower()
    return "timed out" in text or "timeout" in text


@contextlib.contextmanager
def collective(operation: str):
    """Turn a timed-out collective inside the block into a `CollectiveTimeout` naming rank and operation."""
    try:
        yield
    except RuntimeError as err:  # torch.distributed.DistBackendError is a RuntimeError
        if isinstance(err, CollectiveTimeout) or not _is_timeout(err):
            raise
        raise CollectiveTimeout(
            f"rank {rank()} of {world_size()}: {operation} did not complete within "
            f"engine.collective_timeout_minutes={_timeout_minutes:g}; another rank has probably "
            f"crashed or is stuck (see its log). Underlying error: {err}"
        ) from err


def barrier(operation: str = "barrier") -> None:
    if world_size() > 1:
        with collective(operation):
            torch_dist.barrier()


def all_reduce_sum(t: torch.Tensor, operation: str = "all_reduce") -> torch.Tensor:
    """Sum ``t`` over ranks; returned on ``t``'s device (NCCL needs the GPU copy, gloo the CPU one)."""
    if world_size() > 1:
        home = t.device
        t = t.to(device(), copy=True)
        with collective(operation):
            torch_dist.all_reduce(t, op=torch_dist.ReduceOp.SUM)
        t = t.to(home)
    return t


def sum_by_name(values: Mapping[str, float], dtype: torch.dtype = torch.float32) -> dict[str, float]:
    """Each named value summed over ranks, in one collective: ``{"loss": 1.5, "tokens": 40.0}``
    on two ranks gives ``{"loss": 3.0, ...}``. Values travel as ``dtype``: metrics keep float32,
    sums that must not lose digits (DPO's) pass float64."""
    names = list(values)
    total = all_reduce_sum(torch.tensor([float(values[n]) for n in names], dtype=dtype), f"all_reduce ({', '.join(names[:3])}...)")
    return dict(zip(names, total.tolist()))


def any_rank(flag: bool, operation: str = "all_reduce (any rank)") -> bool:
    """True on every rank if ``flag`` is true on any rank."""
    if world_size() == 1:
        return flag
    return bool(all_reduce_sum(torch.tensor([1.0 if flag else 0.0]), operation).item() > 0)


def all_gather_objects(obj):
    """Gather a picklable object from every rank, in rank order."""
    if world_size() == 1:
        return [obj]
    out = [None] * world_size()
    with collective("all_gather_object"):
        torch_dist.all_gather_object(out, obj)
    return out


def map_sharded(num_items: int, fn):
    """Run ``fn`` on this rank's share of ``range(num_items)`` and return every rank's results in
    item order, on every rank.

    Items are dealt round-robin (rank r gets r, r + world, ...); ``fn(indices)`` returns one
    result per index, in the order given.
    """
    mine = list(range(rank(), num_items, world_size()))
    local = list(zip(mine, fn(mine)))
    merged = dict(pair for part in all_gather_objects(local) for pair in part)
    return [merged[i] for i in range(num_items)]
