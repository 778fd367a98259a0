"""Pure helpers of the rejection-sampling and DPO stages: readability filters, selection,
de-duplication, mixing with non-reasoning data, pair building and the acceptance report.

Everything here works on plain lists of dicts, so it is tested without a model. A *sample* is
one scored completion::

    {"row": 3,                  # index of its prompt in the stage's prompt list
     "sample_index": 1,         # which of the prompt's k completions
     "response": "<think>...</think><answer>...</answer>",   # as the rewards saw it
     "num_tokens": 57,          # generated tokens
     "rewards": {"countdown": 1.0, "format": 1.0, "language": 1.0},
     "correct": True}           # the task's verifier said 1.0

Readability filters (DeepSeek-R1, section 2.3.3: "we have filtered out chain-of-thought with
mixed languages, long paragraphs, and code blocks") are a registry of predicates with one
signature, ``fn(sample, cfg) -> bool`` (True = keep), in :mod:`r1lab.rewards.readability` (evaluation
reports them too); config switches each one on or off.
Beyond R1's list, ``true_claims`` refuses reasoning that states a false arithmetic claim
(``6-1=7``, ``check 6-1/1=10 ok``: :mod:`r1lab.rewards.claims`), so a right answer reached through
false steps is not distilled (rejection sampling) nor chosen (DPO, which reads the same filters).

>>> cfg = ReadabilityConfig()
>>> s = {"response": "<think>7*3=21 21+1=22 yes</think><answer>7*3+1</answer>", "num_tokens": 40,
...      "rewards": {"format": 1.0, "language": 1.0}}
>>> failed_filters(s, cfg)
[]
>>> failed_filters({**s, "response": "<think>```x```</think><answer>1</answer>"}, cfg)
['no_code_fences']
>>> failed_filters({**s, "response": "<think>6-1=7 7-1=7 yes</think><answer>6-1/1</answer>"}, cfg)
['true_claims']
"""
from __future__ import annotations

import random
from typing import Any, Callable, Sequence

from r1lab.config.schema import ReadabilityConfig  # the filters' switches, declared with the stage schemas
# the readability filters live with the rewards, where evaluation reads them too (eval.json's readability)
from r1lab.rewards.readability import FILTERS, FilterFn, Sample, active_filters, failed_filters, repeated_ngram_fraction  # noqa: F401


def accepted(sample: Sample) -> bool:
    """Correct and readable: what rejection sampling keeps and what DPO may choose."""
    return bool(sample["correct"]) and not sample["failed"]


# --- selection of up to m per prompt ----------------------------------------------------------

SelectFn = Callable[[list[Sample], int, random.Random], list[Sample]]
SELECTIONS: dict[str, SelectFn] = {
    # R1 does not say; shortest favours concise traces (less overthinking), random keeps diversity.
    "shortest": lambda xs, m, rng: sorted(xs, key=lambda s: (s["num_tokens"], s["sample_index"]))[:m],
    # R1's cold start asks for long, readable chains of thought: of the verified, readable samples, the longest
    "longest": lambda xs, m, rng: sorted(xs, key=lambda s: (-s["num_tokens"], s["sample_index"]))[:m],
    "random": lambda xs, m, rng: rng.sample(xs, min(m, len(xs))),
    "all": lambda xs, m, rng: list(xs),  # every accepted sample; m is ignored
}


def select(samples: Sequence[Sample], max_per_prompt: int, how: str, seed: int) -> list[Sample]:
    """Up to ``max_per_prompt`` samples of each prompt (``row``), in prompt order.

    >>> xs = [{"row": 0, "sample_index": i, "num_tokens": n} for i, n in enumerate([9, 3, 5])]
    >>> [s["sample_index"] for s in select(xs, 2, "shortest", seed=0)]
    [1, 2]
    """
    if how not in SELECTIONS:
        raise ValueError(f"selection={how!r}; valid: {', '.join(SELECTIONS)}")
    by_row: dict[int, list[Sample]] = {}
    for s in samples:
        by_row.setdefault(s["row"], []).append(s)
    out = []
    for row in sorted(by_row):
        rng = random.Random(f"{seed}-{row}")  # per prompt: independent of which others are present
        out.extend(SELECTIONS[how](by_row[row], max_per_prompt, rng))
    return out


def normalise_text(text: str) -> str:
    """Whitespace collapsed, lowercased: the de-duplication key.

    >>> normalise_text("  A\\n b  ")
    'a b'
    """
    return " ".join(text.split()).lower()


def dedup(rows: Sequence[dict], fields: Sequence[str] = ("prompt", "response")) -> list[dict]:
    """First occurrence of each distinct (normalised) ``fields`` tuple, order kept.

    Keying on the prompt too keeps one identical answer to two different problems, and drops
    the copies a split with repeated problems (Countdown's train split) would otherwise add.

    >>> len(dedup([{"prompt": "q", "response": "A  b"}, {"prompt": "q", "response": "a b"}]))
    1
    """
    seen, out = set(), []
    for r in rows:
        key = tuple(normalise_text(str(r[f])) for f in fields)
        if key not in seen:
            seen.add(key)
            out.append(r)
    return out


# --- non-reasoning data -----------------------------------------------------------------------


def chat_messages(row: dict, source: str = "mix_file") -> list[dict[str, str]]:
    """A non-reasoning row as chat ``messages``: a ``messages`` list, or ``prompt``/``response``.

    >>> chat_messages({"prompt": "Hi", "response": "Hello"})
    [{'role': 'user', 'content': 'Hi'}, {'role': 'assistant', 'content': 'Hello'}]
    """
    if row.get("messages"):
        messages = [{"role": str(m["role"]), "content": str(m["content"])} for m in row["messages"]]
    elif row.get("prompt") is not None and row.get("response") is not None:
        messages = [{"role": "user", "content": str(row["prompt"])}, {"role": "assistant", "content": str(row["response"])}]
    else:
        raise ValueError(f"{source}: every row needs 'messages' or 'prompt' and 'response', got keys {sorted(row)}")
    if messages[-1]["role"] != "assistant":
        raise ValueError(f"{source}: the last message of a row must be the assistant's (the SFT target)")
    return messages


def num_to_mix(num_reasoning: int, ratio: float, available: int) -> int:
    """Non-reasoning rows to add for ``ratio`` reasoning : 1 non-reasoning, capped at ``available``.

    R1 used ~600k reasoning and ~200k non-reasoning samples (3 : 1).

    >>> num_to_mix(30, 3.0, 100), num_to_mix(30, 3.0, 4), num_to_mix(30, 0.0, 100)
    (10, 4, 0)
    """
    if ratio <= 0:
        return 0
    return min(available, int(round(num_reasoning / ratio)))


def mix_sample(rows: Sequence[dict], count: int, seed: int) -> list[dict]:
    """``count`` rows drawn without replacement, in file order (deterministic for a seed)."""
    picked = sorted(random.Random(seed).sample(range(len(rows)), count))
    return [rows[i] for i in picked]


# --- DPO pairs --------------------------------------------------------------------------------


def build_pairs(groups: Sequence[Sequence[Sample]], pairs_per_prompt: int, seed: int) -> tuple[list[tuple[Sample, Sample]], dict[str, int]]:
    """On-policy preference pairs: chosen = accepted (correct and readable), rejected = not.

    Per prompt, up to ``pairs_per_prompt`` pairs, each completion used at most once, chosen in a
    random order; prompts whose samples are all good or all bad give no pair. Returns the pairs
    and the counts for the report.

    >>> good = {"correct": True, "failed": []}; bad = {"correct": False, "failed": []}
    >>> pairs, counts = build_pairs([[good, bad], [good, good], [bad]], 1, seed=0)
    >>> len(pairs), counts["prompts_with_pair"], counts["prompts_all_accepted"], counts["prompts_none_accepted"]
    (1, 1, 1, 1)
    """
    pairs: list[tuple[Sample, Sample]] = []
    counts = {"prompts": len(groups), "prompts_with_pair": 0, "prompts_all_accepted": 0, "prompts_none_accepted": 0}
    for i, group in enumerate(groups):
        good = [s for s in group if accepted(s)]
        bad = [s for s in group if not accepted(s)]
        if not bad:
            counts["prompts_all_accepted"] += 1
            continue
        if not good:
            counts["prompts_none_accepted"] += 1
            continue
        rng = random.Random(f"{seed}-{i}")
        rng.shuffle(good)
        rng.shuffle(bad)
        pairs.extend(zip(good[:pairs_per_prompt], bad[:pairs_per_prompt]))
        counts["prompts_with_pair"] += 1
    counts["pairs"] = len(pairs)
    return pairs, counts


# --- report -----------------------------------------------------------------------------------


def difficulty(row: dict) -> str:
    """Difficulty bucket of a problem: MATH's ``level``; Countdown's count of numbers and target range.

    >>> difficulty({"numbers": [3, 5, 7], "target": 22}), difficulty({"level": "Level 2"})
    ('3 numbers, target 0-24', 'Level 2')
    """
    if row.get("level"):
        return str(row["level"])
    if "target" in row and "numbers" in row:
        lo = int(row["target"]) // 25 * 25
        return f"{len(row['numbers'])} numbers, target {lo}-{lo + 24}"
    return "all"


def _rate(num: int, den: int) -> float:
    return round(num / den, 4) if den else 0.0


def acceptance_report(samples: Sequence[Sample], buckets: Sequence[str], filters: Sequence[str]) -> dict[str, Any]:
    """Acceptance per difficulty bucket and per filter.

    ``buckets[row]`` is the difficulty of prompt ``row``. Filters are reported on the correct
    samples (the ones they could remove): ``failed`` counts each filter on its own, so a sample
    failing two filters counts in both.
    """
    by_bucket: dict[str, dict[str, int]] = {}
    for b in buckets:
        by_bucket.setdefault(b, {"prompts": 0, "samples": 0, "correct": 0, "accepted": 0, "prompts_with_accepted": 0})
        by_bucket[b]["prompts"] += 1
    rows_with_accepted = set()
    for s in samples:
        d = by_bucket[buckets[s["row"]]]
        d["samples"] += 1
        d["correct"] += int(bool(s["correct"]))
        if accepted(s):
            d["accepted"] += 1
            rows_with_accepted.add(s["row"])
    for row in rows_with_accepted:
        by_bucket[buckets[row]]["prompts_with_accepted"] += 1
    for d in by_bucket.values():
        d["correct_rate"] = _rate(d["correct"], d["samples"])
        d["accept_rate"] = _rate(d["accepted"], d["samples"])
    correct = [s for s in samples if s["correct"]]
    by_filter = {}
    for name in filters:
        failed = sum(name in s["failed"] for s in correct)
        by_filter[name] = {"checked": len(correct), "failed": failed, "fail_rate": _rate(failed, len(correct))}
    n_accepted = sum(accepted(s) for s in samples)
    return {
        "prompts": len(buckets),
        "samples": len(samples),
        "correct": len(correct),
        "accepted": n_accepted,
        "correct_rate": _rate(len(correct), len(samples)),
        "accept_rate": _rate(n_accepted, len(samples)),
        "by_difficulty": dict(sorted(by_bucket.items())),
        "by_filter": by_filter,
    }


ROLE_NAMES = {"system": "System", "user": "User", "assistant": "Assistant"}


def render_messages(messages: Sequence[dict], template: str, tokenizer=None) -> tuple[str, str]:
    """(prompt text, response text) of a non-reasoning conversation for SFT; the loss is on the
    last assistant message only.

    With ``model.template=chat`` (and a tokenizer that has one) the model's chat template renders
    the history. Otherwise -- base models, whose reasoning prompts are R1-Zero's plain
    ``User: ...\\nAssistant: <think>`` conversation -- the turns are ``Role: content`` lines, so
    chat rows look like reasoning rows without the ``<think>`` (R1 gives simple queries no CoT).

    >>> render_messages([{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}], "r1_zero")
    ('User: Hi\\nAssistant:', ' Hello')
    """
    *history, last = messages
    if template == "chat" and tokenizer is not None and getattr(tokenizer, "chat_template", None):
        prompt = tokenizer.apply_chat_template(list(history), tokenize=False, add_generation_prompt=True)
        return prompt, last["content"]
    lines = [f"{ROLE_NAMES.get(m['role'], m['role'].title())}: {m['content']}" for m in history]
    return "\n".join(lines + ["Assistant:"]), " " + last["content"]
