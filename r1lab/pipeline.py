"""Run a recipe's stages in order; each starts from the previous stage's checkpoint.

Each stage runs the function its ``kind`` is registered with (``r1lab.stages.registry``). A
stage's output is a model (``checkpoint/``), a dataset (``dataset/``, e.g. rejection sampling),
or both. The next stage starts from the newest checkpoint (a stage without one passes the model
it was given on unchanged); ``model: base`` restarts from the run's starting model instead, as
R1's final SFT restarted from DeepSeek-V3-Base. ``data: previous`` reads the newest dataset of an
earlier stage. A stage without a checkpoint is not evaluated again: its ``eval.json`` repeats the
previous figures (``reused_from`` says whose), so the final table still has one row per stage.

Run directory layout::

    <run_dir>/config.yaml            resolved config of the whole run
    <run_dir>/base_model/            the tiny model built from config (tiny models only)
    <run_dir>/stages/00-start/eval.json
    <run_dir>/stages/NN-<name>/      config.yaml, metrics.jsonl, checkpoint/ or dataset/, eval.json, done.json
    <run_dir>/summary.json, summary.md

Resuming (``resume=<run_dir>``) skips stages with ``done.json`` and continues the unfinished one
from its newest resumable checkpoint (``stages/NN-<name>/resume/step-*``).

With a stage cache (``cache.dir``, on by default in a sweep; ``r1lab.stage_cache``), a stage whose
key (config, inputs, code) was built before is not run: its files are linked in from the cache
and ``done.json`` records ``cache: {key, hit, entry}``; a built one is published to the cache.
"""
from __future__ import annotations

import json
import time
from dataclasses import asdict, replace
from pathlib import Path

import torch
from omegaconf import OmegaConf

from r1lab import stage_cache
from r1lab.config.errors import ConfigError
from r1lab.config.schema import RunConfig
from r1lab.tasks import Task, build_task
from r1lab.engine import dist
from r1lab.engine.checkpoint import write_json_atomic
from r1lab.eval.evaluate import evaluate_with_samples, select_problems
from r1lab.eval.suites import check_suites, run_suites
from r1lab.models.load import load_model, load_tokenizer
from r1lab.models.lora import full_model_path
from r1lab.rollout.engine import Policy, build_rollout_engine
from r1lab.stages.context import StageContext
from r1lab.stages.registry import STAGE_KINDS, STAGES, Stage, dataset_kinds, import_stage_modules  # noqa: F401  (STAGES: kind -> run function)
from r1lab.stages.rejection import DATASET_DIR

import_stage_modules()  # every stage module registers its kind

TABLE_COLUMNS = ("greedy_accuracy", "sampled_accuracy", "pass_at_k", "format_rate", "mean_response_length")


def log(msg: str) -> None:
    if dist.is_main():
        print(f"[r1lab] {msg}", flush=True)


def starting_model(run: RunConfig, run_dir: Path) -> str:
    if run.model.name_or_path != "tiny":
        return run.model.name_or_path
    path = run_dir / "base_model"
    if dist.is_main() and not path.exists():
        from r1lab.models.tiny import save_tiny_model

        save_tiny_model(run.model.tiny, path)
    dist.barrier()
    return str(path)


def evaluate_into(model_path: str, run: RunConfig, task: Task, out: Path, seed: int) -> dict:
    if out.exists():
        return json.loads(out.read_text())
    tokenizer = load_tokenizer(model_path, run.model)
    model = load_model(model_path, run.model).to(dist.device())
    engine = build_rollout_engine(run.rollout, Policy(module=model, path=full_model_path(model_path)), tokenizer, run.seed)
    problems = select_problems(task, run.eval)
    result, records = evaluate_with_samples(engine, tokenizer, task, run.model.template, run.eval, seed, problems)
    # eval.faithfulness / forgetting / robustness: new keys only, after every plain figure is drawn
    result.update(run_suites(engine, model, tokenizer, task, run.model.template, run.eval, seed, problems, result, records))
    engine.close()
    result["model"] = model_path
    if dist.is_main():
        out.parent.mkdir(parents=True, exist_ok=True)
        write_json_atomic(out, result)
    dist.barrier()
    return result


def check_inputs(stages: list[Stage]) -> None:
    """Fail before anything runs when a stage's kind has no registered run function, or when
    ``data: previous`` has no earlier stage writing a dataset."""
    for stage in stages:
        if stage.cfg.kind not in STAGE_KINDS:
            raise ConfigError(
                f"stages.{stage.name}.kind={stage.cfg.kind!r} has a schema but nothing registered to run it "
                f"(r1lab.stages.registry.register_stage); registered kinds: {', '.join(STAGE_KINDS)}"
            )
    writers = dataset_kinds()
    for i, stage in enumerate(stages):
        if getattr(stage.cfg, "data", None) == "previous" and not any(s.cfg.kind in writers for s in stages[:i]):
            raise ConfigError(
                f"stages.{stage.name}.data=previous but no earlier stage writes a dataset "
                f"(kinds that do: {', '.join(writers)}); add one or give a file path"
            )


def with_inputs(stage: Stage, dataset: str | None) -> Stage:
    """The stage with ``data: previous`` replaced by the newest earlier dataset's path."""
    if getattr(stage.cfg, "data", None) != "previous":
        return stage
    return replace(stage, cfg=replace(stage.cfg, data=dataset))


def run_pipeline(run: RunConfig, stages: list[Stage], run_dir: Path, resolved_yaml: str) -> dict[str, dict]:
    if run.engine.num_threads:
        torch.set_num_threads(run.engine.num_threads)
    dist.init_distributed(run.engine.cpu_shm_allreduce, run.engine.collective_timeout_minutes)
    torch.manual_seed(run.seed)
    if dist.is_main():
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "config.yaml").write_text(resolved_yaml)
    log(f"run directory: {run_dir}")
    check_inputs(stages)
    task = build_task(run.task)
    check_suites(run.eval, task)  # eval.robustness names the task's perturbations: known once it is built
    base_model = model_path = starting_model(run, run_dir)
    dataset_path = None  # the newest <stage_dir>/dataset/ so far
    results: dict[str, dict] = {}
    cache = stage_cache.StageCache.from_config(run.cache, log)
    if cache is not None:  # keys from config and input files only, so all are known before anything runs
        log(f"stage cache: {cache.dir}")
        keys = stage_cache.stage_keys(run, stages, {k: STAGE_KINDS[k].run for k in STAGE_KINDS}, dist.world_size())
    else:
        keys = {}
    if run.eval.initial:
        log(f"evaluating the starting model {model_path}")
        results["start"] = evaluate_into(model_path, run, task, run_dir / "stages" / "00-start" / "eval.json", run.seed)
    for stage in stages:
        stage_dir = run_dir / "stages" / stage.dirname
        done = stage_dir / "done.json"
        if done.exists():
            log(f"stage {stage.dirname}: finished earlier, skipped")
        else:
            start = base_model if stage.cfg.model == "base" else stage.cfg.model or model_path
            stage = with_inputs(stage, dataset_path)
            log(f"stage {stage.dirname} ({stage.cfg.kind}) from {start}")
            if dist.is_main():
                stage_dir.mkdir(parents=True, exist_ok=True)
                (stage_dir / "config.yaml").write_text(OmegaConf.to_yaml(OmegaConf.structured(stage.cfg)))
            began = time.time()
            with stage_cache.claim(cache, stage, keys.get(stage.dirname), stage_dir, run) as cached:
                if not cached.hit:  # a hit has put the entry's files (and, if still valid, its eval.json) in stage_dir
                    ctx = StageContext(run=run, stage=stage, stage_dir=stage_dir, start_model=start, task=task, group=run_dir.name)
                    STAGE_KINDS[stage.cfg.kind].run(ctx)
                trained = time.time() - began
                if (stage_dir / "checkpoint").exists():
                    evaluate_into(str(stage_dir / "checkpoint"), run, task, stage_dir / "eval.json", run.seed)
                elif results and dist.is_main():  # the model did not change: repeat the last figures
                    last = next(reversed(results))
                    write_json_atomic(stage_dir / "eval.json", {**results[last], "reused_from": last})
                elif not results:
                    evaluate_into(model_path, run, task, stage_dir / "eval.json", run.seed)
                dist.barrier()
                cached.publish()
            if dist.is_main():
                cache_record = {"cache": cached.record} if cached.record else {}
                write_json_atomic(done, {"train_seconds": round(trained, 1), "start_model": start, **cache_record})
        results[stage.dirname] = json.loads((stage_dir / "eval.json").read_text())
        if (stage_dir / "checkpoint").exists():
            model_path = str(stage_dir / "checkpoint")
        if (stage_dir / DATASET_DIR).exists():
            dataset_path = str(stage_dir / DATASET_DIR)
    if dist.is_main():
        write_json_atomic(run_dir / "summary.json", results)
        table = format_table(results)
        (run_dir / "summary.md").write_text(table + "\n")
        print("\n" + table, flush=True)
    return results


def format_table(results: dict[str, dict]) -> str:
    """One markdown row per stage (and the starting model) of the held-out figures.

    A stage that changed no model (rejection sampling) repeats the previous row, marked "(data)".
    ``language_consistency`` gets a column when every evaluation reports it.
    """
    any_eval = next(iter(results.values()))
    k = max(int(x) for x in any_eval["pass_at_k"])
    lang = all(r.get("language_consistency") is not None for r in results.values())
    head = f"| stage | problems | greedy acc | sampled acc (k={any_eval['samples_per_problem']}, T={any_eval['temperature']}) | pass@{k} | format | mean length |"
    head += " language |" if lang else ""
    lines = [head, "|" + "---|" * (8 if lang else 7)]
    for name, r in results.items():
        shown = f"{name} (data)" if r.get("reused_from") else name
        line = (
            f"| {shown} | {r['num_problems']} | {r['greedy_accuracy']:.3f} | {r['sampled_accuracy']:.3f} | "
            f"{r['pass_at_k'][str(k)]:.3f} | {r['format_rate']:.3f} | {r['mean_response_length']:.1f} |"
        )
        lines.append(line + (f" {r['language_consistency']:.3f} |" if lang else ""))
    return "\n".join(lines)
