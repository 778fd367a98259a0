"""Learning-rate schedules: linear warmup, then cosine, linear or constant to `min_lr_ratio`.

A schedule is a decay ``progress in [0, 1] -> factor in [1, 0]`` registered in ``SCHEDULES``
under the name ``stages.<name>.schedule`` uses; start-up validation lists the registered names.
"""
from __future__ import annotations

import math
from typing import Callable

from r1lab.registry import Registry

SCHEDULES: Registry[Callable[[float], float]] = Registry("lr schedule")
SCHEDULES.register("cosine", lambda progress: 0.5 * (1.0 + math.cos(math.pi * progress)))
SCHEDULES.register("linear", lambda progress: 1.0 - progress)
SCHEDULES.register("constant", lambda progress: 1.0)  # the peak lr after warmup, min_lr_ratio unused


def lr_multiplier(step: int, total_steps: int, warmup_steps: int, kind: str, min_ratio: float) -> float:
    """Multiplier of the peak lr at optimizer step ``step`` (0-based)."""
    decay = SCHEDULES.get(kind)
    if warmup_steps > 0 and step < warmup_steps:
        return (step + 1) / warmup_steps
    if kind == "constant" or total_steps <= warmup_steps:
        return 1.0  # exactly: min_ratio + (1 - min_ratio) * 1.0 may round below it
    progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
    return min_ratio + (1.0 - min_ratio) * decay(progress)
