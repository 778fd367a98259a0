"""`write_report`'s sections one at a time, on stages built in the test (no run directory)."""
from r1lab.eval.report import StageData, completion_section, eval_section, length_section, tool_section, training_section


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


LENGTHS = {"response_length_percentiles": {"p50": 25.0, "p90": 37.0, "p99": 39.7},
           "response_length_percentiles_correct": {"p50": 20.0, "p90": 44.0, "p99": 49.4},
           "response_length_percentiles_incorrect": None,
           "readability": {"readable_rate": 0.75, "accepted_rate": 0.5, "repeated_ngram_fraction": 0.125,
                           "fail_rate": {"language": 0.25, "repetition": 0.0}},
           "by_difficulty": {"easy": {"num_problems": 1, "response_length_p50": 25.0, "response_length_p90": 37.0,
                                      "response_length_p99": 39.7, "readable_rate": 0.5}}}


def test_length_section_shows_percentiles_and_readability_per_stage():
    old = StageData("00-start", eval={"pass_at_k": {"1": 0.5}})  # an eval.json from before the figures existed
    assert length_section([old]) == ([], [])
    md, body = length_section([old, StageData("02-grpo", eval=LENGTHS)])
    assert md[0] == "## Response length and readability (sampled completions)"
    assert "| 02-grpo | 25.0 / 37.0 / 39.7 | 20.0 / 44.0 / 49.4 | – | 0.750 | 0.500 | 0.125 |" in md[1] and "00-start" not in md[1]
    assert "| 02-grpo | easy | 25.0 / 37.0 / 39.7 | 0.500 |" in md[2]
    assert body[0].startswith("<h2>Response length and readability</h2>") and "02-grpo" in body[1]


def test_the_eval_table_lists_length_percentiles_and_readability():
    from r1lab.eval.tables import eval_table

    table = eval_table({"num_problems": 2, "samples_per_problem": 4, "temperature": 1.0, "greedy_accuracy": 0.5,
                        "sampled_accuracy": 0.375, "pass_at_k": {"4": 1.0}, "format_rate": 1.0, "mean_response_length": 37.5,
                        **LENGTHS})
    assert "| response length p50 / p90 / p99 (correct, tokens) | 20.0 / 44.0 / 49.4 |" in table
    assert "| response length p50 / p90 / p99 (incorrect, tokens) | – |" in table
    assert "| accepted (correct and readable) | 0.500 |" in table and "| fails filter: language | 0.250 |" in table
