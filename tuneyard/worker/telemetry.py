"""Incremental reading of a runner's telemetry.jsonl while the runner is still writing it.

`TelemetryTailer` parses a byte stream it reads by offset, wherever the stream lives;
`read_file_range` is that read for a file this machine sees (the local executor's).
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from tuneyard.training import contract
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


TelemetryRead = Callable[[int, int], bytes | None]
"""`read(offset, limit)`: up to `limit` bytes of the stream from `offset`, b"" when nothing is there
yet, None when the stream is now shorter than `offset` (see `RunnerProcess.read_telemetry`)."""


class TelemetryTailer:
    """Reads the complete lines appended to a telemetry stream since the last call.

    The stream comes through `read` (a runner handle's `read_telemetry`), so the tailer never knows
    where it lives. It may be empty yet, and its last line may be half-written: such a line is kept
    back until its newline arrives. `offset` only ever covers complete lines, so a tailer created
    with a saved offset resumes exactly where another one stopped, without re-reading or duplicating.
    """

    def __init__(
        self,
        read: TelemetryRead,
        *,
        job_id: str,
        offset: int = 0,
        max_line_bytes: int = MAX_LINE_BYTES,
        chunk_bytes: int = READ_CHUNK_BYTES,
    ) -> None:
        self._read = read
        self.job_id = job_id
        self._offset = offset
        self._max_line_bytes = max_line_bytes
        self._chunk_bytes = chunk_bytes
        self._pending = b""
        self._skipping = False

    @property
    def offset(self) -> int:
        """Bytes consumed, up to the end of the last complete line."""
        return self._offset

    def read(self) -> list[TelemetryRecord | MalformedLine]:
        """Lines completed since the last call, in stream order; [] when there is nothing new.

        A line that cannot be a record comes back as a `MalformedLine` in its place (and is logged),
        so the caller can surface it where it happened and carry on.
        """
        data = self._read_new()
        if not data:
            return []
        return self._split(data)

    def read_records(self) -> list[TelemetryRecord]:
        """`read()`, with each malformed line as a warning in the job's log where it occurred."""
        return [as_log_record(item) if isinstance(item, MalformedLine) else item for item in self.read()]

    def _read_new(self) -> bytes:
        """Everything past the last complete line taken; the stream read again from 0 if it got shorter.

        A half-written line is read again each time rather than kept: the next attempt's runner cuts
        such a fragment left by a killed writer (`drop_torn_tail`) and writes its own line there.
        """
        chunks: list[bytes] = []
        at = self._position()
        while True:
            chunk = self._read(at, self._chunk_bytes)
            if chunk is None and at == self._position() > 0:
                log.warning("job %s: telemetry stream is shorter than offset %d (truncated, replaced, or a "
                            "saved offset past its end); reading it from the start", self.job_id, at)
                self._offset, self._pending, self._skipping = 0, b"", False
                at = 0
                continue
            if not chunk:
                return b"".join(chunks)  # None after a read: it shrank meanwhile; the next call starts over
            chunks.append(chunk)
            at += len(chunk)
            if len(chunk) < self._chunk_bytes:
                return b"".join(chunks)

    def _position(self) -> int:
        return self._offset

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


def as_log_record(bad: MalformedLine) -> TelemetryRecord:
    """A malformed line, surfaced in the job's own log where it occurred."""
    return {
        "kind": contract.KIND_LOG,
        "ts": time.time(),
        "level": "warning",
        "source": "supervisor",
        "message": f"malformed telemetry line at byte {bad.offset} ({bad.reason}): {bad.excerpt}",
    }


def read_file_range(path: Path, offset: int, limit: int) -> bytes | None:
    """Up to `limit` bytes of `path` from `offset`: b"" if there are none yet or the file does not
    exist yet, None if the file is shorter than `offset` (it was truncated or replaced)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return b""
    try:
        if os.fstat(fd).st_size < offset:
            return None
        return os.pread(fd, limit, offset)
    finally:
        os.close(fd)
