"""Shared test helpers: run the CLI on a micro model."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
R1LAB = str(Path(sys.executable).parent / "r1lab")
# torch threads of a test process and of the runs it starts (tests/conftest.py sets it; default 1)
THREADS = int(os.environ.get("R1LAB_TEST_THREADS", "1"))

# A ~20k-parameter model, a handful of problems, a few steps: the pipeline end to end in seconds.
MICRO = [
    "model.tiny.hidden_size=32",
    "model.tiny.num_layers=1",
    "model.tiny.num_heads=2",
    "model.tiny.num_kv_heads=2",
    "model.tiny.intermediate_size=64",
    "task.countdown.num_train=64",
    "task.countdown.num_test=8",
    "task.countdown.num_test_hard=2",
    "eval.num_problems=8",
    "eval.samples=2",
    "eval.max_new_tokens=24",
    "stages.cold_start.steps=3",
    "stages.cold_start.batch_size=8",
    "stages.cold_start.micro_batch_per_device=4",
    "stages.grpo.steps=2",
    "stages.grpo.prompts_per_step=2",
    "stages.grpo.samples_per_prompt=2",
    "stages.grpo.micro_batch_per_device=2",
    "stages.grpo.max_new_tokens=24",
    "tracking.progress_bar=false",
    f"engine.num_threads={THREADS}",
]


RENDEZVOUS_VARIABLES = ("RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")


def run_cli(*args: str, cwd: Path | None = None, timeout: int = 600) -> subprocess.CompletedProcess:
    # rendezvous variables an in-process Engine or vLLM engine of an earlier test (same xdist worker) left must
    # not leak into the child: a MASTER_PORT without MASTER_ADDR sends DeepSpeed looking for mpi4py
    env = {**{k: v for k, v in os.environ.items() if k not in RENDEZVOUS_VARIABLES},
           "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "WANDB_MODE": "offline", "OMP_NUM_THREADS": str(THREADS)}
    return subprocess.run([R1LAB, *args], cwd=cwd or REPO, env=env, capture_output=True, text=True, timeout=timeout)


def run_cli_forked(cases: list[tuple[list[str], Path | None]], work: Path, timeout: int = 600) -> list[subprocess.CompletedProcess]:
    """``run_cli(*args, cwd=cwd)`` for each ``(args, cwd)`` of ``cases``, all from one process that
    imports r1lab once and forks a child per case (`tests.cli_forks`): for runs that stop at start-up."""
    import json

    work.mkdir(parents=True, exist_ok=True)
    spec = [{"args": list(args), "cwd": str(cwd or REPO), "out": str(work / f"case{i}")} for i, (args, cwd) in enumerate(cases)]
    (work / "cases.json").write_text(json.dumps(spec))
    env = {**{k: v for k, v in os.environ.items() if k not in RENDEZVOUS_VARIABLES}, "PYTHONPATH": str(REPO),
           "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "WANDB_MODE": "offline", "OMP_NUM_THREADS": str(THREADS)}
    runner = subprocess.run([sys.executable, "-m", "tests.cli_forks", str(work / "cases.json")], cwd=REPO, env=env,
                            capture_output=True, text=True, timeout=timeout)
    assert runner.returncode == 0, runner.stderr[-3000:]
    out = []
    for case in spec:
        read = lambda suffix: open(case["out"] + suffix).read()  # noqa: E731
        out.append(subprocess.CompletedProcess(["r1lab", *case["args"]], int(read(".rc")), read(".stdout"), read(".stderr")))
    return out


def wait_for(predicate, proc: subprocess.Popen, timeout: float = 240, poll: float = 0.01) -> None:
    """Poll ``predicate`` while ``proc`` runs; fail with its output if it ends first, kill it on timeout."""
    deadline = time.time() + timeout
    while not predicate():
        if proc.poll() is not None:
            raise AssertionError(f"the run ended before the condition held:\n{proc.stdout.read()[-5000:]}")
        if time.time() > deadline:
            proc.kill()
            raise AssertionError("timed out waiting for the run")
        time.sleep(poll)
