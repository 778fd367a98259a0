"""Rejection sampling: the RL checkpoint writes the next SFT stage's data (DeepSeek-R1, section 2.3.3).

Kept from R1: sample several completions per prompt from the converged RL model, keep only the
correct ones (the task's verifier), filter out unreadable reasoning (malformed tags, mixed
languages, code blocks; here also length limits and degenerate repetition), keep a few per
prompt, and mix the result with non-reasoning SFT data (R1: ~600k reasoning : ~200k
non-reasoning = 3 : 1). Dropped: R1's generative judge (DeepSeek-V3 grading answers that rules
cannot check) -- correctness here is the rule verifier only -- and R1's scale.

Prompts (``source``):

* ``train_tail``: the last ``num_prompts`` rows of the task's train split, skipping every row
  whose ``id`` an earlier GRPO stage of this run drew (read from the ``prompts.json`` that
  stage wrote), so the SFT data comes from prompts RL never trained on. Countdown's train split repeats problems; skipping by ``id`` skips the repeats too.
* a path: a problems file in the task's own layout (Countdown numbers/target; GSM8K or MATH).

Output, in ``<stage_dir>/``:

* ``dataset/`` (``datasets.save_to_disk``, written to ``dataset.tmp`` then renamed): one row per
  kept sample -- ``prompt`` (question text), ``response`` (the completion after the prompt, as the
  SFT stage trains on it), ``kind`` (``reasoning``), ``prompt_id``, ``sample_index``,
  ``difficulty``, ``reward_<component>``, ``num_tokens``, ``source_checkpoint`` -- then the mixed
  non-reasoning rows (``kind`` = ``non_reasoning``, the conversation in ``messages``, provenance
  fields empty, ``source`` = the file). A following ``sft`` stage reads it with ``data: previous``.
* ``report.json``: counts and acceptance rates per difficulty bucket and per filter.

The stage trains nothing and writes no checkpoint: the pipeline passes the model it was given on
to the next stage unchanged. Prompts are sharded over data-parallel ranks; rank 0 writes.
"""
from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass, field
from typing import Any, Optional

import numpy as np
import torch
from datasets import Dataset, Features, List, Value

from r1lab.config.schema import SampledPromptsConfig
from r1lab.tasks import Task
from r1lab.engine import dist
from r1lab.engine.checkpoint import commit_dir, tmp_path, write_json_atomic
from r1lab.rollout.engine import RolloutEngine, SamplingParams
from r1lab.rollout.groups import sample_groups
from r1lab.engine.seeds import derive_seed
from r1lab.stages.context import StageContext
from r1lab.stages.grpo import PROMPTS_FILE
from r1lab.stages.filters import (
    Sample,
    acceptance_report,
    accepted,
    active_filters,
    chat_messages,
    dedup,
    difficulty,
    failed_filters,
    mix_sample,
    num_to_mix,
    select,
)
from r1lab.stages.registry import register_stage, typed_stage

DATASET_DIR = "dataset"  # <stage_dir>/dataset/: what `data: previous` of a later stage reads


@dataclass
class RejectionStageConfig(SampledPromptsConfig):
    """Rejection sampling into an SFT dataset; trains nothing (optimizer fields are ignored)."""

    kind: str = "rejection"
    max_per_prompt: int = 1  # m: completions kept per prompt (selection=all keeps every accepted one)
    selection: str = "shortest"  # shortest | longest (cold-start traces) | random | all
    dedup: bool = True  # drop rows whose whitespace-collapsed, lowercased prompt and response repeat
    mix_file: Optional[str] = None  # non-reasoning SFT data (messages, or prompt/response): file, save_to_disk folder, dataset folder or hub id; null = none
    mix_split: str = "train"  # split of mix_file read from a dataset folder or hub id
    mix_subset: Optional[str] = None  # dataset config name of mix_file; null = the only one
    mix_columns: dict[str, str] = field(default_factory=dict)  # mix column (messages | prompt | response | id) -> dataset column, renamed on load
    mix_ratio: float = 3.0  # reasoning rows per non-reasoning row (R1: 600k : 200k = 3)


# --- prompts -----------------------------------------------------------------------------------


def tail_indices(ids: list[str], count: int, excluded: set[str]) -> list[int]:
    """Indices of the last ``count`` rows whose id is not in ``excluded``, ascending.

    >>> tail_indices(["a", "b", "c", "d", "b"], 2, excluded={"d"})
    [2, 4]
    """
    out = []
    for i in range(len(ids) - 1, -1, -1):
        if len(out) == count:
            break
        if ids[i] not in excluded:
            out.append(i)
    return sorted(out)


def grpo_drawn_ids(ctx: StageContext, train: Dataset) -> set[str]:
    """Ids of the train rows the stages before this one trained on: each records them in
    ``<stage_dir>/prompts.json`` (GRPO: every prompt it drew, dynamic sampling's extra rounds
    included)."""
    earlier = [(n, r) for n, r in ctx.run.stages.items() if r is not None][: ctx.stage.index - 1]
    drawn: set[str] = set()
    for index, (name, raw) in enumerate(earlier, start=1):
        record = ctx.stage_dir.parent / f"{index:02d}-{name}" / PROMPTS_FILE
        if record.exists():
            drawn.update(json.loads(record.read_text())["prompt_ids"])
        elif typed_stage(name, raw).kind == "grpo":
            raise FileNotFoundError(
                f"stages.{ctx.stage.name}.source=train_tail needs {record}, the prompts stage {name!r} trained on; "
                "it is written when a GRPO stage finishes (a run directory from before r1lab recorded it lacks it): "
                f"rerun stage {name!r}, or give stages.{ctx.stage.name}.source a problems file"
            )
    return drawn


def prompt_rows(ctx: StageContext) -> Dataset:
    """The problems this stage samples (see the module docstring for ``source``)."""
    cfg = ctx.cfg
    if cfg.source == "train_tail":
        train = ctx.task.split("train")
        return train.select(tail_indices(train["id"], cfg.num_prompts, grpo_drawn_ids(ctx, train)))
    from r1lab.tasks.base import source_options

    task = ctx.run.task  # a source naming the task's own dataset (source: ${task.train_file}) is read with its options
    which = next((w for w in ("train", "test") if cfg.source == getattr(task, f"{w}_file")), None)
    options = source_options(task, which) if which else {}
    rows = ctx.task.load_file(cfg.source, **{**options, "field": f"stages.{ctx.stage.name}.source"})
    return rows.select(range(min(cfg.num_prompts, len(rows))))


# --- sampling and judging ------------------------------------------------------------------------


@torch.no_grad()
def sample_and_judge(
    engine: RolloutEngine, tokenizer, task: Task, template: str, rows: Dataset, row_ids: list[int], cfg, seed: int
) -> list[list[Sample]]:
    """``cfg.samples_per_prompt`` completions of each row, scored and checked by every filter;
    one list of samples per row.

    ``row_ids[i]`` is the global index of ``rows[i]`` (rows are sharded over ranks). The task's
    correctness reward, ``format`` and the language reward are computed for every sample.
    """
    if len(rows) == 0:
        return []
    k = cfg.samples_per_prompt
    params = SamplingParams(cfg.max_new_tokens, cfg.temperature, cfg.top_p)
    weights = {task.correctness_reward: 1.0, "format": 0.0, cfg.readability.language_reward: 0.0}
    r = sample_groups(engine, tokenizer, task, template, list(rows), k, params, weights, seed,
                      max_batch=cfg.generation_batch_size, tools=cfg.tools)
    samples = []
    for i in range(len(r)):
        rewards = {name: float(values[i]) for name, values in r.components.items()}
        s = {
            "row": row_ids[i // k],
            "sample_index": i % k,
            "completion": r.texts[i],  # what follows the prompt: the SFT target
            "response": r.responses[i],  # what the rewards saw
            "num_tokens": len(r.completions[i]),
            "stopped": not bool(r.truncated[i]),
            "rewards": rewards,
            "correct": rewards[task.correctness_reward] >= 1.0,
        }
        if r.tool_stats:
            s["tool_calls"] = int(r.tool_stats["calls"][i])
        s["failed"] = failed_filters(s, cfg.readability)
        samples.append(s)
    return [samples[i * k : (i + 1) * k] for i in range(len(rows))]


def sample_all_ranks(ctx: StageContext, engine: RolloutEngine, tokenizer, rows: Dataset) -> list[Sample]:
    """Every rank samples its share of ``rows``; all ranks get all samples, in row order."""
    seed = derive_seed(ctx.cfg.seed, "sampled_prompts", rank=dist.rank())

    def judge(mine: list[int]) -> list[list[Sample]]:
        return sample_and_judge(engine, tokenizer, ctx.task, ctx.run.model.template, rows.select(mine), mine, ctx.cfg, seed)

    return [s for per_row in dist.map_sharded(len(rows), judge) for s in per_row]


# --- the dataset ---------------------------------------------------------------------------------


def reasoning_rows(kept: list[Sample], rows: Dataset, questions: list[str], source_checkpoint: str) -> list[dict[str, Any]]:
    out = []
    for s in kept:
        row = rows[s["row"]]
        out.append(
            {
                "prompt": questions[s["row"]],
                "response": s["completion"],
                "messages": None,
                "kind": "reasoning",
                "prompt_id": str(row["id"]),
                "sample_index": s["sample_index"],
                "difficulty": difficulty(row),
                **{f"reward_{name}": value for name, value in s["rewards"].items()},
                "num_tokens": s["num_tokens"],
                "source": "sampled",
                "source_checkpoint": source_checkpoint,
            }
        )
    return out


def non_reasoning_rows(
    path: str, num_reasoning: int, ratio: float, seed: int, tokenizer, field: str, **source: Any
) -> list[dict[str, Any]]:
    """Rows of the non-reasoning file for ``ratio`` reasoning : 1 (all of them if it has fewer).

    ``source``: ``split``/``subset``/``columns``/``option_fields`` of ``load_source``."""
    from r1lab.data.files import load_source

    table = load_source(path, field=field, **source).to_list()
    count = num_to_mix(num_reasoning, ratio, len(table))
    out = []
    for i, row in enumerate(mix_sample(table, count, seed)):
        messages = chat_messages(row, source=f"{field} '{path}'")
        user = [m["content"] for m in messages if m["role"] == "user"]
        response = messages[-1]["content"]
        out.append(
            {
                "prompt": user[-1] if user else "",
                "response": response,
                "messages": messages,
                "kind": "non_reasoning",
                "prompt_id": str(row.get("id") or f"mix-{i}"),
                "num_tokens": len(tokenizer(response, add_special_tokens=False).input_ids),
                "source": path,
            }
        )
    return out


def dataset_features(reward_names: list[str]) -> Features:
    return Features(
        {
            "prompt": Value("string"),
            "response": Value("string"),
            "messages": List({"role": Value("string"), "content": Value("string")}),
            "kind": Value("string"),
            "prompt_id": Value("string"),
            "sample_index": Value("int64"),
            "difficulty": Value("string"),
            **{f"reward_{n}": Value("float32") for n in reward_names},
            "num_tokens": Value("int64"),
            "source": Value("string"),
            "source_checkpoint": Value("string"),
        }
    )


def save_dataset(rows: list[dict], features: Features, path) -> None:
    """``save_to_disk`` into ``<path>.tmp``, then rename: a crash never leaves a half dataset."""
    ds = Dataset.from_dict({name: [r.get(name) for r in rows] for name in features}, features=features)
    tmp = tmp_path(path)
    shutil.rmtree(tmp, ignore_errors=True)
    ds.save_to_disk(str(tmp))
    commit_dir(tmp, path)


def load_sampler(ctx: StageContext):
    """The model to sample from and its tokenizer. Like ``ctx.load_policy`` (an unmerged LoRA
    stage's adapter is folded in) but adds no new adapters and checks no training batch sizes:
    nothing trains here."""
    from r1lab.models.load import load_model, load_tokenizer
    from r1lab.models.lora import is_adapter_dir, load_base_with_adapter

    if is_adapter_dir(ctx.start_model):
        model = load_base_with_adapter(ctx.start_model, lambda path: load_model(path, ctx.run.model))
        return model, load_tokenizer(model.config._name_or_path, ctx.run.model)
    return load_model(ctx.start_model, ctx.run.model), load_tokenizer(ctx.start_model, ctx.run.model)


def run_rejection(ctx: StageContext) -> None:
    cfg, out_dir = ctx.cfg, ctx.stage_dir / DATASET_DIR
    if out_dir.exists():  # finished before a crash in the pipeline's eval: nothing to redo
        return
    began = time.time()
    model, tokenizer = load_sampler(ctx)
    model.to(dist.device())
    rows = prompt_rows(ctx)
    if len(rows) == 0:
        raise ValueError(f"stages.{ctx.stage.name}.source={cfg.source!r} gave no prompts")
    engine = ctx.rollout_engine(model, tokenizer)
    samples = sample_all_ranks(ctx, engine, tokenizer, rows)
    engine.close()
    del model

    # every rank holds all samples; the selection is cheap, so all compute it and rank 0 writes
    good = [s for s in samples if accepted(s)]
    kept = select(good, cfg.max_per_prompt, cfg.selection, cfg.seed)
    reasoning = reasoning_rows(kept, rows, [ctx.task.question(r) for r in rows], ctx.start_model)
    unique = dedup(reasoning) if cfg.dedup else reasoning
    mixed = []
    if cfg.mix_file:
        field = f"stages.{ctx.stage.name}.mix_file"
        at = f"stages.{ctx.stage.name}."
        source = dict(
            split=cfg.mix_split, subset=cfg.mix_subset, columns=cfg.mix_columns,
            option_fields={"split": f"{at}mix_split", "subset": f"{at}mix_subset", "columns": f"{at}mix_columns"},
        )
        mixed = non_reasoning_rows(cfg.mix_file, len(unique), cfg.mix_ratio, cfg.seed, tokenizer, field, **source)
    report = acceptance_report(samples, [difficulty(r) for r in rows], active_filters(cfg.readability))
    report.update(
        selected=len(kept),
        duplicates_removed=len(reasoning) - len(unique),
        reasoning_rows=len(unique),
        non_reasoning_rows=len(mixed),
        rows=len(unique) + len(mixed),
        truncated_rate=round(float(np.mean([not s["stopped"] for s in samples])), 4),
        mean_accepted_tokens=round(float(np.mean([s["num_tokens"] for s in good])), 1) if good else 0.0,
        source=cfg.source,
        source_checkpoint=ctx.start_model,
        mix_file=cfg.mix_file,
        seconds=round(time.time() - began, 1),
    )
    if dist.is_main():
        write_json_atomic(ctx.stage_dir / "report.json", report)
    if not unique + mixed:
        raise ValueError(
            f"stages.{ctx.stage.name}: no sample passed (of {report['samples']}, {report['correct']} correct); "
            f"see {ctx.stage_dir / 'report.json'}: sample more prompts, or relax the readability filters"
        )
    if dist.is_main():
        save_dataset(unique + mixed, dataset_features(list(samples[0]["rewards"])), out_dir)
        tracker = ctx.tracker(total_steps=0)
        tracker.log(1, {k: v for k, v in report.items() if isinstance(v, (int, float)) and not isinstance(v, bool)})
        tracker.finish()
        print(
            f"[r1lab] rejection: {report['samples']} samples of {report['prompts']} prompts, "
            f"{report['correct']} correct, {report['accepted']} accepted, {len(unique)} kept + {len(mixed)} non-reasoning "
            f"-> {out_dir}",
            flush=True,
        )
    dist.barrier()


register_stage(RejectionStageConfig, run_rejection, writes_dataset=True)
