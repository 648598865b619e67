"""Telemetry: one JSON object a line in RUN_DIR/telemetry.jsonl, flushed as it is written.

A supervisor tails this file while the run goes on, so every line is complete when it lands
(one write call per line) and flushed at once.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from pathlib import Path
from typing import Any, TextIO

from tuneyard.training import contract
from tuneyard.training.reporting import NullSink, Sink


class Telemetry:
    """Appends records to the telemetry file and mirrors log lines to stderr (with `echo_info` off, only
    warnings and errors); every record also goes to the attached reporting sink
    (`training/reporting.py`), the null one unless the job reports."""

    def __init__(self, path: Path, echo: TextIO | None = sys.stderr, echo_info: bool = True) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        drop_torn_tail(path)
        self._file = open(path, "a", encoding="utf-8")  # noqa: SIM115 - lives as long as the run
        self._echo = echo
        self._echo_info = echo_info
        self._sink: Sink = NullSink()

    def attach(self, sink: Sink) -> None:
        self._sink = sink

    def emit(self, kind: str, **fields: Any) -> None:
        record = {"kind": kind, "ts": round(time.time(), 3), **{k: _finite(v) for k, v in fields.items()}}
        self._file.write(json.dumps(record, separators=(",", ":")) + "\n")
        self._file.flush()
        try:
            self._sink.record(record)
        except Exception as exc:  # reporting never fails a run: it stops, saying so
            self._sink = NullSink()
            self.log(f"reporting stopped: {type(exc).__name__}: {exc}", level="warning")

    def log(self, message: str, level: str = "info") -> None:
        self.emit(contract.KIND_LOG, level=level, message=message)
        if self._echo is not None and (self._echo_info or level != "info"):
            print(message, file=self._echo, flush=True)

    def phase(self, name: str) -> None:
        assert name in contract.PHASES, name
        self.emit(contract.KIND_PHASE, phase=name)

    def close(self) -> None:
        sink, self._sink = self._sink, NullSink()
        try:
            sink.close()
        except Exception as exc:
            self.log(f"reporting did not finish: {type(exc).__name__}: {exc}", level="warning")
        self._file.close()


def drop_torn_tail(path: Path, chunk_bytes: int = 4096) -> None:
    """Cut a last line left without its newline by a killed writer.

    One write call a line is not atomic against SIGKILL: Linux copies a write page by page and stops
    between pages for a fatal signal, so a line crossing a page boundary can land in part. The next
    attempt appending after such a fragment would glue its first record to it, and a reader would lose
    both. The fragment was never a record (readers keep a line back until its newline), so dropping it
    loses nothing any reader has taken, and offsets stored up to complete lines stay valid.
    """
    if not path.is_file():
        return
    with open(path, "rb+") as file:
        end = file.seek(0, os.SEEK_END)
        position = end
        while position > 0:
            start = max(0, position - chunk_bytes)
            file.seek(start)
            block = file.read(position - start)
            newline = block.rfind(b"\n")
            if newline >= 0:
                position = start + newline + 1
                break
            position = start
        if position < end:
            file.truncate(position)


def _finite(value: Any) -> Any:
    """JSON has no NaN or infinity; a diverged loss is reported as null, not as invalid JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def format_rate(tokens_per_s: float) -> str:
    return f"{tokens_per_s / 1000:.1f}k" if tokens_per_s >= 1000 else f"{tokens_per_s:.0f}"


def console_line(step: int, total: int, loss: float, lr: float, tokens_per_s: float) -> str:
    return f"step {step}/{total} · loss {loss:.4f} · lr {lr:.2e} · {format_rate(tokens_per_s)} tok/s"
