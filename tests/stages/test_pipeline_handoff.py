"""The pipeline's hand-offs: a stage without a checkpoint passes the model on, `data: previous`
gets the newest dataset, `model: base` the run's starting model, and the table keeps a row per stage."""
from __future__ import annotations

import json
import shutil

import pytest
from omegaconf import OmegaConf

from r1lab import pipeline
from r1lab.config.schema import RunConfig
from r1lab.tasks.countdown import CountdownTaskConfig
from r1lab.validate import ConfigError, validate


def config(model: str, stages: dict):
    raw = OmegaConf.merge(
        OmegaConf.structured(RunConfig),
        {"name": "t", "model": {"name_or_path": model, "template": "r1_zero_short"},
         "task": CountdownTaskConfig(question_style="short", num_train=20, num_test=2, num_test_hard=0),
         "engine": {"num_threads": 1}, "eval": {"num_problems": 1, "samples": 1, "max_new_tokens": 4, "batch_size": 4},
         "tracking": {"wandb": {"mode": "disabled"}, "progress_bar": False}, "stages": stages},
    )
    return validate(raw)


def test_handoffs(tmp_path, micro_model, monkeypatch):
    seen = {}

    def fake_rejection(ctx):
        seen[ctx.stage.name] = (ctx.start_model, None)
        (ctx.stage_dir / "dataset").mkdir()

    def fake_train(ctx):
        seen[ctx.stage.name] = (ctx.start_model, getattr(ctx.cfg, "data", None))
        shutil.copytree(ctx.start_model, ctx.checkpoint_dir)

    monkeypatch.setitem(pipeline.STAGES, "rejection", fake_rejection)
    monkeypatch.setitem(pipeline.STAGES, "sft", fake_train)
    monkeypatch.setitem(pipeline.STAGES, "dpo", fake_train)
    run, stages = config(micro_model, {
        "cold": {"kind": "sft"},
        "rej": {"kind": "rejection"},
        "sft": {"kind": "sft", "data": "previous", "model": "base"},
        "dpo": {"kind": "dpo"},
    })
    results = pipeline.run_pipeline(run, stages, tmp_path, "name: t\n")
    s = tmp_path / "stages"
    assert seen["cold"] == (micro_model, "traces")
    assert seen["rej"][0] == str(s / "01-cold" / "checkpoint")
    assert seen["sft"] == (micro_model, str(s / "02-rej" / "dataset"))  # base model, previous dataset
    assert seen["dpo"][0] == str(s / "03-sft" / "checkpoint")
    assert not (s / "02-rej" / "checkpoint").exists()
    assert results["02-rej"] == {**results["01-cold"], "reused_from": "01-cold"}
    table = (tmp_path / "summary.md").read_text()
    assert [line.split("|")[1].strip() for line in table.splitlines()[2:]] == ["start", "01-cold", "02-rej (data)", "03-sft", "04-dpo"]
    assert json.loads((s / "03-sft" / "done.json").read_text())["start_model"] == micro_model


def test_data_previous_needs_an_earlier_dataset(micro_model):
    _, stages = config(micro_model, {"sft": {"kind": "sft", "data": "previous"}, "rej": {"kind": "rejection"}})
    with pytest.raises(ConfigError, match="stages.sft.data=previous but no earlier stage writes a dataset"):
        pipeline.check_inputs(stages)


def test_language_column_only_when_every_eval_has_it():
    row = {"num_problems": 1, "greedy_accuracy": 0.5, "sampled_accuracy": 0.25, "samples_per_problem": 2,
           "temperature": 1.0, "pass_at_k": {"1": 0.25, "2": 0.5}, "format_rate": 1.0, "mean_response_length": 3.0}
    assert "language" not in pipeline.format_table({"a": row, "b": {**row, "language_consistency": 0.9}})
    table = pipeline.format_table({"a": {**row, "language_consistency": 0.9}})
    assert table.splitlines()[2].endswith("| 0.900 |")
