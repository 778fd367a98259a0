"""Helpers of the stage tests: a StageContext built without Hydra, crafted completions."""
from __future__ import annotations

import json
from pathlib import Path

import torch
from omegaconf import OmegaConf

from r1lab.config.schema import RunConfig, TaskConfig, TinyModelConfig
from r1lab.tasks.countdown import CountdownTaskConfig
from r1lab.tasks import build_task
from r1lab.rollout.engine import ROLLOUT_ENGINES, RolloutEngine
from r1lab.stages.context import StageContext
from r1lab.stages.registry import Stage, typed_stage

MICRO = TinyModelConfig(hidden_size=32, num_layers=2, num_heads=2, num_kv_heads=2, intermediate_size=64, max_position_embeddings=256)


def write_jsonl(path: Path, rows: list[dict]) -> str:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def make_ctx(stage_dir: Path, model: str, stages: dict, train_file: str | None = None, task: TaskConfig | None = None,
             **model_cfg) -> StageContext:
    """A context for the LAST stage of ``stages`` (earlier ones only matter as config);
    ``task``: the run's ``task`` config instead of the tiny Countdown default;
    ``model_cfg``: fields of the run's ``model`` config (e.g. template, lora)."""
    raw = OmegaConf.merge(
        OmegaConf.structured(RunConfig),
        {
            "name": "test",
            "model": {"name_or_path": model, "template": "r1_zero_short", **model_cfg},
            "task": task or CountdownTaskConfig(question_style="short", train_file=train_file, test_file=train_file,
                                                num_train=40, num_test=5, num_test_hard=0),
            "engine": {"precision": "fp32"},
            "tracking": {"wandb": {"mode": "disabled"}, "progress_bar": False},
            "stages": stages,
        },
    )
    run = OmegaConf.to_object(raw)
    name = list(stages)[-1]
    stage = Stage(index=len(stages), name=name, cfg=typed_stage(name, stages[name]))
    stage_dir.mkdir(parents=True, exist_ok=True)
    return StageContext(run=run, stage=stage, stage_dir=stage_dir, start_model=model, task=build_task(run.task), group="test")


@ROLLOUT_ENGINES.register("scripted")
class ScriptedEngine(RolloutEngine):
    """A rollout engine (registered as ``scripted``) whose i-th completion of a call is
    ``SCRIPT[i % len]``: crafted answers that exercise the verifier and the readability filters."""

    name = "scripted"
    returns_logprobs = False  # crafted texts: no sampler behind them
    script: list[str] | None = None  # None: sampling is an error (a stage that must not sample)

    def __init__(self, tokenizer) -> None:
        self.tokenizer = tokenizer

    @classmethod
    def build(cls, cfg, policy, tokenizer, seed) -> "ScriptedEngine":
        return cls(tokenizer)

    def generate(self, prompt_ids, params, seed, max_batch=0):
        from r1lab.rollout.sampler import Completion

        if ScriptedEngine.script is None:
            raise AssertionError("sampled again")
        texts = [ScriptedEngine.script[i % len(ScriptedEngine.script)] for i in range(len(prompt_ids))]
        return [Completion(self.tokenizer(t, add_special_tokens=False).input_ids, t, stopped=t.endswith("</answer>")) for t in texts]


def script_completions(ctx: StageContext, texts: list[str] | None) -> StageContext:
    """Make ``ctx``'s stage sample ``texts`` (see `ScriptedEngine`)."""
    ctx.run.rollout.backend = "scripted"
    ScriptedEngine.script = texts
    return ctx
