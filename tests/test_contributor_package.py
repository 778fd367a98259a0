"""Issue 29's contributor check: a throw-away package adds a reward, an advantage estimator, a
task, a tool, a rollout engine and a stage kind, each in one file, registered only through the
``r1lab.plugins`` entry point of its pyproject.toml (no edit of r1lab), is installed with pip
(offline, into a scratch folder), and a two-step GRPO recipe that uses all six runs through the
``r1lab`` console script. Each part leaves a trace a test can read: the engine and the tool log
their calls, the stage writes its checkpoint, the reward and the advantage show in the metrics."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import MICRO, run_cli_fresh

pytestmark = pytest.mark.slow

PARTS = {
    "brevity.py": '''
import torch
from r1lab.rewards import register_reward

@register_reward("brevity")
def brevity(completions, **columns):  # [N]
    return torch.tensor([1.0 / (1.0 + len(c)) for c in completions])
''',
    "median_baseline.py": '''
from r1lab.algorithms.advantages import ADVANTAGES

@ADVANTAGES.register("median_baseline")
def median_baseline(rewards, cfg, *, lengths=None, truncated=None):  # [P, G]
    return rewards - rewards.median(dim=1, keepdim=True).values
''',
    "echo_task.py": '''
from dataclasses import dataclass
from datasets import Dataset
from r1lab.config.schema import TaskConfig
from r1lab.tasks import Task, TaskAnalysis, register_task
from r1lab.rewards.spans import answer_spans

WORDS = ["cat", "horse", "ox", "zebra", "gnu", "dog", "yak", "emu"]

class EchoAnalysis(TaskAnalysis):
    def answer_keys(self, responses, rows):
        return [s.strip() or None for s in answer_spans(responses)]

    def difficulty(self, rows):
        return ["long" if len(w) > 3 else "short" for w in rows["word"]]

@dataclass
class EchoTaskConfig(TaskConfig):
    name: str = "echo"
    num_test: int = 2  # the last words are held out

@register_task("echo", EchoTaskConfig)
def build(cfg):
    def rows(words):
        return Dataset.from_dict({"id": [f"echo-{w}" for w in words], "word": words})
    return Task(name="echo", splits={"train": rows(WORDS[:-cfg.num_test]), "test": rows(WORDS[-cfg.num_test:])},
                correctness_reward="brevity", reward_columns=("word",),
                question=lambda row: f"Repeat {row['word']}.", analysis=EchoAnalysis(), gold_column="word")
''',
    "upper_tool.py": '''
import os
from r1lab.tools import ToolResult, register_tool

@register_tool("upper")
def upper(text, limits):
    with open(os.environ["CONTRIB_TRACE"], "a") as f:
        f.write("tool\\n")
    return ToolResult(text.upper(), "ok")
''',
    "logged_engine.py": '''
import os
from r1lab.rollout.engine import ROLLOUT_ENGINES
from r1lab.rollout.hf_engine import HFEngine

@ROLLOUT_ENGINES.register("logged_hf")
class LoggedEngine(HFEngine):
    """r1lab's HF decode loop, logging each call."""
    name = "logged_hf"

    def generate(self, prompt_ids, params, seed, max_batch=0):
        with open(os.environ["CONTRIB_TRACE"], "a") as f:
            f.write(f"generate {len(prompt_ids)}\\n")
        return super().generate(prompt_ids, params, seed, max_batch)
''',
    "snapshot_stage.py": '''
from dataclasses import dataclass
from r1lab.config.schema import StageConfig
from r1lab.stages.registry import register_stage

@dataclass
class SnapshotStageConfig(StageConfig):
    kind: str = "snapshot"
    note: str = ""

def run_snapshot(ctx):
    model, tokenizer = ctx.load_policy()
    model.save_pretrained(ctx.checkpoint_dir)
    tokenizer.save_pretrained(ctx.checkpoint_dir)
    (ctx.checkpoint_dir / "note.txt").write_text(ctx.cfg.note)

register_stage(SnapshotStageConfig, run_snapshot)
''',
}


RECIPE = """# @package _global_
# A user's recipe of two stages, every part from the contrib_parts package.
defaults:
  - /stage_schema/grpo@stages.grpo
  - /stage_schema/snapshot@stages.snap
  - override /model: tiny
  - override /engine: cpu
  - override /task: echo

name: contrib
task:
  num_test: 3
rollout:
  backend: logged_hf
eval:
  initial: false
  num_problems: 8  # more than the task holds: all 3 held-out words
stages:
  grpo:
    rewards: {brevity: 1.0}
    advantage: {name: median_baseline}
    tools: {names: [upper]}
  snap:
    note: hello
"""


def make_package(root: Path) -> Path:
    pkg = root / "src" / "contrib_parts"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    for name, source in PARTS.items():
        (pkg / name).write_text(source)
    entry_points = "\n".join(f'{n[:-3]} = "contrib_parts.{n[:-3]}"' for n in PARTS)
    (root / "pyproject.toml").write_text(
        '[build-system]\nrequires = ["setuptools"]\nbuild-backend = "setuptools.build_meta"\n\n'
        '[project]\nname = "contrib-parts"\nversion = "0.1"\n\n'
        '[tool.setuptools.packages.find]\nwhere = ["src"]\n\n'
        f'[project.entry-points."r1lab.plugins"]\n{entry_points}\n'
    )
    return root


def test_a_package_adds_six_parts_in_one_file_each_and_a_recipe_uses_them(tmp_path):
    site = tmp_path / "site"
    pip = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--no-build-isolation",
                          "--target", str(site), str(make_package(tmp_path / "contrib"))], capture_output=True, text=True)
    assert pip.returncode == 0, pip.stdout + pip.stderr
    trace = tmp_path / "trace.txt"
    run_dir = tmp_path / "run"
    (tmp_path / "conf" / "recipe").mkdir(parents=True)
    (tmp_path / "conf" / "recipe" / "contrib.yaml").write_text(RECIPE)
    micro = [o for o in MICRO if not o.startswith(("task.", "stages.cold_start", "eval."))]
    # a fresh interpreter: the package's entry points are read at import
    proc = run_cli_fresh("--config-dir", str(tmp_path / "conf"), "recipe=contrib", *micro, f"run_dir={run_dir}",
                         env={"PYTHONPATH": str(site), "CONTRIB_TRACE": str(trace)})
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    stages = sorted(p.name for p in (run_dir / "stages").iterdir() if (p / "done.json").exists())
    assert stages == ["01-grpo", "02-snap"]
    rows = [json.loads(line) for line in (run_dir / "stages/01-grpo/metrics.jsonl").read_text().splitlines()]
    steps = [r for r in rows if "loss" in r]
    assert [r["step"] for r in steps] == [1, 2]
    for r in steps:  # the plugin's reward (0 < 1/(1+len) <= 1) scored every completion
        assert 0.0 < r["reward/brevity"] <= 1.0
    config = (run_dir / "config.yaml").read_text()  # the resolved run config
    assert "median_baseline" in config and "logged_hf" in config and "upper" in config and "echo" in config
    assert json.loads((run_dir / "stages/01-grpo/eval.json").read_text())["num_problems"] == 3  # the task's own setting
    calls = trace.read_text().splitlines()
    assert sum(line.startswith("generate") for line in calls) >= 2  # the plugin engine sampled every step
    assert (run_dir / "stages/02-snap/checkpoint/note.txt").read_text() == "hello"
