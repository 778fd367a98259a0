"""The training engine: the only code that calls DeepSpeed.

`Engine` wraps ``deepspeed.initialize`` with the configured ZeRO stage and precision, and owns
backward, optimizer step (with gradient clipping and the lr schedule), resumable save/load and the
Hugging Face export. On a CPU it runs DeepSpeed's CPU path (gloo, fp32); on GPUs bf16.

Gradient accumulation is driven by the caller, micro-batch by micro-batch: losses arrive already
normalised by global counts (see ``r1lab.algorithms.reduce``), so DeepSpeed must not divide them
again (``gradient_accumulation_steps`` stays 1 and the boundary is set per call).

Failing fast and stopping cleanly:

* A NaN/inf loss or gradient skips the optimizer step on every rank (no parameter update, the lr
  schedule does not advance), counted in ``nonfinite_steps``; ``max_nonfinite_steps`` consecutive
  skips raise `NonFiniteError`.
* A collective that outlives ``collective_timeout_minutes`` raises `dist.CollectiveTimeout`
  naming the rank and the operation.
* SIGTERM is remembered (`r1lab.engine.signals`); the loop asks ``preempted()`` after each step
  and calls ``save_and_exit``.

ZeRO-3 partitions the parameters: code that reads weights outside the model's forward (sampling,
exports) runs inside ``gathered()``.
"""
from __future__ import annotations

import contextlib
import json
import math
import random
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from r1lab.config.schema import EngineConfig
from r1lab.engine import dist, signals
from r1lab.engine.checkpoint import (
    STATE_FILE,
    commit_dir,
    file_manifest,
    latest_resumable,
    prune,
    step_dirname,
    tmp_path,
)
from r1lab.engine.schedule import lr_multiplier


class NonFiniteError(RuntimeError):
    """Too many consecutive optimizer steps had a NaN/inf loss or gradient."""


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
        # check_grad_overflow: skip (not apply) a bf16 ZeRO step whose gradient norm is NaN/inf
        "bf16": {"enabled": use_bf16(cfg), "check_grad_overflow": True},
        "steps_per_print": 1 << 30,
        "wall_clock_breakdown": False,
    }


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in extra.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


class Engine:
    """A model under DeepSpeed, trained with caller-driven gradient accumulation.

    ``ds_config_overrides`` is merged into the generated DeepSpeed config: an escape hatch for
    DeepSpeed options r1lab does not expose (e.g. ``zero_optimization.stage3_param_persistence_threshold``).
    """

    def __init__(
        self,
        model: torch.nn.Module,
        cfg: EngineConfig,
        opt: OptimSettings,
        ds_config_overrides: dict[str, Any] | None = None,
    ):
        import deepspeed

        if cfg.max_nonfinite_steps < 1:
            raise ValueError(f"engine.max_nonfinite_steps={cfg.max_nonfinite_steps}; must be >= 1")
        dist.init_distributed(cfg.cpu_shm_allreduce, cfg.collective_timeout_minutes)
        signals.install()
        if cfg.gradient_checkpointing:
            model.gradient_checkpointing_enable()
            model.config.use_cache = False
            if hasattr(model, "enable_input_require_grads"):  # frozen embeddings (LoRA) need it
                model.enable_input_require_grads()
        self.cfg, self.opt = cfg, opt
        # LoRA: only the adapters train; resumable checkpoints skip the frozen base weights
        self.frozen_params = any(not p.requires_grad for p in model.parameters())

        def scheduler(optimizer):
            return torch.optim.lr_scheduler.LambdaLR(
                optimizer,
                lambda step: lr_multiplier(step, opt.total_steps, opt.warmup_steps, opt.schedule, opt.min_lr_ratio),
            )

        ds_config = _merge(deepspeed_config(cfg, opt), ds_config_overrides or {})
        with dist.collective("deepspeed.initialize"):
            self.ds, self.optimizer, _, self.scheduler = deepspeed.initialize(
                model=model,
                model_parameters=[p for p in model.parameters() if p.requires_grad],
                config=ds_config,
                lr_scheduler=scheduler,
                dist_init_required=False,  # done above (a world of one has no MASTER_PORT to discover)
            )
        self.step = 0  # optimizer steps taken (skipped non-finite steps included)
        self.nonfinite_steps = 0  # optimizer steps skipped for a NaN/inf loss or gradient
        self._consecutive_nonfinite = 0
        self._nonfinite_loss = False  # this rank saw a NaN/inf loss since the last optimizer step
        self._grad_norm = float("nan")
        self._saved_step: int | None = None

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
        """Accumulate the gradient of ``loss``; on the last micro-batch, take the optimizer step.

        A non-finite step (NaN/inf loss on any rank, or NaN/inf gradient) is skipped on every rank.
        """
        if not bool(torch.isfinite(loss.detach()).all()):
            # A NaN loss can still have finite gradients (NaN + f(x)). Poisoning the gradient makes
            # the step's global gradient norm non-finite, which every rank sees after the gradient
            # reduction, so all ranks skip the same step without an extra collective.
            self._nonfinite_loss = True
            loss = loss * float("nan")
        self.ds.set_gradient_accumulation_boundary(last_micro_batch)
        # The stages call `engine.module` directly, not DeepSpeed's forward, which is where ZeRO
        # advances its micro-step counter; without it ZeRO-3 overwrites instead of accumulating
        # the gradients of earlier micro-batches. Do here what DeepSpeedEngine.forward does.
        clear = getattr(self.ds.optimizer, "clear_backward_seen_flag", None)
        if self.cfg.zero_stage > 0 and clear is not None:
            clear()
        with dist.collective("backward (gradient reduction)"):
            self.ds.backward(loss, scale_wrt_gas=False)
        if not last_micro_batch:
            self.ds.step()  # bookkeeping only off the boundary
            return
        if self.cfg.zero_stage == 0:
            # without ZeRO DeepSpeed clips but does not report the norm: measure it before the step
            # (gradients are already averaged over ranks here, so every rank gets the same norm)
            grads = [p.grad.detach().norm() for p in self.module.parameters() if p.grad is not None]
            self._grad_norm = float(torch.stack(grads).norm()) if grads else 0.0
        skipped_before = self.ds.skipped_steps
        if self.cfg.zero_stage == 0 and not use_bf16(self.cfg) and not math.isfinite(self._grad_norm):
            # DeepSpeed's ZeRO and bf16 optimizers skip a step whose gradient norm is NaN/inf, but a
            # plain fp32 torch optimizer has no such check: skip the step here (the lr schedule does
            # not advance either, as in the ZeRO paths).
            self.ds.zero_grad()
            skipped = True
        else:
            with dist.collective("optimizer step"):
                self.ds.step()
            skipped = self.ds.skipped_steps > skipped_before
        self.step += 1
        if self._nonfinite_loss and not skipped:
            raise NonFiniteError(
                f"rank {dist.rank()}: step {self.step} had a non-finite loss but DeepSpeed applied the update; "
                "this DeepSpeed version does not skip non-finite steps"
            )
        self._nonfinite_loss = False
        if not skipped:
            self._consecutive_nonfinite = 0
            return
        self.nonfinite_steps += 1
        self._consecutive_nonfinite += 1
        limit = self.cfg.max_nonfinite_steps
        if dist.is_main():
            print(
                f"[r1lab] step {self.step}: non-finite loss or gradient (grad norm {self.grad_norm()}); "
                f"update skipped ({self._consecutive_nonfinite} in a row, limit engine.max_nonfinite_steps={limit})",
                file=sys.stderr,
                flush=True,
            )
        if self._consecutive_nonfinite >= limit:
            raise NonFiniteError(
                f"{self._consecutive_nonfinite} consecutive optimizer steps (up to step {self.step}) had a NaN/inf "
                f"loss or gradient; training stopped (engine.max_nonfinite_steps={limit}). Lower the lr, check "
                "the data and rewards, or resume from the last checkpoint."
            )

    def grad_norm(self) -> float:
        """Global gradient norm of the last optimizer step, before clipping."""
        if self.cfg.zero_stage == 0:
            return self._grad_norm
        norm = self.ds.get_global_grad_norm()
        return float(norm) if norm is not None else float("nan")

    def lr(self) -> float:
        return float(self.optimizer.param_groups[0]["lr"])

    # --- ZeRO-3: full weights outside the forward pass ----------------------------------------
    @contextlib.contextmanager
    def gathered(self):
        """Full parameters on every rank inside the block (ZeRO-3); a no-op for ZeRO 0-2.

        For sampling and exports. Under ZeRO-3 DeepSpeed's module hooks gather each layer's weights
        at its forward and release them after, a collective per layer per forward: ranks that
        decode different numbers of tokens would wait on each other forever. So the weights are
        gathered once and the hooks are taken off for the block (as TRL does), then put back.
        Memory: one full copy of the weights per rank while inside.
        """
        if self.cfg.zero_stage != 3:
            yield
            return
        import deepspeed

        offload = self.ds.optimizer.parameter_offload  # owns ZeRO-3's module hooks
        params = list(self.module.parameters())
        with dist.collective("gather ZeRO-3 parameters"), deepspeed.zero.GatheredParameters(params):
            for p in params:
                p.ds_active_sub_modules.clear()
            for hook in offload.forward_hooks + offload.backward_hooks:
                hook.remove()
            offload.forward_hooks, offload.backward_hooks = [], []
            try:
                yield
            finally:
                offload._register_deepspeed_module(offload.module)

    @contextlib.contextmanager
    def gathered_params(self, params: list[torch.nn.Parameter]):
        """Only ``params`` gathered inside the block (ZeRO-3; a no-op for ZeRO 0-2): weight pushes
        into a rollout engine go a bucket at a time, never holding the whole model."""
        if self.cfg.zero_stage != 3:
            yield
            return
        import deepspeed

        with dist.collective("gather ZeRO-3 parameters (weight push)"), deepspeed.zero.GatheredParameters(params):
            yield

    # --- stopping on SIGTERM ----------------------------------------------------------------
    def preempted(self) -> bool:
        """Whether any rank received SIGTERM (the same answer on every rank: a collective)."""
        return dist.any_rank(signals.requested() is not None, "all_reduce (SIGTERM check)")

    def save_and_exit(self, root: Path, state: dict[str, Any], keep: int, cleanup=None, rank_files: dict | None = None) -> None:
        """Save a resumable checkpoint of the current step, run ``cleanup`` and exit the process."""
        path = root / step_dirname(self.step)
        if self._saved_step != self.step or not path.exists():
            path = self.save(root, state, keep, rank_files)
        if cleanup is not None:
            cleanup()
        if dist.is_main():
            print(
                f"[r1lab] {signals.requested() or 'stop request'}: saved a resumable checkpoint at step {self.step} "
                f"({path}); exiting. Continue with the same command plus resume=<run dir>.",
                flush=True,
            )
        raise SystemExit(signals.PREEMPTED_EXIT_CODE)

    # --- resumable checkpoints -------------------------------------------------------------
    def save(self, root: Path, state: dict[str, Any], keep: int, rank_files: dict | None = None) -> Path:
        """Write a resumable checkpoint (model, optimizer, scheduler, RNG of every rank, ``state``);
        ``rank_files``: name -> function giving this rank's JSON state, saved as
        ``<name>-rank<r>.json`` (`load_rank_file` reads it back)."""
        final = root / step_dirname(self.step)
        tmp = tmp_path(final)
        if dist.is_main():
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir(parents=True)
        dist.barrier("barrier (checkpoint start)")
        with dist.collective("save_checkpoint"):
            self.ds.save_checkpoint(
                str(tmp), tag="ds", save_latest=False, exclude_frozen_parameters=self.frozen_params
            )
        torch.save(_rng_state(), tmp / f"rng-rank{dist.rank()}.pt")
        for name, contents in (rank_files or {}).items():
            (tmp / f"{name}-rank{dist.rank()}.json").write_text(json.dumps(contents()))
        dist.barrier("barrier (checkpoint written)")
        if dist.is_main():
            own = {"step": self.step, "nonfinite_steps": self.nonfinite_steps,
                   "consecutive_nonfinite": self._consecutive_nonfinite}
            # written last, with the list of files: a checkpoint missing any of them is skipped
            (tmp / STATE_FILE).write_text(json.dumps({**own, **state, "files": file_manifest(tmp)}))
            commit_dir(tmp, final)
            prune(root, keep)
        dist.barrier("barrier (checkpoint committed)")
        self._saved_step = self.step
        return final

    def load(self, root: Path) -> dict[str, Any] | None:
        """Restore the newest complete checkpoint under ``root``; None if there is none."""
        path = latest_resumable(root)
        if path is None:
            return None
        with dist.collective("load_checkpoint"):
            self.ds.load_checkpoint(
                str(path),
                tag="ds",
                load_optimizer_states=True,
                load_lr_scheduler_states=True,
                load_module_strict=not self.frozen_params,  # LoRA: the file holds the adapters only
            )
        rng = path / f"rng-rank{dist.rank()}.pt"
        if rng.exists():
            _set_rng_state(torch.load(rng, weights_only=False))
        state = json.loads((path / STATE_FILE).read_text())
        state.pop("files", None)
        self.loaded_from = path
        self.step = int(state["step"])
        self.nonfinite_steps = int(state.get("nonfinite_steps", 0))
        self._consecutive_nonfinite = int(state.get("consecutive_nonfinite", 0))
        self._saved_step = self.step
        return state

    def load_rank_file(self, name: str) -> Any:
        """This rank's ``name`` state saved with the checkpoint `load` restored (None: none)."""
        path = getattr(self, "loaded_from", None)
        if path is None or not (path / f"{name}-rank{dist.rank()}.json").exists():
            return None
        return json.loads((path / f"{name}-rank{dist.rank()}.json").read_text())

    # --- export ------------------------------------------------------------------------------
    def save_pretrained(self, path: Path, tokenizer, merge_lora: bool = False) -> None:
        """Write the model in Hugging Face format (loads with AutoModelForCausalLM), atomically.

        A LoRA model writes its adapter (``adapter_config.json`` + weights), or with ``merge_lora``
        the full model with the adapters folded into the base weights.
        """
        from r1lab.models.lora import is_lora, merged_state_dict

        tmp = tmp_path(path)
        if is_lora(self.module) and merge_lora:
            with self.gathered():
                if dist.is_main():
                    base = self.module.get_base_model()
                    shutil.rmtree(tmp, ignore_errors=True)
                    base.save_pretrained(tmp, state_dict=merged_state_dict(self.module))
                    tokenizer.save_pretrained(tmp)
                    commit_dir(tmp, path)
            dist.barrier("barrier (export)")
            return
        state_dict = None
        if self.cfg.zero_stage == 3:
            with dist.collective("gather ZeRO-3 weights for export"):
                state_dict = self.ds._zero3_consolidated_16bit_state_dict()
        if dist.is_main():
            shutil.rmtree(tmp, ignore_errors=True)
            self.module.save_pretrained(tmp, state_dict=state_dict)
            tokenizer.save_pretrained(tmp)
            commit_dir(tmp, path)
        dist.barrier("barrier (export)")


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
