"""Held-out evaluation during training (``eval.every``): logged like training metrics, and it does
not change the training itself."""
import json

import pytest

from tests.helpers import MICRO, run_cli

pytestmark = pytest.mark.slow

SFT_ONLY = [*MICRO, "stages.grpo=null", "eval.initial=false", "stages.cold_start.steps=4"]


def rows(run_dir):
    path = run_dir / "stages/01-cold_start/metrics.jsonl"
    return [json.loads(x) for x in path.read_text().splitlines()]


def test_eval_every_logs_eval_figures_without_changing_training(tmp_path):
    plain = run_cli(*SFT_ONLY, f"run_dir={tmp_path / 'plain'}")
    assert plain.returncode == 0, plain.stderr[-3000:]
    evaluated = run_cli(
        *SFT_ONLY, "eval.every=2", "eval.every_num_problems=4", "eval.every_samples=2", f"run_dir={tmp_path / 'eval'}"
    )
    assert evaluated.returncode == 0, evaluated.stderr[-3000:]

    train_rows = [r for r in rows(tmp_path / "eval") if "loss" in r]
    eval_rows = [r for r in rows(tmp_path / "eval") if "eval/sampled_accuracy" in r]
    # every 2 steps, not at the last step (the pipeline's own evaluation covers the final model)
    assert [r["step"] for r in eval_rows] == [2]
    for key in ("eval/greedy_accuracy", "eval/sampled_accuracy", "eval/format_rate"):
        assert 0.0 <= eval_rows[0][key] <= 1.0
    assert eval_rows[0]["eval/mean_response_length"] > 0
    assert eval_rows[0]["eval/behaviour/verification"] >= 0.0
    # the evaluation leaves training exactly as it was (no RNG drawn, train mode restored)
    assert [r["loss"] for r in train_rows] == [r["loss"] for r in rows(tmp_path / "plain")]
