"""The calculator experiment of docs/benchmarks.md: GRPO with tool calls against GRPO without, at
about equal wall time, on the tiny Countdown model; 3 and 4 numbers, 3 seeds each.

Protocol (what the runs under ``--root`` are; all with ``engine.num_threads=1 tracking.progress_bar=false``):

* one cold start per arm and number count, seed 0, 400 steps (the recipes' own):
  ``r1lab recipe=r1_countdown_tiny stages.grpo=null`` and ``r1lab recipe=r1_countdown_tools
  stages.grpo=null`` (4 numbers: ``task.num_numbers=4 task.num_test_hard=0``);
* per seed (``seed=0,1,2``) each arm's GRPO stage from its cold start, two runs at a time on the
  machine: ``stages.cold_start=null stages.grpo.model=<cold start>/stages/01-cold_start/checkpoint
  eval.num_problems=200 eval.samples=8 eval.every_num_problems=100 eval.every_samples=2``, and
  - no tool: ``recipe=r1_countdown_tiny stages.grpo.steps=120 stages.grpo.entropy_from_step=60
    eval.every=30``, budget ``stages.grpo.max_new_tokens=100 eval.max_new_tokens=128`` (4 numbers:
    160 / 192);
  - tool (``tools``): ``recipe=r1_countdown_tools stages.grpo.steps=50 stages.grpo.entropy_from_step=25
    eval.every=12 stages.grpo.overlong=none`` (about the same wall time: a multi-turn step cost ~2.4x
    a plain one), budget 256 / 288;
* variants of the tool arm (run names ``n<3|4>_<arm>_s<seed>``): ``toolsmask``, ``stages.grpo.overlong=mask``
  (a completion cut at the budget gets no loss, DAPO's overlong filtering; the recipe's own now);
  ``toolsnoent``, ``overlong=none stages.grpo.entropy_coef=0`` (no entropy sharpening); ``check``, the ``countdown`` checker instead of
  the calculator: its own cold start ``stages.cold_start.trace_tool=countdown eval.tools.names=[countdown]``
  and GRPO with ``stages.grpo.tools.names=[countdown] eval.tools.names=[countdown] stages.grpo.overlong=none``;
* the cold starts evaluated the same way, at the end of their own run (``stages.grpo=null
  eval.initial=false eval.num_problems=200 eval.samples=8``, with the arm's eval budget: 4-number
  no-tool ``eval.max_new_tokens=192``; run names ``n3_tools_cold`` etc.) or by ``r1lab-eval
  model=<cold start stage dir>`` with the same settings.

    python bench/tools_experiment.py --root /tmp/exp      # the table of docs/benchmarks.md

Reads each run's ``stages/*/eval.json`` and GRPO ``metrics.jsonl``; prints one row per run and
the per-arm medians. "start"/"end": means over the first and last 10 GRPO steps.
"""
from __future__ import annotations

import argparse
import json
import re
import statistics
from pathlib import Path

ARMS = ("plain", "tools", "toolsmask", "toolsnoent", "check")  # no tool | calculator | with overlong=mask | without the entropy term | countdown checker
COLOURS = {"plain": "tab:blue", "tools": "tab:orange", "toolsmask": "tab:red", "toolsnoent": "tab:purple", "check": "tab:green"}
TRAIN = ("response_length", "tools/calls_per_completion", "behaviour/backtracking", "behaviour/verification",
         "behaviour/false_verification", "process/true_claim_share")


def grpo_dir(run: Path) -> Path:
    return next(d for d in sorted((run / "stages").iterdir()) if d.name.endswith("grpo"))


def train_figures(metrics: Path, window: int = 10) -> dict[str, tuple[float, float]]:
    rows = [json.loads(line) for line in metrics.read_text().splitlines()]
    steps = [r for r in rows if "loss" in r]
    out = {}
    for key in TRAIN:
        values = [r.get(key, 0.0) for r in steps]
        out[key] = (statistics.mean(values[:window]), statistics.mean(values[-window:]))
    out["seconds_per_step"] = (statistics.median(r["time_generate"] + r["time_train"] for r in steps),) * 2
    out["steps"] = (len(steps),) * 2
    return out


def wall_seconds(log: Path) -> float | None:
    m = re.search(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): (?:(\d+):)?(\d+):([\d.]+)", log.read_text())
    return None if not m else int(m.group(1) or 0) * 3600 + int(m.group(2)) * 60 + float(m.group(3))


def run_row(run: Path) -> dict:
    stage = grpo_dir(run)
    ev = json.loads((stage / "eval.json").read_text())
    row = {"run": run.name, "sampled": ev["sampled_accuracy"], "greedy": ev["greedy_accuracy"],
           "length": ev["mean_response_length"], "true_claims": ev["process"]["true_claim_share"],
           "correct_false_claim": ev["process"]["correct_with_false_claim"],
           "calls": ev.get("tools", {}).get("calls_per_completion", 0.0),
           "backtracking": ev["behaviours"]["backtracking"]["mean"]}
    train = train_figures(stage / "metrics.jsonl")
    for key, (start, end) in train.items():
        row[f"train/{key}"] = (start, end)
    log = run.with_suffix(".log")
    row["wall_s"] = wall_seconds(log) if log.exists() else None
    return row


def plot(runs: list[Path], out: Path) -> None:
    """Training curves of both arms, per number count: held-out sampled accuracy (in-training
    evaluations), response length, tool calls and backtracking phrases per completion."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [("eval/sampled_accuracy", "held-out sampled accuracy"), ("response_length", "response length (tokens)"),
              ("tools/calls_per_completion", "tool calls / completion"), ("behaviour/backtracking", "backtracking / completion")]
    fig, axes = plt.subplots(2, len(panels), figsize=(4 * len(panels), 6.5), squeeze=False)
    for run in runs:
        n, arm = run.name.split("_")[0], run.name.split("_")[1]
        rows = [json.loads(line) for line in (grpo_dir(run) / "metrics.jsonl").read_text().splitlines()]
        for j, (key, title) in enumerate(panels):
            pts = [(r["step"], r[key]) for r in rows if key in r]
            if not pts:
                continue
            ax = axes[0 if n == "n3" else 1][j]
            ax.plot(*zip(*pts), color=COLOURS[arm], alpha=0.6, lw=1,
                    label=arm if run.name.endswith("s0") else None)
            ax.set_title(f"{n[1]} numbers: {title}", fontsize=9)
    for ax in axes.flat:
        ax.set_xlabel("GRPO step", fontsize=8)
        if ax.lines:
            ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=110)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", type=Path, default=Path("/tmp/exp"))
    ap.add_argument("--plot", type=Path, default=None, help="write the training curves here (png)")
    args = ap.parse_args()
    done = [r for r in sorted(args.root.glob("n[34]_*_s[0-9]")) if any((r / "stages").glob("*grpo/eval.json"))]
    rows = [run_row(r) for r in done]
    for r in rows:
        t = {k[6:]: v for k, v in r.items() if k.startswith("train/")}
        print(f"{r['run']:16s} sampled {r['sampled']:.3f} greedy {r['greedy']:.3f} len {r['length']:5.1f} "
              f"calls {r['calls']:.2f} backtrack {r['backtracking']:.2f} true-claims {r['true_claims']:.3f} "
              f"correct|false-claim {r['correct_false_claim']:.3f} | train len {t['response_length'][0]:.0f}->{t['response_length'][1]:.0f} "
              f"calls {t['tools/calls_per_completion'][0]:.2f}->{t['tools/calls_per_completion'][1]:.2f} "
              f"backtrack {t['behaviour/backtracking'][0]:.2f}->{t['behaviour/backtracking'][1]:.2f} "
              f"steps {t['steps'][0]:.0f} s/step {t['seconds_per_step'][0]:.1f} wall {r['wall_s']}"
              )
    print(json.dumps(rows, indent=1, default=float), file=open(args.root / "summary.json", "w"))
    for cold in sorted(args.root.glob("n[34]_*_cold")):
        path = cold / "stages" / "01-cold_start" / "eval.json"
        if path.exists():
            ev = json.loads(path.read_text())
            print(f"{cold.name:16s} sampled {ev['sampled_accuracy']:.3f} greedy {ev['greedy_accuracy']:.3f} "
                  f"len {ev['mean_response_length']:5.1f} calls {ev.get('tools', {}).get('calls_per_completion', 0.0):.2f} "
                  f"backtrack {ev['behaviours']['backtracking']['mean']:.2f} true-claims {ev['process']['true_claim_share']:.3f}")
    for arm in ARMS:
        for n in ("n3", "n4"):
            mine = [r for r in rows if r["run"].startswith(f"{n}_{arm}_")]
            if mine:
                values = [r["sampled"] for r in mine]
                listed = ", ".join(f"{v:.3f}" for v in values)
                print(f"{n} {arm:5s}: sampled median {statistics.median(values):.3f} ({listed})")
    if args.plot:
        plot(done, args.plot)


if __name__ == "__main__":
    main()
