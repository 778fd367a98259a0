"""ZeRO-3 at 2 processes with a colocated vLLM engine per rank (the real CPU build): after
optimizer steps each engine samples from the trainer's weights, pushed a bucket at a time."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from r1lab.config.schema import TinyModelConfig
from r1lab.models.tiny import save_tiny_model
from tests.distributed.test_data_parallel import _RDZV, TORCHRUN, _free_port

pytest.importorskip("vllm")
pytestmark = [pytest.mark.distributed, pytest.mark.slow, pytest.mark.vllm]

DRIVER = Path(__file__).with_name("vllm_driver.py")


def test_zero3_two_ranks_push_the_trainers_weights(tmp_path):
    model = save_tiny_model(TinyModelConfig(hidden_size=64, num_layers=2, num_heads=2, num_kv_heads=1, intermediate_size=128,
                                            max_position_embeddings=256), tmp_path / "tiny")
    env = {**{k: v for k, v in os.environ.items() if k not in _RDZV}, "OMP_NUM_THREADS": "1", "DS_ACCELERATOR": "cpu",
           "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    cmd = [str(TORCHRUN), "--nproc_per_node", "2", "--master_port", str(_free_port()), str(DRIVER), str(model), str(tmp_path)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}"
    for rank in (0, 1):
        r = json.loads((tmp_path / f"rank{rank}.json").read_text())
        assert r["steps"] == 3
        assert r["after_vllm"] != r["before"]  # the steps changed what greedy picks
        assert r["after_vllm"] == r["after_hf"]  # and vLLM picks what the trainer's weights pick
        assert r["logprob_gap"] < 1e-4, r["logprob_gap"]
