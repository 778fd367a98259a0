"""A Hydra multirun (`r1lab -m`) over the GRPO loss reduction: one run directory per job."""
import json

import pytest
import yaml

from tests.helpers import MICRO, run_cli

pytestmark = pytest.mark.slow

REDUCTIONS = ["seq_mean_token_mean", "token_mean", "seq_mean_token_sum_norm"]


def test_multirun_over_loss_reduction(tmp_path):
    sweep_dir = tmp_path / "sweep"
    out = run_cli(
        "-m", *MICRO, "stages.cold_start=null", "eval.initial=false", f"hydra.sweep.dir={sweep_dir}",
        f"stages.grpo.loss.reduction={','.join(REDUCTIONS)}",
    )
    assert out.returncode == 0, out.stderr[-3000:]
    for job, reduction in enumerate(REDUCTIONS):
        run_dir = sweep_dir / str(job)
        config = yaml.safe_load((run_dir / "config.yaml").read_text())
        assert config["stages"]["grpo"]["loss"]["reduction"] == reduction
        assert (run_dir / "stages/01-grpo/done.json").exists()
        steps = [json.loads(x)["step"] for x in (run_dir / "stages/01-grpo/metrics.jsonl").read_text().splitlines()]
        assert steps == [1, 2]
