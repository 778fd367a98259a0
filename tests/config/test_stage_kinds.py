"""A stage kind is one schema plus one registration: valid in a config, checked, run by the pipeline."""
from __future__ import annotations

import json
from dataclasses import dataclass

import pytest
from omegaconf import OmegaConf

from r1lab import pipeline
from r1lab.config.schema import RunConfig, StageConfig
from r1lab.stages.registry import STAGE_KINDS, STAGES, register_stage, stage_schemas
from r1lab.stages.sft import SFTStageConfig
from r1lab.tasks.countdown import CountdownTaskConfig
from r1lab.validate import ConfigError, typed_stage, validate

ROW = {"num_problems": 1, "greedy_accuracy": 0.5, "sampled_accuracy": 0.25, "samples_per_problem": 2,
       "temperature": 1.0, "pass_at_k": {"1": 0.25, "2": 0.5}, "format_rate": 1.0, "mean_response_length": 3.0}


def config(stages: dict):
    raw = OmegaConf.merge(
        OmegaConf.structured(RunConfig),
        {"name": "t", "model": {"name_or_path": "not/loaded", "template": "r1_zero_short"},
         "task": CountdownTaskConfig(question_style="short", num_train=20, num_test=2, num_test_hard=0),
         "engine": {"num_threads": 1}, "eval": {"initial": False},
         "tracking": {"wandb": {"mode": "disabled"}, "progress_bar": False}, "stages": stages},
    )
    return validate(raw)


@pytest.fixture
def echo_kind():
    """A new kind, ``echo``: its schema, defined here; a test registers it, and the registration
    is removed after."""

    @dataclass
    class EchoStageConfig(StageConfig):
        kind: str = "echo"
        data: str = "none"  # previous: the newest earlier dataset
        words: int = 1

        def check(self, name: str) -> None:
            if self.words < 1:
                raise ValueError(f"stages.{name}.words={self.words}: must be >= 1")

    yield EchoStageConfig
    STAGE_KINDS.unregister("echo")


def test_the_shipped_kinds_declare_their_schemas_in_their_modules():
    assert stage_schemas()["sft"] is SFTStageConfig and SFTStageConfig.__module__ == "r1lab.stages.sft"
    assert {kind: schema.__module__ for kind, schema in stage_schemas().items()} == {
        "dpo": "r1lab.stages.dpo", "grpo": "r1lab.stages.grpo", "rejection": "r1lab.stages.rejection",
        "sft": "r1lab.stages.sft"}


def test_a_registered_schema_makes_the_kind_valid_in_a_config(echo_kind):
    register_stage(echo_kind, lambda ctx: None)
    assert stage_schemas()["echo"] is echo_kind
    assert typed_stage("e", {"kind": "echo", "words": 3}) == echo_kind(words=3)
    with pytest.raises(ConfigError, match=r"stages\.e \(echo\): .*valid keys: kind, .*words"):
        typed_stage("e", {"kind": "echo", "wrods": 3})
    with pytest.raises(ConfigError, match=r"stages\.e\.words=0: must be >= 1"):  # the kind's own check
        config({"e": {"kind": "echo", "words": 0}})


def test_unknown_kinds_list_the_registered_ones():
    with pytest.raises(ConfigError, match="stages.s.kind='ppo' is not a stage kind; valid kinds: dpo, grpo, rejection, sft"):
        typed_stage("s", {"kind": "ppo"})


def test_a_schema_without_a_registration_fails_before_anything_runs(echo_kind):
    with pytest.raises(ConfigError, match="stages.e.kind='echo' is not a stage kind; valid kinds: dpo, grpo, rejection, sft"):
        config({"e": {"kind": "echo"}})


def test_a_registered_kind_is_run_by_the_pipeline(echo_kind, tmp_path, monkeypatch):
    seen = []

    def run_echo(ctx):
        seen.append((ctx.stage.name, ctx.cfg.data, ctx.cfg.words))
        (ctx.stage_dir / "dataset").mkdir()

    def fake_eval(model_path, run, task, out, seed):
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(ROW))
        return ROW

    kind = register_stage(echo_kind, run_echo, writes_dataset=True)
    assert kind.schema is echo_kind and STAGE_KINDS["echo"] is kind and STAGES["echo"] is run_echo
    with pytest.raises(ValueError, match="registered twice"):
        register_stage(echo_kind, run_echo)
    assert "echo" in pipeline.dataset_kinds()
    monkeypatch.setattr(pipeline, "evaluate_into", fake_eval)
    run, stages = config({"first": {"kind": "echo", "words": 2}, "second": {"kind": "echo", "data": "previous"}})
    pipeline.run_pipeline(run, stages, tmp_path, "name: t\n")
    assert seen == [("first", "none", 2), ("second", str(tmp_path / "stages" / "01-first" / "dataset"), 1)]


def test_registering_needs_a_stage_schema():
    @dataclass
    class NotAStage:
        kind: str = "nope"

    with pytest.raises(ValueError, match="not a stage schema"):
        register_stage(NotAStage, lambda ctx: None)


def test_swapping_a_run_function_keeps_the_rest_of_the_registration(monkeypatch):
    before = STAGE_KINDS["rejection"]
    monkeypatch.setitem(STAGES, "rejection", print)
    assert STAGE_KINDS["rejection"].run is print and STAGE_KINDS["rejection"].writes_dataset
    monkeypatch.undo()
    assert STAGE_KINDS["rejection"] == before
