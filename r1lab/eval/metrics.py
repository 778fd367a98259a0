"""Pure metrics over per-sample correctness."""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np


def pass_at_k(num_samples: int, num_correct: int, k: int) -> float:
    """Unbiased pass@k (Chen et al., 2021): 1 - C(n-c, k) / C(n, k) for n samples, c correct."""
    if k > num_samples:
        raise ValueError(f"pass@{k} needs at least {k} samples, got {num_samples}")
    if num_samples - num_correct < k:
        return 1.0
    return 1.0 - math.comb(num_samples - num_correct, k) / math.comb(num_samples, k)


def mean_pass_at_k(correct: np.ndarray, k: int) -> float:
    """correct [P, n] (0/1) -> mean over problems of the unbiased pass@k."""
    n = correct.shape[1]
    return float(np.mean([pass_at_k(n, int(c), k) for c in correct.sum(1)]))


def ks_up_to(n: int) -> list[int]:
    """1, 2, 4, ... up to n, and n itself."""
    ks = [1]
    while ks[-1] * 2 <= n:
        ks.append(ks[-1] * 2)
    if ks[-1] != n:
        ks.append(n)
    return ks


def avg_at_k(correct: np.ndarray, k: int) -> float:
    """correct [P, n] -> mean correctness of the first k samples of every problem (avg@k).

    With n iid samples avg@n is R1's "pass@1" estimate; avg@k for k < n uses the first k.
    """
    return float(correct[:, :k].mean())


def majority_correct(keys: list[list[str | None]], correct: np.ndarray, k: int) -> np.ndarray:
    """maj@k per problem: is the answer most of the first k samples agree on right?

    ``keys`` [P][n] holds each sample's normalised answer (``None``: no answer, abstains from
    the vote); ``correct`` [P, n] its correctness. The vote's winner is scored by the mean
    correctness of the samples that gave it (samples with one key are equally right, so this is
    0 or 1 unless the normaliser merges a right and a wrong answer). A tie between several keys
    scores the mean over the tied keys: the expected score of a uniformly random tie-break.
    A problem where every sample abstains scores 0. Returns [P] floats in [0, 1].

    >>> majority_correct([["4", "5", "4"], [None, "1", "2"]], np.array([[1, 0, 1], [0, 0, 1]]), 3).tolist()
    [1.0, 0.5]
    """
    out = np.zeros(len(keys))
    for p, (row, ok) in enumerate(zip(keys, correct)):
        groups: dict[str, list[float]] = {}
        for key, c in zip(row[:k], ok[:k]):
            if key is not None:
                groups.setdefault(key, []).append(float(c))
        if not groups:
            continue
        most = max(len(v) for v in groups.values())
        winners = [np.mean(v) for v in groups.values() if len(v) == most]
        out[p] = float(np.mean(winners))
    return out


def pass_at_k_per_problem(correct: np.ndarray, k: int) -> np.ndarray:
    """correct [P, n] -> [P] unbiased pass@k of each problem."""
    n = correct.shape[1]
    return np.array([pass_at_k(n, int(c), k) for c in correct.sum(1)], dtype=float)


def bootstrap_ci(per_problem: np.ndarray, resamples: int = 1000, level: float = 0.95, seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of per-problem values, resampling problems.

    Problems are the unit of resampling because the k samples of one problem are correlated;
    resampling samples would give intervals that are too narrow. Deterministic in ``seed``.

    >>> bootstrap_ci(np.ones(5))
    (1.0, 1.0)
    """
    x = np.asarray(per_problem, dtype=float)
    if x.size == 0:
        return (float("nan"), float("nan"))
    rng = np.random.default_rng(seed)
    means = x[rng.integers(0, x.size, size=(resamples, x.size))].mean(1)  # [resamples]
    alpha = (1.0 - level) / 2
    lo, hi = np.quantile(means, [alpha, 1.0 - alpha])
    return (float(lo), float(hi))


def wilson_ci(successes: float, trials: int, z: float = 1.959964) -> tuple[float, float]:
    """Wilson score interval of a binomial proportion (95% for the default z).

    >>> [round(x, 4) for x in wilson_ci(5, 10)]
    [0.2366, 0.7634]
    """
    if trials == 0:
        return (0.0, 1.0)
    p = successes / trials
    denom = 1 + z * z / trials
    centre = (p + z * z / (2 * trials)) / denom
    half = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))


def percentiles(values: np.ndarray, qs: Sequence[int] = (50, 90, 99)) -> dict[str, float] | None:
    """``{"p50": ..., "p90": ..., "p99": ...}`` of ``values`` (any shape, flattened), by numpy's
    default method (``linear``: interpolated between the two nearest order statistics, type 7 of
    Hyndman & Fan); None when there are none.

    >>> percentiles(np.array([[10, 20], [30, 40]]))
    {'p50': 25.0, 'p90': 37.0, 'p99': 39.7}
    """
    flat = np.asarray(values, dtype=np.float64).reshape(-1)
    if flat.size == 0:
        return None
    return {f"p{q}": round(float(np.percentile(flat, q)), 6) for q in qs}  # rounded: 39.7, not 39.699999999999996
