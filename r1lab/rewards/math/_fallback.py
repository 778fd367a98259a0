"""Worker processes for the symbolic fallback, with a hard per-item timeout.

Symbolic algebra can take unbounded time on innocent-looking input, and a Python thread cannot
be interrupted, so each check runs in a separate process. A worker that misses its deadline is
killed and replaced; its item scores 0. Workers are fresh interpreters (safe next to CUDA and
threads, startable from any thread), created lazily on first use, reused across calls, and shut
down at exit. They also exit by themselves if the parent dies.
"""
from __future__ import annotations

import atexit
import logging
import math
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from multiprocessing.connection import Connection, wait

log = logging.getLogger(__name__)

START_TIMEOUT_S = 60.0  # a worker imports torch (via r1lab.rewards) and sympy before it is ready
MAX_START_FAILURES = 4  # per call: workers that died before becoming ready

MAX_SYMBOLIC_CHARS = 300
_DIGIT_RUN = re.compile(r"\d{41,}")
_NESTED_POWER = re.compile(r"\^\s*\{[^{}]*\^|\^\s*\{[^{}]*\{[^{}]*\^|\^\s*[\w\\]*\^")
_HEAVY = re.compile(r"\\(?:sum|prod|int|iint|oint|lim)(?![a-zA-Z])")


def safe_for_symbolic(s: str) -> bool:
    """Whether ``s`` may be handed to sympy at all: short, no huge literals, no power towers."""
    return (
        len(s) <= MAX_SYMBOLIC_CHARS
        and not _DIGIT_RUN.search(s)
        and not _NESTED_POWER.search(s)
        and not _HEAVY.search(s)
        and s.count("{") <= 40
    )


def _worker_main(task_fd: int, result_fd: int) -> None:
    """Loop of a worker: receive ``(op, args)``, reply ``("done", result)``; ``None`` stops it."""
    tasks, conn = Connection(task_fd, writable=False), Connection(result_fd, readable=False)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    parent = os.getppid()

    def exit_with_parent() -> None:
        while True:
            time.sleep(1.0)
            if os.getppid() != parent:
                os._exit(0)

    threading.Thread(target=exit_with_parent, daemon=True).start()
    from r1lab.rewards.math._symbolic import symbolic_equal

    # "sleep" exists for tests of the timeout path: a task that is slow on purpose.
    ops = {"equal": symbolic_equal, "sleep": lambda seconds: time.sleep(seconds) or True}
    conn.send(("ready", None))
    while True:
        try:
            message = tasks.recv()
        except (EOFError, OSError):
            return
        if message is None:
            return
        op, args = message
        try:
            result = ops[op](*args)
        except Exception:  # noqa: BLE001 - any failure of a symbolic check means "not shown equal"
            result = None
        conn.send(("done", result))


class _Worker:
    """One worker: a ``python -c`` child talking over two pipes wrapped as ``Connection`` objects.

    Not ``multiprocessing.Process``: its spawn/forkserver start re-imports the caller's
    ``__main__``, which re-runs scripts that lack an ``if __name__ == "__main__"`` guard.
    """

    def __init__(self) -> None:
        task_r, task_w = os.pipe()
        result_r, result_w = os.pipe()
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
        code = f"from {__name__} import _worker_main; _worker_main({task_r}, {result_w})"
        try:
            self.proc = subprocess.Popen(
                [sys.executable, "-c", code], pass_fds=(task_r, result_w), env=env, stdin=subprocess.DEVNULL
            )
        finally:
            os.close(task_r)
            os.close(result_w)
        self.send_conn = Connection(task_w, readable=False)
        self.conn = Connection(result_r, writable=False)
        self.ready = False
        self.started = time.monotonic()
        self.task: int | None = None
        self.deadline = math.inf

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        try:
            self.proc.wait(timeout=5.0)
        except subprocess.TimeoutExpired:
            log.warning("math fallback worker %d did not exit after SIGKILL", self.proc.pid)
        self.send_conn.close()
        self.conn.close()

    def stop(self) -> None:
        try:
            self.send_conn.send(None)
            self.proc.wait(timeout=1.0)
        except (OSError, ValueError, subprocess.TimeoutExpired):
            pass
        self.kill()


class FallbackPool:
    """A fixed number of worker processes; ``run`` is thread-safe (calls take turns)."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._workers: list[_Worker] = []
        self._lock = threading.Lock()
        self._pid = os.getpid()
        self._closed = False

    def _fill(self) -> None:
        if self._pid != os.getpid():
            # Forked copy of the pool: the workers belong to the parent process.
            self._workers, self._pid = [], os.getpid()
        while len(self._workers) < self.size and self._start():
            pass

    def _start(self) -> bool:
        try:
            self._workers.append(_Worker())
        except OSError as err:  # no processes or pipes left: symbolic checks score 0 for now
            log.error("cannot start a math fallback worker: %s", err)
            return False
        return True

    def _replace(self, worker: _Worker) -> None:
        worker.kill()
        self._workers.remove(worker)
        if not self._closed:
            self._start()

    def warm(self, timeout: float = START_TIMEOUT_S) -> bool:
        """Start the workers and wait until they are ready (benchmarks time the warm pool)."""
        return all(r is True for r in self.run([("sleep", (0,))] * self.size, timeout, timeout))

    def run(self, tasks: list[tuple[str, tuple]], item_timeout: float, batch_timeout: float) -> list:
        """Results of ``tasks`` (``(op, args)``); ``None`` for a task that failed or timed out.

        Each task gets ``item_timeout`` seconds once a worker takes it; the whole call gets
        ``batch_timeout`` seconds of work (plus worker start-up, at most ``START_TIMEOUT_S``).
        """
        results: list = [None] * len(tasks)
        if not tasks:
            return results
        with self._lock:
            if self._closed:
                return results
            self._fill()
            now = time.monotonic()
            cold = not any(w.ready for w in self._workers)
            batch_deadline = now + batch_timeout + (START_TIMEOUT_S if cold else 0.0)
            pending = deque(range(len(tasks)))
            start_failures = 0
            while pending or any(w.task is not None for w in self._workers):
                now = time.monotonic()
                if now >= batch_deadline or start_failures >= MAX_START_FAILURES or not self._workers:
                    break
                for w in list(self._workers):
                    if w.ready and w.task is None and pending:
                        index = pending.popleft()
                        try:
                            w.send_conn.send(tasks[index])
                        except (OSError, ValueError):
                            pending.appendleft(index)
                            self._replace(w)
                            continue
                        w.task, w.deadline = index, now + item_timeout
                limits = [batch_deadline]
                limits += [w.deadline if w.ready else w.started + START_TIMEOUT_S for w in self._workers]
                readable = wait([w.conn for w in self._workers], timeout=max(0.0, min(limits) - now))
                for w in list(self._workers):
                    if w.conn not in readable:
                        continue
                    try:
                        kind, value = w.conn.recv()
                    except (EOFError, OSError):
                        start_failures += not w.ready
                        self._replace(w)  # died: its task keeps the result None
                        continue
                    if kind == "ready":
                        w.ready = True
                    elif w.task is not None:
                        results[w.task] = value
                        w.task, w.deadline = None, math.inf
                now = time.monotonic()
                for w in list(self._workers):
                    if w.task is not None and now >= w.deadline:
                        self._replace(w)  # timed out: killed, item scores 0
                    elif not w.ready and now >= w.started + START_TIMEOUT_S:
                        start_failures += 1
                        self._replace(w)
            if start_failures >= MAX_START_FAILURES:
                log.error("math fallback workers fail to start; symbolic checks score 0")
            for w in list(self._workers):
                if w.task is not None:
                    self._replace(w)  # batch deadline reached while it was busy
        return results

    def close(self) -> None:
        with self._lock:
            self._closed = True
            if self._pid == os.getpid():
                for w in self._workers:
                    w.stop()
            self._workers = []


_POOL: FallbackPool | None = None
_POOL_LOCK = threading.Lock()


def default_size() -> int:
    """``R1LAB_MATH_WORKERS`` or 2-4: enough that one killed worker does not stall the rest."""
    env = os.environ.get("R1LAB_MATH_WORKERS")
    if env:
        return max(1, int(env))
    return min(4, max(2, (os.cpu_count() or 2) // 4))


def get_pool() -> FallbackPool:
    """The process-wide pool, created on first use."""
    global _POOL
    with _POOL_LOCK:
        if _POOL is None or _POOL._closed:
            _POOL = FallbackPool(default_size())
        return _POOL


@atexit.register
def shutdown() -> None:
    """Stop the workers (also registered at exit)."""
    global _POOL
    with _POOL_LOCK:
        if _POOL is not None:
            _POOL.close()
            _POOL = None
