import json

import pytest

from r1lab.engine.checkpoint import commit_dir, latest_resumable, prune, step_dirname
from r1lab.engine.checkpoint import tmp_path as tmp_path_of


def _complete(root, step):
    d = root / step_dirname(step)
    d.mkdir(parents=True)
    (d / "r1lab_state.json").write_text(json.dumps({"step": step}))
    return d


def test_latest_skips_partial_with_warning(tmp_path):
    _complete(tmp_path, 2)
    _complete(tmp_path, 4)
    partial = tmp_path / (step_dirname(6) + ".tmp")
    partial.mkdir()
    unfinished = tmp_path / step_dirname(8)  # renamed but missing its state file: not complete
    unfinished.mkdir()
    with pytest.warns(UserWarning, match="partial checkpoint"):
        assert latest_resumable(tmp_path).name == step_dirname(4)


def test_prune_keeps_newest(tmp_path):
    for s in (1, 2, 3, 4):
        _complete(tmp_path, s)
    prune(tmp_path, keep=2)
    assert sorted(p.name for p in tmp_path.iterdir()) == [step_dirname(3), step_dirname(4)]


def test_commit_dir_replaces_existing(tmp_path):
    final = tmp_path / "checkpoint"
    final.mkdir()
    (final / "old").write_text("1")
    staging = tmp_path_of(final)
    assert staging.name == "checkpoint.tmp"
    staging.mkdir()
    (staging / "new").write_text("2")
    commit_dir(staging, final)
    assert (final / "new").exists() and not (final / "old").exists() and not staging.exists()
