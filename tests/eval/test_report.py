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


def test_report_shows_process_validity_and_tool_use(fake_run):
    import json as _json

    process = {"num_claims": 40.0, "claims_per_completion": 4.0, "true_claim_share": 0.9, "correct_with_false_claim": 0.25,
               "false_claim_completions": 0.3, "greedy_num_claims": 5.0, "greedy_true_claim_share": 0.8}
    tools = {"calls_per_completion": 1.5, "errors_per_completion": 0.1, "timeouts_per_completion": 0.0,
             "calling_share": 0.75, "tool_token_share": 0.2, "sampled_tokens": 50.0}
    path = fake_run / "stages" / "02-grpo" / "eval.json"
    ev = _json.loads(path.read_text())
    path.write_text(_json.dumps({**ev, "process": process, "tools": tools}))
    # an older eval.json without "process": computed from the stage's records when they carry claims
    samples = fake_run / "stages" / "01-cold_start" / "eval-countdown-test" / "samples.jsonl"
    recs = [_json.loads(x) for x in samples.read_text().splitlines()]
    recs[1].update(claims=2, true_claims=1)  # the sampled one, incorrect
    samples.write_text("".join(_json.dumps(r) + "\n" for r in recs))
    with open(fake_run / "stages" / "02-grpo" / "metrics.jsonl", "a") as f:
        f.write(_json.dumps({"step": 30, "eval/process/true_claim_share": 0.9, "eval/process/num_claims": 40.0,
                             "eval/tools/calls_per_completion": 1.5, "tools/calls_per_completion": 1.2}) + "\n")

    page = write_report(fake_run)
    md = (fake_run / "report" / "report.md").read_text()
    assert (fake_run / "report" / "process.png").stat().st_size > 1000
    assert "## Process validity" in md and "| 02-grpo | 4.000 | 0.900 | 0.250 | 0.300 | 0.800 |" in md
    assert "| 01-cold_start | 2.000 | 0.500 | 0.000 | 1.000 | – |" in md  # from samples.jsonl (1 sampled record)
    assert "## Tool use" in md and "| 02-grpo | 1.500 | 0.100 | 0.000 | 0.750 | 0.200 |" in md
    html = page.read_text()
    assert "true / all claims" in html and "1 / 2" in html
    curves = metric_series(load_stages(fake_run)[2].metrics)
    assert curves["held-out process validity"] == {"true_claim_share": ([30], [0.9])}
    assert curves["held-out tool use"] == {"calls_per_completion": ([30], [1.5])}
    assert curves["tool use (rollouts)"] == {"calls_per_completion": ([30], [1.2])}
    assert set(curves["held-out eval during training"]) == {"greedy_accuracy"}
    assert not any(panel.startswith("async") for panel in curves)  # a colocated run has none

    from r1lab.eval.tables import eval_table

    table = eval_table({**ev, "process": process, "tools": tools})
    assert "| true_claim_share | 0.900 | 0.800 |" in table and "| calling_share | 0.750 |" in table


def test_report_plots_the_async_rollout_figures(tmp_path):
    rows = [{"step": s, "time_step": 1.0 + s, "time_generate": 0.8, "async/trainer_wait_s": 0.1 * s,
             "async/weight_sync_s": 0.01, "async/version_lag": float(s > 1), "async/version_lag_share/1": float(s > 1),
             "async/worker_idle_fraction": 0.25, "async/worker0/tokens_per_s": 900.0, "async/worker1/tokens_per_s": 800.0}
            for s in (1, 2)]
    curves = metric_series(rows)
    assert curves["async rollouts: policy version lag (steps)"] == {"version_lag": ([1, 2], [0.0, 1.0]),
                                                                    "version_lag_share/1": ([1, 2], [0.0, 1.0])}
    assert set(curves["async rollouts: seconds per step"]) == {"time_step", "time_generate", "trainer_wait_s", "weight_sync_s"}
    assert curves["async rollouts: worker idle share"] == {"worker_idle_fraction": ([1, 2], [0.25, 0.25])}
    assert curves["async rollouts: worker tokens per second"] == {"worker0/tokens_per_s": ([1, 2], [900.0, 900.0]),
                                                                  "worker1/tokens_per_s": ([1, 2], [800.0, 800.0])}
