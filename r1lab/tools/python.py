"""``python``: run a model-written snippet in a fresh, limited, throw-away process.

What it does, per call:

* a new interpreter (``python -I -S -B``: no site-packages, no ``PYTHON*`` variables, no
  bytecode written; only the standard library imports), in a new session (its own process
  group), with an environment holding nothing of the trainer's (no tokens, no keys), its
  working directory a fresh ``tempfile.mkdtemp()`` that is removed afterwards; nothing is shared
  between calls or with the trainer's process;
* limits set before the snippet runs: address space ``memory_mb`` (``MemoryError``), CPU
  ``ceil(timeout_s)`` seconds, files written 1 MB, 64 open files, no core dumps; the parent
  waits ``timeout_s`` of wall-clock time, then kills the whole process group (and always kills
  the group once the call is over, so nothing it started outlives it);
* when ``unshare -rn`` works on this machine (probed once), the interpreter runs in new user
  and network namespaces: no network interface but loopback, whatever the code does;
* in every case an audit hook (``sys.addaudithook``, installed before the snippet runs, not
  removable) refuses: sockets (network), starting or signalling processes (fork, exec, spawn,
  ``subprocess``, ``os.system``, ``os.kill``), ``ctypes`` and the private C modules that start
  processes or interpreters, raising limits, writing, renaming, removing or ``chdir`` outside
  the working directory, and reading anything but the working directory and the standard
  library. A refusal is a ``PermissionError`` the snippet may catch.

Output: what the snippet prints (stdout and stderr, as a terminal shows them) and, like a
notebook cell, the ``repr`` of a last bare expression that is not ``None``; trailing whitespace
trimmed, ``(no output)`` if nothing. An exception: ``error: <Type>: <message>``. Over the wall-clock or CPU limit:
``error: timed out after 5s`` (status ``timeout``).

What it does NOT guarantee: audit hooks are a defence against accidents and model-written code,
not against a determined attacker (native code, interpreter internals and races get around
them); without the network namespace, only the hook keeps the network away. As root,
``RLIMIT_NPROC`` is not enforced: fork is stopped by the hook, and the group kill reaps the
rest. Files the user running the trainer may read are protected by the hook only.
"""
from __future__ import annotations

import contextlib
import functools
import math
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time

from r1lab.tools.registry import ToolLimits, ToolResult, cut, error, register_tool

MAX_CODE_BYTES = 64 * 1024  # the snippet travels as one argv entry (Linux allows 128 KiB)

# Runs in the child as `python -c PRELUDE CODE MEMORY_MB CPU_S MAX_CHARS`, its cwd the work dir.
PRELUDE = r'''
import ast, builtins, io, os, resource, signal, sys
import _posixsubprocess
code, memory_mb, cpu_s, max_chars = sys.argv[1], *map(int, sys.argv[2:5])
for limit, value in ((resource.RLIMIT_AS, memory_mb << 20), (resource.RLIMIT_CPU, cpu_s),
                     (resource.RLIMIT_FSIZE, 1 << 20), (resource.RLIMIT_NOFILE, 64), (resource.RLIMIT_CORE, 0)):
    resource.setrlimit(limit, (value, value + (limit == resource.RLIMIT_CPU)))  # CPU: SIGXCPU, then SIGKILL
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a too-big file is an OSError, not a dead process
WORK = (os.path.realpath(os.getcwd()),)
READ = WORK + tuple(os.path.realpath(p) for p in sys.path if p)
PROCESS = {"os.fork", "os.forkpty", "os.system", "os.exec", "os.posix_spawn", "os.spawn", "os.kill",
           "os.killpg", "signal.pthread_kill", "subprocess.Popen", "pty.spawn", "cpython.PyInterpreterState_New"}
MODULES = {"ctypes", "_ctypes", "_posixsubprocess", "_xxsubinterpreters", "_xxinterpchannels",
           "_testcapi", "_testinternalcapi", "_testmultiphase"}
WRITES = {"os.remove": (0,), "os.rmdir": (0,), "os.mkdir": (0,), "os.rename": (0, 1), "os.link": (0, 1),
          "os.symlink": (1,), "os.chmod": (0,), "os.chown": (0,), "os.truncate": (0,), "os.utime": (0,),
          "os.chflags": (0,), "os.setxattr": (0,), "os.removexattr": (0,), "os.chdir": (0,)}
READS = {"os.listdir": (0,), "os.scandir": (0,), "os.getxattr": (0,), "os.listxattr": (0,)}
OPEN_WRITE = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND

def inside(path, tops):
    if isinstance(path, int):  # an open file descriptor: reaching it took an allowed open
        return True
    path = os.path.realpath(os.fsdecode("." if path is None else path))
    return any(path == top or path.startswith(top + os.sep) for top in tops)

def hook(event, args):
    if event == "open":
        tops = WORK if (args[2] or 0) & OPEN_WRITE or any(c in (args[1] or "") for c in "wax+") else READ
        if not inside(args[0], tops):
            raise PermissionError(f"files outside the working directory are off in the python tool: {args[0]}")
    elif event.startswith("socket."):
        raise PermissionError("network is off in the python tool")
    elif event in PROCESS or event.startswith("resource.set") or event == "resource.prlimit":
        raise PermissionError(f"{event} is off in the python tool (no processes, no limit changes)")
    elif event.startswith("ctypes.") or (event == "import" and args[0].partition(".")[0] in MODULES):
        raise PermissionError(f"{args[0] if event == 'import' else event} is off in the python tool")
    elif event in WRITES or event in READS:
        tops = WORK if event in WRITES else READ
        for i in (WRITES.get(event) or READS[event]):
            if i < len(args) and not inside(args[i], tops):
                raise PermissionError(f"{event} outside the working directory is off in the python tool: {args[i]}")

def refuse(*args, **kwargs):
    raise PermissionError("starting processes is off in the python tool")

_posixsubprocess.fork_exec = refuse  # multiprocessing's spawn calls it directly, without an audit event

class Capped(io.StringIO):  # keeps the first max_chars characters, drops the rest
    def write(self, s):
        room = max_chars - self.tell()
        if room > 0:
            super().write(s[:room])
        return len(s)

out = sys.stdout = sys.stderr = Capped()
sys.addaudithook(hook)
scope = {"__name__": "__main__", "__builtins__": builtins}
try:
    tree = ast.parse(code, "<python>")
    last = tree.body.pop() if tree.body and isinstance(tree.body[-1], ast.Expr) else None
    exec(compile(tree, "<python>", "exec"), scope)
    if last is not None:
        value = eval(compile(ast.Expression(last.value), "<python>", "eval"), scope)
        if value is not None:
            print(repr(value))
except SystemExit as exc:
    if exc.code not in (None, 0):
        os.write(2, f"SystemExit: {exc.code}\n".encode("utf-8", "replace"))
        os._exit(1)
except BaseException as exc:
    message = str(exc).strip().splitlines()
    os.write(2, (type(exc).__qualname__ + (": " + message[-1] if message else "") + "\n").encode("utf-8", "replace"))
    os._exit(1)
try:
    os.write(1, out.getvalue().encode("utf-8", "replace"))
except OSError:  # fd 1 already at the file-size limit: what is there is the output
    pass
os._exit(0)
'''


@functools.lru_cache(maxsize=1)
def netns_prefix() -> tuple[str, ...]:
    """``("unshare", "-rn")`` when a new user + network namespace can be made here, else ``()``."""
    exe = shutil.which("unshare")
    try:
        if exe and subprocess.run([exe, "-rn", "true"], capture_output=True, timeout=10).returncode == 0:
            return (exe, "-rn")
    except (OSError, subprocess.SubprocessError):
        pass
    return ()


def _exited_by(pid: int, deadline: float) -> bool:
    """Wait (without reaping, so the process group stays ours to kill) until ``pid`` exits or
    ``deadline`` passes; whether it exited."""
    pause = 0.001
    while os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is None:
        if time.monotonic() >= deadline:
            return False
        time.sleep(pause)
        pause = min(2 * pause, 0.02)
    return True


def _tail_line(f) -> str:
    """The last non-empty line of the file ``f`` (read from its last 4 KiB)."""
    f.seek(max(0, os.fstat(f.fileno()).st_size - 4096))
    lines = f.read().decode("utf-8", "replace").strip().splitlines()
    return lines[-1] if lines else ""


@register_tool("python")
def python(code: str, limits: ToolLimits) -> ToolResult:
    """Run ``code`` in the sandbox above; never raises."""
    code = textwrap.dedent(code).strip("\n")
    if len(code.encode("utf-8", "replace")) > MAX_CODE_BYTES:
        return error(f"the python tool takes at most {MAX_CODE_BYTES} bytes of code")
    work = None
    try:
        work = tempfile.mkdtemp(prefix="r1lab-python-")
        max_chars = int(limits.max_result_chars)
        argv = [*netns_prefix(), sys.executable, "-I", "-S", "-B", "-c", PRELUDE, code,
                str(int(limits.memory_mb)), str(max(1, math.ceil(limits.timeout_s))), str(max_chars + 1)]
        env = {"PATH": os.defpath, "HOME": work, "TMPDIR": work, "LC_ALL": "C.UTF-8"}
        with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
            proc = subprocess.Popen(argv, cwd=work, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                                    start_new_session=True)
            deadline = time.monotonic() + limits.timeout_s
            try:
                exited = _exited_by(proc.pid, deadline)
            finally:  # the snippet's group, whatever it left behind (even if we are interrupted)
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                rc = proc.wait()
            if not exited or rc == -signal.SIGXCPU or (rc < 0 and time.monotonic() >= deadline):
                return ToolResult(f"error: timed out after {limits.timeout_s:g}s", "timeout")
            if rc != 0:
                return error(_tail_line(err) or (f"killed by signal {-rc}" if rc < 0 else f"exit status {rc}"))
            out.seek(0)
            text = out.read(4 * max_chars + 8).decode("utf-8", "replace").rstrip()
            return ToolResult(cut(text, max_chars) if text else "(no output)", "ok")
    except Exception as exc:  # noqa: BLE001 - e.g. the interpreter cannot start: an error result
        return error(f"the python tool could not run: {type(exc).__name__}: {exc}")
    finally:
        if work is not None:
            shutil.rmtree(work, ignore_errors=True)
