"""`write_report`'s sections one at a time, on stages built in the test (no run directory)."""
from r1lab.eval.report import StageData, completion_section, eval_section, tool_section, training_section


def test_sections_of_stages_without_files_are_empty(tmp_path):
    stages = [StageData("01-sft"), StageData("02-grpo")]
    for md, body in (eval_section(stages, tmp_path), tool_section(stages), training_section(stages, tmp_path),
                     completion_section(stages, 5)):
        assert (md, body) == ([], [])
    assert list(tmp_path.iterdir()) == []  # and no plot written
    assert tool_section([StageData("02-grpo", eval={"pass_at_k": {"1": 0.5}, "tools": {}})]) == ([], [])


def test_tool_section_has_one_row_per_stage_that_called_tools():
    tools = {"calls_per_completion": 1.5, "errors_per_completion": 0.1, "timeouts_per_completion": 0.0,
             "calling_share": 0.75, "tool_token_share": 0.2}
    md, body = tool_section([StageData("01-sft", eval={}), StageData("02-grpo", eval={"tools": tools})])
    assert md[0] == "## Tool use of sampled completions"
    assert "| 02-grpo | 1.500 | 0.100 | 0.000 | 0.750 | 0.200 |" in md[1] and "01-sft" not in md[1]
    assert body[0].startswith("<h2>Tool use</h2>") and "02-grpo" in body[1]
