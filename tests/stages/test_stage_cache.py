"""The stage cache: a sweep's arms that share a stage build it once (r1lab.stage_cache).

Fake stages (tests/stages/stage_cache_job.py) write small files, so each test is about the cache:
hits and misses, what the key holds, corrupt entries, two jobs at once, the switch."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import replace

import pytest
from omegaconf import OmegaConf
from omegaconf.errors import ConfigKeyError

from r1lab import pipeline, stage_cache
from r1lab.config.schema import RunConfig
from tests.helpers import MICRO, RENDEZVOUS_VARIABLES, REPO, run_cli

from .stage_cache_job import STAGES, Fakes, config, fake_evaluate_into, fake_grpo, fake_sft


@pytest.fixture
def fakes(monkeypatch, tmp_path):
    monkeypatch.setitem(pipeline.STAGES, "sft", fake_sft)
    monkeypatch.setitem(pipeline.STAGES, "grpo", fake_grpo)
    monkeypatch.setattr(pipeline, "evaluate_into", fake_evaluate_into)
    monkeypatch.setattr(Fakes, "build_log", tmp_path / "builds.txt")
    monkeypatch.setattr(Fakes, "evaluations", [])
    yield Fakes
    monkeypatch.setattr(Fakes, "gate", None)


def builds(f) -> list[str]:
    return f.build_log.read_text().splitlines() if f.build_log.exists() else []


def arm(grpo_lr: float, cold: dict | None = None) -> dict:
    return {"cold": {**STAGES["cold"], **(cold or {})}, "grpo": {**STAGES["grpo"], "lr": grpo_lr}}


def run_arm(run_dir, cache_dir, stages: dict, **run):
    typed, staged = config(stages, cache_dir, **run)
    return pipeline.run_pipeline(typed, staged, run_dir, "name: t\n")


def keys_of(stages: dict, **run) -> dict[str, str]:
    typed, staged = config(stages, None, **run)
    fns = {"sft": fake_sft, "grpo": fake_grpo}
    keys = stage_cache.stage_keys(typed, staged, fns, 1)
    return {stage.name: keys[stage.dirname][0] for stage in staged}


def test_a_two_arm_sweep_builds_the_shared_cold_start_once(tmp_path, fakes, capsys):
    sweep, cache = tmp_path / "sweep", tmp_path / "sweep" / ".stage_cache"
    run_arm(sweep / "0", cache, arm(1e-5))
    first = capsys.readouterr().out
    run_arm(sweep / "1", cache, arm(2e-5))
    second = capsys.readouterr().out
    assert builds(fakes) == ["t cold", "t grpo", "t grpo"]  # the cold start once, each arm's GRPO

    key = json.loads((sweep / "0/stages/01-cold/done.json").read_text())["cache"]["key"]
    entry = cache / f"sft-{key[:16]}"
    assert f"[r1lab] stage 01-cold (sft): cache miss {key[:16]}" in first
    assert f"[r1lab] stage 01-cold (sft): cache hit {key[:16]} ({entry})" in second
    assert "stage 02-grpo (grpo): cache miss" in second  # the arms differ there
    assert json.loads((sweep / "1/stages/01-cold/done.json").read_text())["cache"] == {"key": key, "hit": True, "entry": str(entry)}

    # the arm's stage dir holds the outputs as if built (hard links), mid-stage checkpoints left out
    a, b = sweep / "0/stages/01-cold", sweep / "1/stages/01-cold"
    assert (b / "checkpoint/model.bin").read_text() == (a / "checkpoint/model.bin").read_text() == "sft lr=0.0001 data=traces"
    assert os.path.samefile(b / "checkpoint/model.bin", entry / "outputs/checkpoint/model.bin")
    assert (b / "checkpoint/empty").is_dir() and (b / "metrics.jsonl").exists() and not (b / "resume").exists()
    assert (b / "config.yaml").exists()
    # the next stage starts from this run's copy; the cold start's evaluation came from the cache
    assert json.loads((sweep / "1/stages/02-grpo/done.json").read_text())["start_model"] == str(b / "checkpoint")
    assert fakes.evaluations == [str(a / "checkpoint"), str(sweep / "0/stages/02-grpo/checkpoint"), str(sweep / "1/stages/02-grpo/checkpoint")]
    assert json.loads((b / "eval.json").read_text())["model"] == str(b / "checkpoint")

    run_arm(sweep / "1", cache, arm(2e-5))  # resuming the arm: both stages finished, nothing runs
    assert "01-cold: finished earlier, skipped" in capsys.readouterr().out and len(builds(fakes)) == 3


def test_the_key_holds_what_the_result_depends_on_and_nothing_else(tmp_path):
    data = tmp_path / "traces.jsonl"
    data.write_text('{"prompt": "1+1", "response": "2"}\n')
    base = keys_of(arm(1e-5, {"data": str(data)}))
    for same in (
        keys_of(arm(1e-5, {"data": str(data)}), run_dir=str(tmp_path / "elsewhere"), name="other"),
        keys_of(arm(1e-5, {"data": str(data), "save_every": 5, "keep_checkpoints": 1})),
        keys_of(arm(1e-5, {"data": str(data)}), tracking={"log_every": 7, "wandb": {"mode": "offline"}}),
        keys_of(arm(1e-5, {"data": str(data)}), eval={"num_problems": 3, "samples": 5}),  # the final evaluation
        keys_of(arm(1e-5, {"data": str(data)}), engine={"num_threads": 4}),
    ):
        assert same == base
    assert keys_of(arm(2e-5, {"data": str(data)}))["cold"] == base["cold"]  # a later stage's change
    assert keys_of(arm(2e-5, {"data": str(data)}))["grpo"] != base["grpo"]
    for changed in (
        keys_of(arm(1e-5, {"data": str(data), "lr": 3e-4})),  # a cold-start field
        keys_of(arm(1e-5, {"data": str(data)}), seed=1),
        keys_of(arm(1e-5, {"data": str(data)}), model={"template": "r1_zero"}),
        keys_of(arm(1e-5, {"data": str(data)}), task={"num_train": 21}),
        keys_of(arm(1e-5, {"data": str(data)}), eval={"every": 2}),  # in-training evaluation writes metrics
    ):
        assert changed["cold"] != base["cold"] and changed["grpo"] != base["grpo"]  # chained
    # the suites only the final evaluation runs stay out of a stage's key even with in-training evaluation
    during = keys_of(arm(1e-5, {"data": str(data)}), eval={"every": 2})
    assert keys_of(arm(1e-5, {"data": str(data)}), eval={"every": 2, "forgetting": True, "faithfulness": True}) == during
    data.write_text('{"prompt": "1+1", "response": "33"}\n')  # same path, new content
    assert keys_of(arm(1e-5, {"data": str(data)}))["cold"] != base["cold"]


def test_a_changed_data_file_misses(tmp_path, fakes, capsys):
    data, cache = tmp_path / "traces.jsonl", tmp_path / "cache"
    data.write_text('{"prompt": "1+1", "response": "2"}\n')
    run_arm(tmp_path / "0", cache, arm(1e-5, {"data": str(data)}))
    data.write_text('{"prompt": "1+1", "response": "33"}\n')
    run_arm(tmp_path / "1", cache, arm(1e-5, {"data": str(data)}))
    assert builds(fakes).count("t cold") == 2 and "cache hit" not in capsys.readouterr().out
    assert (tmp_path / "1/stages/01-cold/checkpoint/model.bin").read_text().endswith('"response": "33"}\n')


@pytest.mark.parametrize("damage", ["truncated", "missing_file", "no_manifest", "half_written"])
def test_a_corrupt_entry_is_rebuilt_never_used(damage, tmp_path, fakes, capsys):
    cache = tmp_path / "cache"
    run_arm(tmp_path / "0", cache, arm(1e-5))
    (entry,) = cache.glob("sft-*")
    if damage == "truncated":
        with open(entry / "outputs/checkpoint/model.bin", "r+") as f:
            f.truncate(3)
    elif damage == "missing_file":
        (entry / "outputs/metrics.jsonl").unlink()
    elif damage == "no_manifest":
        (entry / "manifest.json").unlink()
    else:  # a job killed while publishing leaves only its temporary folder
        os.rename(entry, cache / f".tmp-{entry.name}-123-abcd")
    capsys.readouterr()
    run_arm(tmp_path / "1", cache, arm(1e-5))
    out = capsys.readouterr().out
    reason = {"truncated": "outputs/checkpoint/model.bin has 3 bytes", "missing_file": "outputs/metrics.jsonl is missing",
              "no_manifest": "no readable manifest.json", "half_written": None}[damage]
    if reason:
        assert f"cache entry {entry} is corrupt ({reason}" in out
    assert "01-cold (sft): cache miss" in out and builds(fakes).count("t cold") == 2
    assert (tmp_path / "1/stages/01-cold/checkpoint/model.bin").read_text() == "sft lr=0.0001 data=traces"
    run_arm(tmp_path / "2", cache, arm(1e-5))  # the rebuilt entry is whole again
    assert "01-cold (sft): cache hit" in capsys.readouterr().out and builds(fakes).count("t cold") == 2


def test_two_jobs_at_once_build_the_stage_once(tmp_path):
    """Job A builds the cold start and is held inside it; job B, started meanwhile, waits on the
    lock; A finishes and publishes; B hits."""
    cache, log, gate = tmp_path / "cache", tmp_path / "builds.txt", tmp_path / "gate"
    # an in-process engine of an earlier test on this xdist worker may have left rendezvous variables
    env = {**{k: v for k, v in os.environ.items() if k not in RENDEZVOUS_VARIABLES}, "PYTHONPATH": str(REPO)}

    def job(name: str, *extra: str):
        out = open(tmp_path / f"{name}.log", "w")
        cmd = [sys.executable, "-m", "tests.stages.stage_cache_job", str(tmp_path / name), str(cache), str(log), *extra]
        return subprocess.Popen(cmd, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT)

    def wait(condition, *procs, timeout=180):
        deadline = time.time() + timeout
        while not condition():
            assert time.time() < deadline and all(p.poll() is None for p in procs), [
                (tmp_path / f"{n}.log").read_text()[-3000:] for n in ("a", "b") if (tmp_path / f"{n}.log").exists()]
            time.sleep(0.05)

    a = job("a", str(gate))
    try:
        wait(lambda: gate.with_name("gate.building").exists(), a)  # A holds the lock, inside its build
        b = job("b")
        try:
            wait(lambda: "waiting for the job building it" in (tmp_path / "b.log").read_text(), a, b)
            gate.touch()
            assert a.wait(120) == 0 and b.wait(120) == 0
        finally:
            b.kill()
    finally:
        a.kill()
    out_a, out_b = (tmp_path / "a.log").read_text(), (tmp_path / "b.log").read_text()
    assert log.read_text().splitlines().count("t cold") == 1
    assert "01-cold (sft): cache miss" in out_a and "01-cold (sft): cache hit" in out_b
    assert f"pid\":{a.pid}" in out_b  # whom B waited for
    assert (tmp_path / "b/stages/01-cold/checkpoint/model.bin").read_text() == "sft lr=0.0001 data=traces"
    assert not list(cache.glob(".tmp-*"))


def test_a_lost_publish_race_keeps_the_build_and_the_first_entry(tmp_path, fakes):
    cache = stage_cache.StageCache(tmp_path / "cache", log=lambda msg: said.append(msg))
    said: list[str] = []
    stage_dir = tmp_path / "stage"
    (stage_dir / "checkpoint").mkdir(parents=True)
    (stage_dir / "checkpoint/model.bin").write_text("w")
    assert cache.publish(stage_dir, "sft", "ab" * 32, {}, "e", "01-cold (sft)")
    assert not cache.publish(stage_dir, "sft", "ab" * 32, {}, "e", "01-cold (sft)")
    assert "was published by another job meanwhile" in said[-1] and not list(cache.dir.glob(".tmp-*"))
    assert cache.verify(cache.entry("sft", "ab" * 32), "ab" * 32)["files"]["checkpoint/model.bin"]["size"] == 1


def test_cache_enabled_false_builds_every_time(tmp_path, fakes, capsys):
    for i in range(2):
        run_arm(tmp_path / str(i), tmp_path / "cache", arm(1e-5), cache={"enabled": False})
    assert builds(fakes) == ["t cold", "t grpo"] * 2
    out = capsys.readouterr().out
    assert not any(word in out for word in ("stage cache", "cache hit", "cache miss")) and not (tmp_path / "cache").exists()
    assert "cache" not in json.loads((tmp_path / "1/stages/01-cold/done.json").read_text())


def test_no_dir_means_no_cache_and_unknown_fields_fail_at_start_up():
    typed, _ = config()
    assert typed.cache.enabled and typed.cache.dir is None  # the CLI names <sweep dir>/.stage_cache in a multirun
    assert stage_cache.StageCache.from_config(typed.cache, print) is None
    assert stage_cache.StageCache.from_config(replace(typed.cache, dir="x"), print).dir.name == "x"
    with pytest.raises(ConfigKeyError, match="enable"):
        OmegaConf.merge(OmegaConf.structured(RunConfig), {"cache": {"enable": False}})


@pytest.mark.slow
def test_a_real_two_arm_multirun_trains_the_cold_start_once(tmp_path):
    """`r1lab -m` over two GRPO learning rates: the tiny SFT cold start trains in job 0 only."""
    sweep = tmp_path / "sweep"
    out = run_cli("-m", *MICRO, "eval.initial=false", f"hydra.sweep.dir={sweep}", "stages.grpo.lr=1e-6,2e-6")
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.count("stage 01-cold_start (sft): cache miss") == 1
    assert out.stdout.count("stage 01-cold_start (sft): cache hit") == 1
    assert out.stdout.count("stage 02-grpo (grpo): cache miss") == 2
    a, b = (sweep / job / "stages/01-cold_start" for job in ("0", "1"))
    assert (a / "metrics.jsonl").read_text() == (b / "metrics.jsonl").read_text()
    assert json.loads((b / "done.json").read_text())["cache"]["hit"] is True
    assert json.loads((a / "eval.json").read_text())["greedy_accuracy"] == json.loads((b / "eval.json").read_text())["greedy_accuracy"]
    assert (sweep / "1/stages/02-grpo/done.json").exists()
