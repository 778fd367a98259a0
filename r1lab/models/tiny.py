"""A tiny model family built from config, with a character-level tokenizer made locally.

Nothing is downloaded: the tokenizer is a `tokenizers` WordLevel model over printable ASCII
characters, split one character at a time, wrapped in `PreTrainedTokenizerFast` and saved with
`save_pretrained`, so later stages load the tiny model exactly like a hub model.
"""
from __future__ import annotations

import string
from pathlib import Path

import torch
from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
from transformers import AutoConfig, AutoModelForCausalLM, PreTrainedTokenizerFast

from r1lab.config.schema import TinyModelConfig

SPECIAL_TOKENS = {"pad_token": "<pad>", "bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>"}
CHARACTERS = [c for c in string.printable if c not in "\t\r\x0b\x0c"]  # 95 printable + "\n"


def char_tokenizer() -> PreTrainedTokenizerFast:
    vocab = {tok: i for i, tok in enumerate(SPECIAL_TOKENS.values())}
    for ch in CHARACTERS:
        vocab.setdefault(ch, len(vocab))
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token=SPECIAL_TOKENS["unk_token"]))
    tok.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")
    tok.decoder = decoders.Fuse()
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, **SPECIAL_TOKENS)
    fast.padding_side = "left"  # generation pads on the left; training code sets its own padding
    return fast


def build_tiny_model(cfg: TinyModelConfig, vocab_size: int, tokenizer=None) -> torch.nn.Module:
    model_type = {"llama": "llama", "qwen2": "qwen2"}.get(cfg.architecture)
    if model_type is None:
        raise ValueError(f"model.tiny.architecture={cfg.architecture!r}; valid: llama, qwen2")
    config = AutoConfig.for_model(
        model_type,
        vocab_size=vocab_size,
        hidden_size=cfg.hidden_size,
        intermediate_size=cfg.intermediate_size,
        num_hidden_layers=cfg.num_layers,
        num_attention_heads=cfg.num_heads,
        num_key_value_heads=cfg.num_kv_heads,
        max_position_embeddings=cfg.max_position_embeddings,
        tie_word_embeddings=True,
        pad_token_id=tokenizer.pad_token_id if tokenizer is not None else 0,
        bos_token_id=tokenizer.bos_token_id if tokenizer is not None else 1,
        eos_token_id=tokenizer.eos_token_id if tokenizer is not None else 2,
    )
    with torch.random.fork_rng():
        torch.manual_seed(cfg.init_seed)
        model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    return model


def save_tiny_model(cfg: TinyModelConfig, path: str | Path) -> Path:
    """Build the tiny model and its tokenizer and save both in Hugging Face format at ``path``."""
    path = Path(path)
    tokenizer = char_tokenizer()
    model = build_tiny_model(cfg, vocab_size=len(tokenizer), tokenizer=tokenizer)
    tmp = path.with_name(path.name + ".tmp")
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    tmp.rename(path)
    return path
