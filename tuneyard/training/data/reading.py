"""Read a dataset file into rows, each with its 1-based line number. Pure Python.

JSONL (or a JSON array), CSV, and Parquet when pyarrow is installed. A row that cannot be
decoded is yielded as an ``Invalid`` in its place, so validation can report every bad line.
"""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tuneyard.errors import DataError
from tuneyard.training.data.formats import Invalid, decode_nested

Row = dict[str, Any] | Invalid

MAX_JSON_DEPTH = 100
"""Arrays and objects nested deeper than this in one row are refused, that row's line named: a chat
with tool calls is under ten deep, and Python's decoder recurses once a level (a 10,000-deep line
overflowed its stack, and the whole file was reported as `line 0: RecursionError`)."""
TOO_DEEP = f"nested deeper than {MAX_JSON_DEPTH} levels of arrays and objects"
_STRING_OR_BRACKET = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"|[\[\]{}]')


def bounded_loads(text: str, limit: int = MAX_JSON_DEPTH) -> Any:
    """json.loads, refusing with Invalid (its message says why) a value nested deeper than `limit`.

    Decoding first and measuring the result is several times cheaper than scanning the text in
    Python; what is too deep even to decode stops the decoder with RecursionError, caught here.
    """
    try:
        value = json.loads(text)
    except RecursionError:
        raise Invalid(TOO_DEEP) from None
    # No text with this few brackets can nest deeper: most rows skip the walk.
    if text.count("[") + text.count("{") > limit and nested_deeper(value, limit):
        raise Invalid(TOO_DEEP)
    return value


def nested_deeper(value: Any, limit: int = MAX_JSON_DEPTH) -> bool:
    """Whether arrays and objects in a decoded value nest deeper than `limit` (the value itself is 1)."""
    level = [value] if isinstance(value, dict | list) else []
    for _ in range(limit):
        below = []
        for container in level:
            for child in container.values() if isinstance(container, dict) else container:
                if isinstance(child, dict | list):
                    below.append(child)
        if not below:
            return False
        level = below
    return True


def deepest_line(text: str, limit: int) -> int:
    """The 1-based line where nesting in a JSON text first passes `limit` (a scan in Python: slow, so
    only for a text the decoder already found too deep)."""
    depth = 0
    for match in _STRING_OR_BRACKET.finditer(text):
        token = match.group()
        depth += 1 if token in ("[", "{") else -1 if token in ("]", "}") else 0
        if depth > limit:
            return text.count("\n", 0, match.start()) + 1
    return 0


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
                value = bounded_loads(line)
            except Invalid as exc:
                yield number, exc
                continue
            except json.JSONDecodeError as exc:
                yield number, Invalid(f"invalid JSON: {exc.msg} at column {exc.colno}")
                continue
            yield number, _as_row(value)


def _starts_with_bracket(path: Path) -> bool:
    with path.open("rb") as handle:
        head = handle.read(64).lstrip(b"\xef\xbb\xbf \t\r\n")
    return head.startswith(b"[")


def _json_array_rows(path: Path) -> Iterator[tuple[int, Row]]:
    text = path.read_text(encoding="utf-8", errors="replace")
    try:
        values = json.loads(text)
    except RecursionError:
        yield deepest_line(text, MAX_JSON_DEPTH + 1), Invalid(TOO_DEEP)  # the array itself is a level
        return
    except json.JSONDecodeError as exc:
        yield exc.lineno, Invalid(f"invalid JSON: {exc.msg} at column {exc.colno}")
        return
    for number, value in enumerate(values, start=1):
        yield number, Invalid(TOO_DEEP) if nested_deeper(value) else _as_row(value)


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
                decoded = decode_nested(row)
            except Invalid as exc:
                yield reader.line_num, exc
            except RecursionError:
                yield reader.line_num, Invalid(TOO_DEEP)
            else:
                yield reader.line_num, Invalid(TOO_DEEP) if nested_deeper(decoded) else decoded


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
