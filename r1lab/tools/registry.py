"""Tool registry and the dispatcher of one ``<tool>...</tool>`` call.

A tool is a plain function ``tool(input, limits) -> ToolResult``; it honours ``limits`` itself
(the python tool runs in a killed-on-timeout process, the calculator is bounded by its input
length). A tool that needs the problem its completion answers (the ``countdown`` checker needs
the numbers and the target; verl passes such per-sample ``tools_kwargs``) names the task columns
it reads, ``register_tool("countdown", context=("numbers", "target"))``, and is called as
``tool(input, limits, context)`` with those columns of the completion's row. ``TOOLS`` is a
:class:`r1lab.registry.Registry`; a tool's context columns are its ``meta(name)["context"]``.

``dispatch`` is the one entry point of the rollout: it picks the tool named in the call, runs it
and turns *anything* that goes wrong into an error result the model is shown, so a bad call
costs the model a turn, never the trainer its run.
"""
from __future__ import annotations

import re
import traceback
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

from r1lab.registry import Registry


@dataclass
class ToolLimits:
    """What one call may use (``ToolsConfig`` of the stage carries the same fields)."""

    timeout_s: float = 5.0  # wall-clock limit of one call
    memory_mb: int = 512  # python: address-space limit of the sandboxed process
    max_result_chars: int = 200  # longer outputs are cut to this many characters (ending "...")


@dataclass
class ToolResult:
    """What a call returns: ``text`` is shown to the model inside ``<result>...</result>``."""

    text: str  # errors read "error: <one line>", timeouts "error: timed out after 5s"
    status: str  # "ok" | "error" | "timeout"


Tool = Callable[..., ToolResult]  # (input, limits) or, with context columns, (input, limits, context)
# name -> tool, with meta `context`: the task columns it is given (empty: context-free); the tool
# modules register themselves on import
TOOLS: Registry[Tool] = Registry("tool")

_PREFIX = re.compile(r"\s*([A-Za-z_][\w-]*)\s*:\s?(.*)", re.DOTALL)


def register_tool(name: str, context: Sequence[str] = ()) -> Callable[[Tool], Tool]:
    """Decorator: make ``fn(input, limits) -> ToolResult`` callable as ``<tool>name: ...</tool>``;
    with ``context`` columns, ``fn(input, limits, context)`` (``context``: those columns of the row)."""

    return TOOLS.register(name, context=tuple(context))


def tool_context(name: str) -> tuple[str, ...]:
    """The task columns tool ``name`` is given (empty: context-free, or not a tool)."""
    return TOOLS.meta(name)["context"] if name in TOOLS else ()


def error(message: str) -> ToolResult:
    """An error result: ``error: `` and the first line of ``message``."""
    return ToolResult("error: " + (message.strip().splitlines() or [""])[0], "error")


def cut(text: str, max_chars: int) -> str:
    """``text`` if it fits in ``max_chars``, else its start and ``...``, ``max_chars`` long in all."""
    if len(text) <= max_chars:
        return text
    return text[: max(0, max_chars - 3)] + "..."[: max(0, max_chars)]


def missing_context(enabled: Sequence[str], columns: Sequence[str]) -> dict[str, list[str]]:
    """Tool -> the context columns it needs that ``columns`` (a task's) lack; {} when all are there."""
    missing = {n: [c for c in tool_context(n) if c not in columns] for n in enabled}
    return {n: cs for n, cs in missing.items() if cs}


def dispatch(
    body: str, enabled: Sequence[str], limits: ToolLimits, context: Mapping[str, Any] | None = None
) -> tuple[str | None, ToolResult]:
    """Run the call whose text between ``<tool>`` and ``</tool>`` is ``body``.

    ``NAME: INPUT`` (``NAME`` one of ``enabled``) calls ``NAME`` with ``INPUT``; with exactly one
    tool enabled, a body without such a prefix is that tool's whole input (so ``<tool>5*3</tool>``
    works). The input is passed as written (each tool trims what it must). Anything else is an error naming the syntax. Never raises: an exception inside a tool
    becomes status ``"error"`` with the exception's last line, and every text is cut to
    ``limits.max_result_chars``. ``context``: the row's task columns, handed to the tools that
    registered some (a missing one is an error result). Returns ``(tool name or None, result)``.
    """
    name: str | None = None
    try:
        enabled = list(enabled)
        match = _PREFIX.match(body)
        if match and match.group(1).lower() in enabled:
            name, arg = match.group(1).lower(), match.group(2)
        elif len(enabled) == 1:
            name, arg = enabled[0], body
        else:
            return None, error(f"name the tool: <tool>NAME: INPUT</tool>, NAME one of {', '.join(enabled)}")
        if name not in TOOLS:
            result = error(f"unknown tool {name!r}; tools: {', '.join(TOOLS.names())}")
        elif tool_context(name):
            needs = tool_context(name)
            if context is None or any(c not in context for c in needs):
                result = error(f"tool {name!r} needs the problem's {', '.join(needs)}; this rollout gave none")
            else:
                result = TOOLS[name](arg, limits, {c: context[c] for c in needs})
        else:
            result = TOOLS[name](arg, limits)
        if not isinstance(result, ToolResult):
            result = error(f"tool {name!r} returned {type(result).__name__}, not a ToolResult")
    except Exception as exc:  # noqa: BLE001 - the model sees the error, the trainer goes on
        result = error(traceback.format_exception_only(type(exc), exc)[-1])
    try:
        max_chars = int(limits.max_result_chars)
    except Exception:  # noqa: BLE001
        max_chars = ToolLimits.max_result_chars
    return name, ToolResult(cut(str(result.text), max_chars), str(result.status))
