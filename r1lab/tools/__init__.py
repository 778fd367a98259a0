"""Tools a model may call mid-rollout: ``<tool>NAME: INPUT</tool>`` -> ``<result>TEXT</result>``.

``dispatch(body, enabled, limits)`` runs one call and never raises; ``TOOLS`` maps each name to
its function ``tool(input, limits) -> ToolResult``. The tools, each a module that registers
itself on import:

* ``calculator`` (:mod:`r1lab.tools.calculator`): exact ``+ - * / ( )`` over integers and
  decimals, answered as ``22`` or ``24/5``; nothing executed.
* ``python`` (:mod:`r1lab.tools.python`): a snippet in a fresh, limited, throw-away process
  (what it does and does not guarantee is in that module's docstring).

Imports ``r1lab.rewards`` only (the calculator reuses the Countdown evaluator).
"""
from r1lab.tools import calculator, python
from r1lab.tools.registry import TOOLS, ToolLimits, ToolResult, dispatch, register_tool

__all__ = ["TOOLS", "ToolLimits", "ToolResult", "dispatch", "register_tool", "calculator", "python"]
