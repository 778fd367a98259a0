"""Every ablation recipe composes and validates for each combination of its launch command's sweep."""
import itertools
import re
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra

from r1lab.cli import CONFIG_DIR
from r1lab.config.store import register_configs
from r1lab.stages.registry import stage_schemas
from r1lab.tasks import task_schemas
from r1lab.validate import validate

RECIPES = sorted(Path(CONFIG_DIR, "recipe").glob("ablation_*.yaml"))


def launch_overrides(path: Path) -> list[list[str]]:
    """The sweep of the recipe's `# Launch:  r1lab -m ...` line, expanded to one list per job."""
    line = next(line for line in path.read_text().splitlines() if line.startswith("# Launch:"))
    args = line.split("r1lab -m", 1)[1].split()
    choices = [[f"{k}={v}" for v in values.split(",")] for k, values in (a.split("=", 1) for a in args)]
    return [list(job) for job in itertools.product(*choices)]


def test_there_are_ablation_recipes():
    names = {p.stem for p in RECIPES}
    assert {"ablation_template", "ablation_reduction", "ablation_format_reward", "ablation_kl",
            "ablation_cold_start", "ablation_traces"} <= names


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.stem)
def test_recipe_sweep_composes_and_validates(path):
    text = path.read_text()
    assert text.startswith("# @package _global_")
    jobs = launch_overrides(path)
    assert len(jobs) >= 2
    assert re.search(r"^# Compare: r1lab-compare sweep_dir=multirun/", text, re.M)
    register_configs(stage_schemas(), task_schemas())
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base=None):
        names = set()
        stage_sets = set()
        for job in jobs:
            cfg = compose("config", overrides=job)
            run, stages = validate(cfg)
            names.add(run.name)
            stage_sets.add(tuple(s.name for s in stages))
            assert run.eval.num_problems <= 100 and run.eval.samples <= 4
            assert all(getattr(s.cfg, "steps", 0) <= 300 for s in stages)
    assert len(names) == 1  # one sweep directory per launch
    if path.stem.startswith("ablation_cold_start"):
        assert stage_sets == {("cold_start", "grpo"), ("grpo",)}
