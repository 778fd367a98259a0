"""User-file loading: happy paths and the one-line error for each way a file can be wrong."""
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from r1lab.data.files import SAMPLES_DIR, load_table, require_columns
from r1lab.tasks.countdown import load_countdown_file


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_load_jsonl_json_and_parquet(tmp_path):
    rows = [{"a": 1, "b": "x"}, {"a": 2, "b": "y"}]
    jsonl = write_jsonl(tmp_path / "t.jsonl", rows)
    as_json = tmp_path / "t.json"
    as_json.write_text(json.dumps(rows))
    parquet = tmp_path / "t.parquet"
    pq.write_table(pa.Table.from_pylist(rows), parquet)
    for path in (jsonl, as_json, parquet, str(jsonl)):
        assert load_table(path).to_list() == rows


def test_shipped_samples_load():
    chat = load_table(SAMPLES_DIR / "chat_sample.jsonl")
    assert len(chat) >= 8 and chat[0]["messages"][0]["role"] in ("system", "user")
    assert all(m[-1]["role"] == "assistant" for m in chat["messages"])


def test_missing_file_names_the_field(tmp_path):
    missing = tmp_path / "nope.jsonl"
    with pytest.raises(FileNotFoundError) as e:
        load_table(missing, field="task.eval_file")
    assert str(e.value) == (
        f"dataset file '{missing}' does not exist; set task.eval_file to a .jsonl, .json or .parquet file"
    )


def test_unsupported_extension(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("a,b\n1,2\n")
    with pytest.raises(ValueError, match=r"unsupported extension '\.csv'; set task\.train_file to a \.jsonl"):
        load_table(path)


def test_directory(tmp_path):
    with pytest.raises(ValueError, match="is a directory"):
        load_table(tmp_path)


@pytest.mark.parametrize("content", ["", "\n\n", "[]"])
def test_empty_file(tmp_path, content):
    path = tmp_path / ("t.json" if content == "[]" else "t.jsonl")
    path.write_text(content)
    with pytest.raises(ValueError, match="has no rows"):
        load_table(path)


def test_empty_parquet(tmp_path):
    path = tmp_path / "t.parquet"
    pq.write_table(pa.table({"a": pa.array([], pa.int64())}), path)
    with pytest.raises(ValueError, match="has no rows"):
        load_table(path)


def test_malformed_json_names_the_line(tmp_path):
    path = tmp_path / "t.jsonl"
    path.write_text('{"a": 1}\n{"a": 2,,}\n')
    with pytest.raises(ValueError, match="line 2 of dataset file .* is not valid JSON"):
        load_table(path)
    path.write_text('{"a": 1}\n[1, 2]\n')
    with pytest.raises(ValueError, match="row 1 of dataset file .* is list, not an object"):
        load_table(path)
    bad_parquet = tmp_path / "t.parquet"
    bad_parquet.write_text("not parquet")
    with pytest.raises(ValueError, match="not a readable parquet file"):
        load_table(bad_parquet)


def test_require_columns(tmp_path):
    ds = load_table(write_jsonl(tmp_path / "t.jsonl", [{"numbers": [1, 2]}]))
    require_columns(ds, ["numbers"], "x")
    with pytest.raises(ValueError) as e:
        require_columns(ds, ["numbers", "target", "id"], "task.train_file 't.jsonl'")
    assert str(e.value) == (
        "task.train_file 't.jsonl' is missing column(s) 'target', 'id' (found: numbers); add or rename them in the file"
    )


def test_countdown_file_happy_path(tmp_path):
    path = write_jsonl(
        tmp_path / "cd.jsonl",
        [
            {"numbers": [3, 5, 7], "target": 22},
            {"numbers": [1, 1], "target": 5},  # unsolvable: kept, solution left empty
            {"numbers": [2, 3, 4, 5, 6, 7], "target": 500},  # too many numbers to solve by default
        ],
    )
    ds = load_countdown_file(path)
    assert ds.to_list() == [
        {"id": "cd3-3_5_7-22", "numbers": [3, 5, 7], "target": 22, "solution": "3*5+7"},
        {"id": "cd2-1_1-5", "numbers": [1, 1], "target": 5, "solution": ""},
        {"id": "cd6-2_3_4_5_6_7-500", "numbers": [2, 3, 4, 5, 6, 7], "target": 500, "solution": ""},
    ]
    with_ids = write_jsonl(tmp_path / "ids.jsonl", [{"id": 17, "numbers": [3, 5, 7], "target": 20, "solution": "5*(7-3)"}])
    assert load_countdown_file(with_ids).to_list() == [
        {"id": "17", "numbers": [3, 5, 7], "target": 20, "solution": "5*(7-3)"}
    ]
    assert load_countdown_file(path, solve_missing=False)["solution"] == ["", "", ""]
    floats = write_jsonl(tmp_path / "f.jsonl", [{"numbers": [3.0, 5, 7], "target": 22.0}])  # integral floats are ints
    assert load_countdown_file(floats)[0] == {"id": "cd3-3_5_7-22", "numbers": [3, 5, 7], "target": 22, "solution": "3*5+7"}


@pytest.mark.parametrize(
    "rows,message",
    [
        ([{"numbers": [1, 2], "target": 3}, {"numbers": [1, 2.5], "target": 3}], r"row 1 of task.eval_file '.*': 'numbers' must be a non-empty list of non-negative integers, got \[1.0, 2.5\]"),
        ([{"numbers": "1 2", "target": 3}], r"row 0 .*'numbers' must be a non-empty list"),
        ([{"numbers": [1, -2], "target": 3}], r"row 0 .*'numbers' must be a non-empty list of non-negative integers"),
        ([{"numbers": [1, 2], "target": 3.5}], r"row 0 .*'target' must be an integer, got 3.5"),
        ([{"numbers": [1, 2], "target": 3, "solution": "1*2"}], r"row 0 .*solution '1\*2' does not make 3 from \[1, 2\]"),
        ([{"numbers": [1, 2]}], r"task.eval_file '.*' is missing column\(s\) 'target' \(found: numbers\)"),
    ],
)
def test_countdown_file_errors(tmp_path, rows, message):
    path = write_jsonl(tmp_path / "bad.jsonl", rows)
    with pytest.raises(ValueError, match=message):
        load_countdown_file(path, field="task.eval_file")
