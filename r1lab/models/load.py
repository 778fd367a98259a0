"""Load any Hugging Face causal LM and its tokenizer by hub id or local path."""
from __future__ import annotations

import os
import warnings
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from r1lab.config.schema import ModelConfig
from r1lab.models.packaged import is_packaged, packaged_model_dir
from r1lab.models.templates import recorded_template

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


class ModelNotFound(FileNotFoundError):
    pass


def resolve_dtype(name: str) -> torch.dtype:
    if name == "auto":
        return torch.bfloat16 if torch.cuda.is_available() else torch.float32
    if name not in DTYPES:
        raise ValueError(f"model.dtype={name!r}; valid: auto, {', '.join(DTYPES)}")
    return DTYPES[name]


def resolve_model_path(name_or_path: str) -> str:
    """A packaged model's name (``r1lab.models.packaged.PACKAGED``) -> its converted folder
    (converted on first use); any other name or path is returned as it is."""
    if is_packaged(name_or_path):
        return str(packaged_model_dir(name_or_path))
    return name_or_path


def _check_exists(name_or_path: str) -> None:
    """A path-like name that does not exist fails here with one line, not after hub retries."""
    name_or_path = resolve_model_path(name_or_path)
    looks_like_path = name_or_path.startswith(("/", ".", "~")) or name_or_path.count("/") > 1
    p = Path(name_or_path).expanduser()
    if p.exists():
        if not (p / "config.json").exists() and not (p / "adapter_config.json").exists():
            raise ModelNotFound(
                f"model path '{name_or_path}' has no config.json (nor a LoRA adapter_config.json); "
                "point model.name_or_path at a Hugging Face model folder"
            )
        return
    if looks_like_path:
        raise ModelNotFound(f"model path '{name_or_path}' does not exist; set model.name_or_path to a local folder or a hub id like Qwen/Qwen2.5-0.5B")
    if os.environ.get("HF_HUB_OFFLINE") == "1":
        from huggingface_hub import try_to_load_from_cache

        if try_to_load_from_cache(name_or_path, "config.json") is None:
            raise ModelNotFound(
                f"model '{name_or_path}' is not a local folder and not in the hub cache while HF_HUB_OFFLINE=1; "
                "download it first or unset HF_HUB_OFFLINE"
            )


def load_tokenizer(name_or_path: str, cfg: ModelConfig | None = None):
    name_or_path = resolve_model_path(name_or_path)
    _check_exists(name_or_path)
    tok = AutoTokenizer.from_pretrained(
        name_or_path,
        trust_remote_code=bool(cfg and cfg.trust_remote_code),
        revision=cfg.revision if cfg else None,
    )
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    tok.padding_side = "left"
    trained_with = recorded_template(tok)
    if cfg is not None and trained_with is not None and trained_with != cfg.template:
        warnings.warn(
            f"model '{name_or_path}' was trained by r1lab with model.template={trained_with}, but this run "
            f"uses model.template={cfg.template}: its prompts will not look like the ones it learned; "
            f"set model.template={trained_with} unless the switch is deliberate",
            stacklevel=2,
        )
    return tok


def load_model(name_or_path: str, cfg: ModelConfig | None = None, dtype: torch.dtype | None = None):
    name_or_path = resolve_model_path(name_or_path)
    _check_exists(name_or_path)
    model = AutoModelForCausalLM.from_pretrained(
        name_or_path,
        dtype=dtype or resolve_dtype(cfg.dtype if cfg else "auto"),
        trust_remote_code=bool(cfg and cfg.trust_remote_code),
        revision=cfg.revision if cfg else None,
    )
    return model
