"""Hand-written run and sweep directories in the layout the pipeline and Hydra write."""
from __future__ import annotations

import json
import math
from pathlib import Path

import yaml

BEHAVIOURS = ("verification", "backtracking", "subgoal", "backward_chaining", "reflection")


def fake_eval(acc: float, behaviour_scale: float = 1.0) -> dict:
    return {
        "split": "test",
        "num_problems": 100,
        "greedy_accuracy": acc,
        "sampled_accuracy": acc * 0.8,
        "samples_per_problem": 4,
        "temperature": 1.0,
        "top_p": 1.0,
        "pass_at_k": {"1": acc * 0.8, "2": min(1.0, acc * 1.1), "4": min(1.0, acc * 1.3)},
        "avg_at_k": {"1": acc * 0.8, "2": acc * 0.8, "4": acc * 0.8},
        "maj_at_k": {"1": acc * 0.8, "2": acc * 0.85, "4": acc * 0.95},
        "format_rate": min(1.0, 0.2 + acc),
        "mean_response_length": 40 + 60 * acc,
        "answer_distance": 100 * (1 - acc),
        "answer_distance_cap": 100.0,
        "max_new_tokens": 160,
        "seconds": 1.0,
        "ci95": {
            "greedy_accuracy": [max(0.0, acc - 0.05), min(1.0, acc + 0.05)],
            "sampled_accuracy": [max(0.0, acc * 0.8 - 0.05), min(1.0, acc * 0.8 + 0.05)],
            "pass@4": [max(0.0, acc * 1.3 - 0.05), min(1.0, acc * 1.3 + 0.05)],
            "maj@4": [max(0.0, acc * 0.95 - 0.05), min(1.0, acc * 0.95 + 0.05)],
        },
        "by_difficulty": {
            "easy": {"num_problems": 20, "greedy_accuracy": min(1.0, acc * 1.5), "sampled_accuracy": acc},
            "hard": {"num_problems": 50, "greedy_accuracy": acc * 0.5, "sampled_accuracy": acc * 0.4},
        },
        "behaviours": {
            b: {"mean": behaviour_scale * (i + 1) * 0.3, "rate": min(1.0, behaviour_scale * 0.2 * (i + 1))}
            for i, b in enumerate(BEHAVIOURS)
        },
    }


def make_run(run_dir: Path, accs=(0.05, 0.4, 0.62), with_samples: bool = True, overrides: list[str] | None = None) -> Path:
    """A finished run: start model, cold_start (sft) and grpo stages."""
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.yaml").write_text(
        yaml.safe_dump({"name": "fake", "model": {"name_or_path": "tiny", "template": "r1_zero_short"},
                        "task": {"name": "countdown", "question_style": "short"}, "eval": {"samples": 4}})
    )
    names = ["00-start", "01-cold_start", "02-grpo"]
    summary = {}
    for i, (name, acc) in enumerate(zip(names, accs)):
        d = run_dir / "stages" / name
        d.mkdir(parents=True, exist_ok=True)
        ev = fake_eval(acc, behaviour_scale=i)
        (d / "eval.json").write_text(json.dumps(ev))
        summary[name] = ev
        if name == "01-cold_start":
            rows = [{"step": s, "loss": 3.0 * math.exp(-s / 15) + 0.4, "lr": 1e-3} for s in range(1, 41)]
        elif name == "02-grpo":
            rows = []
            for s in range(1, 31):
                acc_s = 0.4 + 0.22 * s / 30
                rows.append({"step": s, "loss": 0.01 * math.sin(s), "reward": acc_s + 0.1, "reward/countdown": acc_s,
                             "reward/format": 0.9 + 0.003 * s, "accuracy": acc_s, "response_length": 60 + s,
                             "kl": 0.001 * s, "entropy": 0.8 - 0.01 * s, "lr": 1e-4,
                             "behaviour/verification": 1.0, "behaviour/reflection": 0.1 * s})
            rows.append({"step": 30, "eval/greedy_accuracy": 0.62, "eval/mean_response_length": 71.0,
                         "eval/seconds": 3.0, "eval/behaviour/verification": 0.9})
        else:
            rows = []
        if rows:
            (d / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
        if i > 0:
            (d / "done.json").write_text("{}")
        if with_samples:
            recs = [
                {"problem": 0, "kind": "greedy", "sample": 0, "question": "Use 3 5 7 to make 22.", "numbers": [3, 5, 7],
                 "target": 22, "response": "<think>7*5=35 35-3=32 no\n5*3=15 15+7=22 yes\ncheck 5*3+7=22 ok\n</think>\n<answer>5*3+7</answer>",
                 "correct": 1.0, "format": 1.0, "length": 70, "verification": 1, "backtracking": 1, "subgoal": 0,
                 "backward_chaining": 0, "reflection": 0},
                {"problem": 0, "kind": "sample", "sample": 0, "question": "Use 3 5 7 to make 22.", "numbers": [3, 5, 7],
                 "target": 22, "response": "<think>7+5=12 12+3=15 yes\n</think>\n<answer>7+5+3</answer>",
                 "correct": 0.0, "format": 1.0, "length": 45, "verification": 0, "backtracking": 0, "subgoal": 0,
                 "backward_chaining": 0, "reflection": 0},
            ]
            (d / "eval-countdown-test").mkdir(exist_ok=True)
            (d / "eval-countdown-test" / "samples.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
    (run_dir / "summary.json").write_text(json.dumps(summary))
    if overrides is not None:
        (run_dir / ".hydra").mkdir(exist_ok=True)
        (run_dir / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    return run_dir


def make_sweep(sweep_dir: Path) -> Path:
    """A 2x2 Hydra multirun: reduction x KL, plus the recipe override common to all jobs."""
    accs = {0: 0.50, 1: 0.55, 2: 0.61, 3: 0.47}
    job = 0
    for reduction in ("seq_mean_token_mean", "seq_mean_token_sum_norm"):
        for kl in ("0.0", "0.04"):
            overrides = ["recipe=ablation_reduction", f"stages.grpo.loss.reduction={reduction}", f"stages.grpo.kl.coef={kl}"]
            make_run(sweep_dir / str(job), accs=(0.05, 0.4, accs[job]), with_samples=False, overrides=overrides)
            job += 1
    (sweep_dir / "multirun.yaml").write_text("hydra: {}\n")
    return sweep_dir


import pytest  # noqa: E402


@pytest.fixture
def fake_run(tmp_path):
    return make_run(tmp_path / "run")


@pytest.fixture
def fake_sweep(tmp_path):
    return make_sweep(tmp_path / "multirun" / "ablation_kl" / "2025-01-01_00-00-00")
