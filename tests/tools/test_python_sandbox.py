"""python tool: real sandboxed processes, each fast. After every refused or killed snippet a
normal call still answers (the trainer goes on)."""
from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from r1lab.tools import ToolLimits, ToolResult
from r1lab.tools import python as python_tool
from r1lab.tools.python import python

LIMITS = ToolLimits(timeout_s=5, memory_mb=256)


def run(code: str, **limits) -> ToolResult:
    return python(code, ToolLimits(**{**LIMITS.__dict__, **limits}))


def still_works() -> None:
    assert run("print(1+1)") == ToolResult("2", "ok")


@pytest.fixture
def pids(monkeypatch):
    """The pids of the processes the tool starts."""
    python_tool.netns_prefix()  # probe (and cache) before recording: the probe is a process too
    started: list[int] = []

    class Recording(subprocess.Popen):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            started.append(self.pid)

    monkeypatch.setattr(python_tool.subprocess, "Popen", Recording)
    return started


def gone(pid: int) -> bool:
    for kill in (os.kill, os.killpg):  # neither the process nor anything of its group is left
        try:
            kill(pid, 0)
            return False
        except ProcessLookupError:
            pass
    return True


def test_output_is_exact_and_last_expression_is_shown():
    assert run("print(2**100)") == ToolResult(str(2**100), "ok")
    assert run("x = 6\nx * 7") == ToolResult("42", "ok")  # like a notebook cell
    assert run("x = 1") == ToolResult("(no output)", "ok")
    assert run("    for i in range(3):\n        print(i)") == ToolResult("0\n1\n2", "ok")  # dedented


def test_output_is_cut():
    result = run("print('x' * 100000)", max_result_chars=50)
    assert result.status == "ok" and result.text == "x" * 47 + "..."


def test_exceptions_are_one_line_errors():
    assert run("1/0") == ToolResult("error: ZeroDivisionError: division by zero", "error")
    assert run("def f(:").text.startswith("error: SyntaxError")
    assert run("import sys; sys.exit(3)") == ToolResult("error: SystemExit: 3", "error")
    still_works()


@pytest.mark.parametrize("code", ["while True: pass", "import time; time.sleep(30)"])  # CPU / wall clock
def test_timeout_kills_the_process_group(code, pids):
    start = time.monotonic()
    assert run(code, timeout_s=1) == ToolResult("error: timed out after 1s", "timeout")
    assert time.monotonic() - start < 3
    assert len(pids) == 1 and gone(pids[0])
    still_works()


def test_memory_limit():
    result = run("x = bytearray(2 * 1024**3)", memory_mb=256)
    assert result == ToolResult("error: MemoryError", "error")
    still_works()


@pytest.mark.parametrize("code", [
    "import socket; socket.create_connection(('127.0.0.1', 9))",
    "import socket; socket.socket()",
    "import urllib.request; urllib.request.urlopen('http://127.0.0.1:9')",
])
def test_network_is_off(code):
    result = run(code)
    assert result.status == "error" and "network is off" in result.text
    still_works()


def test_files_outside_the_working_directory(tmp_path):
    assert run("open('/etc/passwd').read()").status == "error"
    assert "files outside the working directory" in run("open('/etc/passwd').read()").text
    escape = "/tmp/r1lab_escape"
    if os.path.exists(escape):
        os.remove(escape)
    assert run(f"open({escape!r}, 'w').write('x')").status == "error"
    assert not os.path.exists(escape)
    (tmp_path / "keep").write_text("x")
    for code in [f"import os; os.remove({str(tmp_path / 'keep')!r})", "import os; os.listdir('/')",
                 "import os; os.chdir('/')", "import os; os.symlink('/etc/passwd', 'l'); open('l').read()"]:
        assert run(code).status == "error", code
    assert (tmp_path / "keep").exists()
    still_works()


def test_working_directory_is_fresh_and_removed():
    result = run("import os\nopen('out.txt', 'w').write('hi')\nprint(open('out.txt').read(), os.getcwd())")
    text, cwd = result.text.split()
    assert (text, result.status) == ("hi", "ok")
    assert not os.path.exists(cwd)
    # nothing is shared between calls
    assert run("import builtins; builtins.LEAK = 1; open('a.txt', 'w')").status == "ok"
    assert run("import builtins, os; print(hasattr(builtins, 'LEAK'), os.path.exists('a.txt'))").text == "False False"


def test_the_trainers_environment_is_not_visible(monkeypatch):
    monkeypatch.setenv("R1LAB_TEST_SECRET", "s3cret")
    assert run("import os; print(os.environ.get('R1LAB_TEST_SECRET'))").text == "None"


def test_processes_are_off(pids):
    start = time.monotonic()
    result = run("import os\nwhile True: os.fork()", timeout_s=2)
    assert result.status in {"error", "timeout"} and time.monotonic() - start < 4
    for code in ["import subprocess; subprocess.run(['ls'])", "import os; os.system('ls')",
                 "import os; os.kill(1, 0)", "import os; os.execv('/bin/ls', ['ls'])",
                 "import multiprocessing as mp\np = mp.get_context('spawn').Process(target=print)\np.start()",
                 "import ctypes", "import resource; resource.setrlimit(resource.RLIMIT_AS, (-1, -1))"]:
        result = run(code)
        assert result.status == "error" and "off in the python tool" in result.text, (code, result)
    assert all(gone(pid) for pid in pids)
    still_works()


def test_an_interpreter_that_cannot_start_is_an_error(monkeypatch):
    monkeypatch.setattr(python_tool.sys, "executable", "/nonexistent/python3")
    assert run("print(1)").status == "error"
    monkeypatch.undo()
    still_works()


def test_unprintable_input_is_an_error():
    assert run("print('a\x00b')").status == "error"  # a NUL cannot travel in argv
    assert run("x" * (python_tool.MAX_CODE_BYTES + 1)).status == "error"


def test_network_namespace_when_available():
    prefix = python_tool.netns_prefix()
    if not prefix:
        pytest.skip("unshare -rn does not work here: the audit hook alone keeps the network off")
    out = subprocess.run([*prefix, sys.executable, "-I", "-S", "-c", "import socket; print(socket.if_nameindex())"],
                         capture_output=True, text=True, timeout=10)
    assert out.stdout.strip() == "[(1, 'lo')]"  # loopback only, even for code the hook would not stop
