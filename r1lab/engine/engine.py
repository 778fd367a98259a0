"""The training engine: the only code that calls DeepSpeed.

`Engine` wraps ``deepspeed.initialize`` with the configured ZeRO stage and precision, and owns
backward, optimizer step (with gradient clipping and the lr schedule), resumable save/load and the
Hugging Face export. On a CPU it runs DeepSpeed's CPU path (gloo, fp32); on GPUs bf16.

Gradient accumulation is driven by the caller, micro-batch by micro-batch: losses arrive already
normalised by global counts (see ``r1lab.algorithms.reduce``), so DeepSpeed must not divide them
again (``gradient_accumulation_steps`` stays 1 and the boundary is set per call).
"""
from __future__ import annotations

import json
import random
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from r1lab.config.schema import EngineConfig
from r1lab.engine import dist
from r1lab.engine.checkpoint import commit_dir, latest_resumable, prune, step_dirname, tmp_path
from r1lab.engine.schedule import lr_multiplier


@dataclass
class OptimSettings:
    lr: float
    weight_decay: float
    max_grad_norm: float
    schedule: str
    warmup_steps: int
    total_steps: int
    min_lr_ratio: float
    micro_batch_per_device: int


def use_bf16(cfg: EngineConfig) -> bool:
    if cfg.precision == "auto":
        return torch.cuda.is_available()
    if cfg.precision not in ("fp32", "bf16"):
        raise ValueError(f"engine.precision={cfg.precision!r}; valid: auto, fp32, bf16")
    return cfg.precision == "bf16"


def deepspeed_config(cfg: EngineConfig, opt: OptimSettings) -> dict[str, Any]:
    zero: dict[str, Any] = {"stage": cfg.zero_stage}
    if cfg.offload_optimizer:
        zero["offload_optimizer"] = {"device": "cpu", "pin_memory": torch.cuda.is_available()}
    if cfg.zero_stage == 3:
        zero["stage3_gather_16bit_weights_on_model_save"] = True
    return {
        "train_micro_batch_size_per_gpu": opt.micro_batch_per_device,
        "gradient_accumulation_steps": 1,
        "gradient_clipping": opt.max_grad_norm,
        "zero_optimization": zero,
        "optimizer": {
            "type": "AdamW",
            # torch_adam: the fused DeepSpeed Adam needs a JIT build; torch's AdamW does not.
            "params": {"lr": opt.lr, "weight_decay": opt.weight_decay, "torch_adam": not cfg.offload_optimizer},
        },
        "bf16": {"enabled": use_bf16(cfg)},
        "steps_per_print": 1 << 30,
        "wall_clock_breakdown": False,
    }


class Engine:
    """A model under DeepSpeed, trained with caller-driven gradient accumulation."""

    def __init__(self, model: torch.nn.Module, cfg: EngineConfig, opt: OptimSettings):
        import deepspeed

        dist.init_distributed(cfg.cpu_shm_allreduce)
        if cfg.gradient_checkpointing:
            model.gradient_checkpointing_enable()
            model.config.use_cache = False
        self.cfg, self.opt = cfg, opt

        def scheduler(optimizer):
            return torch.optim.lr_scheduler.LambdaLR(
                optimizer,
                lambda step: lr_multiplier(step, opt.total_steps, opt.warmup_steps, opt.schedule, opt.min_lr_ratio),
            )

        self.ds, self.optimizer, _, self.scheduler = deepspeed.initialize(
            model=model,
            model_parameters=[p for p in model.parameters() if p.requires_grad],
            config=deepspeed_config(cfg, opt),
            lr_scheduler=scheduler,
        )
        self.step = 0  # optimizer steps taken
        self._grad_norm = float("nan")

    @property
    def module(self) -> torch.nn.Module:
        return self.ds.module

    @property
    def device(self) -> torch.device:
        return self.ds.device

    def train(self) -> None:
        self.ds.train()

    def eval(self) -> None:
        self.ds.eval()

    def backward(self, loss: torch.Tensor, last_micro_batch: bool) -> None:
        """Accumulate the gradient of ``loss``; on the last micro-batch, take the optimizer step."""
        self.ds.set_gradient_accumulation_boundary(last_micro_batch)
        self.ds.backward(loss, scale_wrt_gas=False)
        if last_micro_batch and self.cfg.zero_stage == 0:
            # without ZeRO DeepSpeed clips but does not report the norm: measure it before the step
            grads = [p.grad.detach().norm() for p in self.module.parameters() if p.grad is not None]
            self._grad_norm = float(torch.stack(grads).norm()) if grads else 0.0
        self.ds.step()  # a no-op except at the boundary
        if last_micro_batch:
            self.step += 1

    def grad_norm(self) -> float:
        """Global gradient norm of the last optimizer step, before clipping."""
        if self.cfg.zero_stage == 0:
            return self._grad_norm
        norm = self.ds.get_global_grad_norm()
        return float(norm) if norm is not None else float("nan")

    def lr(self) -> float:
        return float(self.optimizer.param_groups[0]["lr"])

    # --- resumable checkpoints -------------------------------------------------------------
    def save(self, root: Path, state: dict[str, Any], keep: int) -> Path:
        """Write a resumable checkpoint (model, optimizer, scheduler, RNG of every rank, ``state``)."""
        final = root / step_dirname(self.step)
        tmp = tmp_path(final)
        if dist.is_main():
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir(parents=True)
        dist.barrier()
        self.ds.save_checkpoint(str(tmp), tag="ds", save_latest=False)
        torch.save(_rng_state(), tmp / f"rng-rank{dist.rank()}.pt")
        dist.barrier()
        if dist.is_main():
            (tmp / "r1lab_state.json").write_text(json.dumps({"step": self.step, **state}))
            commit_dir(tmp, final)
            prune(root, keep)
        dist.barrier()
        return final

    def load(self, root: Path) -> dict[str, Any] | None:
        """Restore the newest complete checkpoint under ``root``; None if there is none."""
        path = latest_resumable(root)
        if path is None:
            return None
        self.ds.load_checkpoint(str(path), tag="ds", load_optimizer_states=True, load_lr_scheduler_states=True)
        rng = path / f"rng-rank{dist.rank()}.pt"
        if rng.exists():
            _set_rng_state(torch.load(rng, weights_only=False))
        state = json.loads((path / "r1lab_state.json").read_text())
        self.step = int(state["step"])
        return state

    # --- export ------------------------------------------------------------------------------
    def save_pretrained(self, path: Path, tokenizer) -> None:
        """Write the model in Hugging Face format (loads with AutoModelForCausalLM), atomically."""
        state_dict = None
        if self.cfg.zero_stage == 3:
            state_dict = self.ds._zero3_consolidated_16bit_state_dict()
        if dist.is_main():
            tmp = tmp_path(path)
            shutil.rmtree(tmp, ignore_errors=True)
            self.module.save_pretrained(tmp, state_dict=state_dict)
            tokenizer.save_pretrained(tmp)
            commit_dir(tmp, path)
        dist.barrier()


def _rng_state() -> dict[str, Any]:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])
