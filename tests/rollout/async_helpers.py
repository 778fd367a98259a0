"""Shared pieces of the async-rollout tests (`rollout.placement=separate`): micro GRPO runs through the CLI, worker processes."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import MICRO, CLIProcess, start_cli, wait_for  # noqa: F401  (re-exported for the async tests)

STAGE = "stages/01-grpo"
_RDZV = ("RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")
ENV = {**{k: v for k, v in os.environ.items() if k not in _RDZV}, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1",
       "HF_DATASETS_OFFLINE": "1", "WANDB_MODE": "disabled", "TOKENIZERS_PARALLELISM": "false", "DS_ACCELERATOR": "cpu"}
CLI_ENV = {"WANDB_MODE": "disabled"}  # over tests.helpers.cli_env: what ENV sets for a trainer run
FIGURES = ("loss", "entropy", "grad_norm", "response_length", "reward")


def grpo_run(steps: int, *extra: str) -> list[str]:
    """A GRPO-only run of the micro model with the entropy term on from step 0."""
    return [*(o for o in MICRO if not o.startswith("stages.grpo.steps=")), f"stages.grpo.steps={steps}",
            "stages.cold_start=null", "eval.initial=false", "eval.num_problems=2", "eval.samples=1",
            "stages.grpo.entropy_coef=-0.5", "stages.grpo.entropy_from_step=0", "stages.grpo.entropy_sample_fraction=1.0",
            "tracking.wandb.mode=disabled", *extra]


def rows(run_dir: Path) -> dict[int, dict]:
    """Per-step metrics; a step logged twice (before a kill and after the resume) keeps the last."""
    out = {}
    for line in (run_dir / STAGE / "metrics.jsonl").read_text().splitlines():
        row = json.loads(line)
        out[row["step"]] = row
    return out


def assert_same_figures(a: dict[int, dict], b: dict[int, dict]) -> None:
    assert sorted(a) == sorted(b)
    for step in a:
        for key in FIGURES:
            assert b[step][key] == pytest.approx(a[step][key], rel=1e-6, abs=1e-6), (step, key)


def start_async(run_dir: Path, *extra: str, resume: bool = False) -> CLIProcess:
    where = f"resume={run_dir}" if resume else f"run_dir={run_dir}"
    return start_cli(*grpo_run(8, "rollout.placement=separate", "rollout.max_staleness=1", "++stages.grpo.save_every=2",
                               *extra), where, env=CLI_ENV)


def finish(proc: subprocess.Popen | CLIProcess, expect: int = 0, timeout: float = 300) -> str:
    out, _ = proc.communicate(timeout=timeout)
    assert proc.returncode == expect, f"exit status {proc.returncode}, expected {expect}:\n{out[-5000:]}"
    return out


def start_worker(model: str, *extra: str) -> tuple[subprocess.Popen, str]:
    from r1lab.rollout.worker import READY

    proc = subprocess.Popen([sys.executable, "-m", "r1lab.rollout.worker", "--model", model, "--threads", "1",
                             "--heartbeat-s", "0.5", *extra], env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = proc.stdout.readline()
    assert line.startswith(READY), proc.stderr.read()[-3000:]
    return proc, line[len(READY):].strip()


def save_micro_model(directory: Path) -> str:
    """The model MICRO's ``model.name_or_path=tiny`` builds, saved where a worker can load it."""
    from r1lab.config.schema import TinyModelConfig
    from r1lab.models.tiny import save_tiny_model

    tiny = {o.split("=")[0].removeprefix("model.tiny."): int(o.split("=")[1]) for o in MICRO if o.startswith("model.tiny.")}
    return str(save_tiny_model(TinyModelConfig(**tiny), directory / "model"))


def trainer_on(run_dir: Path, model: str, address: str, *extra: str) -> CLIProcess:
    return start_cli(*grpo_run(40, "rollout.placement=separate", f"rollout.servers=[{address}]",
                               f"model.name_or_path={model}", *extra), f"run_dir={run_dir}", env=CLI_ENV)


def first_step_logged(run_dir: Path):
    path = run_dir / STAGE / "metrics.jsonl"
    return lambda: path.exists() and path.read_text().strip()


