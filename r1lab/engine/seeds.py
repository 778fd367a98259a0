"""Every seed a stage derives, in one place: from (the stage's seed, purpose, step, rank).

A stage's ``seed`` field is the run's ``seed`` unless the recipe sets it, so the stage enters
through it. Each purpose is its own stream, so adding draws for one purpose never shifts
another's, and a resumed run draws exactly what the uninterrupted run drew (the step is part of
the seed). The formulas are the ones r1lab has always used, kept so that runs reproduce across
versions; a new purpose gets a new entry.
"""
from __future__ import annotations

from typing import Callable

SEED_STREAMS: dict[str, Callable[[int, int, int], int]] = {
    # GRPO rollouts: one stream per sampling round ("step" = rounds drawn so far) and rank
    "grpo/sampling": lambda seed, step, rank: seed * 1_000_003 + step * 1009 + rank,
    # GRPO's subsample of zero-advantage rows that run for the entropy term
    "grpo/entropy": lambda seed, step, rank: (seed * 1009 + rank) * 1_000_003 + step * 7919 + 17,
    # GRPO curricula (r1lab.stages.curriculum), the same on every rank: the shuffle within each
    # difficulty level of epoch ``step``; the adaptive draw of sampling round ``step``
    "grpo/curriculum_epoch": lambda seed, step, rank: (seed * 104_729 + step * 1_000_003 + 53) % (2**63 - 1),
    "grpo/curriculum_draw": lambda seed, step, rank: (seed * 104_729 + step * 1_000_003 + 59) % (2**63 - 1),
    # rejection sampling and DPO pair sampling: one pass
    "sampled_prompts": lambda seed, step, rank: seed * 1_000_003 + step * 1009 + rank,
    # multi-turn rollouts: turn t >= 1 of a draw seeded ``seed`` (turn 0 uses ``seed`` itself)
    "rollout/tool_turn": lambda seed, step, rank: (seed * 7919 + step * 104_729 + rank) % (2**63 - 1),
    # separate placement over several workers: worker shard ``step`` of a draw seeded ``seed``
    "rollout/worker": lambda seed, step, rank: (seed * 104_729 + step * 7919 + 31) % (2**63 - 1),
}


def derive_seed(seed: int, purpose: str, step: int = 0, rank: int = 0) -> int:
    """The seed of ``purpose`` at ``step`` on ``rank``.

    >>> derive_seed(0, "grpo/sampling", step=2, rank=1)
    2019
    """
    if purpose not in SEED_STREAMS:
        raise KeyError(f"no seed stream {purpose!r}; known: {', '.join(SEED_STREAMS)}")
    return SEED_STREAMS[purpose](seed, step, rank)
