"""Bad input stops at start-up with one line naming the field, and a non-zero exit code.

Every command line here runs through `tests.helpers.run_cli` (the console script's own
`r1lab.cli.main`, forked from a warm process): ~13 command lines in the time of two cold starts."""
from pathlib import Path

import pytest

from tests.helpers import MICRO, run_cli


CONFIG_ERRORS = [
        (["recipe=no_such_recipe"], "no_such_recipe"),
        (["model.tiny.hiden_size=3"], "hiden_size"),
        (["stages.grpo.lr=fast"], "lr"),
        (["+stages.grpo.lrr=1e-5"], "Key 'lrr' not in 'GRPOStageConfig'"),
        (["stages.grpo.kind=ppo"], "stages.grpo.kind='ppo' is not a stage kind"),
        (["stages.grpo.samples_per_prompt=1"], "groups of at least 2"),
        (["model.template=alpaca"], "model.template='alpaca'"),
        (["stages.grpo.loss.reduction=mean_of_means", "stages.cold_start=null", "eval.initial=false"], "mean_of_means"),
        (["task.operand_max=5"], "Key 'operand_max' not in 'CountdownTaskConfig'"),  # another task's setting
        (["task.name=arith"], "Choose a task with task=arith (the config group), not task.name"),
        (["task=math"], "Key 'question_style' not in 'MathTaskConfig'"),  # the countdown recipe's setting
        (["task.question_style=long"], "task.question_style='long'; valid: short, full"),
        (["task.countdown.num_train=64"], "task.countdown.num_train: a task's settings are flat now, typed by the chosen task: write task.num_train"),
]


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict:
    """Every command line of this file, by name, run at once; ``work``: their folder."""
    work = tmp_path_factory.mktemp("cli")
    anywhere = tmp_path_factory.mktemp("elsewhere")
    existing = work / "existing"
    (existing / "stages" / "01-grpo").mkdir(parents=True)
    (existing / "config.yaml").write_text("name: earlier\n")
    (existing / "stages" / "01-grpo" / "done.json").write_text("{}")
    cases = {f"config{i}": ([*args, f"run_dir={work / f'run{i}'}"], None) for i, (args, _) in enumerate(CONFIG_ERRORS)}
    cases |= {
        "model_path": (["model=local", "model.name_or_path=/no/such/model", f"run_dir={work / 'model_path'}"], None),
        "task_file": (["task.train_file=/no/such/problems.jsonl", "eval.initial=false", f"run_dir={work / 'task_file'}"], None),
        "help": (["--help"], anywhere),
        "cfg": (["--cfg", "job", "recipe=r1_countdown_tiny", "stages.grpo.lr=1e-6"], anywhere),
        "existing": ([*MICRO, f"run_dir={existing}"], None),  # micro: were it not refused, it would finish fast
    }
    return {"work": work, **{name: run_cli(*args, cwd=cwd) for name, (args, cwd) in cases.items()}}


@pytest.mark.parametrize("index", range(len(CONFIG_ERRORS)), ids=[e for _, e in CONFIG_ERRORS])
def test_config_errors_name_the_field(runs, index):
    expected = CONFIG_ERRORS[index][1]
    result = runs[f"config{index}"]
    assert result.returncode != 0
    assert expected in result.stderr + result.stdout
    assert "Traceback" not in result.stderr


def test_missing_model_path_is_one_line(runs):
    result = runs["model_path"]
    assert result.returncode == 2
    assert "model path '/no/such/model' does not exist" in result.stderr
    assert "Traceback" not in result.stderr


def test_missing_task_file_is_one_line(runs):
    result = runs["task_file"]
    assert result.returncode == 2
    assert "/no/such/problems.jsonl" in result.stderr and "task.train_file" in result.stderr


def test_help_and_cfg_work_from_any_directory(runs):
    help_ = runs["help"]
    assert help_.returncode == 0 and "recipe: " in help_.stdout and "r1_countdown_tiny" in help_.stdout
    cfg = runs["cfg"]
    assert cfg.returncode == 0
    assert "lr: 1.0e-06" in cfg.stdout and "template: r1_zero_short" in cfg.stdout


def test_existing_run_dir_needs_resume(runs):
    """A second run into a run directory would skip its finished stages and report their old
    figures as its own: it is refused unless it says resume=."""
    run: Path = runs["work"] / "existing"
    result = runs["existing"]
    assert result.returncode == 2
    assert f"run_dir={run} already holds a run" in result.stderr and f"resume={run}" in result.stderr
    assert (run / "config.yaml").read_text() == "name: earlier\n"  # left as it was
