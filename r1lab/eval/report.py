"""`r1lab-report run_dir=<run dir>`: PNG plots and one HTML page of a pipeline run.

Reads the run directory the pipeline writes (``r1lab/pipeline.py``)::

    <run>/config.yaml, summary.json
    <run>/stages/00-start/eval.json
    <run>/stages/NN-<name>/metrics.jsonl, eval.json, [samples.jsonl or eval-*/samples.jsonl]

and writes into ``<run>/report/`` (or ``out_dir``):

* ``training-NN-<name>.png`` per stage with metrics: reward per component (``reward`` and
  ``reward/<name>``), accuracy, response length, KL, entropy, loss, reasoning behaviours of the
  rollouts (``behaviour/<name>``), and any ``eval/...`` figure logged during training
  (``eval.every``), against optimizer steps;
* ``eval.png``: greedy, avg@k, pass@k and maj@k per stage (start model included) with 95% CIs;
* ``behaviours.png``: mean occurrences per completion of each reasoning behaviour per stage;
* ``process.png``: process validity per stage (eval.json's ``process``: the share of the
  reasoning's arithmetic claims that are true, of correct completions with a false claim, of all
  completions with one), with a table of those figures and, for stages evaluated with tools,
  one of tool use (eval.json's ``tools``);
* ``report.md`` (the tables) and ``index.html`` (tables, plots, and completions with their
  rewards when a stage has ``samples.jsonl``, e.g. from ``r1lab-eval model=<stage dir>``).
"""
from __future__ import annotations

import html
import json
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from r1lab.rewards.behaviours import BEHAVIOURS, behaviour_summary
from r1lab.rewards.claims import process_figures
from r1lab.eval.tables import fmt, headline, length_percentile_cell, markdown

# Panels of a stage's training plot: panel title -> metric keys (the first present are drawn).
CURVE_PANELS: dict[str, tuple[str, ...]] = {
    "reward per component": ("reward",),  # plus every reward/<name>
    "accuracy": ("accuracy",),
    "response length (tokens)": ("response_length", "response_length_max"),
    "KL to reference": ("kl",),
    "entropy (nats/token)": ("entropy",),
    "loss": ("loss",),
    "truncated fraction": ("truncated_fraction",),
    "learning rate": ("lr",),
}


@dataclass
class StageData:
    name: str  # directory name, e.g. 02-grpo
    metrics: list[dict[str, Any]] = field(default_factory=list)  # metrics.jsonl rows
    eval: dict[str, Any] | None = None  # eval.json
    samples: Path | None = None  # a samples.jsonl of this stage


def _read_jsonl(path: Path) -> list[dict]:
    rows = []
    for line in path.read_text().splitlines():
        line = line.strip()
        if line:
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:  # a line cut by a crash: skip it
                continue
    return rows


def load_stages(run_dir: Path) -> list[StageData]:
    stages_dir = run_dir / "stages"
    if not stages_dir.is_dir():
        raise FileNotFoundError(f"run_dir={run_dir}: not a run directory (no stages/ folder)")
    out = []
    for d in sorted(p for p in stages_dir.iterdir() if p.is_dir()):
        s = StageData(d.name)
        if (d / "metrics.jsonl").is_file():
            s.metrics = _read_jsonl(d / "metrics.jsonl")
        if (d / "eval.json").is_file():
            s.eval = json.loads((d / "eval.json").read_text())
        found = [d / "samples.jsonl"] if (d / "samples.jsonl").is_file() else sorted(d.glob("eval-*/samples.jsonl"))
        s.samples = found[0] if found else None
        out.append(s)
    return out


def metric_series(rows: list[dict]) -> dict[str, dict[str, tuple[list, list]]]:
    """Curves of one stage: ``{panel: {line label: (steps, values)}}``, only panels with data."""

    def series(key: str) -> tuple[list, list]:
        pts = [(r["step"], r[key]) for r in rows if isinstance(r.get(key), (int, float)) and "step" in r]
        pts = [(s, v) for s, v in pts if math.isfinite(v)]
        return [p[0] for p in pts], [p[1] for p in pts]

    keys = {k for r in rows for k in r}
    out: dict[str, dict[str, tuple[list, list]]] = {}
    for panel, names in CURVE_PANELS.items():
        lines = {n: series(n) for n in names if n in keys}
        if panel.startswith("reward"):
            lines = {("total" if n == "reward" else n): v for n, v in lines.items()}
            lines.update({k.split("/", 1)[1]: series(k) for k in sorted(keys) if k.startswith("reward/")})
        lines = {k: v for k, v in lines.items() if v[0]}
        if lines:
            out[panel] = lines
    # key families: panel -> (key prefix, prefixes kept out of the panel)
    families = {
        "held-out eval during training": ("eval/", ("eval/mean_response_length", "eval/seconds", "eval/behaviour/",
                                                    "eval/process/", "eval/tools/")),
        "held-out response length (tokens)": ("eval/mean_response_length", ()),
        "held-out behaviours per completion": ("eval/behaviour/", ()),
        "held-out process validity": ("eval/process/", ("eval/process/num_claims", "eval/process/greedy_")),
        "held-out tool use": ("eval/tools/", ("eval/tools/sampled_tokens",)),
        "behaviours per completion (rollouts)": ("behaviour/", ()),
        "tool use (rollouts)": ("tools/", ("tools/sampled_tokens",)),
    }
    for panel, (prefix, skip) in families.items():
        lines = {k.rsplit("/", 1)[-1]: series(k) for k in sorted(keys) if k.startswith(prefix) and not k.startswith(skip)}
        lines = {k: v for k, v in lines.items() if v[0]}
        if lines:
            out[panel] = lines
    # rollouts off the critical path (rollout.placement=separate): keys by pattern, labelled without "async/"
    asynchronous = {
        "async rollouts: policy version lag (steps)": lambda k: k.startswith("async/version_lag"),
        "async rollouts: seconds per step": lambda k: k in ("time_step", "time_generate", "async/trainer_wait_s", "async/weight_sync_s"),
        "async rollouts: worker idle share": lambda k: k == "async/worker_idle_fraction",
        "async rollouts: worker tokens per second": lambda k: k.startswith("async/worker") and k.endswith("/tokens_per_s"),
    }
    for panel, wanted in asynchronous.items():
        lines = {k.removeprefix("async/"): series(k) for k in sorted(keys) if wanted(k)}
        lines = {k: v for k, v in lines.items() if v[0]}
        if lines and any(k.startswith("async/") for k in keys):
            out[panel] = lines
    return out


def stage_behaviours(s: StageData) -> dict[str, dict[str, float]] | None:
    if s.eval and s.eval.get("behaviours"):
        return s.eval["behaviours"]
    if s.samples is not None:  # an older eval.json: count from the stage's completions
        import numpy as np

        recs = [r for r in _read_jsonl(s.samples) if r.get("kind", "sample") == "sample"]
        if recs and all(b in recs[0] for b in BEHAVIOURS[:5]):  # records from before false_verification lack it
            present = [b for b in BEHAVIOURS if all(b in r for r in recs)]
            return behaviour_summary({b: np.array([r[b] for r in recs]) for b in present})
    return None


# eval.json's process figures shown per stage: key -> column label
PROCESS_COLUMNS = {
    "claims_per_completion": "claims per completion",
    "true_claim_share": "true claim share",
    "correct_with_false_claim": "correct with a false claim",
    "false_claim_completions": "completions with a false claim",
    "greedy_true_claim_share": "greedy: true claim share",
}
PROCESS_SHARES = ("true_claim_share", "correct_with_false_claim", "false_claim_completions")  # plotted, in [0, 1]
TOOL_COLUMNS = {
    "calls_per_completion": "calls per completion",
    "errors_per_completion": "errors per completion",
    "timeouts_per_completion": "timeouts per completion",
    "calling_share": "share calling",
    "tool_token_share": "tool token share",
}


def stage_process(s: StageData) -> dict[str, float] | None:
    """eval.json's ``process``; for an older eval.json, computed from the stage's sampled
    completions when their records carry ``claims``; else None."""
    if s.eval and s.eval.get("process"):
        return s.eval["process"]
    if s.samples is not None:
        import numpy as np

        recs = [r for r in _read_jsonl(s.samples) if r.get("kind", "sample") == "sample"]
        if recs and all("claims" in r and "true_claims" in r for r in recs):
            counts = {c: np.array([r[c] for r in recs]) for c in ("claims", "true_claims")}
            return process_figures(counts, np.array([float(r.get("correct") or 0.0) for r in recs]))
    return None


def eval_rows(stages: list[StageData]) -> tuple[list[str], list[list[Any]]]:
    evals = [(s.name, s.eval) for s in stages if s.eval]
    if not evals:
        return [], []
    head = ["stage", "problems", *headline(evals[0][1]).keys()]
    rows = []
    for name, e in evals:
        h = headline(e)
        cells: list[Any] = [name, e.get("num_problems")]
        ci_keys = {"greedy": "greedy_accuracy", "avg@k": "sampled_accuracy", "format": "format_rate",
                   "length": "mean_response_length", "distance": "answer_distance"}
        for col in head[2:]:
            v = h.get(col)
            ci = (e.get("ci95") or {}).get(ci_keys.get(col, col))
            cells.append(f"{fmt(v)} [{ci[0]:.3f}, {ci[1]:.3f}]" if ci and v is not None else fmt(v))
        rows.append(cells)
    return head, rows


def html_table(head: list[str], rows: list[list[Any]], raw_cols: tuple[int, ...] = ()) -> str:
    th = "".join(f"<th>{html.escape(str(h))}</th>" for h in head)
    body = []
    for row in rows:
        cells = "".join(
            f"<td>{c if i in raw_cols else html.escape(fmt(c))}</td>" for i, c in enumerate(row)
        )
        body.append(f"<tr>{cells}</tr>")
    return f"<table><thead><tr>{th}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def completions(s: StageData, limit: int) -> tuple[list[str], list[list[Any]]]:
    """The first ``limit`` completions of the stage's samples.jsonl, with rewards and behaviours."""
    recs = _read_jsonl(s.samples)[:limit] if s.samples else []
    with_claims = any("claims" in r for r in recs)
    with_tools = any("tool_calls" in r for r in recs)
    head = ["problem", "kind", "question", "response", "correct", "format", "length", *BEHAVIOURS,
            *(["true / all claims"] if with_claims else []), *(["tool calls"] if with_tools else [])]
    rows = []
    for r in recs:
        response = f"<pre>{html.escape(str(r.get('response', '')))}</pre>"
        claims = f"{r['true_claims']} / {r['claims']}" if "claims" in r and "true_claims" in r else None
        rows.append([r.get("problem"), f"{r.get('kind')} {r.get('sample')}", r.get("question"), response,
                     r.get("correct"), r.get("format"), r.get("length"), *[r.get(b) for b in BEHAVIOURS],
                     *([claims] if with_claims else []), *([r.get("tool_calls")] if with_tools else [])])
    return head, rows


STYLE = """body{font-family:system-ui,sans-serif;margin:2em;max-width:1400px}
table{border-collapse:collapse;margin:1em 0;font-size:13px}th,td{border:1px solid #ccc;padding:3px 8px;vertical-align:top}
th{background:#f0f0f0}pre{margin:0;white-space:pre-wrap;max-width:600px}img{max-width:100%;border:1px solid #eee}"""


def write_report(run_dir: Path, out_dir: Path | None = None, max_completions: int = 20) -> Path:
    """Write the plots, ``report.md`` and ``index.html``; return the HTML page's path.

    The page is its sections in order, each a function of the stages' files returning its
    markdown and HTML parts (and writing its plots under ``out``)."""
    run_dir = Path(run_dir)
    stages = load_stages(run_dir)
    out = Path(out_dir) if out_dir else run_dir / "report"
    out.mkdir(parents=True, exist_ok=True)
    title = f"r1lab run {run_dir.name}"
    md = [f"# {title}", f"Run directory: `{run_dir}`"]
    body = [f"<h1>{html.escape(title)}</h1><p>Run directory: <code>{html.escape(str(run_dir))}</code></p>"]
    for section_md, section_html in (
        eval_section(stages, out), behaviour_section(stages, out), process_section(stages, out), tool_section(stages), length_section(stages), costs_section(stages),
        training_section(stages, out), completion_section(stages, max_completions),
    ):
        md += section_md
        body += section_html
    (out / "report.md").write_text("\n\n".join(md) + "\n")
    page = out / "index.html"
    page.write_text(f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
                    f"<style>{STYLE}</style></head><body>{''.join(body)}</body></html>\n")
    return page


Section = tuple[list[str], list[str]]  # a report section's markdown parts and HTML parts


def eval_section(stages: list[StageData], out: Path) -> Section:
    """Held-out evaluation per stage: the table with its CIs, ``eval.png``, and by difficulty."""
    from r1lab.eval.plots import grouped_bars

    md, body = [], []
    head, rows = eval_rows(stages)
    if not rows:
        return md, body
    md += ["## Held-out evaluation per stage (95% bootstrap CI)", markdown(head, rows)]
    body += ["<h2>Held-out evaluation per stage</h2><p>Values with 95% bootstrap intervals over problems.</p>",
             html_table(head, rows)]
    evals = [s for s in stages if s.eval]
    k = max(int(x) for x in evals[0].eval["pass_at_k"])
    series = {"greedy": "greedy_accuracy", f"avg@{k}": "sampled_accuracy"}
    values = {lbl: [s.eval.get(key) for s in evals] for lbl, key in series.items()}
    errors = {lbl: [(s.eval.get("ci95") or {}).get(key) for s in evals] for lbl, key in series.items()}
    values[f"pass@{k}"] = [s.eval["pass_at_k"].get(str(k)) for s in evals]
    errors[f"pass@{k}"] = [(s.eval.get("ci95") or {}).get(f"pass@{k}") for s in evals]
    if any("maj_at_k" in s.eval for s in evals):
        values[f"maj@{k}"] = [(s.eval.get("maj_at_k") or {}).get(str(k)) for s in evals]
        errors[f"maj@{k}"] = [(s.eval.get("ci95") or {}).get(f"maj@{k}") for s in evals]
    values["format"] = [s.eval.get("format_rate") for s in evals]
    grouped_bars([s.name for s in evals], values, out / "eval.png", "Held-out accuracy per stage (95% CI)",
                 "accuracy / rate", errors=errors, ylim=(0, 1.05))
    body.append('<img src="eval.png" alt="held-out evaluation per stage">')
    md.append("![eval](eval.png)")
    diff = [(s.name, lbl, r) for s in evals for lbl, r in (s.eval.get("by_difficulty") or {}).items()]
    if diff:
        cols = [c for c in ("greedy_accuracy", "sampled_accuracy", "pass@k", "maj@k", "answer_distance")
                if any(c in r for _, _, r in diff)]
        drows = [[n, lbl, r.get("num_problems"), *[r.get(c) for c in cols]] for n, lbl, r in diff]
        dhead = ["stage", "difficulty", "problems", *cols]
        md += ["## By difficulty", markdown(dhead, drows)]
        body += ["<h2>By difficulty</h2>", html_table(dhead, drows)]
    return md, body


def behaviour_section(stages: list[StageData], out: Path) -> Section:
    """Reasoning behaviours of sampled completions per stage: table and ``behaviours.png``."""
    from r1lab.eval.plots import grouped_bars

    behaviours = [(s.name, stage_behaviours(s)) for s in stages]
    behaviours = [(n, b) for n, b in behaviours if b]
    if not behaviours:
        return [], []
    bhead = ["stage", *[f"{b} (per completion / share)" for b in BEHAVIOURS]]
    brows = [[n, *[f"{b[x]['mean']:.3f} / {b[x]['rate']:.3f}" if x in b else "–" for x in BEHAVIOURS]] for n, b in behaviours]
    md = ["## Reasoning behaviours of sampled completions (base model first)", markdown(bhead, brows)]
    body = ["<h2>Reasoning behaviours</h2><p>Mean occurrences per sampled completion / share of completions "
            "with at least one (patterns: <code>r1lab/rewards/behaviours.py</code>).</p>", html_table(bhead, brows)]
    grouped_bars([n for n, _ in behaviours], {x: [b.get(x, {}).get("mean") for _, b in behaviours] for x in BEHAVIOURS},
                 out / "behaviours.png", "Reasoning behaviours per stage", "occurrences per completion")
    body.append('<img src="behaviours.png" alt="behaviours per stage">')
    md.append("![behaviours](behaviours.png)")
    return md, body


def process_section(stages: list[StageData], out: Path) -> Section:
    """Process validity (the reasoning's arithmetic claims) per stage: table and ``process.png``."""
    from r1lab.eval.plots import grouped_bars

    process = [(s.name, p) for s in stages if (p := stage_process(s))]
    if not process:
        return [], []
    phead = ["stage", *PROCESS_COLUMNS.values()]
    prows = [[n, *[p.get(c) for c in PROCESS_COLUMNS]] for n, p in process]
    md = ["## Process validity: arithmetic claims in the reasoning of sampled completions", markdown(phead, prows)]
    body = ["<h2>Process validity</h2><p>Every <code>EXPR = VALUE</code> the reasoning states, judged exactly "
            "(<code>r1lab/rewards/claims.py</code>; text inside tool calls and results excluded). True claim "
            "share is 1.0 when there is no claim (see claims per completion); <em>correct with a false claim</em> "
            "is the share of correct completions whose reasoning states a falsehood.</p>", html_table(phead, prows)]
    grouped_bars([n for n, _ in process], {PROCESS_COLUMNS[c]: [p.get(c) for _, p in process] for c in PROCESS_SHARES},
                 out / "process.png", "Process validity per stage", "share", ylim=(0, 1.05))
    body.append('<img src="process.png" alt="process validity per stage">')
    md.append("![process](process.png)")
    return md, body


def tool_section(stages: list[StageData]) -> Section:
    """Tool use of sampled completions per stage (stages whose evaluation could call tools)."""
    tools = [(s.name, s.eval["tools"]) for s in stages if s.eval and s.eval.get("tools")]
    if not tools:
        return [], []
    thead = ["stage", *TOOL_COLUMNS.values()]
    trows = [[n, *[t.get(c) for c in TOOL_COLUMNS]] for n, t in tools]
    md = ["## Tool use of sampled completions", markdown(thead, trows)]
    body = ["<h2>Tool use</h2><p>Calls per sampled completion, and the share of completion tokens a tool "
            "wrote (<code>r1lab/rollout/tool_calls.py</code>).</p>", html_table(thead, trows)]
    return md, body


def costs_section(stages: list[StageData]) -> Section:
    """What RL costs elsewhere, per stage (eval.json's ``forgetting``, ``faithfulness`` and
    ``robustness``: ``r1lab.eval.suites``); nothing when no stage has them."""
    evals = [(s.name, s.eval) for s in stages if s.eval and any(k in s.eval for k in ("forgetting", "faithfulness", "robustness"))]
    if not evals:
        return [], []
    names = sorted({n for _, e in evals for n in (e.get("robustness") or {}).get("perturbed", {})})
    head = ["stage", "general text perplexity", "general QA accuracy", "faithful rate", "faithful (correct)",
            "faithful (incorrect)", *[f"{n}: greedy drop" for n in names]]
    rows = []
    for name, e in evals:
        forgetting, faith = e.get("forgetting") or {}, e.get("faithfulness") or {}
        perturbed = (e.get("robustness") or {}).get("perturbed", {})
        rows.append([name, (forgetting.get("general_text") or {}).get("perplexity"), (forgetting.get("general_qa") or {}).get("accuracy"),
                     faith.get("faithful_rate"), faith.get("faithful_rate_correct"), faith.get("faithful_rate_incorrect"),
                     *[(perturbed.get(n) or {}).get("greedy_drop") for n in names]])
    md = ["## What RL costs elsewhere: forgetting, faithfulness, robustness", markdown(head, rows)]
    body = ["<h2>What RL costs elsewhere</h2><p>Perplexity of held-out general English and accuracy on one-word "
            "general questions (<code>r1lab/eval/forgetting.py</code>); share of sampled completions with claims whose "
            "answer follows from the reasoning's last claim (<code>r1lab/eval/faithfulness.py</code>); greedy accuracy "
            "lost on each perturbed problem set (<code>r1lab/eval/robustness.py</code>).</p>", html_table(head, rows)]
    return md, body


def length_section(stages: list[StageData]) -> Section:
    """Per stage: response-length percentiles of the sampled completions (all, correct, incorrect)
    and their readability (eval.json's ``response_length_percentiles*`` and ``readability``), then
    by difficulty; nothing when no stage's eval.json has them (one written before they existed)."""
    evals = [(s.name, s.eval) for s in stages if s.eval and "response_length_percentiles" in s.eval]
    if not evals:
        return [], []
    head = ["stage", "length p50 / p90 / p99", "correct", "incorrect", "readable", "accepted (correct, readable)",
            "repeated 4-grams"]
    rows = [[name, *[length_percentile_cell(e.get(f"response_length_percentiles{x}")) for x in ("", "_correct", "_incorrect")],
             *[(e.get("readability") or {}).get(k) for k in ("readable_rate", "accepted_rate", "repeated_ngram_fraction")]]
            for name, e in evals]
    dhead = ["stage", "difficulty", "length p50 / p90 / p99", "readable"]
    drows = [[name, lbl, length_percentile_cell({q: r.get(f"response_length_{q}") for q in ("p50", "p90", "p99")}
                                                if "response_length_p50" in r else None), r.get("readable_rate")]
             for name, e in evals for lbl, r in (e.get("by_difficulty") or {}).items()]
    md = ["## Response length and readability (sampled completions)", markdown(head, rows), markdown(dhead, drows)]
    body = ["<h2>Response length and readability</h2><p>Token lengths of the sampled completions (numpy's linear "
            "percentiles); readable: passes every readability filter of rejection sampling (<code>r1lab/rewards/"
            "readability.py</code>: format, language consistency, no code fences, length, repetition, true claims).</p>",
            html_table(head, rows), html_table(dhead, drows)]
    return md, body


def training_section(stages: list[StageData], out: Path) -> Section:
    """Training curves of each stage that logged metrics, ``training-<stage>.png`` each."""
    from r1lab.eval.plots import curves_plot

    md, body = [], []
    for s in stages:
        curves = metric_series(s.metrics)
        if curves:
            png = f"training-{s.name}.png"
            curves_plot(curves, out / png, f"Training curves: stage {s.name}")
            body += [f"<h2>Training: {html.escape(s.name)}</h2>", f'<img src="{png}" alt="training curves {html.escape(s.name)}">']
            md += [f"## Training: {s.name}", f"![{s.name}]({png})"]
    return md, body


def completion_section(stages: list[StageData], max_completions: int) -> Section:
    """The first ``max_completions`` evaluation completions of each stage (HTML only)."""
    body = []
    for s in stages:
        chead, crows = completions(s, max_completions)
        if crows:
            body += [f"<h2>Completions: {html.escape(s.name)}</h2><p>From <code>{html.escape(str(s.samples))}</code>; "
                     "correct and format are the rewards of the verifier and the strict format check.</p>",
                     html_table(chead, crows, raw_cols=(3,))]
    return [], body


def parse_cli(schema: type, argv: list[str], usage: str):
    """``key=value`` arguments merged onto a dataclass schema; one-line errors."""
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    if any(a in ("-h", "--help") for a in argv):
        print(usage)
        sys.exit(0)
    bad = [a for a in argv if "=" not in a]
    if bad:
        raise ValueError(f"arguments are key=value, got {bad[0]!r}; usage: {usage.splitlines()[0]}")
    try:
        cfg = OmegaConf.merge(OmegaConf.structured(schema), OmegaConf.from_cli(argv))
        return OmegaConf.to_object(cfg)
    except OmegaConfBaseException as err:
        msg = str(err).splitlines()[0]
        raise ValueError(f"{msg}; usage: {usage.splitlines()[0]}") from None


def main(argv: list[str] | None = None) -> None:
    from r1lab.config.errors import USER_ERRORS, fail
    from r1lab.eval.config import ReportConfig

    try:
        cfg = parse_cli(ReportConfig, sys.argv[1:] if argv is None else argv,
                        "r1lab-report run_dir=<run dir> [out_dir=<dir>] [max_completions=20]\n" + (__doc__ or ""))
        page = write_report(Path(cfg.run_dir), Path(cfg.out_dir) if cfg.out_dir else None, cfg.max_completions)
        print(f"[r1lab-report] wrote {page}")
    except USER_ERRORS as err:
        fail(err)


if __name__ == "__main__":
    main()
