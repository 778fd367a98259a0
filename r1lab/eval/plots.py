"""Matplotlib figures of reports, sweeps (per run, and per arm over seeds) and test-time scaling (Agg backend, PNG files)."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import matplotlib.ticker  # noqa: E402
import numpy as np  # noqa: E402


def _save(fig, path: Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def scaling_plot(rows: list[dict], path: Path, title: str = "Test-time scaling") -> Path:
    """Accuracy (pass@k solid, maj@k dashed) against generated tokens per problem and against
    wall time; one colour per token budget, one marker per number of samples."""
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    budgets = sorted({r["max_new_tokens"] for r in rows})
    colours = plt.cm.viridis(np.linspace(0.1, 0.85, max(1, len(budgets))))
    for ax, x_key, x_label in (
        (axes[0], "tokens_per_problem", "generated tokens per problem (all samples)"),
        (axes[1], "seconds", "generation wall time (s, estimated per k)"),
    ):
        for colour, budget in zip(colours, budgets):
            sel = sorted((r for r in rows if r["max_new_tokens"] == budget), key=lambda r: r["samples"])
            x = [max(r[x_key], 1e-9) for r in sel]
            ax.plot(x, [r["pass_at_k"] for r in sel], "-o", color=colour, label=f"pass@k, max {budget} tokens")
            ax.plot(x, [r["maj_at_k"] for r in sel], "--s", color=colour, alpha=0.8, label=f"maj@k, max {budget} tokens")
            for r, xi in zip(sel, x):
                ax.annotate(f"k={r['samples']}", (xi, r["pass_at_k"]), textcoords="offset points", xytext=(3, 4), fontsize=7)
        ax.set_xscale("log", base=2)
        ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}"))
        ax.set_xlabel(x_label)
        ax.set_ylabel("accuracy")
        ax.set_ylim(-0.02, 1.02)
        ax.grid(alpha=0.3)
    axes[0].set_title("accuracy vs generated tokens")
    axes[1].set_title("accuracy vs wall time")
    axes[1].legend(fontsize=7, loc="best")
    fig.suptitle(title)
    return _save(fig, path)


def curves_plot(
    series: dict[str, dict[str, tuple[Sequence[float], Sequence[float]]]],
    path: Path,
    title: str,
    xlabel: str = "optimizer step",
) -> Path:
    """A grid with one panel per metric; ``series[metric][line label] = (steps, values)``."""
    names = list(series)
    cols = min(3, max(1, len(names)))
    rows = (len(names) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(5 * cols, 3.6 * rows), squeeze=False)
    for ax, name in zip(axes.flat, names):
        for label, (x, y) in series[name].items():
            ax.plot(x, y, label=label, marker="." if len(x) < 30 else None)
        ax.set_title(name)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(name)
        ax.ticklabel_format(axis="y", style="sci", scilimits=(-3, 4), useOffset=False)
        ax.grid(alpha=0.3)
        if len(series[name]) > 1 or any(lbl for lbl in series[name]):
            ax.legend(fontsize=8)
    for ax in list(axes.flat)[len(names):]:
        ax.axis("off")
    fig.suptitle(title)
    return _save(fig, path)


def grouped_bars(
    groups: Sequence[str],
    values: dict[str, Sequence[float | None]],
    path: Path,
    title: str,
    ylabel: str,
    errors: dict[str, Sequence[tuple[float, float] | None]] | None = None,
    ylim: tuple[float, float] | None = None,
) -> Path:
    """One group of bars per entry of ``groups``, one bar per series of ``values`` (with optional
    [lo, hi] error bars)."""
    n = max(1, len(values))
    width = 0.8 / n
    x = np.arange(len(groups))
    fig, ax = plt.subplots(figsize=(max(6, 1.2 * len(groups) * max(1, n / 2) + 2), 4.5))
    for i, (label, vals) in enumerate(values.items()):
        v = np.array([np.nan if a is None else a for a in vals], dtype=float)
        yerr = None
        if errors and label in errors:
            lo = [v[j] - e[0] if e else 0.0 for j, e in enumerate(errors[label])]
            hi = [e[1] - v[j] if e else 0.0 for j, e in enumerate(errors[label])]
            yerr = np.clip(np.nan_to_num(np.array([lo, hi])), 0, None)
        ax.bar(x + (i - (n - 1) / 2) * width, np.nan_to_num(v), width, yerr=yerr, capsize=3, label=label)
    ax.set_xticks(x)
    ax.set_xticklabels(groups, rotation=20 if max((len(g) for g in groups), default=0) > 12 else 0, ha="right" if max((len(g) for g in groups), default=0) > 12 else "center", fontsize=8)
    ax.set_ylabel(ylabel)
    if ylim:
        ax.set_ylim(*ylim)
    ax.set_title(title)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, path)


def templates_plot(study: dict, path: Path, title: str = "Template sensitivity") -> Path:
    """``studies.templates``: left, greedy / sampled accuracy and format rate per template
    (grouped bars); middle, the share of sampled completions showing each behaviour; right, the
    mean response length. Skipped templates are left out."""
    from r1lab.rewards.behaviours import BEHAVIOURS

    used = [t for t, fig in study.items() if "skipped" not in fig]
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.5), gridspec_kw={"width_ratios": [3, 3, 1.6]})
    x = np.arange(len(used))

    def bars(ax, series: dict[str, list], ylabel: str, ylim=None):
        n = max(1, len(series))
        width = 0.8 / n
        for i, (label, vals) in enumerate(series.items()):
            ax.bar(x + (i - (n - 1) / 2) * width, np.nan_to_num(np.array([np.nan if v is None else v for v in vals], float)), width, label=label)
        ax.set_xticks(x)
        ax.set_xticklabels(used)
        ax.set_ylabel(ylabel)
        if ylim:
            ax.set_ylim(*ylim)
        ax.grid(axis="y", alpha=0.3)

    bars(axes[0], {lbl: [study[t].get(key) for t in used] for lbl, key in
                   (("greedy accuracy", "greedy_accuracy"), ("sampled accuracy", "sampled_accuracy"), ("format rate", "format_rate"))},
         "share", (0, 1.02))
    axes[0].set_title("accuracy and format")
    axes[0].legend(fontsize=8)
    bars(axes[1], {b: [((study[t].get("behaviours") or {}).get(b) or {}).get("rate") for t in used] for b in BEHAVIOURS},
         "share of sampled completions", (0, 1.02))
    axes[1].set_title("behaviours")
    axes[1].legend(fontsize=7)
    bars(axes[2], {"mean length": [study[t].get("mean_response_length") for t in used]}, "tokens")
    axes[2].set_title("mean response length")
    skipped = [t for t in study if t not in used]
    fig.suptitle(title + (f" (skipped: {', '.join(skipped)})" if skipped else ""))
    return _save(fig, path)


def perplexity_bridge_plot(study: dict, path: Path, title: str = "Perplexity bridge") -> Path:
    """``studies.perplexity_bridge``: one point per problem, x = the gold answer's perplexity
    without reasoning, y = with the model's reasoning (log axes); below the diagonal the
    reasoning lowered it. Colour: whether the greedy answer was correct."""
    probs = study["problems"]
    fig, ax = plt.subplots(figsize=(5.5, 5))
    xa = np.array([p["perplexity_without"] for p in probs], float)
    ya = np.array([p["perplexity_with"] for p in probs], float)
    ok = np.array([p["greedy_correct"] > 0 for p in probs], bool)
    if len(probs):
        ax.scatter(xa[~ok], ya[~ok], s=22, alpha=0.75, label="greedy answer wrong")
        if ok.any():
            ax.scatter(xa[ok], ya[ok], s=22, alpha=0.75, label="greedy answer right")
        finite = np.concatenate([xa, ya])
        finite = finite[np.isfinite(finite) & (finite > 0)]
        lo, hi = (finite.min() / 1.3, finite.max() * 1.3) if finite.size else (1.0, 10.0)
        ax.plot([lo, hi], [lo, hi], "k--", lw=1, label="y = x")
        ax.set_xlim(lo, hi)
        ax.set_ylim(lo, hi)
    ax.set_xscale("log")
    ax.set_yscale("log")
    for axis in (ax.xaxis, ax.yaxis):  # plain numbers at 1, 2, 5 x 10^n: log ranges here are narrow
        axis.set_major_locator(matplotlib.ticker.LogLocator(subs=(1.0, 2.0, 5.0)))
        axis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}"))
        axis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax.set_xlabel("gold answer perplexity, question alone")
    ax.set_ylabel("gold answer perplexity, question + model's reasoning")
    share = study.get("share_lower")
    ax.set_title(f"{title}\nlower with reasoning: {share:.0%} of {len(probs)}" if share is not None else title, fontsize=10)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    return _save(fig, path)


def _panels(n: int, width: float = 5.0, height: float = 3.6):
    """A grid of ``n`` panels, at most 3 a row; the unused ones hidden."""
    cols = min(3, max(1, n))
    rows = (n + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(width * cols, height * rows), squeeze=False)
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    return fig, list(axes.flat)[:n]


def arm_bars(labels: Sequence[str], figures: dict[str, list[dict]], path: Path, title: str) -> Path:
    """One panel per figure: a bar per arm at its mean over seeds, whiskers min..max, one dot per
    seed. ``figures[name][arm]`` holds ``mean``, ``min``, ``max`` and ``values`` (one per run)."""
    fig, axes = _panels(len(figures), width=max(4.0, 1.1 * len(labels) + 2))
    x = np.arange(len(labels))
    for ax, (name, arms) in zip(axes, figures.items()):
        mean = np.array([np.nan if a["mean"] is None else a["mean"] for a in arms], float)
        lo = np.array([np.nan if a["min"] is None else a["min"] for a in arms], float)
        hi = np.array([np.nan if a["max"] is None else a["max"] for a in arms], float)
        ax.bar(x, np.nan_to_num(mean), 0.6, alpha=0.6)
        # clipped: the mean of equal values can differ from them by a rounding error
        ax.errorbar(x, mean, yerr=np.clip(np.nan_to_num(np.array([mean - lo, hi - mean])), 0, None), fmt="none", ecolor="k", capsize=4)
        for j, a in enumerate(arms):
            vals = [v for v in a.get("values", []) if v is not None]
            if vals:  # the seeds side by side, so equal values stay visible
                ax.scatter(x[j] + np.linspace(-0.12, 0.12, len(vals)), vals, s=14, color="k", zorder=3)
        ax.set_xticks(x)
        ax.set_xticklabels(labels, rotation=20 if max((len(lbl) for lbl in labels), default=0) > 12 else 0, ha="right", fontsize=8)
        ax.set_title(name)
        ax.grid(axis="y", alpha=0.3)
    fig.suptitle(title)
    return _save(fig, path)


def band_curves(labels: Sequence[str], curves: dict[str, list[dict]], path: Path, title: str, band: str = "minmax",
                xlabel: str = "optimizer step") -> Path:
    """One panel per metric: per arm, the mean over seeds per step and a shaded band (``band``:
    ``minmax`` or ``std``, ``r1lab.eval.seed_bands.band``). ``curves[name][arm]`` is a ``curve_spread``."""
    from r1lab.eval.seed_bands import band as band_of

    fig, axes = _panels(len(curves))
    for ax, (name, arms) in zip(axes, curves.items()):
        for label, curve in zip(labels, arms):
            if not curve["step"]:
                continue
            lo, hi = band_of(curve, band)
            line = ax.plot(curve["step"], curve["mean"], label=label, marker="." if len(curve["step"]) < 30 else None)[0]
            ax.fill_between(curve["step"], lo, hi, color=line.get_color(), alpha=0.2, linewidth=0)
        ax.set_title(name)
        ax.set_xlabel(xlabel)
        ax.ticklabel_format(axis="y", style="sci", scilimits=(-3, 4), useOffset=False)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(title)
    return _save(fig, path)
