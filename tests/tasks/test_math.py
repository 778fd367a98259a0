"""Math files: GSM8K and MATH layouts recognised by their columns, answers extracted."""
import json

import pytest

from r1lab.data.files import SAMPLES_DIR
from r1lab.tasks.math import gsm8k_answer, last_boxed, load_math_file


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_gsm8k_answer():
    assert gsm8k_answer("2 + 3 = 5\n#### 5") == "5"
    assert gsm8k_answer("#### 1,250") == "1250"
    assert gsm8k_answer("####  1,234,567 \n") == "1234567"
    assert gsm8k_answer("#### -3.5") == "-3.5"
    assert gsm8k_answer("no marker") is None


def test_last_boxed():
    assert last_boxed(r"\boxed{5}") == "5"
    assert last_boxed(r"x = \boxed{\frac{1}{2}}.") == r"\frac{1}{2}"
    assert last_boxed(r"first \boxed{1}, then \boxed{\sqrt{\frac{a}{b}}}") == r"\sqrt{\frac{a}{b}}"
    assert last_boxed(r"\fbox{7}") == "7"
    assert last_boxed(r"\boxed {x^{2}}") == "x^{2}"
    assert last_boxed(r"\boxed{1} and an unclosed \boxed{2") == "1"
    assert last_boxed("no box") is None


def test_gsm8k_sample():
    ds = load_math_file(SAMPLES_DIR / "gsm8k_sample.jsonl")
    assert ds.column_names == ["id", "question", "answer", "level"]
    assert len(ds) >= 8
    assert ds[0] == {"id": "gsm8k_sample-0", "question": ds[0]["question"], "answer": "71", "level": None}
    assert "5100" in ds["answer"] and "2125" in ds["answer"]  # thousands separators removed
    assert all(a.lstrip("-").replace(".", "").isdigit() for a in ds["answer"])


def test_math_sample():
    ds = load_math_file(SAMPLES_DIR / "math_sample.jsonl")
    assert len(ds) >= 8
    assert ds["answer"][:4] == [r"\frac{11}{12}", "5", "2", r"6\sqrt{2}"]
    assert ds["answer"][6] == "7"  # the last \boxed wins
    assert ds["answer"][7] == r"\frac{\sqrt{2}}{2}"  # nested braces
    assert ds["level"][0] == "Level 1"
    assert ds[0]["question"].startswith("What is the value of")


def test_ids_and_normalised_layout(tmp_path):
    path = write_jsonl(tmp_path / "n.jsonl", [{"id": 9, "question": "1+1?", "answer": " 2 ", "level": 3}])
    assert load_math_file(path).to_list() == [{"id": "9", "question": "1+1?", "answer": "2", "level": "3"}]


def test_unknown_layout_names_columns(tmp_path):
    path = write_jsonl(tmp_path / "x.jsonl", [{"prompt": "hi", "completion": "there"}])
    with pytest.raises(ValueError) as e:
        load_math_file(path, field="task.eval_file")
    msg = str(e.value)
    assert "task.eval_file" in msg and "prompt, completion" in msg
    assert "'question' and 'answer'" in msg and "'problem' and 'solution'" in msg


def test_row_errors(tmp_path):
    mixed = write_jsonl(tmp_path / "g.jsonl", [{"question": "a", "answer": "#### 1"}, {"question": "b", "answer": "2"}])
    with pytest.raises(ValueError, match=r"row 1 of .*'#### <answer>'"):
        load_math_file(mixed)
    unboxed = write_jsonl(tmp_path / "m.jsonl", [{"problem": "a", "solution": "it is 3"}])
    with pytest.raises(ValueError, match=r"row 0 of .*no \\boxed"):
        load_math_file(unboxed)
