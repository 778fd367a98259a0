"""dispatch: routing by ``NAME:`` prefix, the single-tool default, and no exception ever
reaching the caller (the rollout)."""
from __future__ import annotations

import pytest

from r1lab.tools import TOOLS, ToolLimits, ToolResult, dispatch, register_tool
from r1lab.tools.registry import cut

LIMITS = ToolLimits(timeout_s=5, max_result_chars=20)
NAME_IT = "error: name the tool: <tool>NAME: INPUT</tool>, NAME one of calculator, python"


@pytest.fixture
def throwaway():
    """Test tools: ``echo`` (returns its input), ``boom`` (raises), ``bad`` (returns a str)."""

    @register_tool("echo")
    def echo(text: str, limits: ToolLimits) -> ToolResult:
        return ToolResult(f"<{text}>", "ok")

    @register_tool("boom")
    def boom(text: str, limits: ToolLimits) -> ToolResult:
        raise RuntimeError("first line\nkaput")

    @register_tool("bad")
    def bad(text: str, limits: ToolLimits):
        return "not a result"

    yield
    for name in ("echo", "boom", "bad"):
        TOOLS.unregister(name)


def test_the_tools_register_themselves():
    assert {"calculator", "python"} <= set(TOOLS)


def test_every_public_tool_module_is_imported_with_the_package():
    import pkgutil

    import r1lab.tools

    public = {m.name for m in pkgutil.iter_modules(r1lab.tools.__path__) if not m.name.startswith("_")}
    assert {"calculator", "countdown", "python"} <= public - {"registry"}
    for name in public:
        assert hasattr(r1lab.tools, name), name  # imported, so its tools registered themselves
    assert TOOLS.names() == ["calculator", "countdown", "python"]
    assert TOOLS.meta("countdown")["context"] == ("numbers", "target") and TOOLS.meta("calculator")["context"] == ()


def test_prefix_routes_to_the_named_tool(throwaway):
    assert dispatch("echo: hi", ["calculator", "echo"], LIMITS) == ("echo", ToolResult("<hi>", "ok"))
    assert dispatch("  Echo :hi", ["calculator", "echo"], LIMITS) == ("echo", ToolResult("<hi>", "ok"))
    assert dispatch("calculator: 2*3", ["calculator", "echo"], LIMITS) == ("calculator", ToolResult("6", "ok"))
    assert dispatch("python: print(6*7)", ["calculator", "python"], LIMITS) == ("python", ToolResult("42", "ok"))
    assert dispatch("echo:\nline 1\nline 2", ["echo", "python"], LIMITS)[1].text == "<line 1\nline 2>"


def test_single_tool_takes_the_whole_body(throwaway):
    assert dispatch("5*3+7", ["calculator"], LIMITS) == ("calculator", ToolResult("22", "ok"))
    assert dispatch("a: b", ["echo"], LIMITS) == ("echo", ToolResult("<a: b>", "ok"))  # 'a' names no tool
    assert dispatch("echo: b", ["echo"], LIMITS) == ("echo", ToolResult("<b>", "ok"))
    # a prefix naming a tool that is not enabled is input, never a call of that tool
    assert dispatch("python: 1", ["calculator"], LIMITS)[0] == "calculator"


@pytest.mark.parametrize("body", ["5*3+7", "ruby: 1", "", "calculator 1+1"])
def test_unknown_or_ambiguous_names_the_syntax(body):
    name, result = dispatch(body, ["calculator", "python"], ToolLimits())
    assert name is None
    assert result == ToolResult(NAME_IT, "error")


def test_exceptions_become_error_results(throwaway):
    assert dispatch("boom: x", ["boom", "echo"], LIMITS) == ("boom", ToolResult("error: RuntimeErr...", "error"))
    name, result = dispatch("x", ["boom"], ToolLimits())
    assert result == ToolResult("error: RuntimeError: first line", "error")  # one line
    name, result = dispatch("x", ["bad"], ToolLimits())
    assert (name, result.status) == ("bad", "error") and "not a ToolResult" in result.text
    name, result = dispatch("x", ["nosuch"], ToolLimits())
    assert (name, result.status) == ("nosuch", "error") and "unknown tool 'nosuch'" in result.text


@pytest.mark.parametrize("body, enabled, limits", [
    (None, ["calculator"], LIMITS), ("1+1", None, LIMITS), ("1+1", ["calculator"], None),
    ("\x00", ["python"], LIMITS), ("calculator:", ["calculator", "python"], LIMITS),
])
def test_never_raises(body, enabled, limits):
    name, result = dispatch(body, enabled, limits)
    assert isinstance(result, ToolResult) and result.status in {"ok", "error", "timeout"}


def test_results_are_cut(throwaway):
    name, result = dispatch("echo: " + "x" * 100, ["echo"], LIMITS)
    assert result.text == "<" + "x" * 16 + "..." and len(result.text) == 20
    assert cut("abc", 3) == "abc" and cut("abcd", 3) == "..." and cut("abcd", 0) == ""


def test_registering_a_name_twice_fails(throwaway):
    with pytest.raises(ValueError, match="twice"):
        register_tool("echo")(lambda text, limits: ToolResult(text, "ok"))
