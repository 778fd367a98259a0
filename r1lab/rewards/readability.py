"""Readability filters (DeepSeek-R1, section 2.3.3: "we have filtered out chain-of-thought with
mixed languages, long paragraphs, and code blocks"): a table of predicates with one signature,
``fn(sample, cfg) -> bool`` (True = keep), each switched on or off by the flag of its name in
``cfg`` (a `r1lab.config.schema.ReadabilityConfig`).

Their one home: rejection sampling and DPO keep or choose only completions that pass them
(`r1lab.stages.filters`), and evaluation reports the share of sampled completions that would
pass (eval.json's ``readability``). A *sample* is a dict with ``response`` (as the rewards saw
it), ``num_tokens`` (generated tokens) and ``rewards`` (at least ``format`` and the
``cfg.language_reward`` reward). Beyond R1's list, ``true_claims`` refuses reasoning that states
a false arithmetic claim (``6-1=7``: :mod:`r1lab.rewards.claims`).

This module registers no reward; it sits with the rewards because it reads their scores and
both the stages and the evaluation (peers) use it.
"""
from __future__ import annotations

from typing import Any, Callable

from r1lab.rewards.claims import has_false_claim
from r1lab.rewards.language import reasoning_text

Sample = dict[str, Any]


def repeated_ngram_fraction(text: str, n: int) -> float:
    """Share of the word n-grams of ``text`` that already occurred earlier in it.

    >>> repeated_ngram_fraction("a b a b a b", 2)
    0.6
    >>> repeated_ngram_fraction("too short", 4)
    0.0
    """
    words = text.split()
    grams = [tuple(words[i : i + n]) for i in range(len(words) - n + 1)]
    if not grams:
        return 0.0
    return 1.0 - len(set(grams)) / len(grams)


FilterFn = Callable[[Sample, Any], bool]  # (sample, ReadabilityConfig) -> keep
FILTERS: dict[str, FilterFn] = {
    "well_formed": lambda s, cfg: s["rewards"]["format"] >= 1.0,
    "language": lambda s, cfg: s["rewards"][cfg.language_reward] >= cfg.min_language_consistency,
    "no_code_fences": lambda s, cfg: "```" not in reasoning_text(s["response"]),
    "length": lambda s, cfg: s["num_tokens"] >= cfg.min_tokens and (cfg.max_tokens <= 0 or s["num_tokens"] <= cfg.max_tokens),
    "repetition": lambda s, cfg: repeated_ngram_fraction(s["response"], cfg.repetition_ngram) <= cfg.max_repeated_fraction,
    "true_claims": lambda s, cfg: not has_false_claim(s["response"]),
}


def active_filters(cfg) -> list[str]:
    """Names of the filters switched on (each filter's on/off flag has the filter's name)."""
    return [name for name in FILTERS if getattr(cfg, name)]


def failed_filters(sample: Sample, cfg) -> list[str]:
    """The active filters ``sample`` fails (all of them are checked, for the report)."""
    return [name for name in active_filters(cfg) if not FILTERS[name](sample, cfg)]
