"""Register the schemas with Hydra's ConfigStore, so YAML is merged onto typed nodes."""
from __future__ import annotations

from typing import Mapping

from hydra.core.config_store import ConfigStore
from omegaconf import OmegaConf

from r1lab.config.schema import (
    EngineConfig,
    EvalConfig,
    ModelConfig,
    RolloutConfig,
    RunConfig,
    TrackingConfig,
)


def register_task_options(task_schemas: Mapping[str, type]) -> None:
    """One option of the ``task`` config group per task (name -> its ``TaskConfig`` subclass:
    ``r1lab.tasks.task_schemas()``), holding the schema's defaults: ``task=<name>`` types
    ``task.*`` by that task's schema. Both console scripts (``r1lab``, ``r1lab-eval``) call it."""
    cs = ConfigStore.instance()
    for name, schema in task_schemas.items():
        node = OmegaConf.structured(schema)
        node.name = name
        cs.store(group="task", name=name, node=node)


def register_configs(stage_schemas: Mapping[str, type], task_schemas: Mapping[str, type]) -> None:
    """The run's schemas, ``stage_schemas`` (kind -> schema; every registered stage kind's:
    ``r1lab.stages.registry.stage_schemas()``) in the group ``stage_schema``, the node a recipe's
    defaults put under a stage (``- /stage_schema/grpo@stages.grpo``), and the task options
    (:func:`register_task_options`)."""
    cs = ConfigStore.instance()
    cs.store(name="r1lab_schema", node=RunConfig)
    cs.store(group="model", name="model_schema", node=ModelConfig)
    cs.store(group="engine", name="engine_schema", node=EngineConfig)
    cs.store(group="tracking", name="tracking_schema", node=TrackingConfig)
    cs.store(group="eval", name="eval_schema", node=EvalConfig)
    cs.store(group="rollout", name="rollout_schema", node=RolloutConfig)
    for kind, schema in stage_schemas.items():
        cs.store(group="stage_schema", name=kind, node=schema)
    register_task_options(task_schemas)
