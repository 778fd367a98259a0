"""Failing fast around the rollout engine: a missing vLLM and a weight push that hangs."""
from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from r1lab.config.schema import RolloutConfig
from r1lab.validate import ConfigError, check_rollout


def test_rollout_vllm_without_vllm_names_the_install_command(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "vllm" else real(name, *a))
    with pytest.raises(ConfigError, match=r'rollout=vllm needs vLLM: on GPUs `pip install "r1lab\[vllm\]"`; on a CPU machine `make install`'):
        check_rollout(RolloutConfig(backend="vllm"))


@pytest.mark.parametrize("field, value, message", [
    ("backend", "sglang", r"rollout.backend='sglang'; valid: hf, (\w+, )*vllm"),  # the registered engines (tests add some)
    ("tensor_parallel_size", 2, "rollout.tensor_parallel_size=2: colocated vLLM engines are one per rank"),
    ("gpu_memory_utilization", 1.5, r"rollout.gpu_memory_utilization=1.5: must be in \(0, 1\]"),
])
def test_bad_rollout_settings_name_the_field(field, value, message):
    with pytest.raises(ConfigError, match=message):
        check_rollout(RolloutConfig(**{field: value}))


def test_a_weight_push_that_hangs_stops_the_process_naming_the_rank():
    """The watchdog cannot raise into a thread stuck in a collective: it prints and exits."""
    script = textwrap.dedent("""
        import time
        from r1lab.rollout.vllm_engine import _deadline
        with _deadline(0.5, "weight push to vLLM"):
            time.sleep(30)
        print("not reached")
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 3
    assert "rank 0: weight push to vLLM did not finish within rollout.weight_sync_timeout_s=0.5" in proc.stderr
    assert "not reached" not in proc.stdout


def test_a_push_that_finishes_in_time_leaves_the_process_alone():
    script = "from r1lab.rollout.vllm_engine import _deadline\nwith _deadline(5, 'x'):\n    pass\nprint('ok')"
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok"
