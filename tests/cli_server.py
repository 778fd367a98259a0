"""A warm `r1lab` for the tests: one process that has imported the CLI and the pipeline, and
forks a child per command line, so a test's run costs its work and not the ~9 s of imports.

``python -m tests.cli_server`` reads one JSON request a line on stdin, ``{"entry", "args", "cwd",
"env", "out", "merge"}``, and for each forks a child that runs the console script's entry point
(``entry``, "module:function", e.g. ``r1lab.cli:main``) with ``sys.argv = [module, *args]``,
``os.environ = env``, in ``cwd``; the child's stdout goes to ``<out>.stdout`` and its stderr to
``<out>.stderr`` (or to the same file with ``merge``). The server answers ``{"pid": ...}`` at once
and writes the child's exit status to ``<out>.rc`` when it ends (a signal's death as
``-signum``, as ``subprocess`` reports it), so several children may run at once and a test can
signal one by its pid. When stdin closes (the test process ended) the children left are killed.

Forking is safe here because the server only imports: it runs no torch op, so no OpenMP pool
exists to be copied half-alive, and a child's first op starts its own. Its environment is the
tests' (``OMP_NUM_THREADS`` included, which OpenMP reads when torch loads, and any
``PYTHONPATH`` stand-in a test installs: a server is started per such environment). What a
fresh interpreter would do and a fork must do by hand: exit handlers (``atexit``) run and the
streams are flushed before the child leaves. A test that needs a fresh interpreter (a package it
installed, found through entry points at import) starts ``r1lab`` itself.
"""
from __future__ import annotations

import atexit
import importlib
import json
import os
import select
import signal
import sys
import traceback

import r1lab.cli
import r1lab.eval.cli  # noqa: F401
import r1lab.pipeline  # noqa: F401  (the slow import, done once)


def _run(request: dict) -> int:
    os.environ.clear()
    os.environ.update(request["env"])
    os.chdir(request["cwd"])
    os.dup2(os.open(os.devnull, os.O_RDONLY), 0)  # the requests' pipe is the server's, not the run's
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC
    out = os.open(request["out"] + ".stdout", flags)
    os.dup2(out, 1)
    os.dup2(out if request.get("merge") else os.open(request["out"] + ".stderr", flags), 2)
    module, function = request["entry"].split(":")
    sys.argv = [module, *request["args"]]
    try:
        getattr(importlib.import_module(module), function)()
        code = 0
    except SystemExit as stop:
        code = stop.code if isinstance(stop.code, int) else (0 if stop.code is None else 1)
    except BaseException:  # noqa: BLE001  (reported as the console script would: a traceback, status 1)
        traceback.print_exc()
        code = 1
    try:
        atexit._run_exitfuncs()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
    return code


def _reap(children: dict[int, str]) -> None:
    while children:
        pid, status = os.waitpid(-1, os.WNOHANG)
        if pid == 0:
            return
        out = children.pop(pid)
        with open(out + ".rc.tmp", "w") as f:
            f.write(str(os.waitstatus_to_exitcode(status)))
        os.replace(out + ".rc.tmp", out + ".rc")


def main() -> None:
    children: dict[int, str] = {}
    pending = b""
    while True:
        if select.select([0], [], [], 0.02)[0]:
            chunk = os.read(0, 65536)
            if not chunk:
                break
            pending += chunk
            while b"\n" in pending:
                line, pending = pending.split(b"\n", 1)
                request = json.loads(line)
                sys.stdout.flush()
                sys.stderr.flush()
                pid = os.fork()
                if pid == 0:
                    os._exit(_run(request))
                children[pid] = request["out"]
                os.write(1, (json.dumps({"pid": pid}) + "\n").encode())
        _reap(children)
    for pid in children:
        os.kill(pid, signal.SIGKILL)


if __name__ == "__main__":
    main()
