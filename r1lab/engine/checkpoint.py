"""Atomic directories and the resumable-checkpoint index of a stage.

Everything is written to ``<name>.tmp`` and renamed when complete, so a crash never leaves a
directory that looks finished. A leftover ``.tmp`` is a partial checkpoint: skipped with a warning.
A resumable checkpoint also lists its files and their sizes (``files`` in ``r1lab_state.json``,
written last): one with a missing or truncated file (a half-copied directory) is skipped too.

Replacing a directory takes two renames (a directory cannot be renamed over a non-empty one):
``<name>`` to ``<name>.old``, then ``<name>.tmp`` to ``<name>``; ``.old`` is deleted only after.
So at every moment one complete copy is on disk under ``<name>`` or, between the renames,
``<name>.old`` (the previous version). ``latest_resumable`` takes ``<name>.old`` for ``<name>``
when ``<name>`` is missing, and ``prune`` deletes a ``.old`` before its ``<name>``, so a
half-deleted ``.old`` is never left alone.
"""
from __future__ import annotations

import json
import os
import shutil
import warnings
from pathlib import Path


def tmp_path(path: Path) -> Path:
    return path.with_name(path.name + ".tmp")


def old_path(path: Path) -> Path:
    return path.with_name(path.name + ".old")


def commit_dir(tmp: Path, final: Path) -> None:
    """Replace ``final`` by the complete directory ``tmp``.

    A crash at any point leaves a complete copy: ``final`` (old or new), or between the two
    renames ``<final>.old``, the previous ``final``, which `latest_resumable` finds.
    """
    old = old_path(final)
    if final.exists():
        shutil.rmtree(old, ignore_errors=True)  # a leftover of an earlier commit: ``final`` is current
        final.rename(old)
    tmp.rename(final)
    shutil.rmtree(old, ignore_errors=True)  # also a ``.old`` that stood in for a missing ``final``


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


def _checkpoints(root: Path) -> list[Path]:
    """The ``step-*`` directories under ``root``, oldest first: ``step-N``, or ``step-N.old`` where
    ``step-N`` is missing (a crash between `commit_dir`'s renames). ``.tmp`` ones are not listed."""
    found: dict[str, Path] = {}
    for p in root.glob("step-*"):
        if not p.is_dir() or p.name.endswith(".tmp"):
            continue
        if p.name.endswith(".old"):
            name = p.name[: -len(".old")]
            if not name.endswith((".tmp", ".old")) and not (root / name).exists():
                found[name] = p
        else:
            found[p.name] = p
    return [found[name] for name in sorted(found)]


def latest_resumable(root: Path) -> Path | None:
    """The newest complete ``step-*`` directory under ``root``; partial ones are skipped with a warning.

    It may be ``step-N.old``: the previous copy of ``step-N``, when the run stopped while replacing it.
    """
    if not root.exists():
        return None
    for partial in sorted(root.glob("step-*.tmp")):
        warnings.warn(f"skipping partial checkpoint {partial} (the run stopped while writing it)")
    for path in reversed(_checkpoints(root)):
        bad = missing_files(path)
        if not bad:
            if path.name.endswith(".old"):
                warnings.warn(f"resuming from {path}: the run stopped while replacing {path.name[:-len('.old')]} "
                              "with a newer copy of the same step")
            return path
        warnings.warn(f"skipping partial checkpoint {path}: missing or truncated {', '.join(bad[:5])}")
    return None


def prune(root: Path, keep: int) -> None:
    done = _checkpoints(root)
    for path in done[: max(0, len(done) - keep)]:
        final = path.with_name(path.name[: -len(".old")]) if path.name.endswith(".old") else path
        shutil.rmtree(old_path(final), ignore_errors=True)  # first: a ``.old`` is never left without its dir
        shutil.rmtree(final, ignore_errors=True)
