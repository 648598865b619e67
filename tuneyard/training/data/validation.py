"""Validate a dataset file whole and normalize its rows into Records. Pure Python.

The API service calls ``validate_file`` on upload (it must not import torch); the runner calls
``load_records``, which raises one DataError listing every bad line (up to a cap) at once.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tuneyard.errors import DataError
from tuneyard.training.data.formats import PARSERS, Invalid, detect
from tuneyard.training.data.reading import Row, read_rows
from tuneyard.training.data.records import FORMATS, Record

MAX_REPORTED_ERRORS = 100

# The token estimate is characters / 4: rough (English BPE averages ~4 characters a token)
# but it needs no tokenizer, so the service can show it before a model is chosen.
CHARS_PER_TOKEN = 4


@dataclass
class FileScan:
    """What one pass over a file found."""

    path: Path
    requested: str  # the format the user asked for, "auto" to detect
    format: str  # the format in use; still "auto" until a row is recognized
    records: list[Record] = field(default_factory=list)
    errors: list[dict[str, Any]] = field(default_factory=list)
    error_count: int = 0
    chars: int = 0

    def add_error(self, line: int, message: str) -> None:
        self.error_count += 1
        if len(self.errors) < MAX_REPORTED_ERRORS:
            self.errors.append({"file": str(self.path), "line": line, "message": message})

    @property
    def bytes(self) -> int:
        return self.path.stat().st_size


def scan_file(path: str | Path, format: str = "auto") -> FileScan:
    """Read and check every row; never raises for bad rows (they land in ``errors``)."""
    if format not in FORMATS:
        raise DataError(f"unknown data format {format!r}; expected one of {', '.join(FORMATS)}")
    path = Path(path)
    scan = FileScan(path, format, format)
    for line, row in read_rows(path):
        try:
            record = _parse_row(scan, line, row)
        except Invalid as exc:
            scan.add_error(line, str(exc))
            continue
        scan.records.append(record)
        scan.chars += sum(len(t.content) for t in record.turns)
    if not scan.records and not scan.error_count:
        scan.add_error(0, "the file has no examples")
    return scan


def _parse_row(scan: FileScan, line: int, row: Row) -> Record:
    if isinstance(row, Invalid):
        raise row
    if scan.requested == "auto":
        found = detect(row)
        if scan.format == "auto":
            if found is None:
                raise Invalid(
                    "unrecognized row: expected a 'messages', 'conversations', 'instruction'+'output', "
                    "'prompt'+'completion', 'text' or 'preferred_output' key"
                )
            scan.format = found  # the first recognizable row fixes the file's format
        elif found not in (None, scan.format):
            raise Invalid(f"looks like {found} but this file is {scan.format} (mixed formats)")
    kind, turns, tools = PARSERS[scan.format](row)
    return Record(kind, turns, str(scan.path), line, tools)


def load_records(path: str | Path, format: str = "auto") -> FileScan:
    """Every record of a file, or a DataError listing every bad line (capped) at once."""
    scan = scan_file(path, format)
    if scan.error_count:
        raise DataError(_summary(scan), errors=scan.errors)
    return scan


def _summary(scan: FileScan) -> str:
    shown = len(scan.errors)
    more = scan.error_count - shown
    first = scan.errors[0]
    where = f"line {first['line']}" if first["line"] else "file"
    text = f"{scan.path}: {scan.error_count} invalid line(s); first, {where}: {first['message']}"
    return text + (f" (the first {shown} are listed; {more} more not shown)" if more else "")


def validate_file(path: str | Path, format: str = "auto") -> dict[str, Any]:
    """A report for the service: format, examples, bytes, token estimate and errors. Never raises."""
    try:
        scan = scan_file(path, format)
    except DataError as exc:
        return _report(Path(path), format, 0, 0, 0, exc.errors or [_whole_file(path, exc.message)], 1)
    return _report(scan.path, scan.format, len(scan.records), scan.bytes, scan.chars, scan.errors, scan.error_count)


def _whole_file(path: str | Path, message: str) -> dict[str, Any]:
    return {"file": str(path), "line": 0, "message": message}


def _report(
    path: Path, fmt: str, examples: int, size: int, chars: int, errors: list[dict[str, Any]], count: int
) -> dict[str, Any]:
    return {
        "path": str(path),
        "format": fmt,
        "valid": count == 0,
        "examples": examples,
        "bytes": size,
        "estimated_tokens": chars // CHARS_PER_TOKEN,
        "token_estimate": f"characters / {CHARS_PER_TOKEN}, before any chat template",
        "errors": errors,
        "error_count": count,
    }
