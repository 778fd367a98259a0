"""Bad input stops at start-up with one line naming the field, and a non-zero exit code."""
import pytest

from tests.helpers import MICRO, run_cli


@pytest.mark.parametrize(
    "args, expected",
    [
        (["recipe=no_such_recipe"], "no_such_recipe"),
        (["model.tiny.hiden_size=3"], "hiden_size"),
        (["stages.grpo.lr=fast"], "lr"),
        (["+stages.grpo.lrr=1e-5"], "Key 'lrr' not in 'GRPOStageConfig'"),
        (["stages.grpo.kind=ppo"], "stages.grpo.kind='ppo' is not a stage kind"),
        (["stages.grpo.samples_per_prompt=1"], "groups of at least 2"),
        (["model.template=alpaca"], "model.template='alpaca'"),
        (["stages.grpo.loss.reduction=mean_of_means", "stages.cold_start=null", "eval.initial=false"], "mean_of_means"),
    ],
)
def test_config_errors_name_the_field(tmp_path, args, expected):
    result = run_cli(*args, f"run_dir={tmp_path / 'run'}", timeout=120)
    assert result.returncode != 0
    assert expected in result.stderr + result.stdout
    assert "Traceback" not in result.stderr


def test_missing_model_path_is_one_line(tmp_path):
    result = run_cli("model=local", "model.name_or_path=/no/such/model", f"run_dir={tmp_path / 'run'}", timeout=120)
    assert result.returncode == 2
    assert "model path '/no/such/model' does not exist" in result.stderr
    assert "Traceback" not in result.stderr


def test_missing_task_file_is_one_line(tmp_path):
    result = run_cli("task.train_file=/no/such/problems.jsonl", "eval.initial=false", f"run_dir={tmp_path / 'run'}", timeout=120)
    assert result.returncode == 2
    assert "/no/such/problems.jsonl" in result.stderr and "task.train_file" in result.stderr


def test_help_and_cfg_work_from_any_directory(tmp_path):
    help_ = run_cli("--help", cwd=tmp_path, timeout=120)
    assert help_.returncode == 0 and "recipe: " in help_.stdout and "r1_countdown_tiny" in help_.stdout
    cfg = run_cli("--cfg", "job", "recipe=r1_countdown_tiny", "stages.grpo.lr=1e-6", cwd=tmp_path, timeout=120)
    assert cfg.returncode == 0
    assert "lr: 1.0e-06" in cfg.stdout and "template: r1_zero_short" in cfg.stdout


def test_existing_run_dir_needs_resume(tmp_path):
    """A second run into a run directory would skip its finished stages and report their old
    figures as its own: it is refused unless it says resume=."""
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text("name: earlier\n")
    (run / "stages" / "01-grpo").mkdir(parents=True)
    (run / "stages" / "01-grpo" / "done.json").write_text("{}")
    result = run_cli(*MICRO, f"run_dir={run}", timeout=300)  # micro: were it not refused, it would finish fast
    assert result.returncode == 2
    assert f"run_dir={run} already holds a run" in result.stderr and f"resume={run}" in result.stderr
    assert (run / "config.yaml").read_text() == "name: earlier\n"  # left as it was
