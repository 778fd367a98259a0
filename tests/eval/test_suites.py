"""The opt-in suites end to end on a tiny model (r1lab.eval.suites): the pipeline's per-stage
evaluation and r1lab-eval write their keys, the plain figures do not move, the report shows them.
Nothing here asserts what the untrained model writes, only the figures' layout and invariants."""
import json
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from r1lab.config.errors import ConfigError
from r1lab.config.schema import RunConfig, TinyModelConfig
from r1lab.tasks.countdown import CountdownTaskConfig
from r1lab.eval.cli import ModelLocation, evaluate_app
from r1lab.eval.config import EvalAppConfig
from r1lab.eval.report import write_report
from r1lab.eval.suites import check_suites
from r1lab.models.tiny import save_tiny_model
from r1lab.pipeline import evaluate_into
from r1lab.tasks import build_task

TINY = TinyModelConfig(hidden_size=32, num_layers=1, num_heads=2, num_kv_heads=2, intermediate_size=64, max_position_embeddings=128)
TASK = CountdownTaskConfig(question_style="short", num_train=10, num_test=3, num_test_hard=0)
EVAL = {"num_problems": 3, "samples": 2, "max_new_tokens": 6, "batch_size": 64}


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> str:
    return str(save_tiny_model(TINY, tmp_path_factory.mktemp("suites") / "model"))


def run_config(**eval_fields) -> RunConfig:
    raw = OmegaConf.merge(OmegaConf.structured(RunConfig), {
        "name": "suites", "model": {"name_or_path": "tiny", "template": "r1_zero_short"}, "task": TASK,
        "eval": {**EVAL, **eval_fields}, "engine": {"precision": "fp32"}})
    return OmegaConf.to_object(raw)


def plain_part(result: dict) -> dict:
    return {k: v for k, v in result.items() if k not in ("seconds", "forgetting", "faithfulness", "robustness")}


def test_pipeline_evaluation_writes_the_keys_and_keeps_the_plain_figures(tiny_model, tmp_path):
    off = run_config()
    on = run_config(forgetting=True, faithfulness=True, robustness=["reorder", "wording"])
    task = build_task(on.task)
    plain = evaluate_into(tiny_model, off, task, tmp_path / "off" / "eval.json", 0)
    result = evaluate_into(tiny_model, on, task, tmp_path / "on" / "eval.json", 0)
    assert json.loads((tmp_path / "on" / "eval.json").read_text()) == result
    assert not {"forgetting", "faithfulness", "robustness"} & set(plain)  # off by default: no new key
    assert plain_part(result) == plain_part(plain)  # the suites move no plain figure
    text, qa = result["forgetting"]["general_text"], result["forgetting"]["general_qa"]
    assert text["context"] == 128 and text["num_tokens"] > 5000 and text["perplexity"] == pytest.approx(2.718281828 ** text["nll"])
    assert qa["num_questions"] == 60 and 0.0 <= qa["last_word_accuracy"] <= qa["accuracy"] <= 1.0
    faith = result["faithfulness"]
    assert faith["num_completions"] == 3 * 2 and faith["greedy_num_completions"] == 3
    assert set(result["robustness"]["perturbed"]) == {"reorder", "wording"}
    assert result["robustness"]["plain"] == {"greedy_accuracy": plain["greedy_accuracy"], "sampled_accuracy": plain["sampled_accuracy"]}
    for fig in result["robustness"]["perturbed"].values():
        assert fig["greedy_drop"] == pytest.approx(plain["greedy_accuracy"] - fig["greedy_accuracy"])
        assert fig["num_problems"] == 3 and fig["changed_share"] == 1.0


def test_start_up_check_names_the_field():
    run = run_config(robustness=["renumber"])  # an arith perturbation, not a Countdown one
    with pytest.raises(ConfigError, match=r"eval.robustness=\['renumber'\]: task 'countdown' .* valid: reorder, distractor, wording"):
        check_suites(run.eval, build_task(run.task))


def test_r1lab_eval_writes_the_keys(tiny_model, tmp_path):
    app = OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(EvalAppConfig), {
        "model": tiny_model, "template": "r1_zero_short", "task": TASK, "eval": {**EVAL, "faithfulness": True}}))
    result = evaluate_app(app, ModelLocation(tiny_model, None, None), tmp_path / "out")
    written = json.loads((tmp_path / "out" / "eval.json").read_text())
    assert written["faithfulness"] == result["faithfulness"] and "forgetting" not in written
    assert written["faithfulness"]["num_completions"] == 6


def test_report_section(fake_run: Path):
    for i, stage in enumerate(("00-start", "02-grpo")):
        path = fake_run / "stages" / stage / "eval.json"
        ev = json.loads(path.read_text())
        ev["forgetting"] = {"general_text": {"perplexity": 10.0 + i, "nll": 2.3}, "general_qa": {"accuracy": 0.5 - i / 10}}
        ev["faithfulness"] = {"faithful_rate": 0.9 - i / 10, "faithful_rate_correct": 1.0, "faithful_rate_incorrect": None}
        ev["robustness"] = {"plain": {}, "perturbed": {"reorder": {"greedy_drop": 0.05 * i}}}
        path.write_text(json.dumps(ev))
    write_report(fake_run)
    md = (fake_run / "report" / "report.md").read_text()
    assert "## What RL costs elsewhere" in md
    assert "| 00-start | 10.000 | 0.500 | 0.900 | 1.000 | – | 0.000 |" in md
    assert "| 02-grpo | 11.000 | 0.400 | 0.800 | 1.000 | – | 0.050 |" in md
    assert "01-cold_start |" not in md.split("## What RL costs elsewhere")[1].split("##")[0]  # a stage without them
    assert "What RL costs elsewhere" in (fake_run / "report" / "index.html").read_text()
