"""A NaN/inf loss or gradient skips the optimizer step; too many in a row stop training."""
from __future__ import annotations

import signal

import pytest
import torch

from r1lab.config.schema import EngineConfig, TinyModelConfig
from r1lab.engine import signals
from r1lab.engine.engine import Engine, NonFiniteError, OptimSettings
from r1lab.models.tiny import build_tiny_model

pytestmark = pytest.mark.slow  # DeepSpeed initialisation, a few seconds per engine


@pytest.fixture(autouse=True)
def keep_sigterm():
    before = signal.getsignal(signal.SIGTERM)
    yield
    signal.signal(signal.SIGTERM, before)
    signals._installed = False
    signals.reset()


def make_engine(zero: int, max_nonfinite: int = 3) -> Engine:
    model = build_tiny_model(TinyModelConfig(hidden_size=32, num_layers=1, num_heads=4, num_kv_heads=4,
                                             intermediate_size=64), vocab_size=40)
    opt = OptimSettings(lr=1e-2, weight_decay=0.0, max_grad_norm=1.0, schedule="linear", warmup_steps=0,
                        total_steps=100, min_lr_ratio=0.0, micro_batch_per_device=2)
    cfg = EngineConfig(zero_stage=zero, precision="fp32", max_nonfinite_steps=max_nonfinite)
    return Engine(model, cfg, opt)


def params(engine: Engine) -> torch.Tensor:
    with engine.gathered():
        return torch.cat([p.detach().flatten().clone() for p in engine.module.parameters()])


def lm_loss(engine: Engine) -> torch.Tensor:
    ids = torch.arange(4, 20).view(2, 8)
    return engine.module(input_ids=ids, labels=ids).loss


def step(engine: Engine, poison: str | None = None) -> None:
    """One optimizer step of two micro-batches; ``poison`` corrupts the second one."""
    engine.backward(lm_loss(engine), last_micro_batch=False)
    loss = lm_loss(engine)
    if poison == "nan_loss":  # NaN loss and NaN gradient
        loss = loss * float("nan")
    elif poison == "nan_constant":  # NaN loss, finite gradient
        loss = loss + float("nan")
    elif poison == "inf_loss":
        loss = loss + float("inf")
    elif poison == "nan_grad":  # finite loss, NaN gradient: d sqrt(x)/dx at 0 is inf, times 0
        ids = torch.arange(4, 20).view(2, 8)
        hidden = engine.module.model(input_ids=ids).last_hidden_state
        loss = loss + torch.sqrt(hidden * 0.0).sum()
    engine.backward(loss, last_micro_batch=True)


@pytest.mark.parametrize("zero", [0, 2, 3])
def test_nonfinite_steps_are_skipped_and_counted(zero):
    engine = make_engine(zero, max_nonfinite=5)
    before = params(engine)
    step(engine)
    after_good = params(engine)
    assert not torch.equal(before, after_good)
    lr = engine.lr()
    for i, poison in enumerate(["nan_loss", "nan_constant", "inf_loss", "nan_grad"], start=1):
        step(engine, poison)
        assert torch.equal(params(engine), after_good), f"{poison} changed the parameters"
        assert engine.nonfinite_steps == i
        assert engine.lr() == lr, "a skipped step must not advance the lr schedule"
        assert torch.isfinite(params(engine)).all()
    assert engine.step == 5  # skipped steps still count: the loop moves on to the next batch
    step(engine)  # a good step updates again and resets the consecutive count
    assert not torch.equal(params(engine), after_good)
    assert torch.isfinite(params(engine)).all() and engine._consecutive_nonfinite == 0


def test_consecutive_nonfinite_steps_stop_training():
    engine = make_engine(0, max_nonfinite=2)
    step(engine, "nan_loss")
    step(engine)  # resets the run of bad steps
    step(engine, "nan_loss")
    with pytest.raises(NonFiniteError, match=r"2 consecutive optimizer steps .*\(engine\.max_nonfinite_steps=2\)"):
        step(engine, "nan_constant")
    assert engine.nonfinite_steps == 3
