"""r1lab-report and r1lab-compare on hand-written run and sweep directories (see conftest.py)."""
import json

import pytest

from r1lab.eval.compare import distinguishing_keys, load_sweep, write_compare
from r1lab.eval.report import load_stages, metric_series, write_report


def test_report_writes_plots_tables_and_completions(fake_run):
    page = write_report(fake_run)
    out = fake_run / "report"
    assert page == out / "index.html"
    for name in ("eval.png", "behaviours.png", "training-01-cold_start.png", "training-02-grpo.png", "report.md"):
        assert (out / name).stat().st_size > 1000 or name == "report.md", name
    assert not (out / "training-00-start.png").exists()  # no metrics.jsonl there
    html = page.read_text()
    md = (out / "report.md").read_text()
    # eval figures of every stage, start model included, with their intervals
    assert "00-start" in md and "| 02-grpo | 100 | 0.620 [0.570, 0.670]" in md
    assert "0.806" in md  # pass@4 of the last stage
    # behaviours of the base model and after each stage
    assert "| 00-start | 0.000 / 0.000" in md and "| 02-grpo | 0.600 / 0.400" in md
    # completions with their rewards, escaped
    assert "check 5*3+7=22 ok" in html and "&lt;answer&gt;5*3+7&lt;/answer&gt;" in html
    assert html.count('<img src="') == 4


def test_metric_series_groups_reward_components(fake_run):
    stages = load_stages(fake_run)
    assert [s.name for s in stages] == ["00-start", "01-cold_start", "02-grpo"]
    curves = metric_series(stages[2].metrics)
    assert set(curves["reward per component"]) == {"total", "countdown", "format"}
    steps, values = curves["accuracy"]["accuracy"]
    assert steps[0] == 1 and len(values) == 30
    assert "KL to reference" in curves and "entropy (nats/token)" in curves
    assert curves["held-out eval during training"] == {"greedy_accuracy": ([30], [0.62])}
    assert curves["held-out response length (tokens)"] == {"mean_response_length": ([30], [71.0])}
    assert curves["held-out behaviours per completion"] == {"verification": ([30], [0.9])}
    behaviours = curves["behaviours per completion (rollouts)"]
    assert set(behaviours) == {"verification", "reflection"} and behaviours["reflection"][1][-1] == pytest.approx(3.0)
    assert set(metric_series(stages[1].metrics)) == {"loss", "learning rate"}


def test_report_rejects_a_directory_without_stages(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a run directory"):
        write_report(tmp_path)


def test_compare_table_rows_are_runs_labelled_by_their_distinct_overrides(fake_sweep):
    runs = load_sweep(fake_sweep)
    assert [r.job for r in runs] == ["0", "1", "2", "3"]
    assert distinguishing_keys(runs) == ["stages.grpo.loss.reduction", "stages.grpo.kl.coef"]  # recipe= is shared
    md = write_compare(fake_sweep).read_text()
    assert (fake_sweep / "compare.png").stat().st_size > 1000
    lines = [line for line in md.splitlines() if line.startswith("| ")]
    assert lines[0].startswith("| job | stages.grpo.loss.reduction | stages.grpo.kl.coef | final stage | greedy |")
    assert "| 2 | seq_mean_token_sum_norm | 0.0 | 02-grpo | 0.610 |" in md
    assert "recipe=" not in lines[0]
    saved = json.loads((fake_sweep / "compare.json").read_text())
    assert saved[1]["overrides"]["stages.grpo.kl.coef"] == "0.04"


def test_compare_lists_unfinished_runs(fake_sweep):
    import shutil

    shutil.rmtree(fake_sweep / "3" / "stages")
    (fake_sweep / "3" / "summary.json").unlink()
    md = write_compare(fake_sweep).read_text()
    assert "| 3 | seq_mean_token_sum_norm | 0.04 | unfinished |" in md
