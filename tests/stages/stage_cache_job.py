"""Fast fake stages for the stage-cache tests, and a job that runs them (one process of a sweep).

``python -m tests.stages.stage_cache_job RUN_DIR CACHE_DIR BUILD_LOG [GATE]`` runs a two-stage
pipeline (a fake cold start ``cold``, then a fake ``grpo``) into RUN_DIR with its cache in
CACHE_DIR; each fake build appends a line to BUILD_LOG. With GATE, the cold start creates
``GATE.building`` and waits for GATE to exist before it finishes (the test opens it).
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from omegaconf import OmegaConf

from r1lab import pipeline
from r1lab.config.schema import RunConfig
from r1lab.tasks.countdown import CountdownTaskConfig
from r1lab.validate import validate

ROW = {"num_problems": 1, "greedy_accuracy": 0.5, "sampled_accuracy": 0.25, "samples_per_problem": 2,
       "temperature": 1.0, "pass_at_k": {"1": 0.25, "2": 0.5}, "format_rate": 1.0, "mean_response_length": 3.0}
STAGES = {"cold": {"kind": "sft", "lr": 1e-4}, "grpo": {"kind": "grpo", "lr": 1e-5, "rewards": {"countdown": 1.0}}}


class Fakes:
    build_log: Path | None = None  # where each build appends "<run name> <stage>"
    gate: Path | None = None
    evaluations: list[str] = []  # model paths evaluated in this process


def record(ctx) -> None:
    if Fakes.build_log is not None:
        with open(Fakes.build_log, "a") as f:
            f.write(f"{ctx.run.name} {ctx.stage.name}\n")


def fake_sft(ctx) -> None:
    """A cold start whose checkpoint depends on its lr and data (a file's content when it names one)."""
    data = Path(ctx.cfg.data).read_text() if Path(ctx.cfg.data).is_file() else ctx.cfg.data
    if Fakes.gate is not None:
        Fakes.gate.with_name(Fakes.gate.name + ".building").touch()
        deadline = time.time() + 120
        while not Fakes.gate.exists() and time.time() < deadline:
            time.sleep(0.05)
    ctx.checkpoint_dir.mkdir(parents=True)
    (ctx.checkpoint_dir / "model.bin").write_text(f"sft lr={ctx.cfg.lr} data={data}")
    (ctx.checkpoint_dir / "empty").mkdir()  # a folder with no files must come back too
    (ctx.stage_dir / "metrics.jsonl").write_text(json.dumps({"step": 1, "loss": 1.0}) + "\n")
    (ctx.stage_dir / "resume").mkdir()  # mid-stage checkpoints: not cached
    record(ctx)


def fake_grpo(ctx) -> None:
    """Trains on from the start model's weights (their content, not their path)."""
    start = (Path(ctx.start_model) / "model.bin").read_text()
    ctx.checkpoint_dir.mkdir(parents=True)
    (ctx.checkpoint_dir / "model.bin").write_text(f"{start} | grpo lr={ctx.cfg.lr}")
    record(ctx)


def fake_evaluate_into(model_path, run, task, out, seed):
    if out.exists():
        return json.loads(out.read_text())
    Fakes.evaluations.append(model_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({**ROW, "model": model_path}))
    return ROW


def config(stages: dict | None = None, cache_dir: Path | None = None, **run):
    """The typed run config and stages of a tiny countdown run; ``run``: top-level fields over it."""
    raw = OmegaConf.merge(
        OmegaConf.structured(RunConfig),
        {"name": "t", "model": {"name_or_path": "not/loaded", "template": "r1_zero_short"},
         "task": CountdownTaskConfig(question_style="short", num_train=20, num_test=2, num_test_hard=0),
         "engine": {"num_threads": 1}, "eval": {"initial": False},
         "tracking": {"wandb": {"mode": "disabled"}, "progress_bar": False},
         "cache": {"dir": str(cache_dir) if cache_dir else None}, "stages": stages or STAGES},
        run,
    )
    return validate(raw)


def install() -> None:
    """Run the fakes instead of the real stages and evaluation (in this process)."""
    pipeline.STAGES["sft"] = fake_sft
    pipeline.STAGES["grpo"] = fake_grpo
    pipeline.evaluate_into = fake_evaluate_into


if __name__ == "__main__":
    run_dir, cache_dir, build_log = (Path(a) for a in sys.argv[1:4])
    Fakes.build_log = build_log
    Fakes.gate = Path(sys.argv[4]) if len(sys.argv) > 4 else None
    install()
    typed, stages = config(cache_dir=cache_dir)
    pipeline.run_pipeline(typed, stages, run_dir, "name: t\n")
