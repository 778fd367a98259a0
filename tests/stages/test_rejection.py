"""The rejection-sampling stage: prompts, filters, selection, provenance columns and report, with
crafted completions in place of sampling (so no trained model is needed)."""
from __future__ import annotations

import json

import pytest
from datasets import load_from_disk

from r1lab.data.files import SAMPLES_DIR
from r1lab.stages import rejection
from r1lab.stages.context import step_indices
from r1lab.stages.grpo import run_grpo
from r1lab.stages.rejection import prompt_rows, run_rejection, tail_indices

from .helpers import make_ctx, script_completions, write_jsonl

# completions of "Use 1 2 to make 3." after the prompt's "<think>"
SHORT = "2+1=3 yes</think><answer>2+1</answer>"
LONG = "1+2=3 yes check 1+2=3 ok</think><answer>1+2</answer>"
FENCED = "```2+1```</think><answer>2+1</answer>"  # correct, but code in the reasoning
WRONG = "2*1=2 no</think><answer>2*1</answer>"


def test_tail_indices():
    assert tail_indices(["a", "b", "c"], 5, set()) == [0, 1, 2]
    assert tail_indices(["a", "b", "c", "a"], 2, {"a"}) == [1, 2]


def test_train_tail_skips_every_prompt_grpo_drew_with_dynamic_sampling(tmp_path, micro_model):
    # a real GRPO stage, 3 steps of 4 prompts x 2 samples: each round's groups read RIGHT RIGHT |
    # RIGHT WRONG | ..., so dynamic sampling keeps half and draws two rounds a step (6 in all)
    train = write_jsonl(tmp_path / "train.jsonl", [{"id": f"p{i}", "numbers": [1, 2], "target": 3} for i in range(40)])
    grpo = {"kind": "grpo", "steps": 3, "prompts_per_step": 4, "samples_per_prompt": 2, "seed": 1, "max_new_tokens": 48,
            "rewards": {"countdown": 1.0}, "dynamic_sampling": True, "max_sampling_rounds": 4}
    stages = {"grpo": grpo, "rejection": {"kind": "rejection", "num_prompts": 10}}
    run_grpo(script_completions(make_ctx(tmp_path / "01-grpo", micro_model, {"grpo": grpo}, train_file=train), [SHORT, SHORT, SHORT, WRONG]))
    record = json.loads((tmp_path / "01-grpo" / "prompts.json").read_text())
    ctx = make_ctx(tmp_path / "02-rejection", micro_model, stages, train_file=train)
    ids = ctx.task.split("train")["id"]
    drawn = {ids[int(i)] for d in range(6) for i in step_indices(d, 4, len(ids), 1)}
    assert record["draws"] == 6 and set(record["prompt_ids"]) == drawn and len(drawn) == 24
    replayed = {ids[int(i)] for s in range(3) for i in step_indices(s, 4, len(ids), 1)}  # what replaying `steps` would skip
    rows = prompt_rows(ctx)
    assert len(rows) == 10 and not set(rows["id"]) & drawn and set(ids[-10:]) & (drawn - replayed)
    # without the GRPO stage it is simply the last rows
    alone = make_ctx(tmp_path / "t", micro_model, {"rejection": stages["rejection"]}, train_file=train)
    assert prompt_rows(alone)["id"] == ids[-10:]
    # a GRPO stage that left no record (a run from before it was written) is an error naming the file
    (tmp_path / "01-grpo" / "prompts.json").unlink()
    with pytest.raises(FileNotFoundError, match="01-grpo/prompts.json"):
        prompt_rows(ctx)


def test_source_file(tmp_path, micro_model):
    problems = write_jsonl(tmp_path / "p.jsonl", [{"numbers": [1, 2], "target": 3}, {"numbers": [2, 3], "target": 6}])
    ctx = make_ctx(tmp_path / "s", micro_model, {"r": {"kind": "rejection", "source": problems, "num_prompts": 1}})
    assert prompt_rows(ctx)["target"] == [3]


@pytest.fixture
def finished(tmp_path, micro_model, monkeypatch):
    """A rejection stage over two copies of one problem, 4 crafted samples each."""
    train = write_jsonl(tmp_path / "train.jsonl", [{"id": "a", "numbers": [1, 2], "target": 3}, {"id": "b", "numbers": [2, 1], "target": 3}, {"id": "c", "numbers": [1, 2], "target": 3}])
    stage = {"kind": "rejection", "num_prompts": 3, "samples_per_prompt": 4, "max_per_prompt": 2, "selection": "shortest",
             "mix_file": str(SAMPLES_DIR / "chat_sample.jsonl"), "mix_ratio": 1.5}
    ctx = make_ctx(tmp_path / "stage", micro_model, {"rejection": stage}, train_file=train)
    run_rejection(script_completions(ctx, [LONG, FENCED, SHORT, WRONG]))
    return ctx


def test_dataset_rows_and_provenance(finished, micro_model):
    ds = load_from_disk(str(finished.stage_dir / "dataset"))
    reasoning = [r for r in ds if r["kind"] == "reasoning"]
    # per prompt the two shortest accepted (SHORT, LONG; FENCED fails a filter, WRONG is wrong);
    # prompts "a" and "c" have the same text, so c's rows are duplicates of a's
    assert [(r["prompt_id"], r["sample_index"], r["response"]) for r in reasoning] == [
        ("a", 2, SHORT), ("a", 0, LONG), ("b", 2, SHORT), ("b", 0, LONG)]
    assert reasoning[0]["prompt"] == "Use 1 2 to make 3." and reasoning[2]["prompt"] == "Use 2 1 to make 3."
    for r in reasoning:
        assert r["reward_countdown"] == r["reward_format"] == r["reward_language"] == 1.0
        assert r["source_checkpoint"] == micro_model and r["source"] == "sampled"
        assert r["num_tokens"] == len(r["response"])  # character-level tokenizer
        assert r["difficulty"] == "2 numbers, target 0-24" and r["messages"] is None
    chat = [r for r in ds if r["kind"] == "non_reasoning"]
    assert len(chat) == round(4 / 1.5)  # 4 reasoning rows at 1.5 : 1
    assert all(r["messages"][-1]["content"] == r["response"] and r["source_checkpoint"] is None for r in chat)


def test_report(finished):
    report = json.loads((finished.stage_dir / "report.json").read_text())
    assert (report["prompts"], report["samples"], report["correct"], report["accepted"]) == (3, 12, 9, 6)
    assert report["selected"] == 6 and report["duplicates_removed"] == 2 and report["reasoning_rows"] == 4
    assert report["by_filter"]["no_code_fences"] == {"checked": 9, "failed": 3, "fail_rate": 0.3333}
    assert report["by_filter"]["well_formed"]["failed"] == 0
    assert report["by_difficulty"]["2 numbers, target 0-24"]["accept_rate"] == 0.5


def test_rerun_keeps_the_dataset(finished, monkeypatch):
    run_rejection(script_completions(finished, None))  # sampling would raise "sampled again"


def test_no_accepted_sample_fails_with_the_report(tmp_path, micro_model, monkeypatch):
    train = write_jsonl(tmp_path / "train.jsonl", [{"numbers": [1, 2], "target": 3}])
    ctx = make_ctx(tmp_path / "stage", micro_model, {"r": {"kind": "rejection", "samples_per_prompt": 2}}, train_file=train)
    script_completions(ctx, [WRONG])
    with pytest.raises(ValueError, match="no sample passed"):
        run_rejection(ctx)
    assert json.loads((ctx.stage_dir / "report.json").read_text())["correct"] == 0
    assert not (ctx.stage_dir / "dataset").exists()
