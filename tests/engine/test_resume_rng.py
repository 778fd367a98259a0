"""Resuming restores the random state the checkpoint saved: python's ``random``, numpy's global
generator and torch's (CUDA's too where there is one), so a resumed run draws what a straight run
would have drawn after the save. Through the real `Engine.save` / `Engine.load` (DeepSpeed's CPU path)."""
from __future__ import annotations

import os
import random

import numpy as np
import pytest
import torch

from r1lab.config.schema import EngineConfig, TinyModelConfig
from r1lab.engine import engine as engine_module
from r1lab.engine.checkpoint import step_dirname
from r1lab.engine.engine import Engine, OptimSettings
from r1lab.models.tiny import build_tiny_model

pytestmark = pytest.mark.slow  # one DeepSpeed initialisation, a few seconds


@pytest.fixture(scope="module")
def engine() -> Engine:
    model = build_tiny_model(TinyModelConfig(hidden_size=32, num_layers=1, num_heads=4, num_kv_heads=4,
                                             intermediate_size=64), vocab_size=40)
    opt = OptimSettings(lr=1e-2, weight_decay=0.0, max_grad_norm=1.0, schedule="linear", warmup_steps=0,
                        total_steps=100, min_lr_ratio=0.0, micro_batch_per_device=2)
    return Engine(model, EngineConfig(zero_stage=0, precision="fp32"), opt)


def draws() -> dict:
    """What each global generator gives next (the loops' shuffles, dropout, sampling seeds)."""
    out = {"python": [random.random() for _ in range(4)], "numpy": np.random.rand(4).tolist(),
           "torch": torch.rand(4).tolist()}
    if torch.cuda.is_available():
        out["cuda"] = torch.rand(4, device="cuda").tolist()
    return out


def test_load_restores_the_random_state_saved(engine, tmp_path):
    random.seed(1), np.random.seed(1), torch.manual_seed(1)
    draws()  # not the seeds' first numbers
    engine.save(tmp_path, {"where": "saved"}, keep=2)
    after_save = draws()  # what the straight run draws next
    random.seed(99), np.random.seed(99), torch.manual_seed(99)  # a new process: other states
    moved_on = draws()
    for name in after_save:
        assert moved_on[name] != after_save[name], name
    state = engine.load(tmp_path)
    assert state is not None and state["where"] == "saved"
    assert draws() == after_save  # every generator, each compared by name in the diff on failure


def test_resume_after_a_crash_between_the_renames_of_a_resave(engine, tmp_path, monkeypatch):
    """The same step saved again (a resumed run): the process dies between ``commit_dir``'s two
    renames, leaving ``step-N.old`` (the first save) and ``step-N.tmp`` (the second). Resume loads the
    first save, its random state included."""
    torch.manual_seed(5)
    engine.save(tmp_path, {"copy": "first"}, keep=2)
    after_first = draws()
    real_commit, real_rename = engine_module.commit_dir, os.rename

    class Crash(BaseException):
        pass

    def dying_commit(tmp, final):
        calls = []

        def rename(src, dst):
            calls.append(src)
            if len(calls) == 2:
                raise Crash("killed between the renames")
            return real_rename(src, dst)

        monkeypatch.setattr(os, "rename", rename)
        try:
            real_commit(tmp, final)
        finally:
            monkeypatch.setattr(os, "rename", real_rename)

    monkeypatch.setattr(engine_module, "commit_dir", dying_commit)
    with pytest.raises(Crash):
        engine.save(tmp_path, {"copy": "second"}, keep=2)
    monkeypatch.setattr(engine_module, "commit_dir", real_commit)
    name = step_dirname(engine.step)
    assert sorted(p.name for p in tmp_path.iterdir()) == [name + ".old", name + ".tmp"]
    torch.manual_seed(99)
    with pytest.warns(UserWarning, match="resuming from"):
        state = engine.load(tmp_path)
    assert state is not None and state["copy"] == "first"
    assert draws() == after_first
    engine.save(tmp_path, {"copy": "third"}, keep=2)  # the resumed run saves the step again: cleaned up
    assert sorted(p.name for p in tmp_path.iterdir()) == [name]
    assert engine.load(tmp_path)["copy"] == "third"
