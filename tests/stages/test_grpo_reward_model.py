"""GRPO with the learned reward model as a component: the stage builds it from `reward_params`."""
from __future__ import annotations

import json

import pytest
from transformers import LlamaConfig, LlamaForSequenceClassification

from r1lab.models.tiny import char_tokenizer
from r1lab.rewards import reward_model
from r1lab.stages.grpo import run_grpo

from .helpers import make_ctx


def test_grpo_scores_with_the_reward_model(tmp_path, micro_model):
    tok = char_tokenizer()
    config = LlamaConfig(vocab_size=len(tok), hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=2, num_labels=1, pad_token_id=tok.pad_token_id)
    LlamaForSequenceClassification(config).save_pretrained(tmp_path / "rm")
    tok.save_pretrained(tmp_path / "rm")
    stage = {"kind": "grpo", "steps": 1, "prompts_per_step": 2, "samples_per_prompt": 2, "max_new_tokens": 8,
             "micro_batch_per_device": 4, "rewards": {"countdown": 1.0, "reward_model": 1.0},
             "reward_params": {"reward_model": {"path": str(tmp_path / "rm"), "batch_size": 3}}}
    try:
        run_grpo(make_ctx(tmp_path / "stage", micro_model, {"grpo": stage}))
    finally:
        reward_model._loaded.clear()
    metrics = json.loads((tmp_path / "stage" / "metrics.jsonl").read_text().splitlines()[0])
    assert 0.0 < metrics["reward/reward_model"] < 1.0  # sigmoid-normalised by default
    assert metrics["reward"] == pytest.approx(metrics["reward/reward_model"] + metrics["reward/countdown"], abs=1e-6)
