"""Tasks: what a run trains and evaluates on, one module per task (``r1lab.tasks.base``).

Each task module owns its domain: data (generation or loading, splits, question text), the choice
of its correctness reward and the columns it reads, and the evaluation's analysis of its answers;
it declares its settings (a ``TaskConfig`` subclass) and registers its builder with them
(:func:`register_task`). Every public module here is imported with the
package, so a new task module registers itself by being there (no list to keep).

Where this sits (``tests/test_import_direction.py``): above ``r1lab.rewards`` (layer 0), because a
task grades with the verifiers there and the verifiers stay there: the tools (the calculator is
the Countdown evaluator) and the process claims use them too, and start-up validation checks reward
names against ``r1lab.rewards`` alone. Above ``r1lab.config`` and ``r1lab.data`` (generic file
loading), whose ``TaskConfig`` and ``load_source`` a builder uses. Below ``r1lab.validate``, the
stages and the evaluation, which look tasks up by name. Imports without DeepSpeed, W&B or a GPU.
"""
import importlib
import pkgutil

from r1lab.tasks.base import DISTANCE_CAP, TASKS, Task, TaskAnalysis, build_task, register_task, task_schemas

for _module in sorted(m.name for m in pkgutil.iter_modules(__path__)):
    if not _module.startswith("_") and _module != "base":
        importlib.import_module(f"{__name__}.{_module}")
del _module

__all__ = ["DISTANCE_CAP", "TASKS", "Task", "TaskAnalysis", "build_task", "register_task", "task_schemas"]
