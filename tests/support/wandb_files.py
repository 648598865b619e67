"""Read what an offline W&B run wrote: the records of its `run-<id>.wandb` file.

The file is W&B's record log (LevelDB's log format: a 7-byte header, then 32 KiB blocks of
fragments, each `crc32 (4) | length (2, LE) | type (1)`, FULL=1, FIRST=2, MIDDLE=3, LAST=4), each
record a `wandb_internal_pb2.Record`. wandb 0.31 reads it in its Go core only, so tests read it here.
"""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Any

BLOCK = 32 * 1024
HEADER = 7  # ":W&B", a 2-byte magic, a version byte
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


def records(path: Path) -> list[Any]:
    from wandb.proto import wandb_internal_pb2 as pb

    data = path.read_bytes()
    assert data[:4] == b":W&B", path
    pos, pending, found = HEADER, b"", []
    while pos + 7 <= len(data):
        left = BLOCK - pos % BLOCK
        if left < 7:  # a block's tail too short for a fragment header is padding
            pos += left
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        if kind == 0 and length == 0:
            pos += left
            continue
        fragment, pos = data[pos + 7:pos + 7 + length], pos + 7 + length
        pending = fragment if kind in (FULL, FIRST) else pending + fragment
        if kind in (FULL, LAST):
            record = pb.Record()  # type: ignore[attr-defined]  # generated protobuf code, no stubs
            record.ParseFromString(pending)
            found.append(record)
            pending = b""
    return found


def _items(items: Any) -> dict[str, Any]:
    import json

    return {item.key or "/".join(item.nested_key): json.loads(item.value_json) for item in items}


def history(path: Path) -> list[dict[str, Any]]:
    """Every logged row, in order, as `{key: value}` (W&B's own `_step`, `_runtime`, ... included)."""
    return [_items(r.history.item) for r in records(path) if r.WhichOneof("record_type") == "history"]


def summary(path: Path) -> dict[str, Any]:
    """The run's summary as its last updates left it."""
    out: dict[str, Any] = {}
    for r in records(path):
        if r.WhichOneof("record_type") == "summary":
            out.update(_items(r.summary.update))
    return out


def run_info(path: Path) -> Any:
    """The run record: project, display name, id, config."""
    return next(r.run for r in records(path) if r.WhichOneof("record_type") == "run")
