"""Markdown tables of eval.json figures, test-time scaling and sweeps (pure string functions)."""
from __future__ import annotations

from typing import Any, Sequence

from r1lab.eval.behaviours import BEHAVIOURS


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
    """One eval.json: figure, value, 95% interval; then difficulty and behaviour breakdowns."""
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
        cols = [c for c in ("greedy_accuracy", "sampled_accuracy", "pass@k", "maj@k", "answer_distance") if c in present]
        parts.append(markdown(("difficulty", "problems", *cols), [(lbl, r["num_problems"], *[r.get(c) for c in cols]) for lbl, r in result["by_difficulty"].items()]))
    if result.get("behaviours"):
        b = result["behaviours"]
        parts.append(markdown(("behaviour", "per completion", "share of completions"), [(n, b[n]["mean"], b[n]["rate"]) for n in BEHAVIOURS if n in b]))
    return "\n\n".join(parts)


def scaling_table(rows: list[dict]) -> str:
    head = ("max_new_tokens", "samples", "tokens/problem", "seconds", "pass@k", "maj@k", "avg@k", "format")
    body = [
        (r["max_new_tokens"], r["samples"], round(r["tokens_per_problem"], 1), round(r["seconds"], 2), r["pass_at_k"], r["maj_at_k"], r["avg_at_k"], r["format_rate"])
        for r in rows
    ]
    return markdown(head, body)
