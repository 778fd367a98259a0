"""Batch sizes the data-parallel ranks cannot split fail at start, naming the numbers."""
from __future__ import annotations

import pytest

from r1lab.config.errors import ConfigError
from r1lab.stages.context import check_batch_sizes
from r1lab.stages.grpo import GRPOStageConfig
from r1lab.stages.sft import SFTStageConfig


def test_grpo_prompts_per_step_must_divide_over_ranks():
    cfg = GRPOStageConfig(prompts_per_step=6, samples_per_prompt=4, micro_batch_per_device=8)
    check_batch_sizes("grpo", cfg, world=2)
    with pytest.raises(ConfigError, match=r"stages\.grpo\.prompts_per_step=6 is not divisible by the 4 data-parallel ranks"):
        check_batch_sizes("grpo", cfg, world=4)


def test_sft_batch_must_split_into_micro_batches():
    check_batch_sizes("sft", SFTStageConfig(batch_size=64, micro_batch_per_device=64), world=2)  # 32 fit in one
    check_batch_sizes("sft", SFTStageConfig(batch_size=32, micro_batch_per_device=8), world=2)
    with pytest.raises(ConfigError, match=r"batch_size=10 is not divisible by the 4"):
        check_batch_sizes("sft", SFTStageConfig(batch_size=10, micro_batch_per_device=1), world=4)
    with pytest.raises(ConfigError, match=r"batch_size=24 over 2 ranks gives 12 sequences per rank.*"
                                          r"micro_batch_per_device=8.*world_size x micro_batch_per_device = 16"):
        check_batch_sizes("sft", SFTStageConfig(batch_size=24, micro_batch_per_device=8), world=2)


def test_checked_before_the_model_is_loaded(monkeypatch, tmp_path):
    """load_policy checks first: a missing model path must not be what fails."""
    from r1lab.config.schema import RunConfig
    from r1lab.engine import dist
    from r1lab.stages import context
    from r1lab.stages.registry import Stage

    def no_loading(*a, **k):
        raise AssertionError("loaded a model before checking the batch sizes")

    monkeypatch.setattr(dist, "world_size", lambda: 2)
    monkeypatch.setattr(context, "load_model", no_loading)
    monkeypatch.setattr(context, "load_tokenizer", no_loading)
    stage = Stage(index=1, name="cold_start", cfg=SFTStageConfig(batch_size=3))
    ctx = context.StageContext(run=RunConfig(), stage=stage, stage_dir=tmp_path, start_model=str(tmp_path / "none"),
                               task=None, group="g")
    with pytest.raises(ConfigError, match="batch_size=3 is not divisible by the 2"):
        ctx.load_policy()
