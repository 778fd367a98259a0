"""Studies of a (pretrained) model in ``r1lab-eval``, each switched on by a ``studies.*`` option.

* **Behaviours before RL** (``studies.behaviours=true``): the reasoning behaviours
  (``r1lab.eval.behaviours``: reflection, verification, ...) on the model's *own* sampled
  completions, i.e. the "aha" phrases a base model already writes before any RL. Per behaviour:
  occurrences per completion and share of completions showing it, over all samples and split by
  correct / incorrect samples; the phrases that matched most often, and a few matches in context.
* **Template sensitivity** (``studies.templates=[r1_zero,chat,none]``): the same problems (and
  seed) evaluated under each prompt template: greedy and sampled accuracy, format rate, mean
  length, truncation and behaviour shares per template. ``chat`` is skipped, with a note, when
  the tokenizer has no chat template.
* **Perplexity bridge** (``studies.perplexity_bridge=true``): R1's argument that the chain of
  thought makes the right answer more predictable. Per problem with a gold answer text, the
  perplexity of that answer given (a) the prompt alone and (b) the prompt plus the model's own
  greedy reasoning; reported per problem and averaged, with the share of problems where the
  reasoning lowers it.

Exactly what the perplexity bridge scores (one problem, template ``T``, answer opener ``O``:
``<answer>``, or ``\\boxed{`` for the math task without answer tags):

* the **gold answer** ``g``: Countdown's ``solution`` column (one canonical expression of the
  generator or of :func:`r1lab.tasks.countdown.solve`; other valid expressions exist), math's
  ``answer`` column (the normalised final answer). Problems without one are skipped and counted.
* the **reasoning** ``r``: the model's greedy completion (the evaluation's own greedy record, the
  text after the prompt) cut before its first ``O`` (all of it when it has none), trailing
  whitespace removed; for templates whose prompt opens ``<think>`` (``r1_zero*``) a missing
  ``</think>`` is appended after a newline, so the reasoning is closed before the answer.
* contexts, as text after the rendered prompt: (a) without reasoning ``c_a = "</think>" + "\\n" + O``
  for ``<think>`` templates (an empty, closed reasoning), ``c_a = O`` otherwise; (b) with reasoning
  ``c_b = r + "\\n" + O`` (``O`` alone when ``r`` is empty).
* token ids: ``encode_prompt(T, question)`` + ``tokenizer(c)`` + ``tokenizer(g)`` (no special
  tokens added to ``c`` and ``g``). ``g`` is tokenised on its own, so conditions (a) and (b) score
  the *identical* answer token sequence; the answer's closing tag is not scored.
* scored tokens: only the ``len(tokenizer(g))`` gold-answer tokens. ``nll = -mean_t log p(g_t |
  prompt, c, g_<t)`` (natural log, full softmax at temperature 1, the loaded model in eval mode),
  ``perplexity = exp(nll)``.

Averages: ``perplexity_*`` is ``exp`` of the mean per-problem NLL (the geometric mean of the
per-problem perplexities), ``mean_perplexity_*`` their arithmetic mean, ``share_lower`` the share
of problems whose perplexity with reasoning is strictly below the one without.
"""
from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import torch

from r1lab.rewards.behaviours import BEHAVIOUR_REGEX  # the classifiers' own compiled pattern
from r1lab.rewards.behaviours import BEHAVIOURS, behaviour_summary, reasoning_text
from r1lab.models.forward import token_logprobs
from r1lab.models.templates import TEMPLATES, encode_prompt, opens_think

TEMPLATE_FIGURES = ("greedy_accuracy", "sampled_accuracy", "format_rate", "mean_response_length",
                    "truncated_fraction", "answer_distance", "language_consistency")


# ----------------------------------------------------------------------------------------------
# Behaviours before RL
# ----------------------------------------------------------------------------------------------


def _summary_of(recs: Sequence[dict]) -> dict[str, Any]:
    counts = {b: np.asarray([r[b] for r in recs], dtype=np.int64) for b in BEHAVIOURS}
    any_b = np.zeros(len(recs), dtype=bool)
    for c in counts.values():
        any_b |= c > 0
    return {
        "num_completions": len(recs),
        **behaviour_summary(counts),
        "any": float(any_b.mean()) if len(recs) else 0.0,  # share of completions with any behaviour
    }


def behaviour_phrases(responses: Sequence[str], top: int = 5, examples: int = 2, context: int = 40) -> dict[str, Any]:
    """The phrases the behaviour classifiers matched in ``responses`` (their reasoning part).

    Returns ``{"phrases": {behaviour: [[phrase, count], ...]}`` (at most ``top``, most frequent
    first, lower-cased), ``"examples": {behaviour: [snippet, ...]}`` (the first ``examples``
    matches with ``context`` characters either side, newlines shown as ``⏎``)}``.
    """
    phrases = {b: Counter() for b in BEHAVIOURS}
    shown: dict[str, list[str]] = {b: [] for b in BEHAVIOURS}
    for text in responses:
        reasoning = reasoning_text(text)
        for m in BEHAVIOUR_REGEX.finditer(reasoning):
            b = m.lastgroup
            phrases[b][" ".join(m.group(0).lower().split())] += 1
            if len(shown[b]) < examples:
                lo, hi = max(0, m.start() - context), min(len(reasoning), m.end() + context)
                snippet = reasoning[lo:m.start()] + "[" + m.group(0) + "]" + reasoning[m.end():hi]
                shown[b].append(("…" if lo else "") + snippet.replace("\n", "⏎") + ("…" if hi < len(reasoning) else ""))
    return {
        "phrases": {b: [[p, n] for p, n in phrases[b].most_common(top)] for b in BEHAVIOURS},
        "examples": shown,
    }


def behaviour_study(records: Sequence[dict], summary: dict[str, dict] | None = None) -> dict[str, Any]:
    """Behaviours of the model's own completions, from the evaluation's ``records``
    (``samples.jsonl``: one per completion, with ``kind``, ``correct`` and one count per behaviour).

    ``summary``: the evaluation's ``result["behaviours"]`` of the same sampled completions (reused
    for ``by_outcome.all``; recomputed from the records when ``None``). Returns
    ``{"completions", "by_outcome": {all|correct|incorrect|greedy: {"num_completions",
    behaviour: {"mean", "rate"}, "any"}}, "phrases", "examples"}``.
    """
    sampled = [r for r in records if r["kind"] == "sample"]
    greedy = [r for r in records if r["kind"] == "greedy"]
    by_outcome = {
        "all": _summary_of(sampled),
        "correct": _summary_of([r for r in sampled if r["correct"] > 0]),
        "incorrect": _summary_of([r for r in sampled if r["correct"] <= 0]),
        "greedy": _summary_of(greedy),
    }
    if summary:
        by_outcome["all"].update(summary)
    return {
        "completions": "the eval's sampled completions (eval.samples per problem at eval.temperature); greedy: the greedy ones",
        "by_outcome": by_outcome,
        **behaviour_phrases([r["response"] for r in sampled]),
    }


# ----------------------------------------------------------------------------------------------
# Template sensitivity
# ----------------------------------------------------------------------------------------------


def template_figures(result: dict[str, Any]) -> dict[str, Any]:
    """The figures of one eval result compared across templates (``TEMPLATE_FIGURES``, top
    ``pass@k``, behaviour shares)."""
    out = {name: result.get(name) for name in TEMPLATE_FIGURES}
    k = max(int(kk) for kk in result["pass_at_k"])
    out[f"pass@{k}"] = result["pass_at_k"][str(k)]
    out["behaviours"] = result.get("behaviours", {})
    return out


def template_unavailable(template: str, tokenizer) -> str | None:
    """Why ``template`` cannot be used with ``tokenizer`` (``None``: it can)."""
    if template not in TEMPLATES:
        return f"unknown template; valid: {', '.join(TEMPLATES)}"
    if template == "chat" and not getattr(tokenizer, "chat_template", None):
        return "skipped: the tokenizer has no chat template (a base model); use r1_zero or none"
    return None


def template_study(
    engine, tokenizer, task, templates: Sequence[str], cfg, seed: int, problems, done: dict[str, dict] | None = None
) -> dict[str, dict[str, Any]]:
    """Evaluate ``problems`` under each of ``templates`` (same eval config and seed).

    ``done``: eval results already computed, by template (the app's main evaluation). Returns
    ``{template: template_figures(...)}``, or ``{template: {"skipped": reason}}``. Every rank must
    call it (the generation is sharded over ranks).
    """
    from r1lab.eval.evaluate import evaluate_with_samples

    done = dict(done or {})
    out: dict[str, dict[str, Any]] = {}
    for template in templates:
        reason = template_unavailable(template, tokenizer)
        if reason:
            out[template] = {"skipped": reason}
            continue
        if template not in done:
            done[template] = evaluate_with_samples(engine, tokenizer, task, template, cfg, seed, problems)[0]
        out[template] = template_figures(done[template])
    return out


# ----------------------------------------------------------------------------------------------
# Perplexity bridge
# ----------------------------------------------------------------------------------------------


def answer_opener(task) -> str:
    """The text that opens an answer: ``\\boxed{`` for math without answer tags, else ``<answer>``."""
    return task.answer_opener


def gold_answers(task, rows: dict[str, list]) -> list[str | None]:
    """One gold answer text per problem (``None``: none), from the task's ``gold_column``
    (Countdown's ``solution``, math's ``answer``)."""
    n = len(next(iter(rows.values()), []))
    values = rows.get(task.gold_column) or [None] * n
    return [v.strip() if isinstance(v, str) and v.strip() else None for v in values]


def bridge_contexts(template: str, completion: str, opener: str = "<answer>") -> tuple[str, str, bool]:
    """The text after the prompt in the two conditions: ``(without, with, had_opener)``.

    ``completion``: the model's generated text after the prompt. See the module docstring.

    >>> bridge_contexts("r1_zero", " 3+5=8 </think> <answer>3+5</answer>")
    ('</think>\\n<answer>', ' 3+5=8 </think>\\n<answer>', True)
    >>> bridge_contexts("chat", "I add them.")
    ('<answer>', 'I add them.\\n<answer>', False)
    """
    cut = completion.find(opener)
    reasoning = (completion if cut < 0 else completion[:cut]).rstrip()
    if opens_think(template):
        if "</think>" not in reasoning:
            reasoning = reasoning + "\n</think>" if reasoning.strip() else "</think>"
        without = "</think>\n" + opener
    else:
        without = opener
    with_ = reasoning + "\n" + opener if reasoning else opener
    return without, with_, cut >= 0


def answer_nll(
    model, sequences: Sequence[tuple[Sequence[int], Sequence[int]]], pad_id: int, batch_size: int = 16
) -> np.ndarray:
    """Mean negative log-likelihood (nats per token) of each answer given its context.

    ``sequences``: N pairs ``(context_ids, answer_ids)``; each row is ``context + answer``, right
    padded with ``pad_id``, and only the answer's positions are scored (the loss mask).
    Returns ``[N]`` floats ``-mean_t log p(answer_t | context, answer_<t)`` (NaN for an empty answer).
    """
    device = next(model.parameters()).device
    out = np.full(len(sequences), np.nan)
    for start in range(0, len(sequences), max(1, batch_size)):
        chunk = sequences[start : start + max(1, batch_size)]
        width = max(len(c) + len(a) for c, a in chunk)
        ids = torch.full((len(chunk), width), pad_id, dtype=torch.long)
        attn = torch.zeros((len(chunk), width), dtype=torch.long)
        mask = torch.zeros((len(chunk), width), dtype=torch.long)
        for i, (c, a) in enumerate(chunk):
            n = len(c) + len(a)
            ids[i, :n] = torch.tensor(list(c) + list(a), dtype=torch.long)
            attn[i, :n] = 1
            mask[i, len(c) : n] = 1
        with torch.no_grad():
            logp, _ = token_logprobs(model, ids.to(device), attn.to(device), mask.to(device))  # [B, T-1]
        logp = logp.float().cpu()
        scored = mask[:, 1:].sum(1)  # [B]
        for i in range(len(chunk)):
            if scored[i] > 0:
                out[start + i] = float(-logp[i].sum() / scored[i])
    return out


@dataclass
class BridgeProblem:
    """The token ids of one problem's two conditions."""

    problem: int  # index among the evaluated problems
    prompt_ids: list[int]
    without_ids: list[int]  # context after the prompt, no reasoning
    with_ids: list[int]  # context after the prompt: the model's reasoning
    answer_ids: list[int]  # the gold answer (the scored tokens)
    had_opener: bool  # the model's greedy completion wrote the answer opener itself


def bridge_problems(tokenizer, task, template: str, rows: dict[str, list], completions: Sequence[str],
                    limit: int = 0) -> tuple[list[BridgeProblem], list[str], int]:
    """Token ids of each problem's conditions; ``completions[i]``: problem i's greedy generated text.

    ``limit``: the first that many problems (0 = all). Returns ``(problems, golds, skipped)``:
    the problems with a gold answer, their gold texts, and how many had none.
    """
    opener = answer_opener(task)
    golds = gold_answers(task, rows)
    n = len(completions) if not limit else min(limit, len(completions))
    names = list(rows)
    items, texts, skipped = [], [], 0
    for i in range(n):
        if golds[i] is None:
            skipped += 1
            continue
        question = task.question({c: rows[c][i] for c in names})
        without, with_, had = bridge_contexts(template, completions[i], opener)
        enc = lambda s: tokenizer(s, add_special_tokens=False).input_ids  # noqa: E731
        items.append(BridgeProblem(i, encode_prompt(tokenizer, template, question), enc(without), enc(with_), enc(golds[i]), had))
        texts.append(golds[i])
    return items, texts, skipped


def perplexity_bridge(
    model, tokenizer, task, template: str, rows: dict[str, list], records: Sequence[dict],
    limit: int = 0, batch_size: int = 16,
) -> dict[str, Any]:
    """The perplexity bridge (see the module docstring) on the evaluation's greedy completions.

    ``rows``: the P evaluated problems' columns; ``records``: the evaluation's per-completion
    records (the ``kind == "greedy"`` one of each problem is used, its ``response`` minus the
    ``<think>`` the prompt opened). Returns the figures of ``eval.json``'s ``studies.perplexity_bridge``.
    """
    greedy = {r["problem"]: r for r in records if r["kind"] == "greedy"}
    p = len(next(iter(rows.values()), []))
    completions = []
    for i in range(p):
        resp = greedy[i]["response"]
        completions.append(resp[len("<think>"):] if opens_think(template) and resp.startswith("<think>") else resp)
    items, golds, skipped = bridge_problems(tokenizer, task, template, rows, completions, limit)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    seqs = [(it.prompt_ids + it.without_ids, it.answer_ids) for it in items]
    seqs += [(it.prompt_ids + it.with_ids, it.answer_ids) for it in items]
    was_training = model.training
    model.eval()
    nll = answer_nll(model, seqs, pad, batch_size)
    model.train(was_training)
    n = len(items)
    nll_a, nll_b = nll[:n], nll[n:]
    per_problem = []
    for it, gold, a, b in zip(items, golds, nll_a, nll_b):
        per_problem.append({
            "problem": it.problem,
            "id": rows["id"][it.problem] if "id" in rows else None,
            "gold": gold,
            "answer_tokens": len(it.answer_ids),
            "with_context_tokens": len(it.with_ids),  # tokens of c_b: reasoning + opener
            "reasoning_has_opener": it.had_opener,
            "greedy_correct": float(greedy[it.problem]["correct"]),
            "nll_without": float(a),
            "nll_with": float(b),
            "perplexity_without": math.exp(a),
            "perplexity_with": math.exp(b),
        })
    mean = lambda v: float(np.mean(v)) if len(v) else None  # noqa: E731
    ppl_a, ppl_b = np.exp(nll_a), np.exp(nll_b)
    return {
        "scored": "only the gold answer's tokens, tokenised alone, after prompt + (closed empty reasoning | the "
                  f"model's greedy reasoning cut before its first {answer_opener(task)!r}) + {answer_opener(task)!r}; "
                  "perplexity = exp(mean NLL per answer token)",
        "answer_opener": answer_opener(task),
        "gold_column": task.gold_column,
        "num_problems": n,
        "skipped_no_gold": skipped,
        "mean_nll_without": mean(nll_a),
        "mean_nll_with": mean(nll_b),
        "perplexity_without": math.exp(mean(nll_a)) if n else None,  # geometric mean of per-problem perplexities
        "perplexity_with": math.exp(mean(nll_b)) if n else None,
        "mean_perplexity_without": mean(ppl_a),
        "mean_perplexity_with": mean(ppl_b),
        "median_perplexity_without": float(np.median(ppl_a)) if n else None,
        "median_perplexity_with": float(np.median(ppl_b)) if n else None,
        "share_lower": mean((ppl_b < ppl_a).astype(float)),  # reasoning lowers the answer's perplexity
        "mean_answer_tokens": mean([len(it.answer_ids) for it in items]),
        "mean_with_context_tokens": mean([len(it.with_ids) for it in items]),
        "problems": per_problem,
    }
