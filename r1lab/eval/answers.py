"""The task-specific pieces of the analysis, as the evaluation uses them: answer keys for
majority voting, a continuous distance to the right answer, and a difficulty label per problem.

Every task carries its :class:`~r1lab.tasks.base.TaskAnalysis` (``Task.analysis``), with the same
three methods, so the evaluation code never branches on the task: Countdown's is
``r1lab.tasks.countdown.CountdownAnalysis`` (value of the answer expression, ``|value - target|``,
solution paths), math's and arith's ``r1lab.tasks.math.MathAnalysis`` (the normalised final
answer, no distance, the ``level`` column). Each reads answers exactly as the task's reward does.
"""
from __future__ import annotations

from r1lab.tasks import DISTANCE_CAP, Task, TaskAnalysis

__all__ = ["DISTANCE_CAP", "TaskAnalysis", "task_analysis"]


def task_analysis(task: Task) -> TaskAnalysis:
    """The analysis of a :class:`r1lab.tasks.base.Task`: the one it carries."""
    return task.analysis
