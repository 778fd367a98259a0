"""`r1lab-compare sweep_dir=<dir>`: one table and one plot over the runs of a Hydra sweep.

A sweep (``r1lab -m recipe=ablation_kl stages.grpo.kl.coef=0.0,0.04``) writes
``multirun/<name>/<timestamp>/<job>/``, each a run directory with ``.hydra/overrides.yaml``
(the job's command-line overrides), ``summary.json`` and ``stages/*/eval.json``. Rows are the
runs, labelled by the overrides whose values differ between jobs (the ones shared by every job,
like ``recipe=...``, are left out); columns are the figures of each run's final stage.
Unfinished runs are listed with their last finished stage (or none).

Writes ``compare.md``, ``compare.json`` and ``compare.png`` (greedy, avg@k, pass@k and maj@k
per run with 95% bootstrap intervals) into the sweep directory (or ``out_dir``).

Seeds (``r1lab.eval.seed_bands``): runs whose overrides differ only in seed-like keys
(``seed_keys``: ``seed``, ``*.seed``) form an *arm*. When an arm has several seeds, or
``metrics``/``curves`` are named, compare.md also gets one row per arm: each figure's mean, sample
std (ddof=1), min and max over its seeds and their number n, with ``compare-arms.json`` (the same
numbers, per-seed values included) and ``compare-arms.png`` (bars at the mean, min..max whiskers,
one dot per seed). ``metrics``: eval.json figures by dotted path (``pass_at_k.4``,
``by_difficulty.hard.greedy_accuracy``; default the headline figures); ``curves``: metrics.jsonl
names, plotted per step as the mean over seeds with a shaded band (``band``: ``minmax`` or
``std``, mean ± one sample std) in ``compare-curves.png``; ``stage``: the stage they are read
from (default each run's final stage). A name no run has fails, listing those that exist.
"""
from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import yaml

from r1lab.eval.seed_bands import BANDS, SEED_KEYS, Arm, arm_keys, arm_label, curve_spread, figure, figure_paths, group_arms, spread
from r1lab.eval.tables import arms_table, fmt, headline, markdown


@dataclass
class SweepRun:
    job: str  # the job's directory name (Hydra's job number)
    overrides: dict[str, str]  # key -> value of the job's command-line overrides
    stage: str | None  # the final stage with an eval.json
    eval: dict[str, Any] | None  # its eval.json
    path: Path | None = None  # the run directory


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
        runs.append(SweepRun(d.name, _overrides(d), stage, ev, d))
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


def stage_dir(run: SweepRun, stage: str | None) -> Path | None:
    """The run's directory of ``stage`` (a directory name, ``02-grpo``, or a stage name, ``grpo``;
    None: the run's final stage), or None when the run has none."""
    name = stage or run.stage
    root = run.path / "stages" if run.path else None
    if not name or root is None or not root.is_dir():
        return None
    if (root / name).is_dir():
        return root / name
    found = sorted(d for d in root.iterdir() if d.is_dir() and d.name.split("-", 1)[-1] == name)
    return found[-1] if found else None


def stage_eval(run: SweepRun, stage: str | None) -> dict | None:
    """The eval.json of ``stage`` (None: the final stage's, as the per-run table reads it)."""
    if stage is None:
        return run.eval
    d = stage_dir(run, stage)
    return json.loads((d / "eval.json").read_text()) if d and (d / "eval.json").is_file() else None


def stage_curves(run: SweepRun, stage: str | None) -> dict[str, dict[int, float]]:
    """Every number the stage's metrics.jsonl logs, as ``{name: {step: value}}`` (a step logged
    twice, after a resume, keeps its last value)."""
    d = stage_dir(run, stage)
    path = d / "metrics.jsonl" if d else None
    out: dict[str, dict[int, float]] = {}
    if path is None or not path.is_file():
        return out
    for line in path.read_text().splitlines():
        row = json.loads(line) if line.strip() else {}
        if "step" not in row:
            continue
        for name, value in row.items():
            if name != "step" and isinstance(value, (int, float)) and not isinstance(value, bool):
                out.setdefault(name, {})[int(row["step"])] = float(value)
    return out


def default_metrics(evals: list[dict]) -> list[str]:
    """The headline figures as dotted paths: greedy, avg@k, pass@K, maj@K, format, length."""
    k = max(int(x) for x in evals[0]["pass_at_k"]) if evals and evals[0].get("pass_at_k") else 1
    return ["greedy_accuracy", "sampled_accuracy", f"pass_at_k.{k}", f"maj_at_k.{k}", "format_rate", "mean_response_length"]


def arm_figures(runs: list[SweepRun], arms: list[Arm], metrics: list[str], stage: str | None) -> dict[str, list[dict]]:
    """``{metric: [spread + per-seed values, one per arm]}``; ``ValueError`` naming the figures
    that exist when a metric is in no run's eval.json."""
    evals = [stage_eval(r, stage) for r in runs]
    where = f"stage {stage}" if stage else "the final stage"
    if not any(evals):
        raise ValueError(f"metrics: no run of the sweep has an eval.json of {where}; check stage=")
    metrics = metrics or default_metrics([e for e in evals if e])
    out: dict[str, list[dict]] = {}
    for name in metrics:
        per_run = [figure(e, name) if e else None for e in evals]
        if all(v is None for v in per_run):
            known = sorted({p for e in evals if e for p in figure_paths(e)})
            raise ValueError(f"metrics: {name!r} is no number of any run's eval.json ({where}); figures there: {', '.join(known)}")
        out[name] = [{**spread([per_run[i] for i in a.runs]), "values": [per_run[i] for i in a.runs]} for a in arms]
    return out


def arm_curves(runs: list[SweepRun], arms: list[Arm], curves: list[str], stage: str | None) -> dict[str, list[dict]]:
    """``{curve: [curve_spread, one per arm]}`` from each run's metrics.jsonl of ``stage``;
    ``ValueError`` listing the logged names when a curve is logged by no run."""
    logged = [stage_curves(r, stage) for r in runs]
    out: dict[str, list[dict]] = {}
    for name in curves:
        if not any(name in c for c in logged):
            known = sorted({n for c in logged for n in c})
            where = f"stage {stage}" if stage else "the final stage"
            hint = f"metrics logged there: {', '.join(known)}" if known else "no run has a metrics.jsonl there; check stage="
            raise ValueError(f"curves: {name!r} is logged by no run's metrics.jsonl ({where}); {hint}")
        out[name] = [curve_spread([logged[i].get(name, {}) for i in a.runs]) for a in arms]
    return out


def _run_bars(done: list[SweepRun], keys: list[str], path: Path, title: str) -> None:
    """compare.png: greedy, avg@k, pass@k and maj@k per finished run, with 95% intervals."""
    from r1lab.eval.plots import grouped_bars

    k = max(int(x) for x in done[0].eval["pass_at_k"])
    series = {"greedy": ("greedy_accuracy", lambda e: e.get("greedy_accuracy")),
              f"avg@{k}": ("sampled_accuracy", lambda e: e.get("sampled_accuracy")),
              f"pass@{k}": (f"pass@{k}", lambda e: e["pass_at_k"].get(str(k))),
              f"maj@{k}": (f"maj@{k}", lambda e: (e.get("maj_at_k") or {}).get(str(k)))}
    values = {lbl: [get(r.eval) for r in done] for lbl, (_, get) in series.items()}
    errors = {lbl: [(r.eval.get("ci95") or {}).get(ci) for r in done] for lbl, (ci, _) in series.items()}
    grouped_bars([run_label(r, keys) for r in done], values, path, f"{title}: final-stage accuracy (95% CI)",
                 "accuracy", errors=errors, ylim=(0, 1.05))


@dataclass
class SeedBands:
    """What ``r1lab-compare`` reports per arm: the arms, their labels, and the spread over seeds of
    each figure (``arm_figures``) and curve (``arm_curves``)."""

    arms: list[Arm]
    labels: list[str]
    figures: dict[str, list[dict]]
    curves: dict[str, list[dict]]
    stage: str | None
    band: str

    def to_json(self, runs: list[SweepRun]) -> list[dict]:
        """compare-arms.json: one entry per arm, its jobs, seeds, figures and curves."""
        return [{"label": lbl, "overrides": a.overrides, "jobs": [runs[i].job for i in a.runs], "seeds": a.seeds,
                 "stage": self.stage, "metrics": {m: v[j] for m, v in self.figures.items()},
                 "curves": {c: v[j] for c, v in self.curves.items()}}
                for j, (a, lbl) in enumerate(zip(self.arms, self.labels))]


def seed_bands(runs: list[SweepRun], metrics: Sequence[str] = (), curves: Sequence[str] = (), stage: str | None = None,
               band: str = "minmax", seed_keys: Sequence[str] = SEED_KEYS) -> SeedBands | None:
    """The arms' spreads over seeds (module docstring); None when no arm has several runs and no
    metric or curve is named (a sweep without seeds: the per-run table says it all)."""
    if band not in BANDS:
        raise ValueError(f"band={band!r}; valid: {', '.join(BANDS)}")
    arms = group_arms([r.overrides for r in runs], seed_keys)
    if not metrics and not curves and all(len(a.runs) < 2 for a in arms):
        return None
    keys = arm_keys(arms)
    labels = [arm_label(a, keys) for a in arms]
    figures = arm_figures(runs, arms, list(metrics), stage)
    return SeedBands(arms, labels, figures, arm_curves(runs, arms, list(curves), stage), stage, band)


def _write_seed_bands(bands: SeedBands, runs: list[SweepRun], out: Path, title: str) -> list[str]:
    """compare-arms.json and the arm plots; the markdown parts of compare.md."""
    from r1lab.eval.plots import arm_bars, band_curves

    (out / "compare-arms.json").write_text(json.dumps(bands.to_json(runs), indent=2) + "\n")
    where = f"stage {bands.stage}" if bands.stage else "each run's final stage"
    text = [f"## Arms over seeds ({where})",
            "mean ± std [min, max] over an arm's seeds (std: sample, ddof=1; – with one seed); n: seeds with the figure.",
            arms_table(bands.labels, [len(a.runs) for a in bands.arms], bands.figures)]
    arm_bars(bands.labels, bands.figures, out / "compare-arms.png", f"{title}: mean over seeds, min..max, one dot per seed")
    text.append("![arms](compare-arms.png)")
    if bands.curves:
        shade = "min..max over seeds" if bands.band == "minmax" else "mean ± one sample std"
        band_curves(bands.labels, bands.curves, out / "compare-curves.png", f"{title}: mean over seeds, band {shade}", bands.band)
        text += [f"Curves: the mean over each arm's seeds per step, shaded {shade}.", "![curves](compare-curves.png)"]
    return text


def write_compare(sweep_dir: Path, out_dir: Path | None = None, *, metrics: Sequence[str] = (), curves: Sequence[str] = (),
                  stage: str | None = None, band: str = "minmax", seed_keys: Sequence[str] = SEED_KEYS) -> Path:
    """Write ``compare.md``, ``compare.json`` and ``compare.png`` (and, with arms over seeds,
    ``compare-arms.json``, ``compare-arms.png``, ``compare-curves.png``); return the markdown path."""
    sweep_dir = Path(sweep_dir)
    runs = load_sweep(sweep_dir)
    bands = seed_bands(runs, metrics, curves, stage, band, seed_keys)  # bad names fail before any file is written
    out = Path(out_dir) if out_dir else sweep_dir
    out.mkdir(parents=True, exist_ok=True)
    head, rows = compare_table(runs)
    keys = distinguishing_keys(runs)
    done = [r for r in runs if r.eval]
    title = f"Sweep {sweep_dir.parent.name}/{sweep_dir.name}"
    text = [f"# Sweep {sweep_dir}", f"{len(runs)} runs, {len(done)} with a final eval; figures of each run's final stage.",
            markdown(head, rows)]
    if done:
        _run_bars(done, keys, out / "compare.png", title)
        text.append("![compare](compare.png)")
    if bands is not None:
        text += _write_seed_bands(bands, runs, out, title)
    (out / "compare.json").write_text(json.dumps(
        [{"job": r.job, "overrides": r.overrides, "stage": r.stage, "eval": r.eval} for r in runs], indent=2) + "\n")
    md = out / "compare.md"
    md.write_text("\n\n".join(text) + "\n")
    print(markdown(head, rows))
    if bands is not None:
        print(arms_table(bands.labels, [len(a.runs) for a in bands.arms], bands.figures))
    return md


def main(argv: list[str] | None = None) -> None:
    from r1lab.config.errors import USER_ERRORS, fail
    from r1lab.eval.config import CompareConfig
    from r1lab.eval.report import parse_cli

    try:
        cfg = parse_cli(CompareConfig, sys.argv[1:] if argv is None else argv,
                        "r1lab-compare sweep_dir=<multirun/<name>/<timestamp>> [out_dir=<dir>] [metrics=[greedy_accuracy,pass_at_k.4]] "
                        "[curves=[reward]] [stage=02-grpo] [band=minmax|std]\n" + (__doc__ or ""))
        md = write_compare(Path(cfg.sweep_dir), Path(cfg.out_dir) if cfg.out_dir else None, metrics=cfg.metrics,
                           curves=cfg.curves, stage=cfg.stage, band=cfg.band, seed_keys=cfg.seed_keys)
        print(f"[r1lab-compare] wrote {md}")
    except USER_ERRORS as err:
        fail(err)


if __name__ == "__main__":
    main()


__all__ = ["SeedBands", "SweepRun", "arm_curves", "arm_figures", "compare_table", "distinguishing_keys", "fmt", "load_sweep",
           "seed_bands", "stage_curves", "stage_eval", "write_compare"]
