"""Tools a model may call mid-rollout: ``<tool>NAME: INPUT</tool>`` -> ``<result>TEXT</result>``.

``dispatch(body, enabled, limits)`` runs one call and never raises; ``TOOLS`` maps each name to
its function ``tool(input, limits) -> ToolResult``. The tools, each a module that registers
itself on import:

* ``calculator`` (:mod:`r1lab.tools.calculator`): exact ``+ - * / ( )`` over integers and
  decimals, answered as ``22`` or ``24/5``; nothing executed.
* ``countdown`` (:mod:`r1lab.tools.countdown`): checks an attempt at the row's own Countdown
  problem (its context columns ``numbers``, ``target``) as the reward will: ``true`` /
  ``false: 32`` / ``false: use 3 5 7 once each``.
* ``python`` (:mod:`r1lab.tools.python`): a snippet in a fresh, limited, throw-away process
  (what it does and does not guarantee is in that module's docstring).

A new tool is one module here: every public module of the package is imported with it, so the
module's ``@register_tool`` runs without a list to keep (``_``-prefixed modules are helpers).
Imports ``r1lab.rewards`` only (the calculator reuses the Countdown evaluator).
"""
import importlib
import pkgutil

from r1lab.tools.registry import TOOLS, ToolLimits, ToolResult, dispatch, missing_context, register_tool, tool_context

for _module in sorted(m.name for m in pkgutil.iter_modules(__path__)):
    if not _module.startswith("_") and _module != "registry":
        importlib.import_module(f"{__name__}.{_module}")
del _module

__all__ = ["TOOLS", "ToolLimits", "ToolResult", "dispatch", "missing_context", "register_tool", "tool_context"]
