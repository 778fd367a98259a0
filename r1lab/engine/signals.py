"""Graceful stop on SIGTERM: remember the signal, let the training loop save and exit.

Schedulers (SLURM preemption or time limit, Kubernetes eviction, ``torchrun`` shutting its
workers down) send SIGTERM and wait a grace period before SIGKILL. The handler only sets a flag;
the stage loop asks ``Engine.preempted()`` after each optimizer step, which agrees on the answer
over all ranks (a collective), so every rank saves the same step and none waits in a collective
the others have left. A second SIGTERM before the loop got there terminates the process at once.
"""
from __future__ import annotations

import os
import signal
import threading

# Exit status of a run that stopped on SIGTERM after saving: the status a shell reports for a
# process killed by SIGTERM (128 + 15), so wrappers that treat it as "interrupted" stay right.
PREEMPTED_EXIT_CODE = 143

_requested: str | None = None
_installed = False


def _handler(signum, frame) -> None:
    global _requested
    if _requested is None:
        _requested = signal.Signals(signum).name
        return
    # a second SIGTERM while the first is pending: the process may be stuck, stop right away
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)


def install() -> None:
    """Install the SIGTERM handler once (only possible from the main thread)."""
    global _installed
    if _installed or threading.current_thread() is not threading.main_thread():
        return
    signal.signal(signal.SIGTERM, _handler)
    _installed = True


def requested() -> str | None:
    """The name of the signal received on this process (``"SIGTERM"``), or None."""
    return _requested


def request(reason: str = "SIGTERM") -> None:
    """Ask the loop to stop as if the signal had arrived (tests, programmatic shutdown)."""
    global _requested
    _requested = reason


def reset() -> None:
    global _requested
    _requested = None
