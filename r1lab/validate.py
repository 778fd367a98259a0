"""Start-up validation: turn the composed config into typed objects or fail with one line.

Every name a config gives is checked against the registry that holds it -- stage kinds, rewards
and algorithms (through each kind's ``check``), tools, tasks, prompt templates and rollout
engines -- so a part registered anywhere (r1lab or a plugin, see ``r1lab.registry``) is valid
without an edit here, and a wrong name fails listing the valid ones. That is why this module sits
above everything whose registries it reads and below only the pipeline and the console script.
"""
from __future__ import annotations

import importlib.util
from typing import Any

from omegaconf import DictConfig, OmegaConf

from r1lab.config.errors import ConfigError
from r1lab.config.schema import RunConfig
from r1lab.engine.schedule import SCHEDULES
from r1lab.models.templates import TEMPLATES
from r1lab.rollout.engine import ROLLOUT_ENGINES
from r1lab.rollout.wire import parse_address
from r1lab.stages.registry import Stage, typed_stage
from r1lab.tasks.base import typed_task
from r1lab.tasks.countdown_traces import TRACE_TOOLS
from r1lab.tools import TOOLS

__all__ = ["ConfigError", "Stage", "check_rollout", "check_stage", "check_tools", "typed_stage", "validate"]

PLACEMENTS = ("colocated", "separate")


def check_stage(name: str, cfg: Any) -> None:
    """The checks every stage shares, and its kind's own (``cfg.check``, declared with its schema)."""
    if getattr(cfg, "micro_batch_per_device", 1) < 1:
        raise ConfigError(f"stages.{name}.micro_batch_per_device must be >= 1")
    try:
        cfg.check(name)
    except ConfigError:
        raise
    except ValueError as err:
        raise ConfigError(str(err)) from None
    if cfg.schedule not in SCHEDULES:
        raise ConfigError(f"stages.{name}.schedule={cfg.schedule!r}; valid: {', '.join(SCHEDULES.names())}")
    if getattr(cfg, "tools", None) is not None:
        check_tools(cfg.tools, f"stages.{name}.tools")
    if getattr(cfg, "trace_tool", None) is not None and cfg.trace_tool not in TRACE_TOOLS:
        raise ConfigError(f"stages.{name}.trace_tool={cfg.trace_tool!r}; valid: {', '.join(TRACE_TOOLS)}")


def check_tools(cfg, at: str) -> None:
    """Every named tool is registered (``r1lab.tools``) and the limits can work."""
    for tool in cfg.names:
        if tool not in TOOLS:
            raise ConfigError(f"{at}.names: {tool!r} is not a tool; valid: {', '.join(sorted(TOOLS))}")
    if len(set(cfg.names)) != len(cfg.names):
        raise ConfigError(f"{at}.names={list(cfg.names)} names a tool twice")
    if cfg.max_calls < 1 or cfg.timeout_s <= 0 or cfg.max_result_chars < 1 or cfg.memory_mb < 16:
        raise ConfigError(
            f"{at}: max_calls >= 1, timeout_s > 0, max_result_chars >= 1 and memory_mb >= 16 are needed "
            f"(got {cfg.max_calls}, {cfg.timeout_s}, {cfg.max_result_chars}, {cfg.memory_mb}); "
            f"to turn tools off, set {at}.names=[]"
        )


def check_rollout(cfg) -> None:
    """The rollout engine can be built: a registered backend whose required modules are installed
    (looked up, not imported: vLLM is imported only when its engine is built)."""
    if cfg.backend not in ROLLOUT_ENGINES:
        raise ConfigError(f"rollout.backend={cfg.backend!r}; valid: {', '.join(ROLLOUT_ENGINES.names())}")
    engine = ROLLOUT_ENGINES.get(cfg.backend)
    for module in getattr(engine, "requires", ()):
        if importlib.util.find_spec(module) is None:
            hint = getattr(engine, "install_hint", "") or f"install {module} or pick another rollout.backend"
            raise ConfigError(hint)
    if cfg.tensor_parallel_size != 1:
        raise ConfigError(
            f"rollout.tensor_parallel_size={cfg.tensor_parallel_size}: colocated vLLM engines are one per rank "
            "for now; set rollout.tensor_parallel_size=1 (shard the trainer with engine=zero3 instead)"
        )
    if not 0.0 < cfg.gpu_memory_utilization <= 1.0:
        raise ConfigError(f"rollout.gpu_memory_utilization={cfg.gpu_memory_utilization}: must be in (0, 1]")
    if cfg.placement not in PLACEMENTS:
        raise ConfigError(f"rollout.placement={cfg.placement!r}; valid: {', '.join(PLACEMENTS)}")
    if cfg.max_staleness < 0:
        raise ConfigError(f"rollout.max_staleness={cfg.max_staleness}: must be >= 0 (0: on-policy, 1: one-step-off)")
    if cfg.placement == "colocated" and (cfg.max_staleness or cfg.servers):
        raise ConfigError(
            "rollout.max_staleness and rollout.servers need separate rollout workers; set rollout.placement=separate"
        )
    if cfg.num_workers < 1 or cfg.worker_threads < 0 or cfg.worker_timeout_s < 0:
        raise ConfigError(
            f"rollout.num_workers >= 1, worker_threads >= 0 and worker_timeout_s >= 0 are needed "
            f"(got {cfg.num_workers}, {cfg.worker_threads}, {cfg.worker_timeout_s})"
        )
    for address in cfg.servers:
        try:
            parse_address(address)
        except ValueError as err:
            raise ConfigError(str(err)) from None
    if cfg.servers and cfg.restart_workers:
        raise ConfigError("rollout.restart_workers restarts embedded workers; workers in rollout.servers are started elsewhere: drop one of the two")


def validate(cfg: DictConfig) -> tuple[RunConfig, list[Stage]]:
    """Check the whole config; return the typed run config and the ordered stages."""
    raw_stages = OmegaConf.to_container(cfg.stages, resolve=True) if cfg.stages is not None else {}
    stages = []
    for i, (name, raw) in enumerate(raw_stages.items(), start=1):
        if raw is None:  # `stages.grpo=null` removes a stage from a recipe
            continue
        typed = typed_stage(name, raw)
        check_stage(name, typed)
        stages.append(Stage(index=len(stages) + 1, name=name, cfg=typed))
    if not stages:
        raise ConfigError("the recipe has no stages; add some under `stages:` (see recipes/)")
    run = OmegaConf.to_object(cfg)
    if run.model.template not in TEMPLATES:
        raise ConfigError(f"model.template={run.model.template!r}; valid: {', '.join(TEMPLATES)}")
    try:
        run.task = typed_task(run.task)
        run.task.check()
    except ValueError as err:
        raise ConfigError(str(err)) from None
    if run.eval.samples < 1:
        raise ConfigError("eval.samples must be >= 1")
    check_tools(run.eval.tools, "eval.tools")
    check_rollout(run.rollout)
    return run, stages
