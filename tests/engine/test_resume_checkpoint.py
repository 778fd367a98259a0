"""Partial or truncated resumable checkpoints are skipped for the newest complete one."""
from __future__ import annotations

import json

import pytest

from r1lab.engine.checkpoint import file_manifest, latest_resumable, missing_files, step_dirname


def write_checkpoint(root, step: int):
    d = root / step_dirname(step)
    (d / "ds").mkdir(parents=True)
    (d / "ds" / "mp_rank_00_model_states.pt").write_bytes(b"w" * 100)
    (d / "rng-rank0.pt").write_bytes(b"r" * 10)
    (d / "r1lab_state.json").write_text(json.dumps({"step": step, "files": file_manifest(d)}))
    return d


def test_complete_checkpoint_lists_its_files(tmp_path):
    d = write_checkpoint(tmp_path, 2)
    assert json.loads((d / "r1lab_state.json").read_text())["files"] == {
        "ds/mp_rank_00_model_states.pt": 100, "rng-rank0.pt": 10}
    assert missing_files(d) == []
    assert latest_resumable(tmp_path) == d


@pytest.mark.parametrize("damage", ["tmp_dir", "missing_file", "truncated_file", "no_state", "corrupt_state"])
def test_damaged_newest_checkpoint_is_skipped(tmp_path, damage):
    good = write_checkpoint(tmp_path, 2)
    if damage == "tmp_dir":  # the run died while writing step 4
        newest = write_checkpoint(tmp_path, 4)
        newest.rename(newest.with_name(newest.name + ".tmp"))
    else:
        newest = write_checkpoint(tmp_path, 4)
        if damage == "missing_file":
            (newest / "rng-rank0.pt").unlink()
        elif damage == "truncated_file":
            (newest / "ds" / "mp_rank_00_model_states.pt").write_bytes(b"w" * 40)
        elif damage == "no_state":
            (newest / "r1lab_state.json").unlink()
        else:
            (newest / "r1lab_state.json").write_text('{"step": 4, "fil')
    with pytest.warns(UserWarning, match="partial checkpoint"):
        assert latest_resumable(tmp_path) == good


def test_nothing_complete_means_start_over(tmp_path):
    d = write_checkpoint(tmp_path, 2)
    (d / "rng-rank0.pt").unlink()
    with pytest.warns(UserWarning):
        assert latest_resumable(tmp_path) is None
    assert latest_resumable(tmp_path / "absent") is None
