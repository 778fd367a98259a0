"""Held-out evaluation of a model on a task split, written to a stage's ``eval.json``.

Per problem: one greedy completion, and ``k`` samples at the eval temperature. Figures:

* ``greedy_accuracy``; ``sampled_accuracy`` (mean correctness over the k samples: R1's pass@1);
* ``pass_at_k``: unbiased estimator (Chen et al., 2021) from all k samples, k = 1, 2, 4, ... k;
* ``avg_at_k``: mean correctness of the first k' samples; ``maj_at_k``: majority vote over the
  first k' samples' normalised answers (``r1lab.eval.answers``), ties scored fractionally;
* ``format_rate`` (share of samples with R1's strict tag format); ``mean_response_length``
  (sampled, in tokens); ``language_consistency`` (mean of the ``eval.language_reward`` reward
  over the samples, R1's language-consistency measure); ``answer_distance`` (countdown: mean capped |value - target|);
* ``ci95``: 95% percentile-bootstrap interval of each figure above, resampling problems
  (1,000 resamples, fixed seed): the k samples of a problem are correlated, problems are not;
* ``response_length_percentiles``: p50 / p90 / p99 of the sampled completions' lengths in tokens
  (numpy's default linear interpolation, ``r1lab.eval.metrics.percentiles``), and the same over the
  correct and over the incorrect ones (``response_length_percentiles_correct`` / ``_incorrect``,
  None when there are none);
* ``readability``: R1's readability filters (``r1lab.rewards.readability``, the ones rejection
  sampling applies, at their defaults, with ``eval.language_reward``) on the sampled completions:
  ``readable_rate`` (share passing every filter), ``accepted_rate`` (correct and readable: what
  rejection sampling would keep), ``repeated_ngram_fraction`` (mean share of word 4-grams repeating
  an earlier one: degenerate loops), ``fail_rate`` per filter;
* ``by_difficulty``: the main figures per difficulty label (``r1lab.eval.answers``), with the length
  percentiles (``response_length_p50`` ...) and ``readable_rate`` of its completions;
* ``behaviours``: reasoning behaviours of the sampled completions (``r1lab.rewards.behaviours``),
  mean occurrences per completion and share of completions showing each;
* ``process``: process validity, the arithmetic claims (``EXPR = VALUE``) of the reasoning judged
  exactly (``r1lab.rewards.claims.process_figures``) over the sampled completions:
  ``num_claims``, ``claims_per_completion``, ``true_claim_share`` (1.0 when there is no claim),
  ``correct_with_false_claim`` (share of the correct completions with a false claim: right for the
  wrong reasons), ``false_claim_completions``; the same over the greedy completions as
  ``greedy_<name>``;
* ``tools`` (only when the completions could call tools, ``eval.tools`` or a tool-calling
  engine): ``r1lab.rollout.tool_calls.tool_figures`` of the sampled completions (calls, errors
  and timeouts per completion, share of completions calling, share of tokens written by tools).

Problems are sharded over ranks, generated, gathered in order and scored on every rank.
``evaluate`` is what the pipeline calls; ``evaluate_with_samples`` also returns one record per
completion (``samples.jsonl`` of ``r1lab-eval``); ``scaling_curve`` measures test-time scaling.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from datasets import Dataset

from r1lab.config.schema import EvalConfig, ReadabilityConfig, ToolsConfig
from r1lab.tasks import Task
from r1lab.engine import dist
from r1lab.eval.answers import DISTANCE_CAP, task_analysis
from r1lab.rewards.behaviours import BEHAVIOURS, behaviour_counts, behaviour_summary
from r1lab.rewards.claims import claim_counts, process_figures
from r1lab.eval.metrics import bootstrap_ci, ks_up_to, majority_correct, pass_at_k_per_problem, percentiles
from r1lab.models.templates import encode_prompt, full_response
from r1lab.rewards import get_reward
from r1lab.rewards.readability import active_filters, failed_filters, repeated_ngram_fraction
from r1lab.rollout.engine import RolloutEngine, SamplingParams, as_engine
from r1lab.rollout.groups import sample_groups
from r1lab.rollout.tool_calls import tool_figures, tool_sums

BY_DIFFICULTY_FIGURES = ("greedy_accuracy", "sampled_accuracy", "pass@k", "maj@k", "answer_distance", "mean_response_length")


@dataclass
class Rollouts:
    """Completions of P problems, k each, merged over ranks in problem order."""

    texts: list[list[str]]  # [P][k] generated text (after the prompt)
    lengths: np.ndarray  # [P, k] generated tokens
    stopped: np.ndarray  # [P, k] ended on a stop string or EOS (False: cut at max_new_tokens)
    seconds: float  # wall time of the generation (the slowest rank)
    correct: np.ndarray  # [P, k] the task's correctness reward, 0/1
    formatted: np.ndarray  # [P, k] R1's strict tag format, 0/1
    tool_stats: dict[str, np.ndarray] = field(default_factory=dict)  # tool_calls.TOOL_STATS name -> [P, k]; {} without tools


@dataclass
class Scored:
    """Per-completion judgements of a :class:`Rollouts`, all ``[P, k]``."""

    responses: list[list[str]]  # full responses as rewards see them (template's <think> added)
    correct: np.ndarray  # 0/1
    formatted: np.ndarray  # 0/1 strict R1 format
    keys: list[list[str | None]]  # normalised answers (majority-vote keys)
    distance: np.ndarray | None  # capped distance to the right answer, None for tasks without one
    behaviours: dict[str, np.ndarray]  # behaviour -> [P, k] counts
    claims: np.ndarray | None = None  # [P, k] arithmetic claims in the reasoning (r1lab.rewards.claims)
    true_claims: np.ndarray | None = None  # [P, k] of them, true
    readability_failed: dict[str, np.ndarray] | None = None  # readability filter -> [P, k] True = fails it (None: not judged)
    repeated_ngrams: np.ndarray | None = None  # [P, k] share of word n-grams repeating an earlier one


def select_problems(task: Task, cfg: EvalConfig) -> Dataset:
    ds = task.split(cfg.split)
    if cfg.num_problems:
        ds = ds.select(range(min(cfg.num_problems, len(ds))))
    return ds


def generate_rollouts(
    engine: RolloutEngine,
    tokenizer,
    task: Task,
    template: str,
    problems: Dataset,
    k: int,
    params: SamplingParams,
    batch_size: int,
    seed: int | None = None,
    tools: ToolsConfig | None = None,
) -> Rollouts:
    """k completions of each problem, scored (this rank's share, then gathered from all ranks);
    ``tools``: the tools the completions may call (None or no names: single-turn)."""
    weights = {task.correctness_reward: 0.0, "format": 0.0}
    start = time.time()

    def sample(indices: list[int]) -> list[tuple]:
        if not indices:
            return []
        r = sample_groups(engine, tokenizer, task, template, list(problems.select(indices)), k, params, weights, seed,
                          max_batch=batch_size, tools=tools)
        correct, formatted = r.components[task.correctness_reward].tolist(), r.components["format"].tolist()
        stats = {name: v.tolist() for name, v in r.tool_stats.items()}
        span = [range(i * k, (i + 1) * k) for i in range(len(indices))]
        return [
            ([r.texts[j] for j in js], [len(r.completions[j]) for j in js], [not bool(r.truncated[j]) for j in js],
             [correct[j] for j in js], [formatted[j] for j in js], {name: [v[j] for j in js] for name, v in stats.items()})
            for js in span
        ]

    per_problem = dist.map_sharded(len(problems), sample)
    seconds = max(dist.all_gather_objects(time.time() - start))
    column = lambda c, dtype: np.asarray([p[c] for p in per_problem], dtype=dtype).reshape(-1, k)  # noqa: E731
    with_stats = per_problem and all(p[5] for p in per_problem)  # every rank's completions could call tools
    return Rollouts(
        texts=[p[0] for p in per_problem],
        lengths=column(1, np.int64),
        stopped=column(2, bool),
        seconds=seconds,
        correct=column(3, np.float32),
        formatted=column(4, np.float32),
        tool_stats={name: np.asarray([p[5][name] for p in per_problem], dtype=np.float64).reshape(-1, k)
                    for name in per_problem[0][5]} if with_stats else {},
    )


def score_rollouts(task: Task, template: str, rollouts: Rollouts, rows: dict[str, list],
                   readability: ReadabilityConfig | None = None) -> Scored:
    """Judge every completion; ``rows`` are the P problems' columns; ``readability``: the filters
    to judge them by too (None: not judged)."""
    p, k = rollouts.lengths.shape
    flat = [t for ts in rollouts.texts for t in ts]
    rep = {c: [v for v in rows[c] for _ in range(k)] for c in rows}
    responses = [full_response(template, t) for t in flat]
    analysis = task_analysis(task)
    keys = analysis.answer_keys(responses, rep)
    distance = analysis.distances(responses, rep)
    claims = claim_counts(responses)  # as rewards see them: the direct template's answer is no reasoning (same counts otherwise)
    return Scored(
        responses=[responses[i * k : (i + 1) * k] for i in range(p)],
        correct=rollouts.correct,
        formatted=rollouts.formatted,
        keys=[keys[i * k : (i + 1) * k] for i in range(p)],
        distance=None if distance is None else distance.reshape(p, k),
        behaviours={b: c.reshape(p, k) for b, c in behaviour_counts(flat).items()},
        claims=claims["claims"].reshape(p, k),
        true_claims=claims["true_claims"].reshape(p, k),
        readability_failed=None if readability is None else {
            name: v.reshape(p, k) for name, v in readability_checks(responses, rollouts.lengths, rollouts.formatted, readability).items()},
        repeated_ngrams=None if readability is None else np.asarray(
            [repeated_ngram_fraction(r, readability.repetition_ngram) for r in responses], dtype=np.float64).reshape(p, k),
    )


def readability_checks(responses: list[str], lengths: np.ndarray, formatted: np.ndarray, cfg: ReadabilityConfig) -> dict[str, np.ndarray]:
    """Every active readability filter on each completion, as rejection sampling judges it:
    filter -> ``[N]`` True = fails. ``responses``: ``[N]`` as the rewards see them; ``lengths``,
    ``formatted``: ``[P, k]`` (or ``[N]``) generated tokens and strict-format 0/1."""
    language = get_reward(cfg.language_reward)(responses).tolist() if responses else []
    failed = [failed_filters({"response": r, "num_tokens": int(n), "rewards": {"format": float(f), cfg.language_reward: lang}}, cfg)
              for r, n, f, lang in zip(responses, np.reshape(lengths, -1), np.reshape(formatted, -1), language)]
    return {name: np.asarray([name in f for f in failed], dtype=bool) for name in active_filters(cfg)}


def unreadable(scored: Scored) -> np.ndarray | None:
    """``[P, k]`` True where a completion fails any readability filter; None when not judged."""
    if scored.readability_failed is None:
        return None
    bad = np.zeros(scored.correct.shape, dtype=bool)
    for failed in scored.readability_failed.values():
        bad |= failed
    return bad


def length_and_readability(sampled: Scored, lengths: np.ndarray) -> dict[str, Any]:
    """eval.json's ``response_length_percentiles*`` and ``readability`` (module docstring) of the
    sampled completions; ``lengths``: ``[P, k]`` tokens."""
    right = sampled.correct > 0
    out: dict[str, Any] = {
        "response_length_percentiles": percentiles(lengths),
        "response_length_percentiles_correct": percentiles(lengths[right]),
        "response_length_percentiles_incorrect": percentiles(lengths[~right]),
    }
    bad = unreadable(sampled)
    if bad is not None and bad.size:
        out["readability"] = {
            "readable_rate": float(1.0 - bad.mean()),
            "accepted_rate": float((right & ~bad).mean()),
            "repeated_ngram_fraction": float(sampled.repeated_ngrams.mean()),
            "fail_rate": {name: float(v.mean()) for name, v in sampled.readability_failed.items()},
        }
    return out


def process_validity(greedy: Scored, sampled: Scored) -> dict[str, float] | None:
    """eval.json's ``process``: the claims' figures of the sampled completions, then the greedy
    ones' as ``greedy_<name>``; None when the scores carry no claim counts."""
    if sampled.claims is None:
        return None
    out = process_figures({"claims": sampled.claims, "true_claims": sampled.true_claims}, sampled.correct)
    if greedy.claims is not None:
        g = process_figures({"claims": greedy.claims, "true_claims": greedy.true_claims}, greedy.correct)
        out.update({f"greedy_{name}": v for name, v in g.items()})
    return out


def tool_figures_of(rollouts: Rollouts) -> dict[str, float]:
    """eval.json's ``tools``: `tool_figures` of the completions; {} when they could call none."""
    if not rollouts.tool_stats:
        return {}
    stats = {name: torch.from_numpy(v.reshape(-1)) for name, v in rollouts.tool_stats.items()}
    return tool_figures(tool_sums(stats), float(rollouts.lengths.size))


def per_problem_figures(greedy: Scored, sampled: Scored, lengths: np.ndarray) -> dict[str, np.ndarray]:
    """Each figure as ``[P]`` per-problem values; the figure is their mean."""
    k = sampled.correct.shape[1]
    figures = {
        "greedy_accuracy": greedy.correct[:, 0].astype(float),
        "sampled_accuracy": sampled.correct.mean(1),
        "format_rate": sampled.formatted.mean(1),
        "mean_response_length": lengths.mean(1).astype(float),
    }
    for kk in ks_up_to(k):
        figures[f"pass@{kk}"] = pass_at_k_per_problem(sampled.correct, kk)
        figures[f"avg@{kk}"] = sampled.correct[:, :kk].mean(1)
        figures[f"maj@{kk}"] = majority_correct(sampled.keys, sampled.correct, kk)
    if sampled.distance is not None:
        figures["answer_distance"] = sampled.distance.mean(1)
    return figures


def summarize(
    greedy: Scored, sampled: Scored, lengths: np.ndarray, difficulty: list[str], seed: int = 0
) -> dict[str, Any]:
    """The analysis figures of eval.json (everything but the run settings)."""
    k = sampled.correct.shape[1]
    figures = per_problem_figures(greedy, sampled, lengths)
    mean = {name: float(v.mean()) if v.size else float("nan") for name, v in figures.items()}
    ks = ks_up_to(k)
    by_difficulty = {}
    labels = np.asarray(difficulty)
    for label in sorted(set(difficulty)):
        sel = labels == label
        row = {"num_problems": int(sel.sum())}
        for name in BY_DIFFICULTY_FIGURES:
            source = name.replace("@k", f"@{k}")
            if source in figures:
                row[name] = float(figures[source][sel].mean())
        row.update({f"response_length_{q}": v for q, v in (percentiles(lengths[sel]) or {}).items()})
        if unreadable(sampled) is not None:
            row["readable_rate"] = float(1.0 - unreadable(sampled)[sel].mean())
        by_difficulty[label] = row
    out = {
        "greedy_accuracy": mean["greedy_accuracy"],
        "sampled_accuracy": mean["sampled_accuracy"],
        "pass_at_k": {str(kk): mean[f"pass@{kk}"] for kk in ks},
        "avg_at_k": {str(kk): mean[f"avg@{kk}"] for kk in ks},
        "maj_at_k": {str(kk): mean[f"maj@{kk}"] for kk in ks},
        "format_rate": mean["format_rate"],
        "mean_response_length": mean["mean_response_length"],
        "answer_distance": mean.get("answer_distance"),
        "answer_distance_cap": DISTANCE_CAP if "answer_distance" in mean else None,
        "ci95": {name: list(bootstrap_ci(v, seed=seed)) for name, v in figures.items()},
        "by_difficulty": by_difficulty,
        "behaviours": behaviour_summary({b: c.reshape(-1) for b, c in sampled.behaviours.items()}),
        **length_and_readability(sampled, lengths),
    }
    process = process_validity(greedy, sampled)
    if process is not None:
        out["process"] = process
    return out


def sample_records(
    task: Task, rows: dict[str, list], difficulty: list[str], kind: str, rollouts: Rollouts, scored: Scored
) -> list[dict[str, Any]]:
    """One JSON-ready record per completion (``samples.jsonl``)."""
    p, k = rollouts.lengths.shape
    names = list(rows)
    out = []
    for i in range(p):
        row = {c: rows[c][i] for c in names}
        question = task.question(row)
        for j in range(k):
            rec = {
                "problem": i,
                "id": row.get("id"),
                "difficulty": difficulty[i],
                "kind": kind,
                "sample": j,
                "question": question,
                **{c: row[c] for c in task.reward_columns},
                "response": scored.responses[i][j],
                "correct": float(scored.correct[i, j]),
                "format": float(scored.formatted[i, j]),
                "answer": scored.keys[i][j],
                "length": int(rollouts.lengths[i, j]),
                "stopped": bool(rollouts.stopped[i, j]),
            }
            if scored.distance is not None:
                rec["distance"] = float(scored.distance[i, j])
            rec.update({b: int(scored.behaviours[b][i, j]) for b in BEHAVIOURS})
            if scored.claims is not None:
                rec["claims"] = int(scored.claims[i, j])
                rec["true_claims"] = int(scored.true_claims[i, j])
            if rollouts.tool_stats:
                rec["tool_calls"] = int(rollouts.tool_stats["calls"][i, j])
            out.append(rec)
    return out


@torch.no_grad()
def evaluate_with_samples(
    sampler, tokenizer, task: Task, template: str, cfg: EvalConfig, seed: int = 0, problems: Dataset | None = None
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Evaluate on ``problems`` (default: ``cfg.split``, first ``cfg.num_problems``); return the
    eval.json figures and one record per completion (greedy ones first per problem).

    ``sampler``: a `RolloutEngine`, or a model (sampled with the ``hf`` engine)."""
    engine = as_engine(sampler, tokenizer)
    ds = problems if problems is not None else select_problems(task, cfg)
    rows = ds[:]
    k = cfg.samples
    start = time.time()
    greedy = generate_rollouts(
        engine, tokenizer, task, template, ds, 1, SamplingParams(cfg.max_new_tokens, temperature=0.0), cfg.batch_size,
        tools=cfg.tools,
    )
    params = SamplingParams(cfg.max_new_tokens, cfg.temperature, cfg.top_p)
    sampled = generate_rollouts(engine, tokenizer, task, template, ds, k, params, cfg.batch_size, seed, tools=cfg.tools)
    g = score_rollouts(task, template, greedy, rows)
    s = score_rollouts(task, template, sampled, rows, ReadabilityConfig(language_reward=cfg.language_reward))
    difficulty = task_analysis(task).difficulty(rows)
    result = {
        "split": cfg.split,
        "num_problems": int(len(ds)),
        "samples_per_problem": k,
        "temperature": cfg.temperature,
        "top_p": cfg.top_p,
        "max_new_tokens": cfg.max_new_tokens,
        **summarize(g, s, sampled.lengths, difficulty, seed),
        # R1's language-consistency reward of the sampled completions (share of on-language words)
        "language_consistency": float(get_reward(cfg.language_reward)([r for rs in s.responses for r in rs]).mean()),
        "truncated_fraction": float((~sampled.stopped).mean()),
        "seconds": round(time.time() - start, 1),
    }
    if sampled.tool_stats:
        result["tools"] = tool_figures_of(sampled)
    records = sample_records(task, rows, difficulty, "greedy", greedy, g)
    records += sample_records(task, rows, difficulty, "sample", sampled, s)
    records.sort(key=lambda r: (r["problem"], r["kind"] != "greedy", r["sample"]))
    return result, records


def evaluate(sampler, tokenizer, task: Task, template: str, cfg: EvalConfig, seed: int = 0) -> dict[str, Any]:
    """The eval.json figures of ``sampler`` (an engine or a model) on ``cfg.split`` (see the module docstring)."""
    return evaluate_with_samples(sampler, tokenizer, task, template, cfg, seed)[0]


@torch.no_grad()
def scaling_curve(
    sampler,
    tokenizer,
    task: Task,
    template: str,
    cfg: EvalConfig,
    samples: list[int],
    budgets: list[int],
    seed: int = 0,
    problems: Dataset | None = None,
) -> list[dict[str, Any]]:
    """Test-time scaling: accuracy against samples per problem and the token budget.

    Per budget (``max_new_tokens``) one generation of K = max(samples) samples per problem; then
    for each k: ``pass@k`` (unbiased, from all K), ``maj@k`` and ``avg@k`` (first k samples),
    ``tokens_per_problem`` (mean generated tokens of the first k samples, summed) and ``seconds``
    (the generation's wall time scaled by k/K: an estimate, batching makes k samples cost less
    than k times one).
    """
    engine = as_engine(sampler, tokenizer)
    ds = problems if problems is not None else select_problems(task, cfg)
    rows = ds[:]
    big_k = max(samples)
    out = []
    for budget in budgets:
        params = SamplingParams(budget, cfg.temperature, cfg.top_p)
        r = generate_rollouts(engine, tokenizer, task, template, ds, big_k, params, cfg.batch_size, seed, tools=cfg.tools)
        s = score_rollouts(task, template, r, rows)
        for k in sorted(samples):
            out.append(
                {
                    "max_new_tokens": budget,
                    "samples": k,
                    "tokens_per_problem": float(r.lengths[:, :k].sum(1).mean()),
                    "seconds": r.seconds * k / big_k,
                    "pass_at_k": float(pass_at_k_per_problem(s.correct, k).mean()),
                    "maj_at_k": float(majority_correct(s.keys, s.correct, k).mean()),
                    "avg_at_k": float(s.correct[:, :k].mean()),
                    "format_rate": float(s.formatted[:, :k].mean()),
                }
            )
    return out
