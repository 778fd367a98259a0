"""Completion tables: GRPO's sampled completions and the in-training evaluation's samples land in
the stage's ``completions.jsonl`` and, as W&B tables, in its offline W&B run."""
import json

import pytest
import torch

from r1lab.config.schema import TinyModelConfig, TrackingConfig, WandbConfig
from r1lab.tasks.countdown import CountdownTaskConfig
from r1lab.tasks import build_task
from r1lab.models.tiny import build_tiny_model, char_tokenizer
from r1lab.rollout.engine import as_engine
from r1lab.rollout.groups import sample_groups
from r1lab.rollout.sampler import SamplingParams
from r1lab.stages.grpo_steps import completion_rows
from r1lab.tracking.tracker import Tracker
from tests.helpers import MICRO, run_cli

TRAIN_KEYS = ["step", "prompt", "completion", "reward", "reward/countdown", "reward/format", "advantage", "response_length", "truncated"]
EVAL_KEYS = ["step", "problem", "kind", "sample", "question", "response", "answer", "correct", "format", "length", "stopped"]


def test_completion_rows_decode_the_rollout_tokens():
    torch.manual_seed(0)
    tokenizer = char_tokenizer()
    model = build_tiny_model(TinyModelConfig(hidden_size=32, num_layers=1, num_heads=2, num_kv_heads=2, intermediate_size=64),
                             len(tokenizer), tokenizer).eval()
    task = build_task(CountdownTaskConfig(question_style="short"))
    rows = list(task.split("train").select(range(2)))
    rollout = sample_groups(as_engine(model, tokenizer), tokenizer, task, "r1_zero_short", rows, 2, SamplingParams(12, 1.0, 1.0),
                            {"countdown": 1.0, "format": 0.0}, seed=0)
    table = completion_rows(rollout, tokenizer, limit=3, advantages=torch.tensor([0.5, -0.5, 1.0, -1.0]))
    assert len(table) == 3 and list(table[0]) == TRAIN_KEYS[1:]
    for i, row in enumerate(table):
        assert row["prompt"] == tokenizer.decode(rollout.prompts[i])  # special tokens kept: what the model saw
        assert row["prompt"] == f"User: {task.question(rows[i // 2])}\nAssistant: <think>"
        assert row["completion"] == tokenizer.decode(rollout.completions[i], skip_special_tokens=True) == rollout.texts[i]
        assert row["response_length"] == len(rollout.completions[i])
        assert row["reward"] == float(rollout.rewards[i]) and row["reward/format"] == float(rollout.components["format"][i])
        assert row["truncated"] == bool(rollout.truncated[i]) and row["advantage"] == [0.5, -0.5, 1.0][i]


def test_resumed_tracker_drops_the_completions_of_redone_steps_and_keeps_earlier_ones(tmp_path):
    cfg = TrackingConfig(wandb=WandbConfig(mode="disabled"), progress_bar=False)
    tracker = Tracker(cfg, tmp_path, "t", "g", {}, total_steps=3)
    for step in (1, 2):
        tracker.log_completions(step, "train", [{"completion": f"a{step}"}, {"completion": f"b{step}"}])
    tracker.finish()
    resumed = Tracker(cfg, tmp_path, "t", "g", {}, total_steps=3, start_step=1)
    resumed.log_completions(2, "train", [{"completion": "c2"}])
    resumed.finish()
    lines = [json.loads(l) for l in (tmp_path / "completions.jsonl").read_text().splitlines()]
    assert lines == [{"step": 1, "table": "train", "completion": "a1"}, {"step": 1, "table": "train", "completion": "b1"},
                     {"step": 2, "table": "train", "completion": "c2"}]


def wandb_tables(stage_dir, name):
    """The tables W&B 0.31 wrote for ``completions/<name>``: files/media/table/completions/<name>_<n>_<hash>.table.json."""
    runs = list((stage_dir / "wandb").glob("offline-run-*"))
    assert len(runs) == 1 and list(runs[0].glob("*.wandb"))
    paths = sorted(runs[0].glob(f"files/media/table/completions/{name}_*.table.json"), key=lambda p: int(p.name.split("_")[-2]))
    return [json.loads(p.read_text()) for p in paths]


@pytest.mark.slow
def test_grpo_completion_table_lands_in_the_offline_wandb_run_and_the_run_dir(tmp_path):
    run_dir = tmp_path / "run"
    done = run_cli(
        *MICRO, "stages.cold_start=null", "eval.initial=false", "eval.num_problems=2",
        "tracking.completions_every=1", "tracking.completions_rows=3", "tracking.wandb.mode=offline",
        "eval.every=1", "eval.every_num_problems=2", "eval.every_samples=2", f"run_dir={run_dir}",
    )
    assert done.returncode == 0, done.stderr[-3000:]
    stage_dir = run_dir / "stages/01-grpo"
    lines = [json.loads(l) for l in (stage_dir / "completions.jsonl").read_text().splitlines()]
    train = [l for l in lines if l["table"] == "train"]
    evals = [l for l in lines if l["table"] == "eval"]
    # 2 steps x the first 3 of rank 0's 2 prompts x 2 samples; the in-training eval at step 1 (not at the last step)
    assert [l["step"] for l in train] == [1, 1, 1, 2, 2, 2] and [l["step"] for l in evals] == [1, 1, 1]
    assert all(list(l) == ["step", "table", *TRAIN_KEYS[1:]] for l in train)
    assert all(list(l) == ["step", "table", *EVAL_KEYS[1:]] for l in evals)
    assert [l["kind"] for l in evals] == ["greedy", "sample", "sample"]
    tokenizer = char_tokenizer()
    for l in train:
        assert l["prompt"].startswith("User: ") and l["prompt"].endswith("\nAssistant: <think>")
        assert 0 < len(tokenizer(l["completion"], add_special_tokens=False).input_ids) <= l["response_length"] <= 24
        assert isinstance(l["truncated"], bool) and l["reward"] == pytest.approx(l["reward/countdown"] * l["reward/format"])  # format_gate
    # the same rows in the offline W&B run, one table per step
    tables = wandb_tables(stage_dir, "train")
    assert len(tables) == 2
    for n, table in enumerate(tables):
        assert table["columns"] == TRAIN_KEYS
        assert [dict(zip(TRAIN_KEYS, r)) for r in table["data"]] == [{k: v for k, v in l.items() if k != "table"} for l in train[3 * n : 3 * n + 3]]
    (eval_table,) = wandb_tables(stage_dir, "eval")
    assert eval_table["columns"] == EVAL_KEYS and len(eval_table["data"]) == 3
