"""The console scripts: r1lab-eval end to end on a tiny random model, r1lab-report, r1lab-compare."""
import json
import os
import shutil
import subprocess
import sys
from importlib.metadata import entry_points
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from r1lab.config.schema import TinyModelConfig
from r1lab.eval.cli import default_out_dir, inherit_run_config, resolve_model
from r1lab.eval.config import EvalAppConfig
from r1lab.tasks.arith import ArithTaskConfig
from r1lab.tasks.countdown import CountdownTaskConfig
from r1lab.tasks.math import MathTaskConfig
from tests.helpers import THREADS, run_cli

BIN = Path(sys.executable).parent
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "WANDB_MODE": "offline", "OMP_NUM_THREADS": str(THREADS), "TOKENIZERS_PARALLELISM": "false"}
SMALL_TASK = ["task.num_train=10", "task.num_test=20", "task.num_test_hard=4"]
EVAL_KEYS = ("num_problems", "greedy_accuracy", "sampled_accuracy", "pass_at_k", "format_rate", "mean_response_length",
             "avg_at_k", "maj_at_k", "ci95", "by_difficulty", "answer_distance", "behaviours")


def script(name, *args, cwd=None, timeout=300):
    """The console script ``name`` run to its end: its entry point, forked from the warm CLI
    (`tests.helpers.run_cli`); `test_report_and_compare_console_scripts` also runs an installed file."""
    [entry] = entry_points(group="console_scripts", name=name)
    return run_cli(*args, cwd=cwd, env=ENV, entry=entry.value, timeout=timeout)


def save_tiny(path):
    from r1lab.models.tiny import save_tiny_model

    cfg = TinyModelConfig(hidden_size=32, num_layers=1, num_heads=2, num_kv_heads=2, intermediate_size=64)
    return save_tiny_model(cfg, path)


def fake_model(path: Path) -> Path:
    path.mkdir(parents=True)
    (path / "config.json").write_text("{}")
    return path


def test_resolve_model_accepts_model_stage_and_run_dirs(fake_run, tmp_path):
    ckpt = fake_model(fake_run / "stages" / "02-grpo" / "checkpoint")
    fake_model(fake_run / "stages" / "01-cold_start" / "checkpoint")
    fake_model(fake_run / "base_model")
    stage = fake_run / "stages" / "02-grpo"
    assert resolve_model(str(fake_run)).model == str(ckpt)  # the run's last stage
    assert resolve_model(str(stage)).stage_dir == stage
    assert resolve_model(str(ckpt)).run_dir == fake_run
    start = resolve_model(str(fake_run / "stages" / "00-start"))
    assert start.model == str(fake_run / "base_model") and start.stage_dir.name == "00-start"
    plain = fake_model(tmp_path / "plain")
    assert resolve_model(str(plain)).run_dir is None
    assert resolve_model("Qwen/Qwen2.5-0.5B").model == "Qwen/Qwen2.5-0.5B"
    assert default_out_dir(None, str(stage), "countdown", "test", "T") == str(stage / "eval-countdown-test")
    assert default_out_dir(None, str(plain), "countdown", "test", "T") == "outputs/eval/T"
    assert default_out_dir("mine", str(stage), "countdown", "test", "T") == "mine"


def test_inherit_run_config_keeps_command_line_overrides():
    cfg = OmegaConf.structured(EvalAppConfig)
    run_cfg = OmegaConf.create({"task": {"name": "countdown", "question_style": "short"},
                                "eval": {"samples": 8, "max_new_tokens": 160, "num_problems": 500}})
    inherit_run_config(cfg, run_cfg, ["model=x", "eval.samples=2", "+task.num_test=7"])
    assert cfg.task.question_style == "short" and cfg.task.num_test == 7
    assert cfg.eval.samples == 2 and cfg.eval.max_new_tokens == 160 and cfg.eval.num_problems == 500
    cfg = OmegaConf.structured(EvalAppConfig)
    cfg.task = OmegaConf.structured(MathTaskConfig(train_file="a.jsonl", test_file="b.jsonl"))
    inherit_run_config(cfg, run_cfg, ["task=math"])  # a group chosen on the command line wins
    assert cfg.task.name == "math" and cfg.task.train_file == "a.jsonl"


def test_inherit_run_config_reads_the_old_task_layout():
    """A run saved before task settings moved into each task's schema (task.countdown.*, every
    task's answer options beside them) evaluates with the same settings."""
    cfg = OmegaConf.structured(EvalAppConfig)
    run_cfg = OmegaConf.create({"task": {"name": "countdown", "question_style": "short", "answer_tag": False,
                                         "lenient_answer": False, "train_file": None,
                                         "countdown": {"num_test": 9, "seed": 3}, "arith": {"num_test": 200}}})
    inherit_run_config(cfg, run_cfg, ["task.num_train=11"])
    task = OmegaConf.to_object(cfg.task)
    assert isinstance(task, CountdownTaskConfig)
    assert (task.question_style, task.num_test, task.seed, task.num_train) == ("short", 9, 3, 11)
    run_cfg = OmegaConf.create({"task": {"name": "arith", "question_style": "full", "lenient_answer": True,
                                         "countdown": {"num_test": 500}, "arith": {"num_test": 20}}})
    cfg = OmegaConf.structured(EvalAppConfig)
    inherit_run_config(cfg, run_cfg, [])
    task = OmegaConf.to_object(cfg.task)
    assert isinstance(task, ArithTaskConfig) and (task.num_test, task.lenient_answer) == (20, True)


@pytest.mark.slow
def test_r1lab_eval_end_to_end_with_scaling(tmp_path):
    model = save_tiny(tmp_path / "model")
    out = tmp_path / "out"
    r = script("r1lab-eval", f"model={model}", "template=r1_zero_short", "task=countdown", "task.question_style=short",
               *SMALL_TASK, "eval.num_problems=4", "eval.samples=3", "eval.max_new_tokens=8", "eval.batch_size=16",
               f"out_dir={out}", "scaling.samples=[1,2]", "scaling.max_new_tokens=[4,8]", cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    result = json.loads((out / "eval.json").read_text())
    for key in EVAL_KEYS:
        assert key in result, key
    assert result["num_problems"] == 4 and result["samples_per_problem"] == 3 and result["template"] == "r1_zero_short"
    assert set(result["pass_at_k"]) == {"1", "2", "3"}
    lines = (out / "samples.jsonl").read_text().splitlines()
    assert len(lines) == 4 * (1 + 3)
    rec = json.loads(lines[1])
    assert {"problem", "kind", "response", "correct", "format", "answer", "length", "distance", "verification"} <= set(rec)
    assert (out / "scaling.png").stat().st_size > 1000
    table = (out / "scaling.md").read_text()
    assert table.count("\n| ") == 4 and "| 8 | 2 |" in table
    assert "pass@3" in r.stdout  # the printed table


@pytest.mark.slow
def test_r1lab_eval_on_a_run_stage_inherits_the_run_config(fake_run, tmp_path):
    save_tiny(fake_run / "stages" / "02-grpo" / "checkpoint")
    r = script("r1lab-eval", f"model={fake_run}", *SMALL_TASK, "eval.num_problems=2", "eval.samples=2",
               "eval.max_new_tokens=4", cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    out = fake_run / "stages" / "02-grpo" / "eval-countdown-test"
    result = json.loads((out / "eval.json").read_text())
    assert result["template"] == "r1_zero_short"  # from the run's config.yaml
    question = json.loads((out / "samples.jsonl").read_text().splitlines()[0])["question"]
    assert question.startswith("Use ")  # the run's short question style
    # the report picks the new samples up
    r = script("r1lab-report", f"run_dir={fake_run}")
    assert r.returncode == 0, r.stderr[-3000:]
    assert "eval-countdown-test" in (fake_run / "report" / "index.html").read_text()


@pytest.mark.slow
def test_r1lab_eval_bad_model_is_one_line(tmp_path):
    (tmp_path / "empty").mkdir()
    r = script("r1lab-eval", f"model={tmp_path / 'empty'}", cwd=tmp_path)
    assert r.returncode == 2
    assert r.stderr.strip().splitlines()[0].startswith("r1lab: error: model=")


@pytest.mark.slow
def test_report_and_compare_console_scripts(fake_run, fake_sweep):
    r = script("r1lab-report", f"run_dir={fake_run}")
    assert r.returncode == 0, r.stderr[-3000:]
    assert (fake_run / "report" / "index.html").exists()
    r = script("r1lab-compare", f"sweep_dir={fake_sweep}")
    assert r.returncode == 0, r.stderr[-3000:]
    assert (fake_sweep / "compare.md").exists() and "| 0 | seq_mean_token_mean | 0.0 |" in r.stdout
    # the installed file itself, in a new interpreter (the others fork its entry point)
    exe = shutil.which("r1lab-compare", path=str(BIN))
    r = subprocess.run([exe, f"sweep_dir={fake_sweep}/missing"], capture_output=True, text=True, env=ENV, timeout=300)
    assert r.returncode == 2 and "does not exist" in r.stderr and not (fake_sweep / "missing").exists()


def test_eval_app_config_composes_with_model_as_a_plain_string(monkeypatch):
    from hydra import compose, initialize_config_dir
    from hydra.core.config_store import ConfigStore
    from hydra.core.global_hydra import GlobalHydra

    from r1lab.config.store import register_task_options
    from r1lab.eval.cli import CONFIG_DIR
    from r1lab.tasks import task_schemas

    cs = ConfigStore.instance()
    cs.store(name="eval_app_schema", node=EvalAppConfig)
    register_task_options(task_schemas())
    # another test of this process may have registered the main app's groups (r1lab never does
    # in an r1lab-eval process); its `model` group would take `model=` for a group choice
    monkeypatch.delitem(cs.repo, "model", raising=False)
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base=None):
        cfg = compose("config", overrides=["model=/some/model", "task=math", "eval.samples=3", "scaling.samples=[1,2,4]"])
    app = OmegaConf.to_object(cfg)
    assert app.model == "/some/model" and app.task.name == "math" and app.eval.samples == 3
    assert app.scaling.samples == [1, 2, 4] and app.scaling.max_new_tokens == []
