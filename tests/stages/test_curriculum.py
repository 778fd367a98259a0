"""GRPO's prompt samplers (`r1lab.stages.curriculum`): the default is today's stream exactly; an
easy -> hard schedule on labelled rows; adaptive weights and estimates against hand computations;
the state round trip; config errors; and a tiny GRPO stage per mode (adaptive: resumed exactly)."""
from __future__ import annotations

import json
import shutil
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from datasets import Dataset

from r1lab.rollout.groups import Rollout
from r1lab.stages.context import step_indices
from r1lab.stages.curriculum import (
    AdaptiveSampler, CurriculumConfig, DifficultySampler, PromptSampler, adaptive_weights, build_sampler, level_order,
    updated_success,
)
from r1lab.stages.grpo import GRPOStageConfig, run_grpo
from r1lab.stages.grpo_steps import drawn_prompt_ids
from r1lab.tasks.math import MathAnalysis

from .helpers import make_ctx, script_completions, write_jsonl

MATH = SimpleNamespace(correctness_reward="math", analysis=MathAnalysis())  # difficulty = the `level` column
LEVELS = ["Level 3", "Level 1", "Level 2", "Level 1", "Level 3", "Level 2", "Level 1", "Level 10", "Level 2", "Level 3"]


def labelled(levels=LEVELS) -> Dataset:
    return Dataset.from_dict({"id": [f"q{i}" for i in range(len(levels))], "level": levels, "cost": [float(len(lv)) for lv in levels]})


def test_mode_none_draws_exactly_the_stream_r1lab_always_drew():
    train = labelled()
    sampler = build_sampler(CurriculumConfig(), train, MATH, 4, seed=7)
    assert type(sampler) is PromptSampler
    for draw in range(6):  # 24 prompts of 10 rows: three epochs, two of them split between rounds
        assert np.array_equal(sampler.indices(draw), step_indices(draw, 4, 10, 7))
    assert sampler.drawn_ids(train, 6) == drawn_prompt_ids(train, 6, 4, 7)
    assert sampler.state_dict() == {} and sampler.sync() == {}


def test_difficulty_mode_walks_each_epoch_from_easy_to_hard_shuffled_within_levels():
    assert level_order(LEVELS) == ["Level 1", "Level 2", "Level 3", "Level 10"]  # by number, not text
    train = labelled()
    sampler = build_sampler(CurriculumConfig(mode="difficulty"), train, MATH, 4, seed=7)
    epoch = np.concatenate([sampler.indices(d) for d in range(5)])  # 20 = two epochs
    first, second = epoch[:10], epoch[10:]
    assert [LEVELS[i] for i in first] == ["Level 1"] * 3 + ["Level 2"] * 3 + ["Level 3"] * 3 + ["Level 10"]
    assert set(first[:3]) == {1, 3, 6} and set(first[3:6]) == {2, 5, 8} and set(first[6:9]) == {0, 4, 9}
    assert [LEVELS[i] for i in second] == [LEVELS[i] for i in first] and sorted(second) == list(range(10))
    assert not np.array_equal(first, second)  # a fresh shuffle within the levels each epoch
    again = build_sampler(CurriculumConfig(mode="difficulty"), train, MATH, 4, seed=7)
    assert np.array_equal(again.indices(3), sampler.indices(3))  # a function of the round alone
    # figure: mean level position (0 = easiest) of the step's prompts; round 0 is Level 1 x3 + Level 2
    part = Rollout(group_size=2, components={"math": torch.zeros(8)})
    sampler.seen(0, part)
    assert sampler.sync() == {"curriculum/mean_difficulty": pytest.approx(0.25)}
    # a numeric column (low = easy): cost = len(label), so Level 10 (8 characters) comes last
    by_cost = build_sampler(CurriculumConfig(mode="difficulty", column="cost"), train, MATH, 10, seed=7)
    assert by_cost.indices(0)[-1] == 7
    # an explicit order of the labels: hardest first here
    reverse = build_sampler(CurriculumConfig(mode="difficulty", order=["Level 10", "Level 3", "Level 2", "Level 1"]),
                            train, MATH, 10, seed=7)
    assert reverse.indices(0)[0] == 7 and set(reverse.indices(0)[-3:]) == {1, 3, 6}


def test_difficulty_mode_names_labels_an_order_misses_and_columns_that_are_not_there():
    with pytest.raises(ValueError, match=r"stages.g.curriculum \(mode=difficulty\): curriculum.order=\['Level 1'\] lacks the labels"):
        DifficultySampler(CurriculumConfig(mode="difficulty", order=["Level 1"]), labelled(), MATH, 4, 0, "stages.g.curriculum")
    with pytest.raises(ValueError, match=r"curriculum.column='nope' is not a column of the train split"):
        DifficultySampler(CurriculumConfig(mode="difficulty", column="nope"), labelled(), MATH, 4, 0)


def test_adaptive_weights_and_estimates_match_a_hand_computation():
    # p(1-p) + 0.01: 0.26, 0.10, 0.01, 0.01 (sum 0.38)
    w = adaptive_weights(np.array([0.5, 0.9, 0.0, 1.0]), 0.01)
    assert w.tolist() == pytest.approx([0.26 / 0.38, 0.10 / 0.38, 0.01 / 0.38, 0.01 / 0.38])
    # ema 0.5: row 0 seen twice in one step (0.5 -> 0.75 -> 0.375), row 2 once (0.5 -> 0.25)
    assert updated_success(np.full(3, 0.5), [0, 2, 0], [1.0, 0.0, 0.0], 0.5).tolist() == [0.375, 0.5, 0.25]


def test_adaptive_sampler_learns_from_groups_and_its_state_round_trips_exactly():
    train = labelled()
    cfg = CurriculumConfig(mode="adaptive", prior=0.5, ema=0.5, floor=0.01)
    a = build_sampler(cfg, train, MATH, 2, seed=3)
    first = a.indices(0).tolist()
    assert len(set(first)) == 2
    # groups of 2: the first prompt solved by both samples, the second by none
    a.seen(0, Rollout(group_size=2, components={"math": torch.tensor([1.0, 1.0, 0.0, 0.0])}))
    figures = a.sync()
    assert figures == {"curriculum/success_estimate": 0.5, "curriculum/seen_fraction": 0.2}  # unseen: the prior
    assert a.success[first].tolist() == [0.75, 0.25] and a.success.sum() == pytest.approx(0.5 * 8 + 1.0)
    ahead = a.indices(1).tolist()  # drawn ahead (separate placement), not consumed at the save
    state = json.loads(json.dumps(a.state_dict()))  # what the checkpoint holds
    b = build_sampler(cfg, train, MATH, 2, seed=3)
    b.load_state_dict(state)
    assert b.indices(1).tolist() == ahead  # the round in flight keeps its prompts
    for s in (a, b):
        s.seen(1, Rollout(group_size=2, components={"math": torch.tensor([0.0, 1.0, 1.0, 1.0])}))
        s.sync()
    assert np.array_equal(a.success, b.success) and a.indices(2).tolist() == b.indices(2).tolist()
    assert a.drawn_ids(train, 2) == b.drawn_ids(train, 2) == list(dict.fromkeys(train["id"][i] for i in first + ahead))
    with pytest.raises(ValueError, match="covers 10 prompts; the train split has 4"):
        build_sampler(cfg, labelled(LEVELS[:4]), MATH, 2, seed=3).load_state_dict(state)


def test_adaptive_sampling_favours_prompts_near_half_success():
    sampler = AdaptiveSampler(CurriculumConfig(mode="adaptive", floor=0.01), labelled(), MATH, 1, seed=0)
    sampler.success = np.array([0.5] * 2 + [1.0] * 8)  # two open prompts, eight solved: weights 0.26 vs 0.01
    counts = np.bincount(np.concatenate([sampler.indices(d) for d in range(200)]), minlength=10)
    assert counts[:2].sum() > 150  # expected 200 * 0.52 / 0.60 = 173
    with pytest.raises(ValueError, match="stages.g.curriculum.mode=adaptive draws prompts_per_step=11 distinct prompts"):
        AdaptiveSampler(CurriculumConfig(mode="adaptive"), labelled(), MATH, 11, 0, "stages.g.curriculum")


@pytest.mark.parametrize("field,value,message", [
    ("mode", "easy_first", r"stages.grpo.curriculum.mode='easy_first' is not registered; valid: adaptive, difficulty, none"),
    ("ema", 0.0, r"stages.grpo.curriculum.ema=0.0: must be in \(0, 1\]"),
    ("floor", 0.0, r"stages.grpo.curriculum.floor=0.0: must be > 0"),
    ("prior", 1.5, r"stages.grpo.curriculum.prior=1.5: a success rate"),
])
def test_a_bad_curriculum_fails_at_start_up_naming_the_field(field, value, message):
    from r1lab.validate import ConfigError, check_stage

    cfg = GRPOStageConfig(rewards={"countdown": 1.0}, curriculum=CurriculumConfig(**{field: value}))
    with pytest.raises(ConfigError, match=message):
        check_stage("grpo", cfg)


# --- a tiny GRPO stage per mode --------------------------------------------------------------------

RIGHT = "2+1=3 yes</think><answer>2+1</answer>"  # right for "1 2 -> 3" only
PROBLEMS = [([1, 2], 3), ([2, 2], 4), ([3, 5], 2), ([2, 3], 6)]


def run_stage(stage_dir, micro_model, train, **grpo) -> list[dict]:
    stage = {"kind": "grpo", "steps": 3, "prompts_per_step": 2, "samples_per_prompt": 2, "micro_batch_per_device": 4,
             "max_new_tokens": 16, "rewards": {"countdown": 1.0}, "seed": 5, "save_every": 1, "keep_checkpoints": 3, **grpo}
    ctx = script_completions(make_ctx(stage_dir, micro_model, {"grpo": stage}, train_file=train), [RIGHT])
    run_grpo(ctx)
    return [json.loads(line) for line in (stage_dir / "metrics.jsonl").read_text().splitlines() if '"loss"' in line]


@pytest.fixture(scope="module")
def train_file(tmp_path_factory) -> str:
    root = tmp_path_factory.mktemp("curriculum")
    rows = [{"id": f"p{i}", "numbers": n, "target": t} for i, (n, t) in enumerate(PROBLEMS * 2)]
    return write_jsonl(root / "train.jsonl", rows)


@pytest.mark.parametrize("mode,figure", [("none", None), ("difficulty", "curriculum/mean_difficulty"),
                                         ("adaptive", "curriculum/success_estimate")])
def test_a_tiny_grpo_stage_runs_with_each_curriculum(tmp_path, micro_model, train_file, mode, figure):
    rows = run_stage(tmp_path / "s", micro_model, train_file, curriculum={"mode": mode})
    assert len(rows) == 3
    assert [k for k in rows[0] if k.startswith("curriculum/")] == ([] if figure is None else [figure] + (
        ["curriculum/seen_fraction"] if mode == "adaptive" else []))
    ids = json.loads((tmp_path / "s" / "prompts.json").read_text())["prompt_ids"]
    if mode == "none":
        train = Dataset.from_list([json.loads(line) for line in open(train_file)])
        assert ids == drawn_prompt_ids(train, 3, 2, 5)
    if mode == "difficulty":
        # countdown's labels of the 8 rows: two "medium" ([2, 2] -> 4), six "hard"; 2 prompts a step, medium first
        assert [r[figure] for r in rows] == [0.0, 1.0, 1.0]
    if mode == "adaptive":
        assert rows[0][figure] == 0.5 and len(ids) == len(set(ids)) and rows[-1]["curriculum/seen_fraction"] == len(ids) / 8
        resumed = tmp_path / "resumed"  # the straight run resumed from its step-1 checkpoint
        shutil.copytree(tmp_path / "s", resumed)
        for later in ("checkpoint", "metrics.jsonl", "done.json", "prompts.json"):
            shutil.rmtree(resumed / later) if (resumed / later).is_dir() else (resumed / later).unlink(missing_ok=True)
        for later in sorted(p for p in (resumed / "resume").iterdir() if p.name.startswith("step"))[1:]:
            shutil.rmtree(later)
        again = run_stage(resumed, micro_model, train_file, curriculum={"mode": mode})
        assert [r["step"] for r in again] == [2, 3]
        for key in ("curriculum/success_estimate", "curriculum/seen_fraction", "reward", "loss"):
            assert [r[key] for r in again] == pytest.approx([r[key] for r in rows[1:]], abs=1e-7), key
        assert json.loads((resumed / "prompts.json").read_text())["prompt_ids"] == ids
