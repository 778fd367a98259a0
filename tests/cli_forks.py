"""Run many `r1lab` command lines, each in a child forked from one process that has already
imported the CLI and the pipeline: a start-up check costs the fork, not the ~10 s of imports.

``python -m tests.cli_forks CASES.json``: CASES is a list of ``{"args", "cwd", "out"}``; each
child runs ``r1lab.cli.main()`` with ``sys.argv = ["r1lab", *args]`` in ``cwd`` (the console
script's own entry point), its stdout and stderr in ``<out>.stdout`` / ``<out>.stderr`` and its
exit status in ``<out>.rc``. Only for runs that stop at start-up: a fork of a process with torch
loaded is fine for that, not for training.
"""
from __future__ import annotations

import json
import os
import sys
import traceback

import r1lab.cli
import r1lab.pipeline  # noqa: F401  (the slow import, done once)


def _child(case: dict) -> int:
    os.chdir(case["cwd"])
    for fd, suffix in ((1, ".stdout"), (2, ".stderr")):
        os.dup2(os.open(case["out"] + suffix, os.O_WRONLY | os.O_CREAT | os.O_TRUNC), fd)
    sys.argv = ["r1lab", *case["args"]]
    try:
        r1lab.cli.main()
        code = 0
    except SystemExit as stop:
        code = stop.code if isinstance(stop.code, int) else (0 if stop.code is None else 1)
    except BaseException:  # noqa: BLE001  (reported as the console script would: a traceback, status 1)
        traceback.print_exc()
        code = 1
    sys.stdout.flush()
    sys.stderr.flush()
    return code


def main(path: str) -> None:
    for case in json.loads(open(path).read()):
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            os._exit(_child(case))
        _, status = os.waitpid(pid, 0)
        with open(case["out"] + ".rc", "w") as f:
            f.write(str(os.waitstatus_to_exitcode(status)))


if __name__ == "__main__":
    main(sys.argv[1])
