"""`rollout.placement=separate` through the real CLI on a micro model: ``max_staleness=0`` reproduces the
colocated run (one rank and two), ``max_staleness=1`` is one-step-off with its ``async/*`` figures,
and kill -9 with a round in flight then ``resume=`` gives the uninterrupted async run's figures.
(A random model never solves Countdown: the entropy term gives every step a gradient that
depends on the samples.)"""
from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from r1lab.engine.checkpoint import step_dirname
from tests.helpers import run_cli
from tests.rollout.async_helpers import ENV, STAGE, assert_same_figures, finish, grpo_run, rows, start_async, wait_for

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def colocated(tmp_path_factory) -> dict[int, dict]:
    run_dir = tmp_path_factory.mktemp("colocated") / "run"
    out = run_cli(*grpo_run(4), f"run_dir={run_dir}")
    assert out.returncode == 0, out.stderr[-3000:]
    return rows(run_dir)


@pytest.fixture(scope="module")
def async_straight(tmp_path_factory) -> Path:
    """An uninterrupted 8-step run at max_staleness=1 (resumable checkpoints every 2 steps)."""
    run_dir = tmp_path_factory.mktemp("async") / "straight"
    finish(start_async(run_dir))
    return run_dir


def test_staleness_0_reproduces_the_colocated_run(colocated, tmp_path):
    out = run_cli(*grpo_run(4, "rollout.placement=separate", "rollout.max_staleness=0"), f"run_dir={tmp_path / 'run'}")
    assert out.returncode == 0, out.stderr[-3000:]
    separate = rows(tmp_path / "run")
    assert_same_figures(colocated, separate)
    assert [r["async/version_lag"] for r in separate.values()] == [0.0] * 4
    assert all(r["grad_norm"] > 0 for r in separate.values())  # the samples mattered: there was a gradient


def test_staleness_1_trains_one_step_off_and_logs_the_async_figures(colocated, async_straight):
    # its first 4 steps against the 4-step colocated run (a step's figures are taken before its update)
    async_rows = {step: row for step, row in rows(async_straight).items() if step <= 4}
    # round 0 is written by version 0 and consumed at version 0; every later round one version behind
    assert [r["async/version_lag"] for r in async_rows.values()] == [0.0, 1.0, 1.0, 1.0]
    assert [r["async/version_lag_share/1"] for r in async_rows.values()] == [0.0, 1.0, 1.0, 1.0]
    assert_same_figures({1: colocated[1]}, {1: async_rows[1]})  # the first step is on-policy either way
    assert async_rows[2]["grad_norm"] != pytest.approx(colocated[2]["grad_norm"], rel=1e-9)  # then it is not
    last = async_rows[4]
    for key in ("async/trainer_wait_s", "async/worker0/idle_s", "async/worker_idle_fraction", "async/weight_sync_s"):
        assert last[key] >= 0
    assert last["async/worker0/tokens_per_s"] > 0
    assert last["async/rounds_in_flight"] == 1.0
    # the micro model's fp32 weights, every parameter under each of its names (the tied embedding twice)
    assert last["async/weight_sync_bytes"] > 4 * 32 * 64


def test_kill_9_with_a_round_in_flight_then_resume_matches_the_uninterrupted_async_run(async_straight, tmp_path):
    run_dir = tmp_path / "run"
    proc = start_async(run_dir)
    saved = run_dir / STAGE / "resume" / step_dirname(4) / "r1lab_state.json"
    wait_for(saved.exists, proc)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=60)
    assert not (run_dir / STAGE / "done.json").exists(), "the run finished before kill -9; make it longer"
    in_flight = json.loads((saved.parent / "rounds_in_flight-rank0.json").read_text())["rounds_in_flight"]
    assert list(in_flight) == ["4"]  # the round sampled ahead for step 5, by version 3, saved with the checkpoint
    assert in_flight["4"]["results"][0][0] == 3

    finish(start_async(run_dir, resume=True))
    assert_same_figures(rows(async_straight), rows(run_dir))
    assert [r["async/version_lag"] for r in rows(run_dir).values()] == [0.0] + [1.0] * 7


@pytest.mark.distributed
def test_two_data_parallel_ranks_each_with_its_own_worker_reproduce_the_colocated_run(tmp_path):
    """ZeRO-2 over 2 ranks: each rank pushes to and samples from its own worker; at k=0 the run is the colocated one."""
    torchrun = Path(sys.executable).with_name("torchrun")
    figures = {}
    for name, extra in (("colocated", []), ("separate", ["rollout.placement=separate", "rollout.max_staleness=0"])):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        args = [*grpo_run(3, "engine=zero2", "stages.grpo.prompts_per_step=4", *extra), f"run_dir={tmp_path / name}"]
        out = subprocess.run([str(torchrun), "--nproc_per_node", "2", "--master_port", str(port), "-m", "r1lab.cli", *args],
                             env=ENV, capture_output=True, text=True, timeout=600)
        assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-4000:]
        figures[name] = rows(tmp_path / name)
    assert_same_figures(figures["colocated"], figures["separate"])
    assert all(r["grad_norm"] > 0 for r in figures["separate"].values())
