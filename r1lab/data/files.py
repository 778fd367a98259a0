"""Loading user data files, with one-line errors that name the config field to fix.

Every loader takes ``field``: the config field the path came from (``task.train_file``), so a
bad path reads ``dataset file 'x.jsonl' does not exist; set task.train_file to ...`` rather
than a stack trace from deep inside a library.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Iterable

import pyarrow as pa
import pyarrow.parquet as pq
from datasets import Dataset

from r1lab.data.countdown import FEATURES as COUNTDOWN_FEATURES
from r1lab.data.countdown import is_solution, problem_id, solve

SUFFIXES = (".jsonl", ".json", ".parquet")
SAMPLES_DIR = Path(__file__).parent / "samples"  # small files shipped with the package


def _fix(field: str) -> str:
    return f"set {field} to a .jsonl, .json or .parquet file"


def _read_json(path: str, field: str) -> list:
    """Rows of a JSON Lines file, or of a ``.json`` file holding a list of objects (or JSON Lines)."""
    with open(path, encoding="utf-8") as f:
        text = f.read()
    if path.endswith(".json"):
        try:
            data = json.loads(text)
        except json.JSONDecodeError:
            data = None  # maybe JSON Lines under a .json name
        if isinstance(data, list):
            return data
        if isinstance(data, dict):  # one object: a one-line JSON Lines file
            return [data]
        if data is not None:
            raise ValueError(
                f"dataset file '{path}' holds a JSON {type(data).__name__}, not a list of objects or one object "
                f"per line; {_fix(field)}"
            )
    rows = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError as e:
            raise ValueError(f"line {lineno} of dataset file '{path}' is not valid JSON ({e.msg}); {_fix(field)}") from None
    return rows


def load_table(path: str | os.PathLike, field: str = "task.train_file") -> Dataset:
    """A ``.jsonl``/``.json``/``.parquet`` file as an in-memory ``datasets.Dataset``.

    Raises ``FileNotFoundError`` for a missing file and ``ValueError`` for an unsupported
    extension, malformed content, rows that are not objects, or a file without rows.
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"dataset file '{path}' does not exist; {_fix(field)}")
    if os.path.isdir(path):
        raise ValueError(f"dataset file '{path}' is a directory; {_fix(field)}")
    suffix = os.path.splitext(path)[1].lower()
    if suffix not in SUFFIXES:
        raise ValueError(f"dataset file '{path}' has unsupported extension '{suffix}'; {_fix(field)}")
    if suffix == ".parquet":
        try:
            ds = Dataset(pq.read_table(path))
        except (pa.ArrowException, OSError) as e:
            raise ValueError(f"dataset file '{path}' is not a readable parquet file ({e}); {_fix(field)}") from None
    else:
        rows = _read_json(path, field)
        for i, row in enumerate(rows):
            if not isinstance(row, dict):
                raise ValueError(f"row {i} of dataset file '{path}' is {type(row).__name__}, not an object; {_fix(field)}")
        if not rows:
            raise ValueError(f"dataset file '{path}' has no rows; {_fix(field)} with at least one row")
        try:
            ds = Dataset.from_list(rows)
        except (pa.ArrowException, TypeError, ValueError) as e:
            raise ValueError(
                f"dataset file '{path}' has a column whose values mix types ({e}); make each column one type"
            ) from None
    if len(ds) == 0:
        raise ValueError(f"dataset file '{path}' has no rows; {_fix(field)} with at least one row")
    return ds


def require_columns(ds: Dataset, columns: Iterable[str], source: str) -> None:
    """Raise ``ValueError`` naming the columns of ``columns`` that ``ds`` lacks.

    ``source`` says where ``ds`` came from, e.g. ``"task.train_file 'data/x.jsonl'"``.
    """
    missing = [c for c in columns if c not in ds.column_names]
    if missing:
        raise ValueError(
            f"{source} is missing column(s) {', '.join(repr(c) for c in missing)} "
            f"(found: {', '.join(ds.column_names) or 'none'}); add or rename them in the file"
        )


def _as_int(x: object) -> int | None:
    """``x`` as an int when it is one. Integral floats count: Arrow turns a whole column to
    floats when any row holds one, so ``[1, 2]`` may arrive as ``[1.0, 2.0]``."""
    if isinstance(x, bool):
        return None
    if isinstance(x, int):
        return x
    if isinstance(x, float) and x.is_integer():
        return int(x)
    return None


def load_countdown_file(
    path: str | os.PathLike,
    field: str = "task.train_file",
    solve_missing: bool = True,
    max_solve_numbers: int = 5,
) -> Dataset:
    """User Countdown problems: columns ``numbers`` (list of non-negative ints) and ``target`` (int).

    ``id`` and ``solution`` are optional. Missing ids become :func:`problem_id`. A given
    non-empty solution must solve its row. A missing one is found by :func:`solve` when
    ``solve_missing`` and the row has at most ``max_solve_numbers`` numbers (solving 6 numbers
    takes seconds per row), else left ``""``; ``""`` also marks a problem with no solution.
    """
    path = os.fspath(path)
    ds = load_table(path, field)
    source = f"{field} '{path}'"
    require_columns(ds, ["numbers", "target"], source)
    ids = ds["id"] if "id" in ds.column_names else None
    given = ds["solution"] if "solution" in ds.column_names else None
    cols: dict[str, list] = {name: [] for name in COUNTDOWN_FEATURES}
    for i, (numbers, target) in enumerate(zip(ds["numbers"], ds["target"])):
        ints = [_as_int(n) for n in numbers] if isinstance(numbers, list) else []
        if not ints or any(n is None or n < 0 for n in ints):
            raise ValueError(f"row {i} of {source}: 'numbers' must be a non-empty list of non-negative integers, got {numbers!r}")
        numbers, raw_target, target = ints, target, _as_int(target)
        if target is None:
            raise ValueError(f"row {i} of {source}: 'target' must be an integer, got {raw_target!r}")
        solution = given[i] if given is not None and given[i] is not None else ""
        if not isinstance(solution, str):
            raise ValueError(f"row {i} of {source}: 'solution' must be a string expression, got {solution!r}")
        if solution and not is_solution(solution, numbers, target):
            raise ValueError(
                f"row {i} of {source}: solution {solution!r} does not make {target} from {numbers} "
                "using each number once; fix it or leave it empty"
            )
        if not solution and solve_missing and len(numbers) <= max_solve_numbers:
            solution = solve(numbers, target) or ""
        cols["id"].append(str(ids[i]) if ids is not None and ids[i] is not None else problem_id(numbers, target))
        cols["numbers"].append(numbers)
        cols["target"].append(target)
        cols["solution"].append(solution)
    return Dataset.from_dict(cols, features=COUNTDOWN_FEATURES)


__all__ = ["SAMPLES_DIR", "SUFFIXES", "load_countdown_file", "load_table", "require_columns"]
