"""SIGTERM sets a flag the loop reads; a second SIGTERM terminates at once."""
from __future__ import annotations

import subprocess
import sys
import textwrap


def test_first_sigterm_sets_the_flag_second_terminates():
    code = textwrap.dedent("""
        import os, signal, time
        from r1lab.engine import signals
        signals.install()
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(0.1)
        assert signals.requested() == "SIGTERM"
        print("flag", flush=True)
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)
        print("still alive", flush=True)
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.stdout.split() == ["flag"]
    assert proc.returncode == -15
