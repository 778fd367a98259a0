"""A crash at any point of ``commit_dir`` leaves a checkpoint that resume finds, complete.

The crash is simulated by raising (a ``BaseException``, which nothing catches) just before or just
after one of the filesystem operations ``commit_dir`` makes: ``os.rename``/``os.replace`` (what
``Path.rename``/``Path.replace`` call) and ``shutil.rmtree``. What is then on disk is exactly what
a killed process would leave, and ``latest_resumable`` must find step 5, old or new copy, complete.
"""
from __future__ import annotations

import json
import os
import shutil
import warnings

import pytest

from r1lab.engine.checkpoint import commit_dir, file_manifest, latest_resumable, missing_files, prune, step_dirname
from r1lab.engine.checkpoint import tmp_path as tmp_path_of


class Crash(BaseException):
    """The process dies here."""


class Injector:
    """Counts rename/replace/rmtree calls; dies ``when`` ("before"/"after") the ``at``-th one."""

    def __init__(self, monkeypatch, at: int, when: str):
        self.at, self.when, self.calls, self.ops = at, when, 0, []
        for module, name in ((os, "rename"), (os, "replace"), (shutil, "rmtree")):
            monkeypatch.setattr(module, name, self._wrap(name, getattr(module, name)))

    def _wrap(self, name, real):
        def op(*args, **kwargs):
            self.calls += 1
            self.ops.append(name)
            if self.calls == self.at and self.when == "before":
                raise Crash(f"before {name} #{self.calls}")
            out = real(*args, **kwargs)
            if self.calls == self.at and self.when == "after":
                raise Crash(f"after {name} #{self.calls}")
            return out

        return op


def write_step(directory, step: int, version: str, size: int):
    """A resumable checkpoint directory: a weights file, its RNG file and the state (written last)."""
    (directory / "ds").mkdir(parents=True)
    (directory / "ds" / "mp_rank_00_model_states.pt").write_bytes(version.encode() * size)
    (directory / "rng-rank0.pt").write_bytes(b"r" * 10)
    (directory / "r1lab_state.json").write_text(json.dumps({"step": step, "version": version, "files": file_manifest(directory)}))
    return directory


def make_steps(root):
    """step-3 (an older checkpoint), step-5 (the copy being replaced) and step-5.tmp (its replacement)."""
    write_step(root / step_dirname(3), 3, "older", 30)
    final = write_step(root / step_dirname(5), 5, "old", 50)
    staging = write_step(tmp_path_of(final), 5, "new", 70)  # another size: a mixed-up copy fails its manifest
    return final, staging


def resumed(root) -> tuple[str, str]:
    """(directory name, version) of what resume finds; the directory must be complete."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        path = latest_resumable(root)
    assert path is not None, f"nothing resumable in {sorted(p.name for p in root.iterdir())}"
    assert missing_files(path) == []
    return path.name, json.loads((path / "r1lab_state.json").read_text())["version"]


def crash_commit(root, monkeypatch, at: int, when: str) -> bool:
    """Run ``commit_dir`` dying at the given operation; False if it finished before getting there."""
    final, staging = make_steps(root)
    Injector(monkeypatch, at, when)
    try:
        commit_dir(staging, final)
    except Crash:
        monkeypatch.undo()
        return True
    monkeypatch.undo()
    return False


@pytest.mark.parametrize("nth", [1, 2])
def test_a_failed_rename_leaves_the_old_copy_resumable(tmp_path, monkeypatch, nth):
    """1st rename (step-5 -> step-5.old) or 2nd (step-5.tmp -> step-5) fails: the old copy of step 5
    is what resume finds (under step-5, or step-5.old for the 2nd), not step 3 and not nothing."""
    final, staging = make_steps(tmp_path)
    renames = []

    def failing_rename(src, dst):
        renames.append((os.fspath(src), os.fspath(dst)))
        if len(renames) == nth:
            raise Crash(f"rename #{nth}")
        return real_rename(src, dst)

    real_rename = os.rename
    monkeypatch.setattr(os, "rename", failing_rename)
    monkeypatch.setattr(os, "replace", failing_rename)
    with pytest.raises(Crash):
        commit_dir(staging, final)
    monkeypatch.undo()
    assert resumed(tmp_path) == ((step_dirname(5), "old") if nth == 1 else (step_dirname(5) + ".old", "old"))
    # the next commit of the same step (the resumed run saving again) completes and cleans up
    shutil.rmtree(staging)
    write_step(staging, 5, "newer", 90)
    commit_dir(staging, final)
    assert sorted(p.name for p in tmp_path.iterdir()) == [step_dirname(3), step_dirname(5)]
    assert resumed(tmp_path) == (step_dirname(5), "newer")


@pytest.mark.parametrize("when", ["before", "after"])
def test_a_crash_at_any_operation_leaves_a_complete_step(tmp_path, monkeypatch, when):
    """Every crash point, in order: resume finds step 5 complete; its old copy until the new one is
    in place under step-5, the new one from then on (never a half or mixed directory, never step 3)."""
    seen, at = [], 1
    while True:
        root = tmp_path / f"{when}-{at}"
        root.mkdir()
        if not crash_commit(root, monkeypatch, at, when):
            break
        name, version = resumed(root)
        assert name.startswith(step_dirname(5)), (at, when, name)
        new_in_place = (root / step_dirname(5)).exists() and not (root / (step_dirname(5) + ".tmp")).exists()
        assert version == ("new" if new_in_place else "old"), (at, when, name, version)
        seen.append(version)
        at += 1
    assert seen == sorted(seen, key=["old", "new"].index), seen  # once new, never old again
    assert "old" in seen and "new" in seen
    assert resumed(root) == (step_dirname(5), "new")  # the uninterrupted commit
    assert sorted(p.name for p in root.iterdir()) == [step_dirname(3), step_dirname(5)]


def test_a_crash_right_after_removing_the_old_copy_loses_nothing(tmp_path, monkeypatch):
    """Whatever commit_dir deletes, a crash just after it still leaves step 5 resumable (a
    remove-then-rename commit fails this: after ``rmtree(step-5)`` only ``step-5.tmp`` is left)."""
    for k in range(1, 10):
        root = tmp_path / str(k)
        root.mkdir()
        final, staging = make_steps(root)
        removed = []
        real_rmtree = shutil.rmtree

        def crashing_rmtree(path, *args, **kwargs):
            existed = os.path.exists(path)
            real_rmtree(path, *args, **kwargs)
            if existed:
                removed.append(os.fspath(path))
                if len(removed) == k:
                    raise Crash(f"after removing {path}")

        monkeypatch.setattr(shutil, "rmtree", crashing_rmtree)
        try:
            commit_dir(staging, final)
        except Crash:
            monkeypatch.undo()
            assert resumed(root)[0].startswith(step_dirname(5)), removed
            continue
        monkeypatch.undo()
        assert k > 1  # commit_dir removes at least the replaced copy
        break


def test_half_written_tmp_is_ignored_and_old_stands_in_for_a_missing_step(tmp_path):
    """After a crash between the renames on an earlier attempt, a half-written step-5.tmp (no state
    file yet) is skipped with a warning and step-5.old is resumed."""
    write_step(tmp_path / step_dirname(3), 3, "older", 30)
    write_step(tmp_path / (step_dirname(5) + ".old"), 5, "old", 50)
    half = tmp_path / (step_dirname(5) + ".tmp")
    (half / "ds").mkdir(parents=True)
    (half / "ds" / "mp_rank_00_model_states.pt").write_bytes(b"n" * 7)
    with pytest.warns(UserWarning) as record:
        path = latest_resumable(tmp_path)
    assert path.name == step_dirname(5) + ".old"
    assert any("partial checkpoint" in str(w.message) for w in record)
    assert any("resuming from" in str(w.message) for w in record)


def test_a_half_deleted_old_copy_without_its_step_is_skipped(tmp_path):
    write_step(tmp_path / step_dirname(3), 3, "older", 30)
    old = write_step(tmp_path / (step_dirname(5) + ".old"), 5, "old", 50)
    (old / "rng-rank0.pt").unlink()
    with pytest.warns(UserWarning, match="partial checkpoint"):
        assert latest_resumable(tmp_path).name == step_dirname(3)


def test_an_old_copy_beside_its_step_is_not_resumed(tmp_path):
    """step-5.old next to step-5 is a leftover (a crash while deleting it): step-5 is the checkpoint."""
    write_step(tmp_path / step_dirname(5), 5, "new", 70)
    write_step(tmp_path / (step_dirname(5) + ".old"), 5, "old", 50)
    assert resumed(tmp_path) == (step_dirname(5), "new")


def test_prune_counts_a_standing_in_old_copy_and_removes_old_copies_with_their_step(tmp_path):
    for step in (1, 2):
        write_step(tmp_path / step_dirname(step), step, "x", 10)
    write_step(tmp_path / (step_dirname(1) + ".old"), 1, "leftover", 10)  # beside its step
    write_step(tmp_path / (step_dirname(3) + ".old"), 3, "old", 10)  # stands in for step 3
    write_step(tmp_path / step_dirname(4), 4, "x", 10)
    prune(tmp_path, keep=2)
    assert sorted(p.name for p in tmp_path.iterdir()) == [step_dirname(3) + ".old", step_dirname(4)]
    prune(tmp_path, keep=1)
    assert sorted(p.name for p in tmp_path.iterdir()) == [step_dirname(4)]


def test_commit_over_a_standing_in_old_copy_removes_it(tmp_path):
    write_step(tmp_path / (step_dirname(5) + ".old"), 5, "old", 50)
    staging = write_step(tmp_path / (step_dirname(5) + ".tmp"), 5, "new", 70)
    commit_dir(staging, tmp_path / step_dirname(5))
    assert sorted(p.name for p in tmp_path.iterdir()) == [step_dirname(5)]
    assert resumed(tmp_path) == (step_dirname(5), "new")
