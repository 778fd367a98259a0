"""`r1lab` console script: a Hydra app that runs a recipe.

    r1lab recipe=r1_countdown_tiny
    r1lab recipe=r1_countdown_tiny stages.grpo.lr=1e-6
    r1lab -m recipe=r1_countdown_tiny stages.grpo.loss.reduction=seq_mean_token_mean,token_mean
    r1lab recipe=r1_countdown_tiny resume=outputs/r1_countdown_tiny/<timestamp>
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from r1lab.config.errors import USER_ERRORS, fail
from r1lab.config.store import register_configs
from r1lab.stages.registry import stage_schemas
from r1lab.tasks import task_schemas
from r1lab.tasks.base import check_no_old_task_overrides

CONFIG_DIR = str(Path(__file__).resolve().parent.parent / "configs")


def run(cfg: DictConfig) -> None:
    from r1lab.rollout.engine import RolloutEngineError
    from r1lab.validate import validate

    try:
        typed, stages = validate(cfg)
        # hydra.run.dir is `resume`, else `run_dir`, else outputs/<name>/<timestamp>
        run_dir = Path(HydraConfig.get().runtime.output_dir)
        if typed.resume and not (run_dir / "config.yaml").exists():
            raise FileNotFoundError(f"resume={typed.resume}: not a run directory (no config.yaml there)")
        if not typed.resume and (run_dir / "config.yaml").exists():
            # a finished stage there would be skipped and its old result reported as this run's
            raise ValueError(
                f"run_dir={run_dir} already holds a run; continue it with resume={run_dir}, "
                f"or pick a new run_dir (or leave it unset for outputs/<recipe>/<timestamp>)"
            )
        if typed.cache.enabled and typed.cache.dir is None and HydraConfig.get().mode == RunMode.MULTIRUN:
            typed.cache.dir = str(Path(HydraConfig.get().sweep.dir) / ".stage_cache")  # the sweep's arms share it
        from r1lab.pipeline import run_pipeline

        run_pipeline(typed, stages, run_dir, OmegaConf.to_yaml(cfg, resolve=True))
    except (*USER_ERRORS, RolloutEngineError) as err:
        fail(err)


def main() -> None:
    os.environ.setdefault("WANDB_MODE", "offline")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    register_configs(stage_schemas(), task_schemas())  # imports the stage and task modules: each declares its schema
    try:
        check_no_old_task_overrides(sys.argv[1:])
    except ValueError as err:
        fail(err)
    if not OmegaConf.has_resolver("first"):
        OmegaConf.register_new_resolver("first", lambda *values: next((v for v in values if v), None))
    hydra.main(config_path=CONFIG_DIR, config_name="config", version_base=None)(run)()


if __name__ == "__main__":
    main()
