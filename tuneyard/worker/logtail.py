"""The last lines of a runner's log: the evidence kept when a runner dies without a verdict."""

from __future__ import annotations

import os
from pathlib import Path

TAIL_BYTES = 64 * 1024
"""Read at most this much from the end; a runaway line must not make a crash report huge."""


def tail_lines(path: Path, count: int) -> list[str]:
    """Up to `count` last lines of `path`, decoded leniently; [] if the file does not exist."""
    try:
        with open(path, "rb") as f:
            size = f.seek(0, os.SEEK_END)
            f.seek(max(0, size - TAIL_BYTES))
            data = f.read()
    except FileNotFoundError:
        return []
    lines = data.decode("utf-8", errors="replace").splitlines()
    if len(data) == TAIL_BYTES and size > TAIL_BYTES:
        lines = lines[1:]  # the first one is probably cut in the middle
    return lines[-count:]
