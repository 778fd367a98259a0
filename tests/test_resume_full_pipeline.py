"""Killing the whole R1 pipeline (`r1_countdown_tiny_full`) in any stage and resuming it ends with
the same held-out figures as an uninterrupted run.

A micro model never solves Countdown, so the rejection and DPO stages would keep nothing. The
child processes therefore get a deterministic stand-in for the verifier through `sitecustomize`
(a completion "is correct" when its length is a multiple of 3, and always well formed): every
stage then has real work to do, and the figures are still a pure function of the weights.

Runs, all with the same seeds: straight through; SIGTERM in GRPO; kill -9 in rejection sampling;
SIGTERM in DPO. Each interrupted run is resumed with `resume=<run dir>`.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import textwrap
from pathlib import Path

import pytest

from r1lab.engine.signals import PREEMPTED_EXIT_CODE
from tests.engine.test_resume_cli import ENV, wait_for
from tests.helpers import MICRO, REPO, CLIProcess, start_cli

pytestmark = pytest.mark.slow

SAMPLER = ["samples_per_prompt=4", "max_new_tokens=24", "generation_batch_size=16",
           "readability.language=false", "readability.repetition=false", "readability.max_tokens=0"]
OVERRIDES = [
    "recipe=r1_countdown_tiny_full", *[o for o in MICRO if not o.startswith("stages.grpo.steps=")],
    "tracking.wandb.mode=disabled",
    "stages.grpo.steps=4", "stages.rejection.num_prompts=8", *[f"stages.rejection.{o}" for o in SAMPLER],
    "stages.sft.batch_size=8", "stages.sft.micro_batch_per_device=4", "stages.sft.epochs=1", "stages.sft.max_length=96",
    "stages.dpo.num_prompts=8", *[f"stages.dpo.{o}" for o in SAMPLER], "stages.dpo.steps=4",
    "stages.dpo.batch_size=2", "stages.dpo.micro_batch_per_device=2", "stages.dpo.max_length=96",
]
STAGES = ["00-start", "01-cold_start", "02-grpo", "03-rejection", "04-sft", "05-dpo"]
FIGURES = ("greedy_accuracy", "sampled_accuracy", "pass_at_k", "format_rate", "mean_response_length")

STAND_IN = '''
import torch
from r1lab.rewards.registry import REWARDS

def countdown(completions, **_):
    return torch.tensor([float(len(c) % 3 == 0) for c in completions])

def well_formed(completions, **_):
    return torch.ones(len(completions))

REWARDS.replace("countdown", countdown)
REWARDS.replace("format", well_formed)
'''


@pytest.fixture(scope="module")
def env(tmp_path_factory) -> dict[str, str]:
    site = tmp_path_factory.mktemp("site")
    (site / "sitecustomize.py").write_text(textwrap.dedent(STAND_IN))
    return {**ENV, "PYTHONPATH": os.pathsep.join([str(site), str(REPO)])}


def start(run_dir: Path, env: dict[str, str], resume: bool = False) -> CLIProcess:
    where = f"resume={run_dir}" if resume else f"run_dir={run_dir}"
    return start_cli(*OVERRIDES, where, env=env)


def finish(proc: subprocess.Popen | CLIProcess, expect: int = 0) -> str:
    out, _ = proc.communicate(timeout=600)
    assert proc.returncode == expect, f"exit status {proc.returncode}, expected {expect}:\n{out[-5000:]}"
    return out


def figures(run_dir: Path) -> dict[str, dict]:
    out = {}
    for stage in STAGES:
        result = json.loads((run_dir / "stages" / stage / "eval.json").read_text())
        out[stage] = {k: result[k] for k in FIGURES}
    return out


@pytest.fixture(scope="module")
def straight(env, tmp_path_factory) -> dict[str, dict]:
    run_dir = tmp_path_factory.mktemp("straight") / "run"
    finish(start(run_dir, env))
    result = figures(run_dir)
    # the stand-in verifier gives every later stage data to work on
    assert json.loads((run_dir / "stages/03-rejection/dataset/dataset_info.json").read_text())
    assert 0 < result["02-grpo"]["sampled_accuracy"] < 1
    return result


def lines(path: Path) -> int:
    return len(path.read_text().splitlines()) if path.exists() else 0


@pytest.mark.parametrize(
    "stage, how",
    [("02-grpo", signal.SIGTERM), ("03-rejection", signal.SIGKILL), ("05-dpo", signal.SIGTERM)],
    ids=["sigterm-in-grpo", "kill9-in-rejection", "sigterm-in-dpo"],
)
def test_kill_in_a_stage_then_resume_gives_the_same_figures(stage, how, straight, env, tmp_path):
    run_dir = tmp_path / "run"
    stage_dir = run_dir / "stages" / stage
    proc = start(run_dir, env)
    if how == signal.SIGTERM:  # after the stage's first optimizer step
        wait_for(lambda: lines(stage_dir / "metrics.jsonl") > 0, proc)
    else:  # as soon as the stage has begun
        wait_for(stage_dir.exists, proc)
    proc.send_signal(how)
    if how == signal.SIGTERM:
        finish(proc, expect=PREEMPTED_EXIT_CODE)
    else:
        proc.communicate(timeout=60)
    assert not (stage_dir / "done.json").exists(), f"{stage} finished before the signal; make it longer"

    out = finish(start(run_dir, env, resume=True))
    assert f"{STAGES[STAGES.index(stage) - 1]}: finished earlier, skipped" in out
    assert figures(run_dir) == straight
