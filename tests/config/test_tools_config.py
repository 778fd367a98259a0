"""Tool settings fail at start-up, naming the field and the fix."""
import pytest

from r1lab.config.schema import ToolsConfig
from r1lab.validate import ConfigError, check_stage, check_tools, typed_stage

GRPO = {"kind": "grpo", "rewards": {"countdown": 1.0}}


def test_an_unknown_tool_names_the_field_and_the_valid_tools():
    cfg = typed_stage("grpo", {**GRPO, "tools": {"names": ["calc"]}})
    with pytest.raises(ConfigError, match=r"stages\.grpo\.tools\.names: 'calc' is not a tool; valid: calculator, countdown, python"):
        check_stage("grpo", cfg)


def test_a_misspelt_tools_key_fails_when_the_stage_is_typed():
    with pytest.raises(ConfigError, match=r"stages\.grpo \(grpo\).*nmes"):
        typed_stage("grpo", {**GRPO, "tools": {"nmes": ["calculator"]}})


@pytest.mark.parametrize("field, value", [("max_calls", 0), ("timeout_s", 0.0), ("max_result_chars", 0), ("memory_mb", 8)])
def test_limits_that_cannot_work_are_refused(field, value):
    with pytest.raises(ConfigError, match=r"eval\.tools: .*names=\[\]"):
        check_tools(ToolsConfig(names=["calculator"], **{field: value}), "eval.tools")


def test_every_sampling_stage_takes_tools():
    for kind in ("grpo", "rejection", "dpo"):
        extra = GRPO["rewards"] if kind == "grpo" else None
        raw = {"kind": kind, "tools": {"names": ["calculator", "python"], "max_calls": 2}}
        if extra:
            raw["rewards"] = extra
        cfg = typed_stage(kind, raw)
        check_stage(kind, cfg)
        assert cfg.tools.names == ["calculator", "python"] and cfg.tools.max_calls == 2


def test_an_unknown_trace_tool_names_the_field_and_the_valid_ones():
    cfg = typed_stage("cold_start", {"kind": "sft", "trace_tools": True, "trace_tool": "calc"})
    with pytest.raises(ConfigError, match=r"stages\.cold_start\.trace_tool='calc'; valid: calculator, countdown"):
        check_stage("cold_start", cfg)
