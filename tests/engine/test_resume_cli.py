"""Exact resume through the real CLI: SIGTERM saves and exits; kill -9 loses nothing saved.

Three runs of the same 8-step cold-start SFT on a tiny model (checkpoint every 4 steps):

* straight through;
* SIGTERM after the first metrics line: the run saves the step it is at and exits with status
  143; ``resume=<run dir>`` continues from that step;
* ``kill -9`` once the step-4 checkpoint exists; ``resume=<run dir>`` continues from step 4.

Per-step metrics and final parameters of the interrupted runs must equal the straight run's.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from r1lab.engine.checkpoint import step_dirname
from r1lab.engine.signals import PREEMPTED_EXIT_CODE
from tests.helpers import THREADS, CLIProcess, start_cli, wait_for

pytestmark = pytest.mark.slow

STEPS, SAVE_EVERY = 8, 4
STAGE = "stages/01-cold_start"
OVERRIDES = [
    "recipe=r1_countdown_tiny", "stages.grpo=null", f"engine.num_threads={THREADS}",
    "tracking.wandb.mode=disabled", "tracking.progress_bar=false",
    "eval.initial=false", "eval.num_problems=2", "eval.samples=1", "eval.max_new_tokens=8",
    "task.num_train=64", "task.num_test=4", "task.num_test_hard=4",
    "model.tiny.hidden_size=32", "model.tiny.num_layers=1",
    "model.tiny.intermediate_size=64", f"stages.cold_start.steps={STEPS}",
    f"++stages.cold_start.save_every={SAVE_EVERY}", "stages.cold_start.batch_size=8",
    "stages.cold_start.micro_batch_per_device=4", "stages.cold_start.max_length=96",
]
# rendezvous variables an in-process Engine left in this test process must not leak into the child
_RDZV = ("RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")
ENV = {**{k: v for k, v in os.environ.items() if k not in _RDZV}, "OMP_NUM_THREADS": str(THREADS), "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
       "WANDB_MODE": "disabled", "TOKENIZERS_PARALLELISM": "false", "DS_ACCELERATOR": "cpu"}


def start(run_dir: Path, resume: bool = False) -> CLIProcess:
    where = f"resume={run_dir}" if resume else f"run_dir={run_dir}"
    return start_cli(*OVERRIDES, where, env=ENV)


def finish(proc: subprocess.Popen | CLIProcess, expect: int = 0, timeout: float = 300) -> str:
    out, _ = proc.communicate(timeout=timeout)
    assert proc.returncode == expect, f"exit status {proc.returncode}, expected {expect}:\n{out[-5000:]}"
    return out


def metrics(run_dir: Path) -> dict[int, dict]:
    """Per-step metrics; a step logged twice (before a kill and after the resume) keeps the last."""
    out = {}
    for line in (run_dir / STAGE / "metrics.jsonl").read_text().splitlines():
        row = json.loads(line)
        out[row["step"]] = {k: row[k] for k in ("loss", "lr", "grad_norm", "nonfinite_steps")}
    return out


def final_params(run_dir: Path) -> dict[str, torch.Tensor]:
    return load_file(run_dir / STAGE / "checkpoint" / "model.safetensors")


def assert_same_run(a: Path, b: Path) -> None:
    ma, mb = metrics(a), metrics(b)
    assert sorted(ma) == sorted(mb) == list(range(1, STEPS + 1))
    for step in ma:
        for key, value in ma[step].items():
            assert mb[step][key] == pytest.approx(value, rel=1e-6, abs=1e-6), (step, key)
    pa, pb = final_params(a), final_params(b)
    assert pa.keys() == pb.keys()
    for name in pa:
        torch.testing.assert_close(pb[name], pa[name], rtol=0, atol=1e-6, msg=name)


@pytest.fixture(scope="module")
def straight(tmp_path_factory) -> Path:
    run_dir = tmp_path_factory.mktemp("straight") / "run"
    finish(start(run_dir))
    return run_dir


def test_sigterm_saves_and_resume_continues(straight, tmp_path):
    run_dir = tmp_path / "run"
    proc = start(run_dir)
    metrics_file = run_dir / STAGE / "metrics.jsonl"
    wait_for(lambda: metrics_file.exists() and metrics_file.read_text().strip(), proc)
    proc.send_signal(signal.SIGTERM)
    out = finish(proc, expect=PREEMPTED_EXIT_CODE)
    stopped_at = max(metrics(run_dir))
    assert stopped_at < STEPS, "the run finished before SIGTERM was handled; make it longer"
    assert f"SIGTERM: saved a resumable checkpoint at step {stopped_at}" in out
    assert "Traceback" not in out
    assert (run_dir / STAGE / "resume" / step_dirname(stopped_at) / "r1lab_state.json").exists()
    assert not (run_dir / STAGE / "done.json").exists()

    finish(start(run_dir, resume=True))
    lines = [json.loads(x)["step"] for x in (run_dir / STAGE / "metrics.jsonl").read_text().splitlines()]
    assert lines == list(range(1, STEPS + 1)), "the resumed run must continue right after the saved step"
    assert_same_run(straight, run_dir)


def test_kill_9_then_resume_matches_a_straight_run(straight, tmp_path):
    run_dir = tmp_path / "run"
    proc = start(run_dir)
    saved = run_dir / STAGE / "resume" / step_dirname(SAVE_EVERY) / "r1lab_state.json"
    wait_for(saved.exists, proc)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=60)
    assert not (run_dir / STAGE / "done.json").exists(), "the run finished before kill -9; make it longer"

    finish(start(run_dir, resume=True))
    assert_same_run(straight, run_dir)
