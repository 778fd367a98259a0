"""Atomic directories and the resumable-checkpoint index of a stage.

Everything is written to ``<name>.tmp`` and renamed when complete, so a crash never leaves a
directory that looks finished. A leftover ``.tmp`` is a partial checkpoint: skipped with a warning.
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


def latest_resumable(root: Path) -> Path | None:
    """The newest complete ``step-*`` directory under ``root``; partial ones are skipped."""
    if not root.exists():
        return None
    for partial in sorted(root.glob("step-*.tmp")):
        warnings.warn(f"skipping partial checkpoint {partial} (the run stopped while writing it)")
    done = sorted(p for p in root.glob("step-*") if p.is_dir() and not p.name.endswith((".tmp", ".old")))
    done = [p for p in done if (p / "r1lab_state.json").exists()]
    return done[-1] if done else None


def prune(root: Path, keep: int) -> None:
    done = sorted(p for p in root.glob("step-*") if p.is_dir() and not p.name.endswith((".tmp", ".old")))
    for old in done[: max(0, len(done) - keep)]:
        shutil.rmtree(old, ignore_errors=True)
