"""Loading user data, with one-line errors that name the config field to fix.

Every loader takes ``field``: the config field the value came from (``task.train_file``), so a
bad path reads ``dataset file 'x.jsonl' does not exist; set task.train_file to ...`` rather
than a stack trace from deep inside a library.

One function, :func:`load_source`, reads every form such a field takes:

* a ``.jsonl``/``.json``/``.parquet`` file, read here (with the checks below);
* a ``save_to_disk`` folder (``state.json`` or ``dataset_dict.json`` inside), by ``load_from_disk``;
* any other folder (data files, optionally a ``README.md`` dataset card with ``configs:``, as on
  the Hub) or a Hugging Face dataset id, by ``datasets.load_dataset(name, subset, split=split)``:
  a local folder goes through the same call as a hub id. Offline (``HF_DATASETS_OFFLINE=1``) an
  id must be in the local Hugging Face cache.

Then ``columns`` (loader column -> dataset column) renames the dataset's columns to the ones the
loader reads, e.g. ``{"numbers": "nums"}`` for a Countdown-tasks dataset.
"""
from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Iterable, Mapping, Optional

import pyarrow as pa
import pyarrow.parquet as pq
from datasets import Dataset, DatasetDict

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


def _read_file(path: str, field: str) -> Dataset:
    """A ``.jsonl``/``.json``/``.parquet`` file that exists, as an in-memory ``Dataset``."""
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


# Extensions that mark a value as a file path, never a hub id (ids may hold dots: "AI-MO/NuminaMath-1.5").
_FILE_SUFFIXES = SUFFIXES + (".csv", ".tsv", ".txt", ".arrow", ".gz", ".zip", ".bz2", ".xz", ".zst")
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")  # "gsm8k" or "openai/gsm8k"


def is_saved_dataset(path: str | os.PathLike) -> bool:
    """``path`` is a folder written by ``Dataset.save_to_disk`` or ``DatasetDict.save_to_disk``."""
    return os.path.isfile(os.path.join(path, "state.json")) or os.path.isfile(os.path.join(path, "dataset_dict.json"))


def is_file_source(name_or_path: str | os.PathLike) -> bool:
    """``name_or_path`` names a single data file (existing or not), not a folder or a dataset id."""
    name = os.fspath(name_or_path)
    if os.path.isfile(name):
        return True
    if os.path.isdir(name):
        return False
    return not _looks_like_hub_id(name)


def _looks_like_hub_id(name: str) -> bool:
    """A value that is not an existing path and reads as ``name`` or ``owner/name``."""
    return bool(_HUB_ID.match(name)) and not name.lower().endswith(_FILE_SUFFIXES)


def _offline() -> bool:
    import datasets.config

    flags = (os.environ.get(v, "") for v in ("HF_DATASETS_OFFLINE", "HF_HUB_OFFLINE"))
    return bool(datasets.config.HF_HUB_OFFLINE) or any(f.upper() in ("1", "ON", "YES", "TRUE") for f in flags)


def _one_line(e: BaseException) -> str:
    text = str(e).split("Example of usage:")[0]  # datasets' "Config name is missing" adds a code sample
    return " ".join(text.split()).rstrip(".")


def _load_error(name: str, field: str, split: str, subset: Optional[str], names: Mapping[str, str], e: Exception) -> str:
    """One line for an exception of ``datasets.load_dataset``."""
    from datasets.exceptions import DatasetNotFoundError

    msg, local = _one_line(e), os.path.isdir(name)
    fix = f"set {field} to a .jsonl, .json or .parquet file, a dataset folder or a Hugging Face dataset id"
    if "BuilderConfig" in msg or "Config name is missing" in msg:
        return f"{field}='{name}' with {names['subset']}={subset!r}: {msg}; set {names['subset']} to one of them"
    if "Unknown split" in msg:
        return f"{field}='{name}' with {names['split']}={split!r}: {msg}; set {names['split']} to one of them"
    if local and type(e).__name__ == "EmptyDatasetError":  # a folder without data files
        return f"dataset file '{name}' is a directory without data files that datasets.load_dataset reads ({msg}); {fix}"
    if not local and _offline() and isinstance(e, (ConnectionError, FileNotFoundError, DatasetNotFoundError)):
        return (
            f"{field}='{name}': not a file, a folder, or a dataset in the local Hugging Face cache "
            f"(HF_DATASETS_OFFLINE=1); load it once online (HF_DATASETS_OFFLINE=0) to cache it, or {fix}"
        )
    if not local and isinstance(e, (ConnectionError, DatasetNotFoundError)):
        return f"{field}='{name}': not a file, a folder, or a dataset on the Hugging Face Hub ({msg}); {fix}"
    cause = e.__cause__ or e.__context__  # DatasetGenerationError says what went wrong only in its cause
    if cause is not None and str(cause):
        msg = f"{msg}: {_one_line(cause)[:300]}"
    return f"{field}='{name}': datasets.load_dataset failed ({type(e).__name__}: {msg}); {fix}"


def rename_columns(ds: Dataset, columns: Mapping[str, str], source: str, field: str) -> Dataset:
    """``ds`` with column ``columns[k]`` renamed to ``k`` for every ``k``; a column already named
    ``k`` that is not renamed itself is dropped (the mapping wins). ``field`` names the mapping."""
    missing = [(k, v) for k, v in columns.items() if v not in ds.column_names]
    if missing:
        k, v = missing[0]
        raise ValueError(
            f"{field}: {source} has no column '{v}' (mapped to '{k}'); its columns: "
            f"{', '.join(ds.column_names) or 'none'}; map '{k}' to one of them"
        )
    sources = list(columns.values())
    for v in set(sources):
        if sources.count(v) > 1:
            targets = ", ".join(repr(k) for k, s in columns.items() if s == v)
            raise ValueError(f"{field}: column '{v}' of {source} is mapped more than once (to {targets}); map it once")
    renames = {v: k for k, v in columns.items() if v != k}
    if not renames:
        return ds
    shadowed = [k for k in renames.values() if k in ds.column_names and k not in renames]
    return ds.remove_columns(shadowed).rename_columns(renames)


def load_source(
    name_or_path: str | os.PathLike,
    field: str = "task.train_file",
    *,
    split: str = "train",
    subset: Optional[str] = None,
    columns: Optional[Mapping[str, str]] = None,
    option_fields: Optional[Mapping[str, str]] = None,
) -> Dataset:
    """The rows a data field names: a file, a ``save_to_disk`` folder, a dataset folder or a hub id.

    ``split`` and ``subset`` (the dataset's config name) choose what ``datasets.load_dataset``
    reads from a dataset folder or hub id (``split`` also picks a split of a saved
    ``DatasetDict``; a single file has neither). ``columns`` maps a column the caller reads to
    the dataset's column, renamed on load; it applies to every form. ``option_fields`` names the
    config fields of ``split``/``subset``/``columns`` (keys ``split``, ``subset``, ``columns``) in
    errors, e.g. ``{"split": "task.train_split", ...}``.

    Raises ``FileNotFoundError`` for a missing file and ``ValueError`` (one line, naming the
    field) for everything else that cannot be read.
    """
    name = os.fspath(name_or_path)
    names = {k: f"{field}'s {k}" for k in ("split", "subset", "columns")} | dict(option_fields or {})
    if os.path.isfile(name):
        ds = _read_file(name, field)
    elif os.path.isdir(name) and is_saved_dataset(name):
        from datasets import load_from_disk

        ds = load_from_disk(name)
        if isinstance(ds, DatasetDict):
            if split not in ds:
                raise ValueError(
                    f"{field}='{name}' with {names['split']}={split!r}: the saved dataset has splits "
                    f"{', '.join(ds)}; set {names['split']} to one of them"
                )
            ds = ds[split]
    elif os.path.isdir(name) or _looks_like_hub_id(name):
        from datasets import load_dataset

        try:
            ds = load_dataset(name, subset, split=split)
        except Exception as e:  # one line, whatever went wrong inside datasets
            raise ValueError(_load_error(name, field, split, subset, names, e)) from None
        if len(ds) == 0:
            raise ValueError(f"{field}='{name}' split '{split}' has no rows; set {names['split']} to a split with rows")
    else:
        raise FileNotFoundError(f"dataset file '{name}' does not exist; {_fix(field)}")
    if columns:
        ds = rename_columns(ds, columns, f"{field} '{name}'", names["columns"])
    return ds


# A data file (``.jsonl``/``.json``/``.parquet``), ``save_to_disk`` folder, dataset folder or hub id
# as a ``datasets.Dataset``: the name the stages use for `load_source`.
load_table = load_source


def require_columns(ds: Dataset, columns: Iterable[str], source: str, fix: str = "add or rename them in the file") -> None:
    """Raise ``ValueError`` naming the columns of ``columns`` that ``ds`` lacks.

    ``source`` says where ``ds`` came from, e.g. ``"task.train_file 'data/x.jsonl'"``; ``fix``
    ends the message.
    """
    missing = [c for c in columns if c not in ds.column_names]
    if missing:
        raise ValueError(
            f"{source} is missing column(s) {', '.join(repr(c) for c in missing)} "
            f"(found: {', '.join(ds.column_names) or 'none'}); {fix}"
        )


def columns_fix(name_or_path: str | os.PathLike, columns_field: Optional[str]) -> str:
    """The end of a missing-columns message: rename in the file, or map with ``columns_field``."""
    if is_file_source(name_or_path) or not columns_field:
        return "add or rename them in the file"
    return f"map them from the dataset's columns with {columns_field} (e.g. {columns_field}={{numbers: nums}})"


__all__ = [
    "SAMPLES_DIR",
    "SUFFIXES",
    "columns_fix",
    "is_file_source",
    "is_saved_dataset",
    "load_source",
    "load_table",
    "rename_columns",
    "require_columns",
]
