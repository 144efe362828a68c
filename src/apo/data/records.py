"""Raw records from JSON, JSON lines, parquet, TSV and ``datasets`` folders, with locations."""

from __future__ import annotations

import csv
import json
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

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

    Raises DataError naming the file for unreadable files. A JSON or TSV line
    that is not UTF-8, a malformed JSON line and a row that is not an object come
    back as a record carrying its ``error`` (the next lines are still read), so a
    caller may skip it.
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


def json_problem(error: ValueError | RecursionError) -> str:
    """What ``json.loads`` refused, in words (said after "malformed JSON: ")."""
    if isinstance(error, json.JSONDecodeError):
        return f"{error.msg} at column {error.colno}"
    if isinstance(error, RecursionError):
        return "nested too deeply"
    # json.loads raises a plain ValueError only for an integer longer than Python
    # converts (4300 digits by default).
    return "a number has too many digits"


def _parse_line(raw: bytes, location: str) -> dict[str, Any]:
    """One JSON line as a row; DataError if it is not UTF-8, not JSON or not an object."""
    try:
        line = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        raise DataError(
            location,
            f"not UTF-8 text: byte 0x{raw[error.start]:02x} at column {error.start + 1}",
            reason="not_utf8",
        ) from None
    try:
        value = json.loads(line)
    except (ValueError, RecursionError) as error:
        raise DataError(
            location, f"malformed JSON: {json_problem(error)}", reason="malformed_json"
        ) from None
    return _as_object(location, value)


def _read_jsonl(path: Path) -> Iterator[Record]:
    # Bytes decoded line by line: a line that is not UTF-8 is one bad row, and the
    # next lines are still read.
    with path.open("rb") as handle:
        for number, raw in enumerate(handle, start=1):
            if not raw.strip():
                continue
            location = f"{path}:{number}"
            try:
                record = Record(location, _parse_line(raw, location), path.parent)
            except DataError as error:
                record = Record(location, {}, path.parent, error)
            yield record


def _read_json(path: Path) -> Iterator[Record]:
    data = path.read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        line = data.count(b"\n", 0, error.start) + 1
        raise DataError(
            f"{path}:{line}",
            f"not UTF-8 text: byte 0x{data[error.start]:02x}",
            reason="not_utf8",
        ) from None
    try:
        value = json.loads(text)
    except json.JSONDecodeError as error:
        raise DataError(
            f"{path}:{error.lineno}",
            f"malformed JSON: {json_problem(error)}",
            reason="malformed_json",
        ) from None
    except (ValueError, RecursionError) as error:  # no line number for these
        raise DataError(
            str(path), f"malformed JSON: {json_problem(error)}", reason="malformed_json"
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
    bad_lines: list[tuple[int, str]] = []  # (line number, problem) of lines not UTF-8
    with path.open("rb") as handle:
        reader = csv.DictReader(_utf8_lines(handle, bad_lines), delimiter="\t")
        if reader.fieldnames is None:
            return  # an empty file
        if bad_lines:
            raise DataError(f"{path}:1", f"header {bad_lines[0][1]}", reason="not_utf8")
        last_line = reader.line_num
        for row, item in enumerate(reader):
            location = f"{path}:{row + 2}"
            # A row may span several lines (a quoted cell with line breaks).
            first_line, last_line = last_line + 1, reader.line_num
            if bad_lines and bad_lines[-1][0] >= first_line:
                error = DataError(location, bad_lines[-1][1], reason="not_utf8")
                yield Record(location, {}, path.parent, error)
                continue
            fields = {key: value for key, value in item.items() if key is not None}
            yield Record(location, fields, path.parent)


def _utf8_lines(handle: BinaryIO, bad_lines: list[tuple[int, str]]) -> Iterator[str]:
    """The file's lines as text; a line that is not UTF-8 is appended to ``bad_lines``
    and comes with replacement characters, so that the table's next rows are read."""
    for number, raw in enumerate(handle, start=1):
        try:
            yield raw.decode("utf-8")
        except UnicodeDecodeError as error:
            bad_lines.append(
                (number, f"not UTF-8 text: byte 0x{raw[error.start]:02x} on line {number}")
            )
            yield raw.decode("utf-8", errors="replace")


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
