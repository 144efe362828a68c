"""Raw records from JSON, JSON lines, parquet, TSV and ``datasets`` folders, with locations."""

from __future__ import annotations

import csv
import json
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from apo.data.errors import DataError

JSON_SUFFIXES = {".json"}
JSONL_SUFFIXES = {".jsonl", ".ndjson"}
PARQUET_SUFFIXES = {".parquet"}
TSV_SUFFIXES = {".tsv"}


@dataclass
class Record:
    """One row as read from disk; ``location`` says where it came from."""

    location: str
    fields: dict[str, Any]
    base_dir: Path  # relative image paths are resolved against it
    error: DataError | None = None  # a row that could not be read (the file goes on)


def read_records(path: str | Path, split: str = "train") -> Iterator[Record]:
    """Every row of a data file or a ``datasets.save_to_disk`` folder.

    Raises DataError naming the file for unreadable files. A malformed JSON line
    or a row that is not an object comes back as a record carrying its ``error``
    (the next lines are still read), so a caller may skip it.
    """
    path = Path(path)
    if not path.exists():
        raise DataError(str(path), "no such file or folder", reason="missing_file")
    if path.is_dir():
        yield from _read_saved_dataset(path, split)
        return
    suffix = path.suffix.lower()
    if suffix in JSONL_SUFFIXES:
        yield from _read_jsonl(path)
    elif suffix in JSON_SUFFIXES:
        yield from _read_json(path)
    elif suffix in PARQUET_SUFFIXES:
        yield from _read_parquet(path)
    elif suffix in TSV_SUFFIXES:
        yield from _read_tsv(path)
    else:
        raise DataError(
            str(path),
            f"unsupported file type {suffix!r}; use .json, .jsonl, .parquet, .tsv or a "
            "datasets folder",
            reason="unsupported_file",
        )


def _as_object(location: str, value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise DataError(
            location,
            f"a row must be a JSON object, got {type(value).__name__}",
            reason="not_object",
        )
    return value


def _read_jsonl(path: Path) -> Iterator[Record]:
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            location = f"{path}:{number}"
            try:
                value = json.loads(line)
                yield Record(location, _as_object(location, value), path.parent)
            except json.JSONDecodeError as error:
                message = f"malformed JSON: {error.msg} at column {error.colno}"
                yield Record(
                    location, {}, path.parent, DataError(location, message, reason="malformed_json")
                )
            except DataError as error:
                yield Record(location, {}, path.parent, error)


def _read_json(path: Path) -> Iterator[Record]:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise DataError(
            f"{path}:{error.lineno}",
            f"malformed JSON: {error.msg} at column {error.colno}",
            reason="malformed_json",
        ) from None
    if isinstance(value, dict) and isinstance(value.get("data"), list):
        value = value["data"]  # a common wrapper: {"data": [...]}
    elif isinstance(value, dict) and value and all(isinstance(v, dict) for v in value.values()):
        # rows keyed by id (MathVista's testmini.json): the key is the row's id
        for key, item in value.items():
            yield Record(f"{path}[{key!r}]", {"id": key} | item, path.parent)
        return
    if not isinstance(value, list):
        raise DataError(
            str(path), "a JSON data file must hold a list of objects", reason="not_list"
        )
    for row, item in enumerate(value):
        location = f"{path}[{row}]"
        yield Record(location, _as_object(location, item), path.parent)


def _read_parquet(path: Path) -> Iterator[Record]:
    try:
        table = pq.ParquetFile(path)
    except Exception as error:  # pyarrow raises several types for a bad file
        raise DataError(
            str(path), f"not a readable parquet file: {error}", reason="unreadable_file"
        ) from None
    row = 0
    for batch in table.iter_batches(batch_size=256):
        for item in batch.to_pylist():
            yield Record(f"{path}[{row}]", item, path.parent)
            row += 1


def _read_tsv(path: Path) -> Iterator[Record]:
    """A tab-separated table with a header row (VLMEvalKit's benchmark files, whose
    base64 image cells exceed csv's default field limit)."""
    csv.field_size_limit(sys.maxsize)
    with path.open(encoding="utf-8", newline="") as handle:
        for row, item in enumerate(csv.DictReader(handle, delimiter="\t")):
            fields = {key: value for key, value in item.items() if key is not None}
            yield Record(f"{path}:{row + 2}", fields, path.parent)


def _read_saved_dataset(path: Path, split: str) -> Iterator[Record]:
    import datasets  # half a second to import: only for a save_to_disk folder

    try:
        loaded = datasets.load_from_disk(str(path))
    except (FileNotFoundError, ValueError) as error:
        raise DataError(
            str(path), f"not a datasets folder (save_to_disk): {error}", reason="unreadable_file"
        ) from None
    if isinstance(loaded, datasets.DatasetDict):
        if split not in loaded:
            raise DataError(
                str(path), f"no split {split!r}; it has {', '.join(loaded)}", reason="missing_split"
            )
        loaded = loaded[split]
    # Keep images encoded ({"bytes", "path"}): decoding every row up front would
    # hold the whole image set in memory.
    for name, feature in loaded.features.items():
        if isinstance(feature, datasets.Image):
            loaded = loaded.cast_column(name, datasets.Image(decode=False))
        elif isinstance(feature, (datasets.Sequence, datasets.List)) and isinstance(
            getattr(feature, "feature", None), datasets.Image
        ):
            loaded = loaded.cast_column(name, type(feature)(datasets.Image(decode=False)))
    for row, item in enumerate(loaded):
        yield Record(f"{path}[{row}]", dict(item), path)
