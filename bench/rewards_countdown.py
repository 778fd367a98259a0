"""Benchmark: vectorized Countdown verifier vs a straightforward per-sample baseline.

    python bench/rewards_countdown.py [--n 100000] [--reps 5]

The baseline is what most R1 reproductions ship: a regex pulls the last answer out of each
completion, a character whitelist and a ``**`` check guard ``eval`` against code and exponent
hangs, ``re.findall`` checks the numbers used, then ``eval`` compares with a 1e-5 tolerance.
Both sides run on the same corpus, interleaved, several repetitions; we report medians.
"""
from __future__ import annotations

import argparse
import random
import re
import statistics
import time
from fractions import Fraction

import numpy as np

from r1lab.rewards.countdown import countdown_reward

_WORDS = (
    "let me try combining the numbers first then check whether we reach target maybe "
    "subtract multiply divide add that gives too big small close not quite so instead "
    "what if we use the largest number wait hmm okay this works no that fails"
).split()
_OPS = "+-*/"


def _random_expr(rng: random.Random, nums: list[int]) -> tuple[str, Fraction]:
    """A random fully-valid expression using every number once, and its exact value."""
    items = [(str(x), Fraction(x), True) for x in rng.sample(nums, len(nums))]  # (text, value, atomic)
    while len(items) > 1:
        i = rng.randrange(len(items) - 1)
        (ta, va, _), (tb, vb, _) = items[i], items[i + 1]
        op = rng.choice(_OPS)
        if op == "/" and (vb == 0 or ((va / vb).denominator != 1 and rng.random() < 0.9)):
            op = rng.choice("+-*")  # never divide by zero; mostly keep intermediate values whole
        value = {"+": va + vb, "-": va - vb, "*": va * vb, "/": va / vb if vb else None}[op]
        sp = " " if rng.random() < 0.5 else ""
        items[i : i + 2] = [(f"({ta}{sp}{op}{sp}{tb})", value, False)]
    text = items[0][0]
    if text.startswith("(") and rng.random() < 0.7:
        text = text[1:-1]  # the outer parentheses are redundant
    if rng.random() < 0.1:
        text = text.replace("*", "×").replace("/", "÷")
    return text, items[0][1]


def _reasoning(rng: random.Random, n_chars: int, nums: list[int]) -> str:
    parts = rng.choices(_WORDS, k=n_chars // 6)
    for i in range(0, len(parts), 5):  # some arithmetic among the words
        parts[i] = f"{rng.choice(nums)} {rng.choice(_OPS)} {rng.choice(nums)} = {rng.randint(0, 200)}"
    return " ".join(parts)[:n_chars]


_MALFORMED = (
    lambda e, t: f"<answer>{e}",  # unclosed
    lambda e, t: f"The answer is {e}",  # no tags
    lambda e, t: f"<answer>{t}</answer>",  # just the target
    lambda e, t: f"<answer>-{e}</answer>",  # unary minus
    lambda e, t: f"<answer>{e.replace('*', '**', 1)}</answer>",
    lambda e, t: f"<answer>x = {e}</answer>",
    lambda e, t: f"<answer></answer>",
    lambda e, t: f"<answer>{e} = {t + 1}</answer>",
)


def make_corpus(n: int, seed: int = 0) -> dict:
    """``n`` realistic Countdown completions (200-1,500 chars: think text then answer).

    Returns a dict with ``completions``, ``numbers``, ``target`` (dataset columns) and ``kind``:
    "correct", "wrong" (well-formed, wrong value or wrong numbers) or "malformed".
    """
    rng = random.Random(seed)
    completions, numbers, targets, kinds = [], [], [], []
    for _ in range(n):
        nums = [rng.randint(1, 100) for _ in range(rng.choice((3, 4, 4, 5, 6)))]
        for _ in range(50):
            expr, value = _random_expr(rng, nums)
            if value.denominator == 1 and 0 <= value <= 1000:
                break
        target = int(value)
        roll = rng.random()
        if roll < 0.35:
            kind, answer = "correct", expr
            if rng.random() < 0.15:
                answer = f"{expr} = {target}"
        elif roll < 0.7:
            kind = "wrong"
            if rng.random() < 0.5:
                answer, _ = _random_expr(rng, nums)  # usually another value
            else:
                other = nums.copy()
                other[rng.randrange(len(other))] = rng.randint(1, 100)
                answer, _ = _random_expr(rng, other)  # wrong numbers
            answer = f"{answer}"
        else:
            kind, answer = "malformed", None
        body = _reasoning(rng, rng.randint(150, 1400), nums)
        if answer is None:
            tail = rng.choice(_MALFORMED)(expr, target)
        else:
            tail = f"<answer>{answer}</answer>"
        if rng.random() < 0.05:
            tail = f"<answer>{rng.choice(nums)}</answer> wait, no. " + tail  # the last answer counts
        completions.append(f"<think>{body}</think>\n{tail}")
        numbers.append(nums)
        targets.append(target)
        kinds.append(kind)
    return {"completions": completions, "numbers": numbers, "target": targets, "kind": kinds}


# --- per-sample baseline -------------------------------------------------------------------------

_ANSWER_RE = re.compile(r"<answer>(.*?)</answer>", re.DOTALL)
_ALLOWED_RE = re.compile(r"[0-9+\-*/() \t\n\r]+")
_NUMBER_RE = re.compile(r"\d+")
_SIGNS = str.maketrans({"×": "*", "÷": "/", "−": "-"})


def baseline_one(completion: str, numbers: list[int], target: int) -> float:
    """Regex extraction + whitelisted, exponent-guarded ``eval`` (the usual reproduction code)."""
    if "</think>" in completion:
        completion = completion.rsplit("</think>", 1)[1]
    matches = _ANSWER_RE.findall(completion)
    if not matches:
        return 0.0
    expr = matches[-1].translate(_SIGNS).strip()
    if "=" in expr:
        expr, _, rhs = expr.partition("=")
        if not rhs.strip().isdigit() or int(rhs) != target:
            return 0.0
    if not _ALLOWED_RE.fullmatch(expr) or "**" in expr:
        return 0.0
    if sorted(int(x) for x in _NUMBER_RE.findall(expr)) != sorted(numbers):
        return 0.0
    try:
        value = eval(expr, {"__builtins__": None}, {})  # noqa: S307 - whitelisted above
    except Exception:
        return 0.0
    return float(abs(value - target) < 1e-5)


def baseline(completions: list[str], numbers: list[list[int]], targets: list[int]) -> list[float]:
    return [baseline_one(c, x, t) for c, x, t in zip(completions, numbers, targets)]


def run(n: int = 100_000, reps: int = 5, seed: int = 0) -> dict:
    """Time both verifiers on one corpus (interleaved, ``reps`` repetitions) and compare scores."""
    corpus = make_corpus(n, seed)
    comps, nums, tgts = corpus["completions"], corpus["numbers"], corpus["target"]
    t_base, t_fast = [], []
    for _ in range(reps):
        t0 = time.perf_counter()
        base = baseline(comps, nums, tgts)
        t1 = time.perf_counter()
        fast = countdown_reward(comps, nums, tgts)
        t2 = time.perf_counter()
        t_base.append(t1 - t0)
        t_fast.append(t2 - t1)
    base_arr, fast_arr = np.array(base), fast.numpy()
    well_formed = np.array([k != "malformed" for k in corpus["kind"]])
    correct = np.array([k == "correct" for k in corpus["kind"]])
    result = {
        "n": n,
        "reps": reps,
        "baseline_per_s": n / statistics.median(t_base),
        "vectorized_per_s": n / statistics.median(t_fast),
        "disagree_well_formed": int((base_arr != fast_arr)[well_formed].sum()),
        "disagree_malformed": int((base_arr != fast_arr)[~well_formed].sum()),
        "vectorized_misses_correct": int((fast_arr[correct] != 1).sum()),
        "mean_reward": float(fast_arr.mean()),
    }
    result["speedup"] = result["vectorized_per_s"] / result["baseline_per_s"]
    print(
        f"countdown  n={n}  baseline {result['baseline_per_s']:,.0f}/s  "
        f"vectorized {result['vectorized_per_s']:,.0f}/s  speedup {result['speedup']:.1f}x  "
        f"disagreements: well-formed {result['disagree_well_formed']}, "
        f"malformed {result['disagree_malformed']}"
    )
    return result


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--reps", type=int, default=5)
    args = parser.parse_args()
    run(args.n, args.reps)
