"""Atomic directories and the resumable-checkpoint index of a stage.

Everything is written to ``<name>.tmp`` and renamed when complete, so a crash never leaves a
directory that looks finished. A leftover ``.tmp`` is a partial checkpoint: skipped with a warning.
A resumable checkpoint also lists its files and their sizes (``files`` in ``r1lab_state.json``,
written last): one with a missing or truncated file (a half-copied directory) is skipped too.
"""
from __future__ import annotations

import json
import os
import shutil
import warnings
from pathlib import Path


def tmp_path(path: Path) -> Path:
    return path.with_name(path.name + ".tmp")


def commit_dir(tmp: Path, final: Path) -> None:
    """Replace ``final`` by the complete directory ``tmp``."""
    if final.exists():
        old = final.with_name(final.name + ".old")
        shutil.rmtree(old, ignore_errors=True)
        final.rename(old)
        tmp.rename(final)
        shutil.rmtree(old, ignore_errors=True)
    else:
        tmp.rename(final)


def write_json_atomic(path: Path, obj) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2, sort_keys=False))
    os.replace(tmp, path)


def step_dirname(step: int) -> str:
    return f"step-{step:07d}"


STATE_FILE = "r1lab_state.json"


def file_manifest(directory: Path) -> dict[str, int]:
    """Size in bytes of every file under ``directory``, by relative path."""
    return {str(f.relative_to(directory)): f.stat().st_size for f in sorted(directory.rglob("*")) if f.is_file()}


def missing_files(directory: Path) -> list[str]:
    """Files the state file lists that are absent or of another size (empty when complete)."""
    try:
        listed = json.loads((directory / STATE_FILE).read_text()).get("files", {})
    except (OSError, ValueError):
        return [STATE_FILE]
    return [name for name, size in listed.items()
            if not (directory / name).is_file() or (directory / name).stat().st_size != size]


def latest_resumable(root: Path) -> Path | None:
    """The newest complete ``step-*`` directory under ``root``; partial ones are skipped with a warning."""
    if not root.exists():
        return None
    for partial in sorted(root.glob("step-*.tmp")):
        warnings.warn(f"skipping partial checkpoint {partial} (the run stopped while writing it)")
    done = sorted(p for p in root.glob("step-*") if p.is_dir() and not p.name.endswith((".tmp", ".old")))
    for path in reversed(done):
        bad = missing_files(path)
        if not bad:
            return path
        warnings.warn(f"skipping partial checkpoint {path}: missing or truncated {', '.join(bad[:5])}")
    return None


def prune(root: Path, keep: int) -> None:
    done = sorted(p for p in root.glob("step-*") if p.is_dir() and not p.name.endswith((".tmp", ".old")))
    for old in done[: max(0, len(done) - keep)]:
        shutil.rmtree(old, ignore_errors=True)
