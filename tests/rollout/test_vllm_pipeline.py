"""Every sampling stage with ``rollout=vllm`` (the real vLLM CPU engine): the whole R1 pipeline
(`r1_countdown_tiny_full`: cold start, GRPO with in-training evaluation, rejection sampling, SFT,
DPO with on-policy pairs, and the held-out evaluation after each), `r1lab-eval`, and a GRPO stage
killed mid-way and resumed, which must log the metrics of the straight run.

As in `tests/test_resume_full_pipeline.py` the micro model gets a deterministic stand-in for the
verifier (a completion is "correct" when its length is a multiple of 3), so rejection sampling
and DPO have samples to keep.
"""
from __future__ import annotations

import json
import shutil
import signal
from pathlib import Path

import pytest

from r1lab.engine.signals import PREEMPTED_EXIT_CODE
from tests.engine.test_resume_cli import wait_for
from tests.helpers import CLIProcess, run_cli, start_cli
from tests.test_resume_full_pipeline import SAMPLER, env, finish  # noqa: F401  (env: the stand-in verifier fixture)

pytest.importorskip("vllm")
pytestmark = [pytest.mark.slow, pytest.mark.vllm]

# head_dim 32 (vLLM's CPU attention has no kernel for 16); a handful of steps and problems
OVERRIDES = [
    "recipe=r1_countdown_tiny_full", "rollout=vllm", "rollout.max_model_len=256", "rollout.max_num_seqs=64",
    "rollout.kv_cache_gb=0.25", "model.tiny.hidden_size=64", "model.tiny.num_layers=1", "model.tiny.num_heads=2",
    "model.tiny.num_kv_heads=1", "model.tiny.intermediate_size=64", "model.tiny.max_position_embeddings=256",
    "task.num_train=64", "task.num_test=8", "task.num_test_hard=2",
    "eval.num_problems=8", "eval.samples=2", "eval.max_new_tokens=24", "eval.every=2", "eval.every_num_problems=4",
    "eval.every_samples=2", "tracking.progress_bar=false", "tracking.wandb.mode=disabled", "engine.num_threads=1",
    "stages.cold_start.steps=3", "stages.cold_start.batch_size=8", "stages.cold_start.micro_batch_per_device=4",
    "stages.grpo.steps=4", "stages.grpo.prompts_per_step=2", "stages.grpo.samples_per_prompt=4",
    "stages.grpo.micro_batch_per_device=4", "stages.grpo.max_new_tokens=24", "++stages.grpo.save_every=2",
    "stages.grpo.rollout_correction.mode=truncate",  # truncated IS on the engine's log-probs
    "stages.rejection.num_prompts=8", *[f"stages.rejection.{o}" for o in SAMPLER],
    "stages.sft.batch_size=8", "stages.sft.micro_batch_per_device=4", "stages.sft.epochs=1", "stages.sft.max_length=96",
    "stages.dpo.num_prompts=8", *[f"stages.dpo.{o}" for o in SAMPLER], "stages.dpo.steps=2",
    "stages.dpo.batch_size=2", "stages.dpo.micro_batch_per_device=2", "stages.dpo.max_length=96",
]
GRPO = "stages/02-grpo"
DETERMINISTIC = ("loss", "reward", "accuracy", "response_length", "entropy", "grad_norm", "rollout/abs_logp_diff")


def start(run_dir: Path, env: dict, *extra: str, resume: bool = False) -> CLIProcess:
    where = f"resume={run_dir}" if resume else f"run_dir={run_dir}"
    return start_cli(*OVERRIDES, *extra, where, env=env)


def grpo_metrics(run_dir: Path) -> dict[int, dict]:
    out = {}
    for line in (run_dir / GRPO / "metrics.jsonl").read_text().splitlines():
        row = json.loads(line)
        if "loss" in row:  # training steps (in-training evaluations log their own lines)
            out[row["step"]] = {k: row[k] for k in DETERMINISTIC}
    return out


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory) -> Path:
    """The stage cache the straight run fills: the interrupted run reuses its cold start."""
    return tmp_path_factory.mktemp("stage_cache")


@pytest.fixture(scope="module")
def straight(env, tmp_path_factory, cache_dir) -> Path:
    run_dir = tmp_path_factory.mktemp("vllm") / "run"
    finish(start(run_dir, env, f"cache.dir={cache_dir}"))
    return run_dir


def test_every_sampling_stage_runs_on_vllm(straight):
    for stage in ("00-start", "01-cold_start", "02-grpo", "03-rejection", "04-sft", "05-dpo"):
        assert json.loads((straight / "stages" / stage / "eval.json").read_text())["num_problems"] == 8
    rows = [json.loads(line) for line in (straight / GRPO / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in rows if "loss" in r]
    assert len(steps) == 4
    for r in steps:
        # the engine's log-probs are the trainer's (fp32 both): the weights were pushed every step
        assert r["rollout/abs_logp_diff"] < 1e-4 and r["rollout/ratio_max"] < 1.001
        assert r["time_weight_push"] >= 0
    assert any("eval/sampled_accuracy" in r for r in rows)  # in-training evaluation sampled too
    assert json.loads((straight / "stages/03-rejection/report.json").read_text())["samples"] == 8 * 4
    assert json.loads((straight / "stages/05-dpo/report.json").read_text())["samples"] == 8 * 4


def test_r1lab_eval_with_vllm(straight, env, tmp_path):
    out = tmp_path / "eval"
    proc = run_cli(f"model={straight}", "rollout.backend=vllm", "rollout.max_model_len=256", "rollout.kv_cache_gb=0.25",
                   "eval.num_problems=4", "eval.samples=2", "eval.max_new_tokens=16", f"out_dir={out}",
                   env=env, entry="r1lab.eval.cli:main")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    result = json.loads((out / "eval.json").read_text())
    assert result["num_problems"] == 4 and result["samples_per_problem"] == 2


def test_sigterm_in_grpo_then_resume_logs_the_straight_runs_metrics(straight, env, tmp_path, cache_dir):
    # only what the assertion reads: the cold start (a cache hit, unless r1lab's code changed since the
    # straight run: a cache holding the straight run's cold-start entry alone, so GRPO is trained) and
    # GRPO, no stage after it
    cold_only = tmp_path / "cache"
    for entry in cache_dir.glob("sft-*"):
        shutil.copytree(entry, cold_only / entry.name)
    until_grpo = (f"cache.dir={cold_only}", "eval.initial=false", "stages.rejection=null", "stages.sft=null", "stages.dpo=null")
    run_dir = tmp_path / "run"
    proc = start(run_dir, env, *until_grpo)
    wait_for(lambda: (run_dir / GRPO / "metrics.jsonl").exists() and "loss" in (run_dir / GRPO / "metrics.jsonl").read_text(), proc, timeout=400)
    proc.send_signal(signal.SIGTERM)
    finish(proc, expect=PREEMPTED_EXIT_CODE)
    assert not (run_dir / GRPO / "done.json").exists()
    finish(start(run_dir, env, *until_grpo, resume=True))
    a, b = grpo_metrics(straight), grpo_metrics(run_dir)
    assert sorted(a) == sorted(b) == [1, 2, 3, 4]
    for step in a:
        for key, value in a[step].items():
            assert b[step][key] == pytest.approx(value, rel=1e-6, abs=1e-7), (step, key)


def test_a_max_model_len_beyond_the_model_stops_at_start_up_naming_the_field(env, tmp_path):
    proc = run_cli(*OVERRIDES, "rollout.max_model_len=100000", f"run_dir={tmp_path / 'run'}", env=env, timeout=300)
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "rollout.max_model_len=100000 is longer than the model's 256 positions" in proc.stderr
