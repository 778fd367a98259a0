"""`r1lab-eval` console script: a Hydra app that evaluates one model.

    r1lab-eval model=outputs/r1_countdown_tiny/<timestamp>                 (the run's last stage)
    r1lab-eval model=outputs/r1_countdown_tiny/<timestamp>/stages/00-start (the run's base model)
    r1lab-eval model=/path/to/hf_model template=r1_zero task=countdown eval.num_problems=100
    r1lab-eval model=<path> data_file=my_problems.jsonl
    r1lab-eval model=<path> scaling.samples=[1,2,4,8,16] scaling.max_new_tokens=[64,128,256]
    r1lab-eval model=smollm2-135m-instruct template=chat studies.behaviours=true \
        studies.templates=[r1_zero,chat,none] studies.perplexity_bridge=true

Its root config is ``r1lab/eval/conf/config.yaml`` (schema ``r1lab.eval.config.EvalAppConfig``),
in its own folder whose ``eval/`` is a link to ``configs/eval``; the ``task`` group's options are
the registered tasks' schemas (``r1lab.config.store.register_task_options``), as in ``r1lab``.
Not in ``configs/``: there ``model=<path>`` would name the main app's ``model`` config group, and
a folder of the eval app inside ``configs/`` would show up as a config group of ``r1lab``.

``model`` may be a model folder or hub id, a run's stage directory (its ``checkpoint/``; for
``00-start`` the run's base model) or a run directory (its last finished stage). For a model of a
run, ``task`` and ``eval`` start from the run's ``config.yaml`` and ``template`` defaults to the
run's, so the figures match the pipeline's ``eval.json``; command-line overrides still win.

Writes into ``out_dir`` (default ``<stage dir>/eval-<task>-<split>/`` for a run's model, else
``outputs/eval/<timestamp>/``): ``eval.json`` (the pipeline's keys plus ``avg_at_k``,
``maj_at_k``, ``ci95``, ``by_difficulty``, ``answer_distance``, ``behaviours``), ``eval.md``,
``samples.jsonl`` (one record per completion) and, with ``scaling.*``, ``scaling.{json,md,png}``.
With ``studies.*`` (``r1lab.eval.studies``) eval.json gains ``studies.{behaviours,templates,
perplexity_bridge}``, eval.md their tables, and out_dir ``behaviours.png``, ``templates.png``,
``perplexity_bridge.png``. ``eval.faithfulness=true``, ``eval.forgetting=true`` and
``eval.robustness=[reorder,distractor,wording]`` add eval.json's ``faithfulness``, ``forgetting``
and ``robustness`` (``r1lab.eval.suites``), as in the pipeline.
"""
from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import hydra
from hydra.core.config_store import ConfigStore
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from r1lab.config.errors import USER_ERRORS, fail
from r1lab.config.store import register_task_options
from r1lab.config.schema import EvalConfig
from r1lab.eval.config import EvalAppConfig

CONFIG_DIR = str(Path(__file__).resolve().parent / "conf")


@dataclass
class ModelLocation:
    model: str  # what to load: a model folder or a hub id
    stage_dir: Path | None  # the run's stage directory the model belongs to
    run_dir: Path | None  # the run directory (with config.yaml)


def _is_model(p: Path) -> bool:
    return (p / "config.json").is_file()


def _is_run(p: Path) -> bool:
    return (p / "config.yaml").is_file() and (p / "stages").is_dir()


def resolve_model(path: str) -> ModelLocation:
    """Where ``model=<path>`` points: a model folder, a stage of a run, or a run (last stage)."""
    p = Path(path).expanduser()
    if _is_model(p):
        if p.name == "checkpoint" and p.parent.parent.name == "stages" and _is_run(p.parent.parent.parent):
            return ModelLocation(str(p), p.parent, p.parent.parent.parent)
        if p.name == "base_model" and _is_run(p.parent):
            return ModelLocation(str(p), p.parent / "stages" / "00-start", p.parent)
        return ModelLocation(str(p), None, None)
    if p.parent.name == "stages" and _is_run(p.parent.parent):
        if _is_model(p / "checkpoint"):
            return ModelLocation(str(p / "checkpoint"), p, p.parent.parent)
        if p.name.startswith("00-"):
            return ModelLocation(_run_base_model(p.parent.parent), p, p.parent.parent)
        raise FileNotFoundError(f"model={path}: stage directory without a checkpoint/ (has the stage finished?)")
    if _is_run(p):
        finished = sorted(d for d in (p / "stages").iterdir() if _is_model(d / "checkpoint"))
        if finished:
            return ModelLocation(str(finished[-1] / "checkpoint"), finished[-1], p)
        return ModelLocation(_run_base_model(p), p / "stages" / "00-start", p)
    if p.exists():
        raise FileNotFoundError(f"model={path}: not a model folder (no config.json), stage directory or run directory")
    return ModelLocation(path, None, None)  # a hub id (or a missing path: the loader says which)


def _run_base_model(run_dir: Path) -> str:
    if _is_model(run_dir / "base_model"):
        return str(run_dir / "base_model")
    name = OmegaConf.load(run_dir / "config.yaml").model.name_or_path
    if name == "tiny":
        raise FileNotFoundError(f"run {run_dir} has no base_model/ folder")
    return name


def default_out_dir(out_dir: str | None, model: str, task: str, split: str, now: str) -> str:
    """Hydra's run dir (``hydra.run.dir`` resolver): see the module docstring."""
    if out_dir:
        return out_dir
    try:
        loc = resolve_model(model)
    except FileNotFoundError:  # reported with one line once the app runs
        loc = ModelLocation(model, None, None)
    if loc.stage_dir is not None:
        return str(loc.stage_dir / f"eval-{task}-{split}")
    return f"outputs/eval/{now}"


def _override_keys(overrides: list[str]) -> list[tuple[str, str]]:
    out = []
    for o in overrides:
        key, _, value = o.partition("=")
        out.append((key.lstrip("+~"), value))
    return out


def inherit_run_config(cfg: DictConfig, run_cfg: DictConfig, overrides: list[str]) -> None:
    """Replace ``cfg.task`` and ``cfg.eval`` by the run's, then re-apply command-line overrides
    of their fields. A group chosen on the command line (``task=math``) keeps the composed one."""
    from r1lab.tasks.base import saved_task_config

    keys = _override_keys(overrides)
    for group, typed in (("task", saved_task_config), ("eval", lambda raw: OmegaConf.merge(OmegaConf.structured(EvalConfig), raw))):
        if group not in run_cfg or any(k == group for k, _ in keys):
            continue
        mine = [f"{k}={v}" for k, v in keys if k.startswith(group + ".")]
        cfg[group] = OmegaConf.merge(typed(run_cfg[group]), OmegaConf.from_dotlist(mine).get(group, {}))


def check(app: EvalAppConfig) -> None:
    from r1lab.models.templates import TEMPLATES

    if app.template not in TEMPLATES:
        raise ValueError(f"template={app.template!r}; valid: {', '.join(TEMPLATES)}")
    if app.eval.samples < 1:
        raise ValueError("eval.samples must be >= 1")
    if any(k < 1 for k in app.scaling.samples) or any(b < 1 for b in app.scaling.max_new_tokens):
        raise ValueError("scaling.samples and scaling.max_new_tokens must hold positive integers")
    bad = [t for t in app.studies.templates if t not in TEMPLATES]
    if bad:
        raise ValueError(f"studies.templates={bad}; valid: {', '.join(TEMPLATES)}")
    if app.studies.bridge_problems < 0:
        raise ValueError("studies.bridge_problems must be >= 0 (0 = all evaluated problems)")


def run(cfg: DictConfig) -> None:
    try:
        out_dir = Path(HydraConfig.get().runtime.output_dir)
        loc = resolve_model(cfg.model)
        template = cfg.template
        if loc.run_dir is not None:
            run_cfg = OmegaConf.load(loc.run_dir / "config.yaml")
            if cfg.inherit_run_config:
                inherit_run_config(cfg, run_cfg, list(HydraConfig.get().overrides.task))
            template = template or OmegaConf.select(run_cfg, "model.template")
        cfg.template = template or "r1_zero"
        if cfg.data_file:
            cfg.task.test_file = cfg.data_file
            if not cfg.task.train_file:
                cfg.task.train_file = cfg.data_file  # a task may need both splits (math); train is unused here
            cfg.eval.split = "test"
        app: EvalAppConfig = OmegaConf.to_object(cfg)
        check(app)
        evaluate_app(app, loc, out_dir)
    except USER_ERRORS as err:
        fail(err)


def evaluate_app(app: EvalAppConfig, loc: ModelLocation, out_dir: Path) -> dict:
    import torch

    from r1lab.config.schema import ModelConfig
    from r1lab.tasks import build_task
    from r1lab.engine import dist
    from r1lab.eval.evaluate import evaluate_with_samples, scaling_curve, select_problems
    from r1lab.eval.suites import check_suites, run_suites
    from r1lab.eval.tables import eval_table, scaling_table, studies_tables
    from r1lab.models.load import load_model, load_tokenizer
    from r1lab.models.lora import full_model_path
    from r1lab.rollout.engine import Policy, build_rollout_engine

    if app.num_threads:
        torch.set_num_threads(app.num_threads)
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        dist.init_distributed()
    task = build_task(app.task)
    check_suites(app.eval, task)  # before the model loads: a wrong perturbation name fails at once
    mcfg = ModelConfig(name_or_path=loc.model, template=app.template, dtype=app.dtype, trust_remote_code=app.trust_remote_code)
    tokenizer = load_tokenizer(loc.model, mcfg)
    model = load_model(loc.model, mcfg).to(dist.device())
    engine = build_rollout_engine(app.rollout, Policy(module=model, path=full_model_path(loc.model)), tokenizer, app.seed)
    problems = select_problems(task, app.eval)
    main = dist.is_main()
    if main:
        print(f"[r1lab-eval] {loc.model}: {len(problems)} problems of {task.name}/{app.eval.split}, "
              f"template {app.template}, {app.eval.samples} samples each -> {out_dir}", flush=True)
    result, records = evaluate_with_samples(engine, tokenizer, task, app.template, app.eval, app.seed, problems)
    result.update(run_suites(engine, model, tokenizer, task, app.template, app.eval, app.seed, problems, result, records))
    result.update(model=loc.model, template=app.template, task=task.name, data_file=app.data_file, seed=app.seed)
    studies = run_studies(app, engine, model, tokenizer, task, problems, result, records, out_dir, main)
    if studies:
        result["studies"] = studies
    if main:
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "eval.json").write_text(json.dumps(result, indent=2) + "\n")
        with open(out_dir / "samples.jsonl", "w") as f:
            for rec in records:
                f.write(json.dumps(rec) + "\n")
        table = eval_table(result)
        if studies:
            table += "\n\n" + studies_tables(studies)
        (out_dir / "eval.md").write_text(table + "\n")
        print(table, flush=True)
    if app.scaling.samples or app.scaling.max_new_tokens:
        samples = app.scaling.samples or [app.eval.samples]
        budgets = app.scaling.max_new_tokens or [app.eval.max_new_tokens]
        rows = scaling_curve(engine, tokenizer, task, app.template, app.eval, samples, budgets, app.seed, problems)
        if main:
            from r1lab.eval.plots import scaling_plot

            (out_dir / "scaling.json").write_text(json.dumps(rows, indent=2) + "\n")
            table = scaling_table(rows)
            (out_dir / "scaling.md").write_text(table + "\n")
            scaling_plot(rows, out_dir / "scaling.png", title=f"Test-time scaling: {Path(loc.model).name} on {task.name}")
            print("\n" + table, flush=True)
    return result


def run_studies(app: EvalAppConfig, engine, model, tokenizer, task, problems, result: dict, records: list[dict],
                out_dir: Path, main: bool) -> dict:
    """The ``studies.*`` of ``app`` (``r1lab.eval.studies``): their eval.json figures, and their
    plots written into ``out_dir`` (main rank). Every rank calls it (templates generate sharded)."""
    from r1lab.eval import studies as st

    cfg = app.studies
    out: dict = {}
    if not (cfg.behaviours or cfg.templates or cfg.perplexity_bridge):
        return out
    from r1lab.eval.plots import grouped_bars, perplexity_bridge_plot, templates_plot

    name = Path(app.model.rstrip("/")).name or app.model
    if main:
        out_dir.mkdir(parents=True, exist_ok=True)
    if cfg.behaviours:
        out["behaviours"] = study = st.behaviour_study(records, result.get("behaviours"))
        if main:
            by = study["by_outcome"]
            groups = {"all samples": "all", "correct samples": "correct", "incorrect samples": "incorrect", "greedy": "greedy"}
            values = {f"{lbl} (n={by[g]['num_completions']})": [by[g][b]["rate"] for b in st.BEHAVIOURS]
                      for lbl, g in groups.items() if by[g]["num_completions"]}
            grouped_bars(list(st.BEHAVIOURS), values, out_dir / "behaviours.png",
                         title=f"Reasoning behaviours of {name}'s own completions ({app.template})",
                         ylabel="share of completions", ylim=(0, 1.02))
    if cfg.templates:
        if main:
            print(f"[r1lab-eval] template study: {', '.join(cfg.templates)}", flush=True)
        out["templates"] = study = st.template_study(engine, tokenizer, task, cfg.templates, app.eval, app.seed, problems,
                                                     done={app.template: result})
        if main:
            for t, fig in study.items():
                if "skipped" in fig:
                    print(f"[r1lab-eval] template {t}: {fig['skipped']}", flush=True)
            templates_plot(study, out_dir / "templates.png", title=f"Template sensitivity: {name} on {task.name}")
    if cfg.perplexity_bridge and main:
        out["perplexity_bridge"] = study = st.perplexity_bridge(
            model, tokenizer, task, app.template, problems[:], records, cfg.bridge_problems, cfg.bridge_batch_size)
        perplexity_bridge_plot(study, out_dir / "perplexity_bridge.png", title=f"Perplexity bridge: {name} ({app.template})")
    return out


def main() -> None:
    os.environ.setdefault("WANDB_MODE", "offline")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from r1lab.tasks import task_schemas
    from r1lab.tasks.base import check_no_old_task_overrides

    ConfigStore.instance().store(name="eval_app_schema", node=EvalAppConfig)
    register_task_options(task_schemas())
    try:
        check_no_old_task_overrides(sys.argv[1:])
    except ValueError as err:
        fail(err)
    if not OmegaConf.has_resolver("eval_out_dir"):
        OmegaConf.register_new_resolver("eval_out_dir", default_out_dir)
    hydra.main(config_path=CONFIG_DIR, config_name="config", version_base=None)(run)()


if __name__ == "__main__":
    main()
