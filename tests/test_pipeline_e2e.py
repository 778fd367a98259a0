"""The two-stage pipeline end to end on a micro model: run directory, checkpoint, resume."""
import json

import pytest
import torch
from transformers import AutoModelForCausalLM

from tests.helpers import MICRO, run_cli

pytestmark = pytest.mark.slow

EVAL_KEYS = {"num_problems", "greedy_accuracy", "sampled_accuracy", "pass_at_k", "format_rate", "mean_response_length"}


def test_pipeline_writes_run_dir_reloads_and_resumes(tmp_path):
    run_dir = tmp_path / "run"
    first = run_cli(*MICRO, f"run_dir={run_dir}")
    assert first.returncode == 0, first.stderr[-3000:]
    assert (run_dir / "config.yaml").exists()
    assert "template: r1_zero_short" in (run_dir / "config.yaml").read_text()
    for stage, steps in (("01-cold_start", 3), ("02-grpo", 2)):
        d = run_dir / "stages" / stage
        assert (d / "done.json").exists() and (d / "config.yaml").exists()
        lines = [json.loads(x) for x in (d / "metrics.jsonl").read_text().splitlines()]
        assert [x["step"] for x in lines] == list(range(1, steps + 1))
        assert all(isinstance(x["loss"], float) for x in lines)
        evaluation = json.loads((d / "eval.json").read_text())
        assert EVAL_KEYS <= set(evaluation)
        assert evaluation["num_problems"] == 8 and set(evaluation["pass_at_k"]) == {"1", "2"}
    grpo_line = json.loads((run_dir / "stages/02-grpo/metrics.jsonl").read_text().splitlines()[0])
    for key in ("reward", "accuracy", "reward/countdown", "response_length", "clip_fraction_low", "entropy", "grad_norm",
                "behaviour/verification", "behaviour/reflection",
                # read by bench/_grpo_bench_r1lab.py
                "time_generate", "time_reward", "time_logprobs_advantages", "time_train"):
        assert key in grpo_line
    assert json.loads((run_dir / "stages/00-start/eval.json").read_text())["num_problems"] == 8
    # The table: a row for the starting model and one per stage.
    assert "| start |" in first.stdout and "| 01-cold_start |" in first.stdout and "| 02-grpo |" in first.stdout

    # The checkpoint is a Hugging Face model, and training changed it.
    base = AutoModelForCausalLM.from_pretrained(run_dir / "base_model")
    tuned = AutoModelForCausalLM.from_pretrained(run_dir / "stages/01-cold_start/checkpoint")
    diff = sum((a - b).abs().sum().item() for a, b in zip(base.parameters(), tuned.parameters()))
    assert diff > 0
    # ...and it records the prompt template it was trained with.
    tokenizer_config = json.loads((run_dir / "stages/01-cold_start/checkpoint/tokenizer_config.json").read_text())
    assert tokenizer_config["r1lab_template"] == "r1_zero_short"

    # Resume: the finished SFT stage is skipped; the removed GRPO stage runs again.
    sft_metrics = (run_dir / "stages/01-cold_start/metrics.jsonl").read_text()
    sft_weights = (run_dir / "stages/01-cold_start/checkpoint/model.safetensors").stat().st_mtime_ns
    for name in ("done.json", "eval.json"):
        (run_dir / "stages/02-grpo" / name).unlink()
    second = run_cli(*MICRO, f"resume={run_dir}")
    assert second.returncode == 0, second.stderr[-3000:]
    assert "01-cold_start: finished earlier, skipped" in second.stdout
    assert (run_dir / "stages/01-cold_start/metrics.jsonl").read_text() == sft_metrics
    assert (run_dir / "stages/01-cold_start/checkpoint/model.safetensors").stat().st_mtime_ns == sft_weights
    assert (run_dir / "stages/02-grpo/done.json").exists()
