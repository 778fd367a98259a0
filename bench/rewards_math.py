"""Benchmark: r1lab's ``math_reward`` against math-verify's per-sample ``parse``/``verify``.

    python bench/rewards_math.py            # 100,000 completions, math-verify on 1,000 of them

The corpus imitates GRPO rollouts: a pool of problems (several samples share a gold answer),
reasoning text (sometimes in ``<think>``) ending in a ``\\boxed{}`` answer of varied forms
(integers, GSM8K-style ``1,234``, fractions, decimals, percentages, radicals, polynomials, tuples,
intervals, text), right in the gold's form, right in another form, wrong, or malformed (no box,
empty box, unclosed box, reasoning cut off). Each completion carries the grade a person would give.

r1lab scores the whole corpus in batches of 1,024; math-verify (~100-150 completions/s) scores a
fixed random subsample, and throughput is compared per completion. The two alternate for
``rounds`` rounds with cold caches each time; the medians are reported. Gold answers are parsed
once per distinct gold string on both sides, since both would cache them in training.
"""
from __future__ import annotations

import random
import statistics
import time

from r1lab.rewards.math._fallback import get_pool
from r1lab.rewards.math import clear_caches, math_reward

_FILLER = [
    "Let me set up the problem carefully.",
    "We know that the total is the sum of the parts, so we add them up.",
    "Substituting the values gives {a} + {b} = {c}.",
    "Multiplying both sides by {a}, we get {d}.",
    "Wait, let me double-check this step: {a} \\times {b} = {e}.",
    "So the ratio is $\\frac{{{a}}}{{{b}}}$ before simplifying.",
    "This means $x = {a}$ or $x = -{b}$, and only the positive root makes sense here.",
    "Hmm, that does not look right. Let me recompute.",
    "By the Pythagorean theorem, $a^2 + b^2 = c^2$.",
    "The area of the circle is $\\pi r^2$ with $r = {a}$.",
]


def _reasoning(rng: random.Random) -> str:
    a, b = rng.randint(2, 99), rng.randint(2, 99)
    values = {"a": a, "b": b, "c": a + b, "d": a * a, "e": a * b}
    return " ".join(rng.choice(_FILLER).format(**values) for _ in range(rng.randint(4, 14)))


def _problem(rng: random.Random) -> tuple[str, list[str], list[str]]:
    """A gold answer, equivalent forms a model might write, and wrong answers."""
    kind = rng.choice(["int", "int", "gsm8k", "frac", "decimal", "percent", "radical", "poly", "pi",
                       "tuple", "interval", "text", "set"])
    a, b = rng.randint(1, 60), rng.randint(2, 40)
    b += b == a  # so that the "wrong" answers built by swapping a and b are really wrong
    if kind == "int":
        n = rng.randint(-50, 5000)
        return str(n), [str(n), f"{n}.0", f"x = {n}"], [str(n + rng.choice([-2, -1, 1, 10])), str(-n - 1)]
    if kind == "gsm8k":
        n = rng.randint(1000, 999_999)
        return f"{n:,}", [str(n), f"{n:,}", f"\\${n:,}", f"{n} dollars"], [str(n + 1), f"{n // 10:,}"]
    if kind == "frac":
        b = a + rng.randint(1, 30)
        return (f"\\frac{{{a}}}{{{b}}}", [f"\\frac{{{a}}}{{{b}}}", f"{a}/{b}", f"\\dfrac{{{2 * a}}}{{{2 * b}}}"],
                [f"\\frac{{{b}}}{{{a}}}", f"\\frac{{{a + 1}}}{{{b}}}"])
    if kind == "decimal":
        return (f"{a}.5", [f"{a}.5", f"\\frac{{{2 * a + 1}}}{{2}}", f"{a}\\frac12", f"{a}.50"],
                [f"{a}.05", f"{a + 1}.5"])
    if kind == "percent":
        return f"{a}\\%", [f"{a}\\%", str(a), f"{a}%"], [f"{a / 100:g}", f"{a + 5}\\%"]
    if kind == "radical":
        return (f"{a}\\sqrt{{{b}}}", [f"{a}\\sqrt{{{b}}}", f"{a} \\sqrt {{{b}}}", f"\\sqrt{{{a * a * b}}}"],
                [f"{b}\\sqrt{{{a}}}", f"{a + 1}\\sqrt{{{b}}}"])
    if kind == "poly":
        return (f"x^2+{2 * a}x+{a * a}", [f"x^2+{2 * a}x+{a * a}", f"(x+{a})^2", f"{a * a}+{2 * a}x+x^2"],
                [f"(x-{a})^2", f"x^2+{a}x+{a * a}"])
    if kind == "pi":
        return (f"\\frac{{{a}\\pi}}{{{b}}}", [f"\\frac{{{a}\\pi}}{{{b}}}", f"\\frac{{{a}}}{{{b}}}\\pi"],
                [f"\\frac{{{b}\\pi}}{{{a}}}", f"{a}\\pi"])
    if kind == "tuple":
        return (f"({a}, {-b})", [f"({a}, {-b})", f"\\left({a},{-b}\\right)", f"({a}.0, {-b})"],
                [f"({-b}, {a})", f"({a}, {b})"])
    if kind == "interval":
        return (f"[{-b}, {a})", [f"[{-b}, {a})", f"\\left[{-b},{a}\\right)"],
                [f"({-b}, {a})", f"[{-b}, {a}]"])
    if kind == "set":
        return (f"\\{{{a}, {-b}\\}}", [f"\\{{{a}, {-b}\\}}", f"{-b}, {a}", f"x = {a} \\text{{ or }} x = {-b}"],
                [f"\\{{{a}, {b}\\}}", f"{a}"])
    day = rng.choice(["Monday", "Tuesday", "Friday", "Sunday"])
    other = rng.choice(["Wednesday", "Thursday", "Saturday"])
    return f"\\text{{{day}}}", [f"\\text{{{day}}}", day, day.lower()], [f"\\text{{{other}}}"]


def make_corpus(n: int = 100_000, seed: int = 0, problems: int = 2_000) -> tuple[list[str], list[str], list[int]]:
    """``n`` completions, their gold answers and the grade (0/1) a person would give each."""
    rng = random.Random(seed)
    pool = [_problem(rng) for _ in range(problems)]
    completions, golds, labels = [], [], []
    for _ in range(n):
        gold, right, wrong = rng.choice(pool)
        text = _reasoning(rng)
        if rng.random() < 0.5:
            text = "<think>" + text + "</think> " + _reasoning(rng)[:200]
        roll = rng.random()
        if roll < 0.45:
            answer, label = right[0], 1
        elif roll < 0.60:
            answer, label = rng.choice(right), 1
        elif roll < 0.90:
            answer, label = rng.choice(wrong), 0
        else:
            malformed = rng.choice(["nobox", "empty", "unclosed", "cutoff"])
            label = 0
            if malformed == "nobox":
                completions.append(f"{text} The answer is {right[0]}.")
            elif malformed == "empty":
                completions.append(f"{text} The answer is $\\boxed{{}}$.")
            elif malformed == "unclosed":
                completions.append(f"{text} The answer is $\\boxed{{{right[0]}")
            else:
                # Reasoning cut off by the length limit: the box sits inside an unclosed <think>.
                completions.append(f"<think>{_reasoning(rng)} so maybe \\boxed{{{right[0]}}} but wait")
            golds.append(gold)
            labels.append(label)
            continue
        completions.append(f"{text} Therefore, the final answer is $\\boxed{{{answer}}}$.")
        golds.append(gold)
        labels.append(label)
    return completions, golds, labels


def _r1lab_scores(completions: list[str], golds: list[str], batch: int = 1024) -> list[float]:
    scores: list[float] = []
    for i in range(0, len(completions), batch):
        scores += math_reward(completions[i:i + batch], golds[i:i + batch]).tolist()
    return scores


def _math_verify_scores(completions: list[str], golds: list[str]) -> list[float]:
    from math_verify import parse, verify

    gold_cache: dict[str, list] = {}
    scores = []
    for completion, gold in zip(completions, golds):
        if gold not in gold_cache:
            gold_cache[gold] = parse("$" + gold + "$")
        scores.append(float(verify(gold_cache[gold], parse(completion))))
    return scores


def run(n: int = 100_000, subsample: int = 1_000, rounds: int = 3, seed: int = 0) -> dict:
    """Time both verifiers (medians over ``rounds`` interleaved rounds) and report agreement."""
    completions, golds, labels = make_corpus(n, seed)
    rng = random.Random(seed + 1)
    idx = sorted(rng.sample(range(n), min(subsample, n)))
    sub_c, sub_g, sub_l = [completions[i] for i in idx], [golds[i] for i in idx], [labels[i] for i in idx]

    t0 = time.perf_counter()
    get_pool().warm()
    pool_start_s = time.perf_counter() - t0

    r1_times, mv_times = [], []
    r1_scores: list[float] = []
    mv_scores: list[float] = []
    for _ in range(rounds):
        clear_caches()
        t0 = time.perf_counter()
        r1_scores = _r1lab_scores(completions, golds)
        r1_times.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        mv_scores = _math_verify_scores(sub_c, sub_g)
        mv_times.append(time.perf_counter() - t0)

    r1_rate = n / statistics.median(r1_times)
    mv_rate = len(idx) / statistics.median(mv_times)
    r1_sub = [r1_scores[i] for i in idx]
    result = {
        "n": n,
        "subsample": len(idx),
        "r1lab_per_s": r1_rate,
        "math_verify_per_s": mv_rate,
        "speedup": r1_rate / mv_rate,
        "agreement_with_math_verify": sum(a == b for a, b in zip(r1_sub, mv_scores)) / len(idx),
        "r1lab_agreement_with_labels": sum(s == l for s, l in zip(r1_scores, labels)) / n,
        "math_verify_agreement_with_labels": sum(s == l for s, l in zip(mv_scores, sub_l)) / len(idx),
        "pool_start_s": pool_start_s,
        "r1lab_times_s": r1_times,
        "math_verify_times_s": mv_times,
    }
    print(f"corpus: {n:,} completions; math-verify timed on {len(idx):,} of them; {rounds} rounds, medians")
    print(f"r1lab math_reward : {r1_rate:12,.0f} completions/s  (rounds: {', '.join(f'{t:.2f}s' for t in r1_times)})")
    print(f"math-verify       : {mv_rate:12,.0f} completions/s  (rounds: {', '.join(f'{t:.2f}s' for t in mv_times)})")
    print(f"speed-up          : {result['speedup']:12,.1f}x")
    print(f"agreement r1lab vs math-verify (subsample): {result['agreement_with_math_verify']:.2%}")
    print(f"agreement with the corpus grades: r1lab {result['r1lab_agreement_with_labels']:.2%} (all), "
          f"math-verify {result['math_verify_agreement_with_labels']:.2%} (subsample)")
    print(f"fallback pool start-up (not timed above): {pool_start_s:.1f}s")
    return result


if __name__ == "__main__":
    run()
