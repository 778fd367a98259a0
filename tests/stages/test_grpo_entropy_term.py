"""GRPO's entropy term (``entropy_coef``, from ``entropy_from_step``) through the real CLI.

A micro random model never solves Countdown, so every advantage is zero: without a per-token
term the update trains on nothing (zero-advantage sequences are skipped exactly); once the
entropy term is on, every sequence carries a gradient and the weights move.
"""
import json

import pytest

from tests.helpers import MICRO, run_cli

pytestmark = pytest.mark.slow


def test_entropy_term_turns_on_at_its_step(tmp_path):
    run_dir = tmp_path / "run"
    out = run_cli(
        *[o for o in MICRO if not o.startswith("stages.grpo.steps=")], "stages.grpo.steps=3",
        "stages.cold_start=null", "eval.initial=false", f"run_dir={run_dir}",
        "stages.grpo.entropy_coef=-0.5", "stages.grpo.entropy_from_step=1", "stages.grpo.entropy_sample_fraction=1.0",
    )
    assert out.returncode == 0, out.stderr[-3000:]
    rows = [json.loads(x) for x in (run_dir / "stages/01-grpo/metrics.jsonl").read_text().splitlines()]
    assert [r["accuracy"] for r in rows] == [0.0, 0.0, 0.0]
    assert rows[0]["trained_fraction"] == 0.0 and rows[0]["grad_norm"] == 0.0
    assert [r["trained_fraction"] for r in rows[1:]] == [1.0, 1.0]
    assert all(r["grad_norm"] > 0 for r in rows[1:])


def test_entropy_term_on_a_sampled_fraction_of_the_zero_advantage_sequences(tmp_path):
    run_dir = tmp_path / "run"
    out = run_cli(
        *[o for o in MICRO if not o.startswith(("stages.grpo.steps=", "stages.grpo.samples_per_prompt="))],
        "stages.grpo.steps=2", "stages.grpo.samples_per_prompt=4",
        "stages.cold_start=null", "eval.initial=false", f"run_dir={run_dir}",
        "stages.grpo.entropy_coef=-0.5", "stages.grpo.entropy_from_step=0", "stages.grpo.entropy_sample_fraction=0.5",
    )
    assert out.returncode == 0, out.stderr[-3000:]
    rows = [json.loads(x) for x in (run_dir / "stages/01-grpo/metrics.jsonl").read_text().splitlines()]
    assert [r["accuracy"] for r in rows] == [0.0, 0.0]  # all advantages zero: only drawn rows run
    assert all(0.0 < r["trained_fraction"] < 1.0 and r["grad_norm"] > 0 for r in rows)
