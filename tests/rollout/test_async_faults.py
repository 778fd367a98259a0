"""Faults and bad input with `rollout.placement=separate`: a worker that dies or goes silent stops the trainer
with one line naming it and its address; ``restart_workers`` starts it again and the run finishes;
a bad address, a port in use, another model or protocol version stop at start-up."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from tests.helpers import run_cli, start_cli
from tests.rollout.async_helpers import CLI_ENV, ENV, STAGE, finish, first_step_logged, grpo_run, rows, save_micro_model, start_worker, trainer_on, wait_for

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def micro_dir(tmp_path_factory) -> str:
    return save_micro_model(tmp_path_factory.mktemp("micro"))


def test_a_worker_that_dies_stops_the_trainer_naming_it(tmp_path, micro_dir):
    worker, address = start_worker(micro_dir)
    trainer = trainer_on(tmp_path / "run", micro_dir, address)
    wait_for(first_step_logged(tmp_path / "run"), trainer)
    worker.kill()
    began = time.time()
    out = finish(trainer, expect=2, timeout=120)  # r1lab: error: <one line>
    assert time.time() - began < 60
    assert f"rollout worker 0 at {address} stopped" in out
    assert not (tmp_path / "run" / STAGE / "done.json").exists()


def test_a_worker_that_stops_answering_stops_the_trainer_within_the_timeout(tmp_path, micro_dir):
    worker, address = start_worker(micro_dir)
    trainer = trainer_on(tmp_path / "run", micro_dir, address, "rollout.worker_timeout_s=3")
    wait_for(first_step_logged(tmp_path / "run"), trainer)
    worker.send_signal(signal.SIGSTOP)  # alive, silent: no replies, no heartbeats
    try:
        began = time.time()
        out = finish(trainer, expect=2, timeout=120)  # r1lab: error: <one line>
        assert time.time() - began < 60
        assert f"rollout worker 0 at {address} stopped answering: nothing heard for" in out
        assert "rollout.worker_timeout_s=3" in out
    finally:
        worker.kill()


def _children(pid: int) -> list[int]:
    out = subprocess.run(["ps", "-o", "pid=,ppid=,args=", "-e"], capture_output=True, text=True).stdout
    return [int(line.split()[0]) for line in out.splitlines() if int(line.split()[1]) == pid and "r1lab.rollout.worker" in line]


def test_restart_workers_starts_a_dead_worker_again_and_the_run_finishes(tmp_path):
    run_dir = tmp_path / "run"
    proc = start_cli(*grpo_run(12, "rollout.placement=separate", "rollout.max_staleness=1", "rollout.restart_workers=true"),
                     f"run_dir={run_dir}", env=CLI_ENV)
    wait_for(first_step_logged(run_dir), proc)
    workers = _children(proc.pid)
    assert len(workers) == 1
    os.kill(workers[0], signal.SIGKILL)
    out = finish(proc)
    assert "rollout worker 0 at 127.0.0.1:" in out and "restarted it as rollout worker 0" in out
    assert sorted(rows(run_dir)) == list(range(1, 13))


# --- start-up ------------------------------------------------------------------------------------


def test_a_bad_address_stops_at_start_up_naming_it(tmp_path, micro_dir):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = run_cli(*grpo_run(2, "rollout.placement=separate", f"rollout.servers=[127.0.0.1:{port}]",
                            f"model.name_or_path={micro_dir}"), f"run_dir={tmp_path / 'run'}")
    assert out.returncode != 0
    assert f"rollout worker 0 at 127.0.0.1:{port}: cannot connect" in out.stderr
    out = run_cli(*grpo_run(2, "rollout.placement=separate", "rollout.servers=[localhost]"), f"run_dir={tmp_path / 'b'}")
    assert out.returncode != 0 and "rollout.servers: 'localhost' is not host:port" in out.stderr
    out = run_cli(*grpo_run(2, "rollout.max_staleness=1"), f"run_dir={tmp_path / 'c'}")
    assert out.returncode != 0 and "set rollout.placement=separate" in out.stderr


def test_a_port_in_use_stops_the_worker_with_a_message(micro_dir):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        port = s.getsockname()[1]
        out = subprocess.run([sys.executable, "-m", "r1lab.rollout.worker", "--model", micro_dir, "--port", str(port)],
                             env=ENV, capture_output=True, text=True, timeout=120)
    assert out.returncode != 0
    assert f"cannot listen on 127.0.0.1:{port}" in out.stderr and "--port" in out.stderr


def test_a_worker_serving_another_model_or_protocol_is_refused(tmp_path, micro_dir):
    from r1lab.config.schema import TinyModelConfig
    from r1lab.models.tiny import save_tiny_model
    from r1lab.rollout.wire import PROTOCOL_VERSION

    other = str(save_tiny_model(TinyModelConfig(hidden_size=48, num_layers=1, num_heads=2, num_kv_heads=2, intermediate_size=64),
                                tmp_path / "other"))
    worker, address = start_worker(other)
    try:
        out = run_cli(*grpo_run(2, "rollout.placement=separate", f"rollout.servers=[{address}]",
                                f"model.name_or_path={micro_dir}"), f"run_dir={tmp_path / 'run'}")
        assert out.returncode != 0
        assert f"rollout worker 0 at {address}" in out.stderr and "serves another model" in out.stderr
        from r1lab.rollout.remote import RolloutWorkerError, WorkerConnection

        conn = WorkerConnection(0, address, timeout_s=30)  # the worker outlived the refused trainer
        with pytest.raises(RolloutWorkerError, match=f"trainer speaks rollout protocol {PROTOCOL_VERSION + 1}, this worker {PROTOCOL_VERSION}"):
            conn.call({"type": "hello", "protocol": PROTOCOL_VERSION + 1})
        conn.close()
    finally:
        worker.kill()
