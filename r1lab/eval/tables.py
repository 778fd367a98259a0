"""Markdown tables of eval.json figures, test-time scaling and sweeps (pure string functions)."""
from __future__ import annotations

from typing import Any, Sequence

from r1lab.rewards.behaviours import BEHAVIOURS


def fmt(v: Any, digits: int = 3) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    return str(v)


def _ci(result: dict, name: str, digits: int = 3) -> str:
    ci = result.get("ci95", {}).get(name)
    return f" [{ci[0]:.{digits}f}, {ci[1]:.{digits}f}]" if ci else ""


def markdown(head: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(fmt(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def top_k(result: dict) -> int:
    return max(int(k) for k in result["pass_at_k"])


def headline(result: dict) -> dict[str, float | None]:
    """The figures shown in one-row-per-model tables, by column name."""
    k = top_k(result)
    out = {
        "greedy": result.get("greedy_accuracy"),
        "avg@k": result.get("sampled_accuracy"),
        f"pass@{k}": result["pass_at_k"].get(str(k)),
        f"maj@{k}": (result.get("maj_at_k") or {}).get(str(k)),
        "format": result.get("format_rate"),
        "length": result.get("mean_response_length"),
    }
    if result.get("answer_distance") is not None:
        out["distance"] = result["answer_distance"]
    return out


def eval_table(result: dict) -> str:
    """One eval.json: figure, value, 95% interval; then difficulty, behaviour, process-validity and
    tool-use breakdowns."""
    k = top_k(result)
    names = [("greedy accuracy", "greedy_accuracy", result["greedy_accuracy"])]
    names.append((f"avg@{k} (sampled accuracy, T={result['temperature']})", "sampled_accuracy", result["sampled_accuracy"]))
    for kk, v in result["pass_at_k"].items():
        names.append((f"pass@{kk}", f"pass@{kk}", v))
    for kk, v in result.get("maj_at_k", {}).items():
        names.append((f"maj@{kk}", f"maj@{kk}", v))
    names.append(("format rate", "format_rate", result["format_rate"]))
    names.append(("mean response length (tokens)", "mean_response_length", result["mean_response_length"]))
    if result.get("answer_distance") is not None:
        names.append((f"answer distance (cap {result.get('answer_distance_cap')})", "answer_distance", result["answer_distance"]))
    rows = []
    for label, key, v in names:
        ci = result.get("ci95", {}).get(key)
        rows.append((label, v, f"[{ci[0]:.3f}, {ci[1]:.3f}]" if ci else "–"))
    parts = [f"{result['num_problems']} problems, {result['samples_per_problem']} samples each", markdown(("figure", "value", "95% CI (bootstrap over problems)"), rows)]
    if result.get("by_difficulty"):
        present = {c for r in result["by_difficulty"].values() for c in r}
        cols = [c for c in ("greedy_accuracy", "sampled_accuracy", "pass@k", "maj@k", "answer_distance", "mean_response_length") if c in present]
        parts.append(markdown(("difficulty", "problems", *cols), [(lbl, r["num_problems"], *[r.get(c) for c in cols]) for lbl, r in result["by_difficulty"].items()]))
    if result.get("response_length_percentiles") or result.get("readability"):
        parts.append(length_readability_table(result))
    if result.get("behaviours"):
        b = result["behaviours"]
        parts.append(markdown(("behaviour", "per completion", "share of completions"), [(n, b[n]["mean"], b[n]["rate"]) for n in BEHAVIOURS if n in b]))
    if result.get("process"):
        p = result["process"]
        names = [n for n in p if not n.startswith("greedy_")]
        parts.append(markdown(("process validity (arithmetic claims)", "sampled", "greedy"),
                              [(n, p[n], p.get(f"greedy_{n}")) for n in names]))
    if result.get("tools"):
        parts.append(markdown(("tool use", "sampled"), list(result["tools"].items())))
    return "\n\n".join(parts)


def length_percentile_cell(p: dict | None) -> str:
    """``p50 / p90 / p99`` of eval.json's length percentiles (``–`` without them).

    >>> length_percentile_cell({"p50": 25.0, "p90": 37.0, "p99": 39.7})
    '25.0 / 37.0 / 39.7'
    """
    return " / ".join(fmt(float(p[q]), 1) for q in ("p50", "p90", "p99")) if p else "–"


def length_readability_table(result: dict) -> str:
    """eval.json's response-length percentiles (all, correct, incorrect sampled completions) and
    ``readability`` (rejection sampling's filters on them) as one figure/value table."""
    rows = [(f"response length p50 / p90 / p99 ({which}, tokens)", length_percentile_cell(result.get(key)))
            for which, key in (("all", "response_length_percentiles"), ("correct", "response_length_percentiles_correct"),
                               ("incorrect", "response_length_percentiles_incorrect")) if key in result]
    r = result.get("readability") or {}
    if r:
        rows += [("readable (passes every readability filter)", r["readable_rate"]),
                 ("accepted (correct and readable)", r["accepted_rate"]),
                 ("repeated word 4-gram share", r["repeated_ngram_fraction"]),
                 *[(f"fails filter: {name}", v) for name, v in r["fail_rate"].items()]]
    return markdown(("length and readability (sampled)", "value"), rows)


def scaling_table(rows: list[dict]) -> str:
    head = ("max_new_tokens", "samples", "tokens/problem", "seconds", "pass@k", "maj@k", "avg@k", "format")
    body = [
        (r["max_new_tokens"], r["samples"], round(r["tokens_per_problem"], 1), round(r["seconds"], 2), r["pass_at_k"], r["maj_at_k"], r["avg_at_k"], r["format_rate"])
        for r in rows
    ]
    return markdown(head, body)


def behaviours_study_table(study: dict) -> str:
    """``studies.behaviours``: per behaviour, occurrences and shares by outcome, top phrases."""
    by = study["by_outcome"]
    n = {g: by[g]["num_completions"] for g in ("all", "correct", "incorrect", "greedy")}
    head = ("behaviour", "per completion", "share (all)", f"share (correct, n={n['correct']})",
            f"share (incorrect, n={n['incorrect']})", f"share (greedy, n={n['greedy']})", "top phrases")
    rows = []
    for b in BEHAVIOURS:
        phrases = ", ".join(f"{p!r}×{c}" for p, c in study["phrases"].get(b, [])) or "–"
        rows.append((b, by["all"][b]["mean"], by["all"][b]["rate"], by["correct"][b]["rate"] if n["correct"] else None,
                     by["incorrect"][b]["rate"] if n["incorrect"] else None, by["greedy"][b]["rate"] if n["greedy"] else None, phrases))
    rows.append(("any", None, by["all"]["any"], by["correct"]["any"] if n["correct"] else None,
                 by["incorrect"]["any"] if n["incorrect"] else None, by["greedy"]["any"] if n["greedy"] else None, ""))
    parts = [f"### Behaviours of the model's own samples ({n['all']} sampled completions)", markdown(head, rows)]
    examples = [(b, e) for b in BEHAVIOURS for e in study.get("examples", {}).get(b, [])]
    if examples:
        parts.append("Examples (match in brackets):\n\n" + "\n".join(f"- {b}: `{e.replace('`', chr(39))}`" for b, e in examples))
    return "\n\n".join(parts)


def templates_table(study: dict) -> str:
    """``studies.templates``: one row per template."""
    k_key = next((key for fig in study.values() for key in fig if key.startswith("pass@")), "pass@k")
    head = ("template", "greedy", "avg@k", k_key, "format", "length", "truncated", *[f"{b} share" for b in BEHAVIOURS])
    rows = []
    notes = []
    for template, fig in study.items():
        if "skipped" in fig:
            rows.append((template, *["–"] * (len(head) - 1)))
            notes.append(f"- {template}: {fig['skipped']}")
            continue
        beh = fig.get("behaviours") or {}
        rows.append((template, fig.get("greedy_accuracy"), fig.get("sampled_accuracy"), fig.get(k_key), fig.get("format_rate"),
                     fig.get("mean_response_length"), fig.get("truncated_fraction"), *[(beh.get(b) or {}).get("rate") for b in BEHAVIOURS]))
    return "\n\n".join(["### Template sensitivity (same problems and seed)", markdown(head, rows), *(["\n".join(notes)] if notes else [])])


def perplexity_bridge_table(study: dict, max_rows: int = 50) -> str:
    """``studies.perplexity_bridge``: the averages, then one row per problem (the first ``max_rows``)."""
    summary = markdown(("figure", "without reasoning", "with the model's reasoning"), [
        ("perplexity (exp mean NLL)", study["perplexity_without"], study["perplexity_with"]),
        ("mean NLL per answer token (nats)", study["mean_nll_without"], study["mean_nll_with"]),
        ("mean perplexity", study["mean_perplexity_without"], study["mean_perplexity_with"]),
        ("median perplexity", study["median_perplexity_without"], study["median_perplexity_with"]),
    ])
    parts = [
        "### Perplexity bridge: the gold answer's perplexity without vs with the model's own reasoning",
        f"{study['num_problems']} problems ({study['skipped_no_gold']} without a gold answer skipped); reasoning lowers the "
        f"perplexity on {fmt(study['share_lower'])} of them. Scored: {study['scored']}.",
        summary,
    ]
    probs = study["problems"][:max_rows]
    if probs:
        parts.append(markdown(("problem", "gold", "answer tokens", "context tokens (with)", "greedy correct", "ppl without", "ppl with"),
                              [(p["problem"], f"`{p['gold']}`", p["answer_tokens"], p["with_context_tokens"], p["greedy_correct"],
                                p["perplexity_without"], p["perplexity_with"]) for p in probs]))
        if len(study["problems"]) > max_rows:
            parts.append(f"(first {max_rows} of {len(study['problems'])} problems; all in eval.json)")
    return "\n\n".join(parts)


def studies_tables(studies: dict) -> str:
    """All studies present in eval.json's ``studies``, under one heading."""
    parts = ["## Studies"]
    if "behaviours" in studies:
        parts.append(behaviours_study_table(studies["behaviours"]))
    if "templates" in studies:
        parts.append(templates_table(studies["templates"]))
    if "perplexity_bridge" in studies:
        parts.append(perplexity_bridge_table(studies["perplexity_bridge"]))
    return "\n\n".join(parts)


def spread_cell(stats: dict, runs: int, digits: int = 3) -> str:
    """``mean ± std [min, max]`` of one arm's figure over its seeds (``r1lab.eval.seed_bands.spread``);
    ``± –`` with one seed; ``(n=2)`` when fewer of its ``runs`` have the figure; ``–`` when none does.

    >>> spread_cell({"n": 3, "mean": 0.6, "std": 0.1, "min": 0.5, "max": 0.7}, 3)
    '0.600 ± 0.100 [0.500, 0.700]'
    """
    if not stats.get("n"):
        return "–"
    cell = f"{fmt(stats['mean'], digits)} ± {fmt(stats['std'], digits)} [{fmt(stats['min'], digits)}, {fmt(stats['max'], digits)}]"
    return cell if stats["n"] == runs else f"{cell} (n={stats['n']})"


def arms_table(labels: Sequence[str], runs: Sequence[int], figures: dict[str, list[dict]]) -> str:
    """One row per arm (its label, its number of runs), one column per figure: :func:`spread_cell`."""
    head = ("arm", "seeds", *figures)
    rows = [(lbl, n, *[spread_cell(figures[m][j], n) for m in figures]) for j, (lbl, n) in enumerate(zip(labels, runs))]
    return markdown(head, rows)
