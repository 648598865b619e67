"""Incremental reading of a runner's telemetry.jsonl while the runner is still writing it."""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from tuneyard.worker.outcome import TelemetryRecord

log = logging.getLogger(__name__)

MAX_LINE_BYTES = 1024 * 1024
"""A record longer than this is dropped as malformed rather than buffered without bound."""
READ_CHUNK_BYTES = 256 * 1024


@dataclass(frozen=True)
class MalformedLine:
    """A line that is not a JSON object with a string "kind"; reported, then skipped."""

    offset: int
    """Byte offset of the line's start in the file."""
    reason: str
    excerpt: str


class TelemetryTailer:
    """Reads the complete lines appended to a telemetry file since the last call.

    The file may not exist yet, and its last line may be half-written: such a line is kept back
    until its newline arrives. `offset` only ever covers complete lines, so a tailer created with
    a saved offset resumes exactly where another one stopped, without re-reading or duplicating.
    """

    def __init__(
        self,
        path: Path,
        *,
        job_id: str,
        offset: int = 0,
        max_line_bytes: int = MAX_LINE_BYTES,
    ) -> None:
        self.path = path
        self.job_id = job_id
        self._offset = offset
        self._max_line_bytes = max_line_bytes
        self._pending = b""
        self._file: int | None = None
        self._inode: int | None = None
        self._skipping = False

    @property
    def offset(self) -> int:
        """Bytes consumed, up to the end of the last complete line."""
        return self._offset

    def read(self) -> list[TelemetryRecord | MalformedLine]:
        """Lines completed since the last call, in file order; [] when there is nothing new.

        A line that cannot be a record comes back as a `MalformedLine` in its place (and is logged),
        so the caller can surface it where it happened and carry on.
        """
        if not self._ensure_open():
            return []
        assert self._file is not None
        chunks = []
        while chunk := os.read(self._file, READ_CHUNK_BYTES):
            chunks.append(chunk)
        if not chunks:
            return []
        return self._split(self._pending + b"".join(chunks))

    def close(self) -> None:
        if self._file is not None:
            os.close(self._file)
            self._file = None

    def _ensure_open(self) -> bool:
        """Open the file when it appears; start over if it was replaced or truncated."""
        try:
            stat = os.stat(self.path)
        except FileNotFoundError:
            return False
        if self._file is not None and stat.st_ino == self._inode and stat.st_size >= self._position():
            return True
        if self._file is not None:
            log.warning("job %s: %s was replaced or truncated; reading it from the start", self.job_id, self.path)
            self.close()
            self._offset, self._pending, self._skipping = 0, b"", False
        self._file = os.open(self.path, os.O_RDONLY)
        self._inode = stat.st_ino
        if self._offset > stat.st_size:
            log.warning(
                "job %s: saved telemetry offset %d is past the end of %s; reading from the start",
                self.job_id,
                self._offset,
                self.path,
            )
            self._offset = 0
        os.lseek(self._file, self._offset + len(self._pending), os.SEEK_SET)
        return True

    def _position(self) -> int:
        return self._offset + len(self._pending)

    def _split(self, data: bytes) -> list[TelemetryRecord | MalformedLine]:
        *lines, self._pending = data.split(b"\n")
        if self._skipping and lines:
            # The rest of a line already dropped as too long: consume it without parsing.
            self._offset += len(lines.pop(0)) + 1
            self._skipping = False
        records: list[TelemetryRecord | MalformedLine] = []
        for line in lines:
            start = self._offset
            self._offset += len(line) + 1
            record = self._parse(line, start)
            if record is not None:
                records.append(record)
        if len(self._pending) > self._max_line_bytes:
            # Drop the runaway line but remember we are inside it: everything up to its newline
            # belongs to it, so the pending bytes are counted as consumed.
            if not self._skipping:
                records.append(self._malformed(self._offset, "line too long", self._pending))
            self._offset += len(self._pending)
            self._pending = b""
            self._skipping = True
        return records

    def _parse(self, line: bytes, start: int) -> TelemetryRecord | MalformedLine | None:
        if not line.strip():
            return None
        try:
            value = json.loads(line)
        except ValueError as exc:
            return self._malformed(start, f"not JSON: {exc}", line)
        if not isinstance(value, dict) or not isinstance(value.get("kind"), str):
            return self._malformed(start, 'not an object with a string "kind"', line)
        return value

    def _malformed(self, offset: int, reason: str, line: bytes) -> MalformedLine:
        bad = MalformedLine(offset, reason, line[:200].decode("utf-8", errors="replace"))
        log.warning("job %s: malformed telemetry at byte %d (%s): %s", self.job_id, offset, reason, bad.excerpt)
        return bad
