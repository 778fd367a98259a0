"""Shared test helpers: run the CLI on a micro model."""
from __future__ import annotations

import atexit
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
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
    "task.num_train=64",
    "task.num_test=8",
    "task.num_test_hard=2",
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


def cli_env() -> dict[str, str]:
    """The environment of an `r1lab` run started by a test."""
    # rendezvous variables an in-process Engine or vLLM engine of an earlier test (same xdist worker) left must
    # not leak into the child: a MASTER_PORT without MASTER_ADDR sends DeepSpeed looking for mpi4py
    return {**{k: v for k, v in os.environ.items() if k not in RENDEZVOUS_VARIABLES},
            "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "WANDB_MODE": "offline", "OMP_NUM_THREADS": str(THREADS)}


class CLIProcess:
    """A run forked by `tests.cli_server`, with the part of ``subprocess.Popen`` the tests use:
    ``pid``, ``poll``, ``wait``, ``communicate`` (stdout, stderr: the output so far is in files),
    ``send_signal``/``terminate``/``kill`` and ``returncode``."""

    def __init__(self, args: list[str], pid: int, out: str, merge: bool) -> None:
        self.args, self.pid, self.out, self.merge = args, pid, out, merge
        self.returncode: int | None = None

    def poll(self) -> int | None:
        if self.returncode is None and os.path.exists(self.out + ".rc"):
            self.returncode = int(Path(self.out + ".rc").read_text())
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        deadline = None if timeout is None else time.time() + timeout
        while self.poll() is None:
            if deadline is not None and time.time() > deadline:
                raise subprocess.TimeoutExpired(self.args, timeout, *self.output())
            time.sleep(0.01)
        return self.returncode

    def output(self) -> tuple[str, str | None]:
        read = lambda suffix: Path(self.out + suffix).read_text(errors="replace") if os.path.exists(self.out + suffix) else ""  # noqa: E731
        return read(".stdout"), None if self.merge else read(".stderr")

    def communicate(self, timeout: float | None = None) -> tuple[str, str | None]:
        self.wait(timeout)
        return self.output()

    def send_signal(self, sig: int) -> None:
        if self.poll() is None:
            os.kill(self.pid, sig)

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)

    @property
    def stdout(self) -> io.StringIO:
        return io.StringIO(self.output()[0])


class _WarmCLI:
    """A `tests.cli_server` per environment that matters at import (``PYTHONPATH``), started at
    this test process's first run in it and kept for the rest."""

    def __init__(self) -> None:
        self.servers: dict[tuple, subprocess.Popen] = {}
        self.lock = threading.Lock()
        self.outputs = Path(tempfile.mkdtemp(prefix="r1lab-cli-"))  # the runs' stdout/stderr/rc files
        atexit.register(shutil.rmtree, self.outputs, True)
        self.count = 0

    def _server(self, env: dict[str, str]) -> subprocess.Popen:
        key = (env.get("PYTHONPATH"),)
        proc = self.servers.get(key)
        if proc is None or proc.poll() is not None:
            path = os.pathsep.join(p for p in (env.get("PYTHONPATH"), str(REPO)) if p)
            proc = subprocess.Popen([sys.executable, "-m", "tests.cli_server"], cwd=REPO, env={**env, "PYTHONPATH": path},
                                    stdin=subprocess.PIPE, stdout=subprocess.PIPE)
            atexit.register(proc.kill)
            self.servers[key] = proc
        return proc

    def start(self, entry: str, args: list[str], cwd: Path, env: dict[str, str], merge: bool) -> CLIProcess:
        with self.lock:
            proc = self._server(env)
            self.count += 1
            out = str(self.outputs / f"run{self.count}")
            request = {"entry": entry, "args": args, "cwd": str(cwd), "env": env, "out": out, "merge": merge}
            proc.stdin.write((json.dumps(request) + "\n").encode())
            proc.stdin.flush()
            line = proc.stdout.readline()  # the server answers each request with one line, in order
            if not line:
                raise RuntimeError(f"tests.cli_server ended (status {proc.wait()})")
            return CLIProcess(["r1lab", *args], json.loads(line)["pid"], out, merge)


_WARM = _WarmCLI()


def start_cli(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None, entry: str = "r1lab.cli:main",
              merge_stderr: bool = True) -> CLIProcess:
    """Start ``r1lab ARGS`` in ``cwd`` as the console script runs it (``entry``), forked from a warm
    `tests.cli_server`: the same entry point, environment and exit status, without ~9 s of imports.
    ``env``: variables over `cli_env`'s. With ``merge_stderr`` (default, as ``stderr=STDOUT``)
    ``communicate()`` gives all output as stdout."""
    return _WARM.start(entry, list(args), cwd or REPO, {**cli_env(), **(env or {})}, merge_stderr)


def run_cli(*args: str, cwd: Path | None = None, timeout: int = 600, env: dict[str, str] | None = None,
            entry: str = "r1lab.cli:main") -> subprocess.CompletedProcess:
    """``r1lab ARGS`` run to its end (`start_cli`), as ``subprocess.run(..., capture_output=True)``."""
    proc = start_cli(*args, cwd=cwd, env=env, entry=entry, merge_stderr=False)
    try:
        stdout, stderr = proc.communicate(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise
    return subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)


def run_cli_fresh(*args: str, cwd: Path | None = None, timeout: int = 600, env: dict | None = None) -> subprocess.CompletedProcess:
    """``r1lab ARGS`` in a new interpreter (the console script itself): for a run whose imports are
    what is tested (an entry-point package the test installed, a changed environment)."""
    return subprocess.run([R1LAB, *args], cwd=cwd or REPO, env={**cli_env(), **(env or {})}, capture_output=True,
                          text=True, timeout=timeout)


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
