"""`r1lab-compare sweep_dir=<dir>`: one table and one plot over the runs of a Hydra sweep.

A sweep (``r1lab -m recipe=ablation_kl stages.grpo.kl.coef=0.0,0.04``) writes
``multirun/<name>/<timestamp>/<job>/``, each a run directory with ``.hydra/overrides.yaml``
(the job's command-line overrides), ``summary.json`` and ``stages/*/eval.json``. Rows are the
runs, labelled by the overrides whose values differ between jobs (the ones shared by every job,
like ``recipe=...``, are left out); columns are the figures of each run's final stage.
Unfinished runs are listed with their last finished stage (or none).

Writes ``compare.md``, ``compare.json`` and ``compare.png`` (greedy, avg@k, pass@k and maj@k
per run with 95% bootstrap intervals) into the sweep directory (or ``out_dir``).
"""
from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from r1lab.eval.tables import fmt, headline, markdown


@dataclass
class SweepRun:
    job: str  # the job's directory name (Hydra's job number)
    overrides: dict[str, str]  # key -> value of the job's command-line overrides
    stage: str | None  # the final stage with an eval.json
    eval: dict[str, Any] | None  # its eval.json


def _final_eval(run_dir: Path) -> tuple[str | None, dict | None]:
    summary = run_dir / "summary.json"
    if summary.is_file():
        results = json.loads(summary.read_text())
        if results:
            name = list(results)[-1]
            return name, results[name]
    evals = sorted((run_dir / "stages").glob("*/eval.json")) if (run_dir / "stages").is_dir() else []
    if evals:
        return evals[-1].parent.name, json.loads(evals[-1].read_text())
    return None, None


def _overrides(run_dir: Path) -> dict[str, str]:
    path = run_dir / ".hydra" / "overrides.yaml"
    if not path.is_file():
        return {}
    out = {}
    for item in yaml.safe_load(path.read_text()) or []:
        key, _, value = str(item).partition("=")
        out[key.lstrip("+~")] = value
    return out


def load_sweep(sweep_dir: Path) -> list[SweepRun]:
    sweep_dir = Path(sweep_dir)
    if not sweep_dir.is_dir():
        raise FileNotFoundError(f"sweep_dir={sweep_dir} does not exist")
    jobs = [d for d in sweep_dir.iterdir() if d.is_dir() and ((d / "config.yaml").is_file() or (d / ".hydra").is_dir())]
    if not jobs:
        raise FileNotFoundError(f"sweep_dir={sweep_dir}: no run directories in it (expected multirun/<name>/<timestamp>/)")
    jobs.sort(key=lambda d: (0, int(d.name), "") if d.name.isdigit() else (1, 0, d.name))
    runs = []
    for d in jobs:
        stage, ev = _final_eval(d)
        runs.append(SweepRun(d.name, _overrides(d), stage, ev))
    return runs


def distinguishing_keys(runs: list[SweepRun]) -> list[str]:
    """Override keys whose value is not the same in every run, in first-seen order."""
    keys: list[str] = []
    for r in runs:
        keys += [k for k in r.overrides if k not in keys]
    return [k for k in keys if len({r.overrides.get(k) for r in runs}) > 1]


def compare_table(runs: list[SweepRun]) -> tuple[list[str], list[list[Any]]]:
    keys = distinguishing_keys(runs)
    first = next((r.eval for r in runs if r.eval), None)
    figures = list(headline(first)) if first else []
    head = ["job", *keys, "final stage", *figures]
    rows = []
    for r in runs:
        h = headline(r.eval) if r.eval else {}
        rows.append([r.job, *[r.overrides.get(k, "–") for k in keys], r.stage or "unfinished", *[h.get(f) for f in figures]])
    return head, rows


def run_label(r: SweepRun, keys: list[str]) -> str:
    parts = [f"{k.split('.')[-1]}={r.overrides.get(k, '–')}" for k in keys]
    return f"#{r.job} " + ", ".join(parts) if parts else f"#{r.job}"


def write_compare(sweep_dir: Path, out_dir: Path | None = None) -> Path:
    """Write ``compare.md``, ``compare.json`` and ``compare.png``; return the markdown path."""
    from r1lab.eval.plots import grouped_bars

    sweep_dir = Path(sweep_dir)
    runs = load_sweep(sweep_dir)
    out = Path(out_dir) if out_dir else sweep_dir
    out.mkdir(parents=True, exist_ok=True)
    head, rows = compare_table(runs)
    keys = distinguishing_keys(runs)
    done = [r for r in runs if r.eval]
    text = [f"# Sweep {sweep_dir}", f"{len(runs)} runs, {len(done)} with a final eval; figures of each run's final stage.",
            markdown(head, rows)]
    if done:
        k = max(int(x) for x in done[0].eval["pass_at_k"])
        series = {"greedy": ("greedy_accuracy", lambda e: e.get("greedy_accuracy")),
                  f"avg@{k}": ("sampled_accuracy", lambda e: e.get("sampled_accuracy")),
                  f"pass@{k}": (f"pass@{k}", lambda e: e["pass_at_k"].get(str(k))),
                  f"maj@{k}": (f"maj@{k}", lambda e: (e.get("maj_at_k") or {}).get(str(k)))}
        values = {lbl: [get(r.eval) for r in done] for lbl, (_, get) in series.items()}
        errors = {lbl: [(r.eval.get("ci95") or {}).get(ci) for r in done] for lbl, (ci, _) in series.items()}
        grouped_bars([run_label(r, keys) for r in done], values, out / "compare.png",
                     f"Sweep {sweep_dir.parent.name}/{sweep_dir.name}: final-stage accuracy (95% CI)",
                     "accuracy", errors=errors, ylim=(0, 1.05))
        text.append("![compare](compare.png)")
    (out / "compare.json").write_text(json.dumps(
        [{"job": r.job, "overrides": r.overrides, "stage": r.stage, "eval": r.eval} for r in runs], indent=2) + "\n")
    md = out / "compare.md"
    md.write_text("\n\n".join(text) + "\n")
    print(markdown(head, rows))
    return md


def main(argv: list[str] | None = None) -> None:
    from r1lab.config.errors import USER_ERRORS, fail
    from r1lab.eval.config import CompareConfig
    from r1lab.eval.report import parse_cli

    try:
        cfg = parse_cli(CompareConfig, sys.argv[1:] if argv is None else argv,
                        "r1lab-compare sweep_dir=<multirun/<name>/<timestamp>> [out_dir=<dir>]\n" + (__doc__ or ""))
        md = write_compare(Path(cfg.sweep_dir), Path(cfg.out_dir) if cfg.out_dir else None)
        print(f"[r1lab-compare] wrote {md}")
    except USER_ERRORS as err:
        fail(err)


if __name__ == "__main__":
    main()


__all__ = ["SweepRun", "compare_table", "distinguishing_keys", "fmt", "load_sweep", "write_compare"]
