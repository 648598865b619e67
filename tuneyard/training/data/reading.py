"""Read a dataset file into rows, each with its 1-based line number. Pure Python.

JSONL (or a JSON array), CSV, and Parquet when pyarrow is installed. A row that cannot be
decoded is yielded as an ``Invalid`` in its place, so validation can report every bad line.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tuneyard.errors import DataError
from tuneyard.training.data.formats import Invalid, decode_nested

Row = dict[str, Any] | Invalid


def file_kind(path: Path) -> str:
    """How to read a file, by its extension: csv, parquet, or json (JSONL or a JSON array)."""
    suffix = path.suffix.lower()
    if suffix in (".csv", ".tsv"):
        return "csv"
    if suffix in (".parquet", ".pq"):
        return "parquet"
    return "json"


def read_rows(path: Path) -> Iterator[tuple[int, Row]]:
    """Every row of the file with its line number (its row number for Parquet and JSON arrays)."""
    if not path.is_file():
        raise DataError(f"{path}: no such file", errors=[_file_error(path, "no such file")])
    kind = file_kind(path)
    if kind == "csv":
        yield from _csv_rows(path)
    elif kind == "parquet":
        yield from _parquet_rows(path)
    elif _starts_with_bracket(path):
        yield from _json_array_rows(path)
    else:
        yield from _jsonl_rows(path)


def _file_error(path: Path, message: str) -> dict[str, Any]:
    # Line 0 stands for the file as a whole.
    return {"file": str(path), "line": 0, "message": message}


def _as_row(value: Any) -> Row:
    if not isinstance(value, dict):
        return Invalid(f"expected a JSON object, got {_json_type(value)}")
    return value


def _json_type(value: Any) -> str:
    names = {list: "an array", str: "a string", bool: "a boolean", type(None): "null"}
    return names.get(type(value), "a number")


def _jsonl_rows(path: Path) -> Iterator[tuple[int, Row]]:
    with path.open("r", encoding="utf-8", errors="replace") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue  # blank lines (a trailing newline, say) are not examples
            try:
                value = json.loads(line)
            except json.JSONDecodeError as exc:
                yield number, Invalid(f"invalid JSON: {exc.msg} at column {exc.colno}")
                continue
            yield number, _as_row(value)


def _starts_with_bracket(path: Path) -> bool:
    with path.open("rb") as handle:
        head = handle.read(64).lstrip(b"\xef\xbb\xbf \t\r\n")
    return head.startswith(b"[")


def _json_array_rows(path: Path) -> Iterator[tuple[int, Row]]:
    try:
        values = json.loads(path.read_text(encoding="utf-8", errors="replace"))
    except json.JSONDecodeError as exc:
        yield exc.lineno, Invalid(f"invalid JSON: {exc.msg} at column {exc.colno}")
        return
    for number, value in enumerate(values, start=1):
        yield number, _as_row(value)


def _csv_rows(path: Path) -> Iterator[tuple[int, Row]]:
    delimiter = "\t" if path.suffix.lower() == ".tsv" else ","
    with path.open("r", encoding="utf-8", errors="replace", newline="") as handle:
        reader = csv.DictReader(handle, delimiter=delimiter)
        for record in reader:
            if None in record:
                yield reader.line_num, Invalid("more cells than header columns")
                continue
            # An empty cell means the column is absent for this row (e.g. Alpaca's optional input).
            row = {k: v for k, v in record.items() if v not in (None, "")}
            try:
                yield reader.line_num, decode_nested(row)
            except Invalid as exc:
                yield reader.line_num, exc


def _parquet_rows(path: Path) -> Iterator[tuple[int, Row]]:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise DataError(
            f"{path}: reading Parquet needs pyarrow (pip install pyarrow); or upload JSONL or CSV",
            errors=[_file_error(path, "Parquet support is not installed (pyarrow)")],
        ) from None
    try:
        table = pq.ParquetFile(path)
    except Exception as exc:  # pyarrow raises its own ArrowException family on a bad file
        raise DataError(f"{path}: not a Parquet file ({exc})", errors=[_file_error(path, str(exc))]) from None
    number = 0
    for batch in table.iter_batches(batch_size=4096):
        for value in batch.to_pylist():
            number += 1
            yield number, {k: v for k, v in value.items() if v is not None}
