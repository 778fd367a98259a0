"""LoRA adapters (peft) on a loaded causal LM: only the adapters train.

``apply_lora`` wraps the model in a ``PeftModel``; the base weights are frozen. GRPO's reference
policy is then the same model inside ``model.disable_adapter()``: no second copy of the weights.
A stage that starts from an adapter checkpoint (a previous LoRA stage exported without merging)
folds that adapter into its base first (`load_base_with_adapter`) and trains fresh adapters.
"""
from __future__ import annotations

import contextlib
import json
from pathlib import Path

import torch

from r1lab.config.schema import LoRAConfig


def is_lora(model: torch.nn.Module) -> bool:
    try:
        from peft import PeftModel
    except ImportError:
        return False
    return isinstance(model, PeftModel)


def is_adapter_dir(path: str) -> bool:
    return (Path(path) / "adapter_config.json").exists()


def apply_lora(model: torch.nn.Module, cfg: LoRAConfig) -> torch.nn.Module:
    """Freeze ``model`` and add trainable adapters to the modules named in ``cfg.target_modules``."""
    from peft import LoraConfig, get_peft_model

    names = {name.rsplit(".", 1)[-1] for name, _ in model.named_modules()}
    missing = [t for t in cfg.target_modules if t not in names]
    if missing:
        raise ValueError(
            f"model.lora.target_modules: {missing} not found in {type(model).__name__}; "
            f"linear layers there include e.g. {sorted(n for n in names if n.endswith('_proj'))}"
        )
    peft_cfg = LoraConfig(
        r=cfg.r,
        lora_alpha=cfg.alpha,
        lora_dropout=cfg.dropout,
        target_modules=list(cfg.target_modules),
        bias="none",
        task_type="CAUSAL_LM",
    )
    return get_peft_model(model, peft_cfg)


def adapter_base(path: str) -> str:
    """The base model an adapter folder was trained on (``adapter_config.json``)."""
    return json.loads((Path(path) / "adapter_config.json").read_text())["base_model_name_or_path"]


def full_model_path(path: str) -> str:
    """A folder or hub id with the full weights' architecture: ``path``, or an adapter folder's base."""
    return adapter_base(path) if is_adapter_dir(path) else path


def load_base_with_adapter(path: str, load_model) -> torch.nn.Module:
    """The base model named in ``path/adapter_config.json`` with that adapter merged in."""
    from peft import PeftModel

    return PeftModel.from_pretrained(load_model(adapter_base(path)), path).merge_and_unload()


@torch.no_grad()
def merged_state_dict(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The base model's state dict with the active adapters folded in; ``model`` is not modified.

    Keys are those of the plain model (``...q_proj.weight``), so ``get_base_model().save_pretrained``
    with it writes a checkpoint that loads without peft.
    """
    from peft.tuners.lora import LoraLayer

    base = model.get_base_model()
    merged: dict[str, torch.Tensor] = {}
    for name, module in base.named_modules():
        if isinstance(module, LoraLayer):
            weight = module.get_base_layer().weight
            delta = sum(module.get_delta_weight(a) for a in module.active_adapters if a in module.lora_A)
            merged[f"{name}.weight"] = (weight + delta).to(weight.dtype) if torch.is_tensor(delta) else weight
    out = {}
    for key, value in base.state_dict().items():
        if ".lora_" in key:
            continue
        key = key.replace(".base_layer.", ".")
        out[key] = merged.get(key, value)
    return out


def adapters_off(model: torch.nn.Module):
    """Context in which a LoRA model computes with its base weights only; a no-op for other models."""
    return model.disable_adapter() if is_lora(model) else contextlib.nullcontext()
